"""PTI presets on held-out faces: wall time and reconstruction of the pivot alone and after tuning.

    python benchmarks/pti_quality.py                                  # 8 faces with 'fast', the first 3 with 'paper'
    python benchmarks/pti_quality.py --faces fast=8 paper=4 --threads 2 --json pti_quality.json

Faces: one photo of each of N people of the CelebA held-out split (`--data`, 100 people never trained on), people
and photos picked with `--seed`, FFHQ-aligned at the generator's size; every preset runs on the first of the same
picks, so its rows pair with the other presets'. Per face: seconds of the pivot and of the tuning (early stop on),
tuning steps, whether the early stop (LPIPS <= 0.06 on the tuning's own image) was reached, and `core.measures.score`
(LPIPS-alex, MSE, MS-SSIM, dlib identity cosine) of the pivot rendered by the untouched generator (what tuning starts
from) and of the final PTI reconstruction. The 1-minute load average is read before and after every run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import machine  # noqa: E402
from core.faces import align_face, pil_to_tensor  # noqa: E402
from core.inversion import PRESETS, invert  # noqa: E402
from core.measures import score  # noqa: E402
from core.registry import load_generator  # noqa: E402

HELD_OUT = ROOT.parent / "shared" / "data" / "faces" / "celeba" / "eval"
MEASURES = ("lpips", "mse", "ms_ssim", "id_sim")


def pick_photos(folder: Path, n: int, seed: int) -> list[Path]:
    """One photo each of n people (files are named <person>_<photo>.jpg), seeded. The photos depend on n (the
    largest count of `--faces`): rerun with the same counts to get the same faces."""
    people: dict[str, list[Path]] = {}
    for photo in sorted(folder.glob("*.jpg")):
        people.setdefault(photo.stem.split("_")[0], []).append(photo)
    rng = random.Random(seed)
    return [rng.choice(people[person]) for person in rng.sample(sorted(people), n)]


def run_one(G: torch.nn.Module, photo: Path, preset: str) -> dict:
    target = pil_to_tensor(align_face(photo, size=G.size).image)
    load_before = os.getloadavg()[0]
    result = invert(G, target, "pti", preset=preset)
    load_after = os.getloadavg()[0]
    with torch.no_grad():
        pivot_image = G.synthesis(result.pivot, noise_mode="const")
    tune = result.losses["tune"]
    return {
        "preset": preset, "photo": photo.name, **{f"{k}_s": v for k, v in result.timings.items()},
        "tune_steps": len(tune["lpips"]), "early_stop": tune["lpips_max"][-1] <= result.options["early_stop"],
        "pivot": score(pivot_image, target), "final": score(result.reconstruction, target),
        "load": [load_before, load_after],
    }


def mean(values: list[float]) -> float:
    """Mean of the values that are not NaN (dlib found no face: no identity cosine), NaN if none is."""
    found = [v for v in values if not math.isnan(v)]
    return sum(found) / len(found) if found else math.nan


def mean_row(rows: list[dict], preset: str) -> dict:
    """The preset's mean over faces."""
    return {
        "preset": preset, "photo": f"**mean of {len(rows)}**",
        **{key: mean([r[key] for r in rows]) for key in ("pivot_s", "tune_s", "total_s", "tune_steps")},
        "early_stop": f"{sum(r['early_stop'] for r in rows)}/{len(rows)}",
        **{part: {m: mean([r[part][m] for r in rows]) for m in MEASURES} for part in ("pivot", "final")},
        "load": [mean([r["load"][0] for r in rows]), mean([r["load"][1] for r in rows])],
    }


def table(rows: list[dict]) -> str:
    head = ("| preset | photo | pivot s | tune s | total s | tune steps | early stop | pivot LPIPS | MSE | MS-SSIM "
            "| ID | **PTI LPIPS** | MSE | MS-SSIM | ID | load before / after |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        stop = r["early_stop"] if isinstance(r["early_stop"], str) else ("yes" if r["early_stop"] else "no")
        measures = [f"{r[part][m]:.4f}" if m != "id_sim" else f"{r[part][m]:.3f}" for part in ("pivot", "final")
                    for m in MEASURES]
        lines.append(f"| {r['preset']} | {r['photo']} | {r['pivot_s']:.1f} | {r['tune_s']:.1f} | {r['total_s']:.1f} "
                     f"| {r['tune_steps']:.0f} | {stop} | " + " | ".join(measures)
                     + f" | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", nargs="+", default=["fast=8", "paper=3"], metavar="PRESET=N",
                        help=f"faces per preset ({', '.join(PRESETS)})")
    parser.add_argument("--data", type=Path, default=HELD_OUT, help="held-out photos, <person>_<photo>.jpg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write every row and the means here")
    args = parser.parse_args()
    counts = {preset: int(n) for preset, n in (item.split("=") for item in args.faces)}
    if unknown := counts.keys() - PRESETS.keys():
        parser.error(f"unknown preset(s) {sorted(unknown)}; known: {list(PRESETS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    G = load_generator(args.model)
    photos = pick_photos(args.data, max(counts.values()), args.seed)
    print(f"machine: {machine()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
          f"model: {args.model}; faces: {args.data} (seed {args.seed}); presets: {counts}\n", flush=True)
    rows, means = [], []
    for preset, n in counts.items():
        done = []
        for photo in photos[:n]:
            done.append(run_one(G, photo, preset))
            print(table(done[-1:]).splitlines()[-1], flush=True)
        rows += done
        means.append(mean_row(done, preset))
    print("\n" + table(rows + means))
    if len(counts) > 1:  # every preset on the faces they all ran
        common = min(counts.values())
        paired = [mean_row([r for r in rows if r["preset"] == p][:common], p) for p in counts]
        print(f"\nOn the {common} face(s) every preset ran:\n\n" + table(paired))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "model": args.model, "seed": args.seed,
                                         "rows": rows, "means": means}, indent=1))


if __name__ == "__main__":
    main()
