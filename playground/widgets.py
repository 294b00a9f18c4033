"""ipywidgets for the notebooks: an explorer of edit directions over an inversion, drawn live by the PTI-tuned and
by the original generator side by side."""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
import torch
from PIL import Image

from core.editing import Direction, apply_sequence
from core.faces import tensor_to_pil
from core.inversion import InversionResult
from core.nets.stylegan2 import Generator


def png(image: torch.Tensor, side: int = 256) -> bytes:
    """[1, 3, H, W] in [-1, 1] -> PNG bytes, upscaled to `side` for the screen."""
    buffer = io.BytesIO()
    tensor_to_pil(image[0]).resize((side, side), Image.Resampling.LANCZOS).save(buffer, format="PNG")
    return buffer.getvalue()


def direction_explorer(G: Generator, result: InversionResult, directions: Sequence[Direction], span: float = 5.0,
                       step: float = 0.25) -> widgets.VBox:
    """One slider per direction (stacked edits, applied in order); every move redraws the edited inversion with
    the result's tuned generator and with the original G, to see what PTI's tuning keeps."""
    sliders = [widgets.FloatSlider(value=0.0, min=-span, max=span, step=step, description=d.name,
                                   continuous_update=False, style={"description_width": "initial"}) for d in directions]
    tuned, original = widgets.Image(format="png"), widgets.Image(format="png")

    def redraw(_: object = None) -> None:
        edits = [(d, s.value) for d, s in zip(directions, sliders, strict=True) if s.value]
        ws = apply_sequence(result.pivot, edits, G.n_latent) if edits else result.pivot
        with torch.no_grad():
            tuned.value = png(result.render(G, ws))
            original.value = png(result.render(G, ws, tuned=False))

    for slider in sliders:
        slider.observe(redraw, names="value")
    redraw()
    views = widgets.HBox([widgets.VBox([widgets.Label("tuned generator (PTI)"), tuned]),
                          widgets.VBox([widgets.Label("original generator"), original])])
    return widgets.VBox([views, *sliders])
