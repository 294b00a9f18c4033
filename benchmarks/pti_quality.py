"""PTI presets on held-out faces, as a user runs them: wall time, early stop, reconstruction, identity, locality.

    python -m benchmarks.pti_quality                                   # 2 faces per set with 'fast', 1 with 'paper'
    python -m benchmarks.pti_quality --faces fast=8 paper=2 --threads 2 --json out.json --grid grid.png

Faces: `per set` photos of each held-out set nobody trained on (CelebA eval, LFW, FFHQ, UTKFace children and
elderly: `benchmarks.pti_curves.held_out_photos`, seeded), FFHQ-aligned at the generator's size; a preset with a
smaller count runs on the first faces of each set, so its rows pair with the other presets'. Per face: seconds of
the pivot and of the tuning, tuning steps, whether the early stop (LPIPS <= 0.06 at 256 px) ended the tuning,
`core.measures.score` of the pivot through the untouched generator and of the PTI reconstruction (PSNR, LPIPS,
MS-SSIM, FaceNet identity and "same person", dlib distance), the paper's locality drift (LPIPS between base and tuned
images of latents 30 away from the pivot) and the 1-minute load average before / after. `--grid` writes
photo | preset reconstructions rows (the README's and the model card's picture).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import machine
from benchmarks.pti_curves import held_out_photos
from core.faces import align_face, pil_to_tensor, to_uint8
from core.inversion import PRESETS, invert, locality_drift
from core.measures import score
from core.registry import load_generator

ROOT = Path(__file__).resolve().parents[1]

MEASURES = ("psnr", "lpips", "ms_ssim", "identity", "same_person", "dlib_distance")


def run_one(G: torch.nn.Module, kind: str, photo: Path, target: torch.Tensor, preset: str) -> tuple[dict, np.ndarray]:
    load_before = os.getloadavg()[0]
    result = invert(G, target, "pti", preset=preset)
    load_after = os.getloadavg()[0]
    with torch.no_grad():
        pivot_image = G.synthesis(result.pivot, noise_mode="const")
    tune = result.losses["tune"]
    stop_key = "lpips_stop_max" if "lpips_stop_max" in tune else "lpips_max"
    row = {
        "preset": preset, "set": kind, "photo": photo.name, **{f"{k}_s": v for k, v in result.timings.items()},
        "tune_steps": len(tune["lpips"]), "early_stop": tune[stop_key][-1] <= result.options["early_stop"],
        "pivot": score(pivot_image, target), "final": score(result.reconstruction, target),
        "locality": locality_drift(G, result.generator(G), result.pivot)["lpips"], "load": [load_before, load_after],
    }
    return row, to_uint8(result.reconstruction)[0].numpy()


def mean(values: list[float]) -> float:
    """Mean of the values that are not NaN (dlib found no face: no distance), NaN if none is."""
    found = [v for v in values if not math.isnan(v)]
    return sum(found) / len(found) if found else math.nan


def mean_row(rows: list[dict], preset: str) -> dict:
    """The preset's mean over faces."""
    return {
        "preset": preset, "set": "all", "photo": f"**mean of {len(rows)}**",
        **{key: mean([r[key] for r in rows]) for key in ("pivot_s", "tune_s", "total_s", "tune_steps", "locality")},
        "early_stop": f"{sum(r['early_stop'] for r in rows)}/{len(rows)}",
        **{part: {m: mean([r[part][m] for r in rows]) for m in MEASURES} for part in ("pivot", "final")},
        "load": [mean([r["load"][0] for r in rows]), mean([r["load"][1] for r in rows])],
    }


def table(rows: list[dict]) -> str:
    head = ("| preset | set | photo | pivot s | tune s | total s | tune steps | early stop | pivot PSNR | identity "
            "| **PTI PSNR** | LPIPS | MS-SSIM | identity | same person | dlib dist. | locality | load before / after |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        stop = r["early_stop"] if isinstance(r["early_stop"], str) else ("yes" if r["early_stop"] else "no")
        final = r["final"]
        lines.append(
            f"| {r['preset']} | {r['set']} | {r['photo']} | {r['pivot_s']:.1f} | {r['tune_s']:.1f} "
            f"| {r['total_s']:.1f} "
            f"| {r['tune_steps']:.0f} | {stop} | {r['pivot']['psnr']:.1f} | {r['pivot']['identity']:.2f} "
            f"| {final['psnr']:.1f} | {final['lpips']:.4f} | {final['ms_ssim']:.3f} | {final['identity']:.2f} "
            f"| {final['same_person']:.0%} | {final['dlib_distance']:.2f} | {r['locality']:.3f} "
            f"| {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", nargs="+", default=["fast=2", "paper=1"], metavar="PRESET=N",
                        help=f"faces per held-out set per preset ({', '.join(PRESETS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write every row and the means here")
    parser.add_argument("--grid", type=Path, help="write photo | reconstruction per preset rows here (PNG)")
    args = parser.parse_args()
    counts = {preset: int(n) for preset, n in (item.split("=") for item in args.faces)}
    if unknown := counts.keys() - PRESETS.keys():
        parser.error(f"unknown preset(s) {sorted(unknown)}; known: {list(PRESETS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    G = load_generator(args.model)
    per_set = max(counts.values())
    picked = held_out_photos(per_set, args.seed)
    print(f"machine: {machine()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
          f"model: {args.model}; {per_set} faces per held-out set (seed {args.seed}); presets: {counts}\n", flush=True)
    rows, means, images = [], [], {}
    for preset, n in counts.items():
        done = []
        for i, (kind, photo) in enumerate(picked):
            if i % per_set >= n:
                continue
            crop = align_face(photo, size=G.size).image
            row, images[preset, photo.name] = run_one(G, kind, photo, pil_to_tensor(crop), preset)
            images["photo", photo.name] = np.asarray(crop)
            done.append(row)
            print(table(done[-1:]).splitlines()[-1], flush=True)
        rows += done
        means.append(mean_row(done, preset))
    print("\n" + table(rows + means))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "model": args.model, "seed": args.seed,
                                         "rows": rows, "means": means}, indent=1))
    if args.grid:
        names = [photo.name for _, photo in picked if all((p, photo.name) in images for p in counts)]
        blank = np.full((G.size, G.size, 3), 255, np.uint8)
        grid = [np.concatenate([images["photo", name], *(images.get((p, name), blank) for p in counts)], 1)
                for name in names]
        Image.fromarray(np.concatenate(grid, 0)).save(args.grid)


if __name__ == "__main__":
    main()
