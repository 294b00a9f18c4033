"""How small may a face be in the photo? The thresholds of `core.faces.SMALL_FACE_PX` / `TINY_FACE_PX`.

    python -m benchmarks.small_faces

CelebA held-out photos are shrunk until their FFHQ crop spans N px of the photo, re-detected and aligned at 128 px
like any upload; FaceNet similarity (`core.identity`) of that crop to the full-resolution photo's crop says how much
of the person is left for an inversion to find.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import identity
from core.faces import NoFaceFound, align_face, load_image, pil_to_tensor

CELEBA_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "celeba" / "eval"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20, help="held-out photos (every 25th)")
    parser.add_argument("--sides", type=int, nargs="+", default=[96, 64, 48, 32, 24, 16], help="crop sides in px")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    found: dict[int, list[float | None]] = {side: [] for side in args.sides}
    for photo in sorted(CELEBA_EVAL.iterdir())[::25][:args.photos]:
        image = load_image(photo)
        full = align_face(image, size=128)
        reference = identity.embed(pil_to_tensor(full.image))
        for side in args.sides:
            scale = side / full.source_side
            small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.LANCZOS)
            try:
                crop = align_face(small, size=128).image
            except NoFaceFound:
                found[side].append(None)
                continue
            found[side].append(identity.similarity(identity.embed(pil_to_tensor(crop)), reference).item())
    print("| crop side in the photo | detected | FaceNet similarity to the full-resolution crop | same person |")
    print("|---|---|---|---|")
    for side, values in found.items():
        seen = [v for v in values if v is not None]
        same = sum(v > identity.SAME_PERSON for v in seen)
        print(f"| {side} px | {len(seen)} / {len(values)} | {np.mean(seen) if seen else float('nan'):.3f} | "
              f"{same} / {len(seen)} |")


if __name__ == "__main__":
    main()
