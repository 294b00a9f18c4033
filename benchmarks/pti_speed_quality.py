"""Does a fast PTI path keep the eager fp32 path's quality? Each `pti_speed` variant on the same held-out faces.

    python -m benchmarks.pti_speed_quality run --device cuda --variants fp32 bf16+cl+step-graph --limit 8 --out DIR
    python -m benchmarks.pti_speed_quality score DIR                  # on a machine with FaceNet and dlib (the CPU)

`run` inverts the first `--limit` aligned faces of `benchmarks.pti_curves` (`.carry/pti_curves/faces.npz`: CelebA
eval, LFW, FFHQ, UTKFace children and elderly) with the embedded generator and PTI's paper settings (early stop on),
once per variant, the projection with the AlexNet LPIPS (a device call cannot carry the VGG trunk), and saves the
reconstructions, seconds and tuning steps to DIR/<variant>.npz (`+` written `_`). `score` prints, per variant,
`core.measures.score`
against the photos (LPIPS, PSNR, MS-SSIM, FaceNet identity and same person, dlib distance) and the largest pixel
difference from the first variant's reconstructions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine
from benchmarks.pti_speed import VARIANTS

FACES = Path(__file__).resolve().parents[1] / ".carry" / "pti_curves" / "faces.npz"


def run(args: argparse.Namespace) -> None:
    from core.faces import from_uint8, to_uint8
    from core.inversion import invert
    from core.registry import load_generator

    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    G = load_generator("default", args.device)
    targets = from_uint8(torch.from_numpy(np.load(args.faces)["images"][: args.limit])).to(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    for name in args.variants:
        images, seconds, steps = [], [], []
        for target in targets:
            started = time.perf_counter()
            result = invert(G, target[None], "pti", lpips_net="alex", **VARIANTS[name])
            seconds.append(time.perf_counter() - started)
            steps.append(len(result.losses["tune"]["loss"]))
            images.append(to_uint8(result.reconstruction)[0].numpy())
        file = args.out / f"{name.replace('+', '_')}.npz"  # the device tool returns plain names only
        np.savez(file, images=np.stack(images), seconds=np.array(seconds), steps=np.array(steps))
        print(f"{name}: {np.mean(seconds[1:] or seconds):.1f} s a face after the first, tuning steps {steps}",
              flush=True)


def score(args: argparse.Namespace) -> None:
    from core.faces import from_uint8
    from core.measures import score as measure

    photos = from_uint8(torch.from_numpy(np.load(args.faces)["images"]))
    runs = {path.stem: np.load(path) for path in sorted(args.dir.glob("*.npz"))}
    reference = runs.get(args.reference)
    print(f"{len(photos)} held-out faces in {args.faces.name}; reference for the pixel difference: {args.reference}\n")
    print("| variant | faces | s a face | tuning steps | LPIPS | PSNR | MS-SSIM | identity | same person "
          "| dlib distance "
          "| max pixel difference from the reference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, data in runs.items():
        images = data["images"]
        m = measure(from_uint8(torch.from_numpy(images)), photos[: len(images)])
        difference = (np.abs(images.astype(int) - reference["images"][: len(images)].astype(int)).max()
                      if reference is not None else float("nan"))
        print(f"| {name} | {len(images)} | {data['seconds'].mean():.1f} | {data['steps'].mean():.0f} | "
              f"{m['lpips']:.4f} | {m['psnr']:.2f} | {m['ms_ssim']:.4f} | {m['identity']:.3f} | "
              f"{m['same_person']:.0%} | {m['dlib_distance']:.3f} | {difference} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["fp32"])
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--faces", type=Path, default=FACES)
    p.add_argument("--out", type=Path, required=True)
    p = commands.add_parser("score")
    p.add_argument("dir", type=Path)
    p.add_argument("--faces", type=Path, default=FACES)
    p.add_argument("--reference", default="fp32", help="the variant the pixel differences are taken from")
    args = parser.parse_args()
    run(args) if args.command == "run" else score(args)


if __name__ == "__main__":
    main()
