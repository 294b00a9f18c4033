"""The notebook helpers: the ipywidgets direction explorer, the plotly figures, long runs kept on disk."""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image

from core.editing import Direction
from core.inversion import invert
from core.nets.stylegan2 import Generator
from playground.figures import tradeoff_scatter
from playground.saved import run_key, saved_inversions
from playground.widgets import direction_explorer


def test_direction_explorer_redraws_both_generators_when_a_slider_moves():
    torch.manual_seed(0)
    G = Generator(32, 32, 2, channel_base=256, channel_max=32).eval()
    result = invert(G, torch.rand(1, 3, 32, 32) * 2 - 1, "pti", pivot="mean", steps=2)
    directions = [Direction("a", torch.randn(32)), Direction("b", torch.randn(32))]
    explorer = direction_explorer(G, result, directions)
    views, first = explorer.children[0], explorer.children[1]
    tuned, original = views.children[0].children[1], views.children[1].children[1]
    before = tuned.value, original.value
    assert before[0] != before[1]  # PTI's tuned generator draws another image than the original one
    first.value = 3.0
    assert tuned.value != before[0] and original.value != before[1]


def test_tradeoff_scatter_has_one_labelled_point_per_method():
    """Interactive in Jupyter, and a PNG beside it for viewers without JavaScript."""
    shown = tradeoff_scatter({"pSp": (0.2, 3.0), "e4e": (0.3, 3.5)}, "distortion", "editability")
    (trace,) = shown.figure.data
    assert list(trace.text) == ["pSp", "e4e"] and list(trace.x) == [0.2, 0.3] and list(trace.y) == [3.0, 3.5]
    bundle = shown._repr_mimebundle_()
    assert {"application/vnd.plotly.v1+json", "text/html", "image/png"} <= set(bundle)
    png = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert png.width > 300 and png.height > 200


def test_saved_inversions_compute_once_and_come_back_alike(tmp_path):
    """A run kept on disk is loaded instead of computed again, equal to what was computed; other settings, photos or
    an unfinished run (no `done` marker) compute anew."""
    torch.manual_seed(0)
    G = Generator(32, 32, 2, channel_base=256, channel_max=32).eval()
    targets = torch.rand(2, 3, 32, 32) * 2 - 1
    calls = []

    def compute(steps=2):
        calls.append(steps)
        return invert(G, targets, "pti", pivot="mean", steps=steps, independent=True)

    first = saved_inversions(tmp_path, "run", G, targets, {"steps": 2}, compute)
    again = saved_inversions(tmp_path, "run", G, targets, {"steps": 2}, compute)
    assert calls == [2] and len(again) == 2
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a.pivot, b.pivot)
        torch.testing.assert_close(a.render(G), b.render(G), atol=2e-3, rtol=0)  # float16 deltas on disk
    saved_inversions(tmp_path, "run", G, targets, {"steps": 3}, lambda: compute(3))
    saved_inversions(tmp_path, "run", G, targets.flip(0), {"steps": 2}, compute)
    assert calls == [2, 3, 2]
    (tmp_path / f"run-{run_key(G, targets, {'steps': 2})}" / "done").unlink()  # as if interrupted while saving
    saved_inversions(tmp_path, "run", G, targets, {"steps": 2}, compute)
    saved_inversions(None, "run", G, targets, {"steps": 2}, compute)  # no folder: always computed
    assert calls == [2, 3, 2, 2, 2]
