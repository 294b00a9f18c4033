"""Paste-back of edits that reach past the face (hair colour): the landmark mask alone against the mask that also
takes in what the edit changed (`core.paste.paste_back(..., unedited=...)`).

    python -m benchmarks.paste_edits --json benchmarks/paste_edits.json --figure benchmarks/paste_edits.jpg

Held-out photos (CelebA eval and LFW, full photos with background), e4e codes, each hair edit at `--strength`. For each
paste: *edit shown*, the share of the crop's pixels the edit changed (mean |edited − unedited| over 0.2 after the
mask's blur, in [-1, 1] units) that land under mask weight ≥ 0.5 in the photo; *mask over the face's*, the mask's
area over the landmark mask's; `seam` (1: no edge added) and `outside_changed` as every paste measures them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from benchmarks.common import machine
from core.faces import NoFaceFound, align_face
from core.paste import CHANGED, face_mask, paste_back
from core.pipeline import Playground
from core.threads import use_threads

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
EDITS = ("Blond_Hair", "Black_Hair")
MASKS = {"face only": False, "face + what the edit changed": True}


def edit_shown(face, edited: torch.Tensor, unedited: torch.Tensor, mask: np.ndarray) -> float:
    """Share of the crop pixels the edit changed whose place in the photo got mask weight ≥ 0.5."""
    change = scipy.ndimage.gaussian_filter((edited - unedited).abs().mean(0).numpy(), edited.shape[-1] / 96)
    size = edited.shape[-1]
    v, u = np.nonzero(change > CHANGED)
    if not len(u):
        return float("nan")
    points = face.quad[0] + np.outer((u + 0.5) / size, face.quad[3] - face.quad[0]) + np.outer(
        (v + 0.5) / size, face.quad[1] - face.quad[0])
    x, y = np.rint(points).astype(int).T
    inside = (x >= 0) & (x < mask.shape[1]) & (y >= 0) & (y < mask.shape[0])  # the crop may reach past the photo
    return float(np.mean(mask[y[inside], x[inside]] >= 0.5)) if inside.any() else float("nan")


def photos(per_set: int) -> list[Path]:
    celeba = sorted((FACES / "celeba" / "eval").iterdir())
    lfw = sorted((FACES / "lfw").iterdir())
    return celeba[::len(celeba) // per_set][:per_set] + lfw[::len(lfw) // per_set][:per_set]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-set", type=int, default=8)
    parser.add_argument("--strength", type=float, default=3.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path, help="photo, each edit pasted with each mask, for 4 photos")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    playground = Playground.from_pretrained(args.model)
    rows, tiles = [], []
    for path in photos(args.per_set):
        try:
            face = align_face(path, size=playground.generator.size)
        except NoFaceFound:
            continue
        result = playground.invert(face, "e4e")
        photo = Image.open(path).convert("RGB")
        face_area = face_mask(face, photo.width, photo.height).sum()
        unedited = result.reconstruction[0].clamp(-1, 1)
        row_tiles = [photo]
        for direction in EDITS:
            edited = playground.edit(result, [(direction, args.strength)])[0]
            for name, with_changes in MASKS.items():
                pasted = paste_back(path, face, edited, unedited=unedited if with_changes else None)
                rows.append({"photo": path.name, "edit": direction, "mask": name,
                             "edit_shown": edit_shown(face, edited, unedited, pasted.mask),
                             "mask_over_face": float(pasted.mask.sum() / face_area),
                             **pasted.measures})
                row_tiles.append(pasted.image)
        tiles.append(row_tiles)
        print(path.name, *(f"{r['edit']}/{r['mask']}: shown {r['edit_shown']:.2f} seam {r['seam']:.2f}"
                           for r in rows[-4:]), flush=True)
    print(f"\n{len(tiles)} photos, e4e, strength {args.strength:+g}, model {args.model}; {machine()}\n")
    print("| edit | mask | edit shown ↑ | mask area / face mask's | seam (1: no edge) | outside changed |")
    print("|---|---|---|---|---|---|")
    for direction in EDITS:
        for name in MASKS:
            picked = [r for r in rows if r["edit"] == direction and r["mask"] == name]
            mean = {k: np.nanmean([r[k] for r in picked]) for k in ("edit_shown", "mask_over_face", "seam",
                                                                     "outside_changed")}
            print(f"| {direction} | {name} | {mean['edit_shown']:.2f} | {mean['mask_over_face']:.2f} | "
                  f"{mean['seam']:.2f} | {mean['outside_changed']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "strength": args.strength, "model": args.model,
                                         "rows": rows}, indent=1))
    if args.figure:
        height = 200
        picks = [tiles[i] for i in np.linspace(0, len(tiles) - 1, 4).round().astype(int)]
        lines = [np.concatenate([np.asarray(t.resize((round(t.width * height / t.height), height))) for t in row], 1)
                 for row in picks]
        width = max(line.shape[1] for line in lines)
        Image.fromarray(np.concatenate([np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)),
                                               constant_values=255) for line in lines])).save(args.figure, quality=90)


if __name__ == "__main__":
    main()
