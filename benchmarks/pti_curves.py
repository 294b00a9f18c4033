"""PTI quality against tuning steps on held-out faces of five kinds: the curves presets and early stop come from.

    python -m benchmarks.pti_curves prepare                 # align the faces once -> .carry/pti_curves/faces.npz
    python -m benchmarks.pti_curves run --runs fast-3e-4 fast-1e-3 --device cuda --shard 0 --shards 8
    python -m benchmarks.pti_curves score .carry/pti_curves/runs/ --json benchmarks/pti_curves.json

`prepare` FFHQ-aligns (at the generator's size) 8 faces from each held-out set nobody trained on: CelebA's eval
split (one photo of 8 of its 100 people), LFW, FFHQ thumbnails, UTKFace children (age <= 10) and elderly (>= 60),
picked with a seed. `run` does PTI with each named setting of `RUNS` on every face (early stop off, every tuning
step run) and keeps the reconstruction after the tuning steps of `SNAPSHOTS` (step 0 is the pivot through the
untouched generator) plus the tuning's per-step LPIPS / MSE; faces split over `--shards` processes (several share
one GPU well: a 128 px step is launch-bound). `score` measures every snapshot against its target with
`core.measures.score`'s measures and prints the tables that `benchmarks/README.md` quotes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"
WORK = ROOT / ".carry" / "pti_curves"
SNAPSHOTS = (0, 25, 50, 75, 100, 150, 200, 400)
# name -> (pivot projection: steps, lr, LPIPS net), tuning lr; tuning runs max(SNAPSHOTS) steps.
RUNS = {
    "fast-3e-4": ((100, 0.03, "alex"), 3e-4),
    "fast-1e-3": ((100, 0.03, "alex"), 1e-3),
    "fast-3e-3": ((100, 0.03, "alex"), 3e-3),
    "fast50-3e-3": ((50, 0.03, "alex"), 3e-3),
    "alex200-1e-3": ((200, 0.03, "alex"), 1e-3),
    "alex450-3e-4": ((450, 0.01, "alex"), 3e-4),
    "alex450-1e-3": ((450, 0.01, "alex"), 1e-3),
    "preset-fast": "fast",  # the shipped preset as it runs (early stop on): snapshot steps 0 and -1 (where it ended)
}


def held_out_photos(per_set: int = 8, seed: int = 0) -> list[tuple[str, Path]]:
    """(set name, photo) for `per_set` seeded photos of each held-out set, one per person where people repeat."""
    rng = random.Random(seed)

    def one_per_person(folder: Path, person: callable) -> list[Path]:
        people: dict[str, list[Path]] = {}
        for photo in sorted(folder.iterdir()):
            people.setdefault(person(photo.name), []).append(photo)
        return [rng.choice(people[p]) for p in rng.sample(sorted(people), per_set)]

    utk = sorted((FACES / "utkface").iterdir())
    age = lambda photo: int(photo.name.split("_")[0])  # noqa: E731
    return (
        [("celeba", p) for p in one_per_person(FACES / "celeba" / "eval", lambda name: name.split("_")[0])]
        + [("lfw", p) for p in one_per_person(FACES / "lfw", lambda name: name.rsplit("_", 1)[0])]
        + [("ffhq", p) for p in rng.sample(sorted((FACES / "ffhq").iterdir()), per_set)]
        + [("child", p) for p in rng.sample([p for p in utk if age(p) <= 10], per_set)]
        + [("elderly", p) for p in rng.sample([p for p in utk if age(p) >= 60], per_set)]
    )


def prepare(args: argparse.Namespace) -> None:
    from core.faces import NoFaceFound, align_face

    names, sets, crops = [], [], []
    for kind, photo in held_out_photos(args.per_set, args.seed):
        try:
            crops.append(np.asarray(align_face(photo, size=args.size).image))
        except NoFaceFound:
            print(f"{photo}: no face found, skipped")
            continue
        names.append(photo.name)
        sets.append(kind)
    args.faces.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.faces, images=np.stack(crops), names=np.array(names), sets=np.array(sets))
    print(f"{len(names)} faces -> {args.faces}")


def run(args: argparse.Namespace) -> None:
    from core.faces import from_uint8, to_uint8
    from core.inversion import PRESETS, locality_drift, pivotal_tuning
    from core.registry import load_generator

    data = np.load(args.faces)
    picked = range(args.shard, len(data["names"]), args.shards)
    G = load_generator(args.model, args.device)
    targets = from_uint8(torch.from_numpy(data["images"]))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; faces {list(picked)}", flush=True)
    for name in args.runs:
        if isinstance(RUNS[name], str):
            preset, steps = PRESETS[RUNS[name]], (0, -1)
            options = {**dataclasses.asdict(preset), **preset.projection, "autocast": preset.autocast if args.bf16
                       else None}
            del options["projection"]
        else:
            (project_steps, project_lr, net), lr = RUNS[name]
            options = dict(project_steps=project_steps, project_lr=project_lr, lpips_net=net, lr=lr,
                           steps=max(SNAPSHOTS) + 1, early_stop=None, autocast=torch.bfloat16 if args.bf16 else None)
            steps = SNAPSHOTS
        snaps, curves, seconds, drift = [], [], [], []
        for i in picked:
            kept: dict[int, torch.Tensor] = {}

            def watch(step: int, images: torch.Tensor, kept: dict = kept, steps: tuple = steps) -> None:
                if step in steps or -1 in steps:  # -1: every step overwrites it, so it ends as the last one
                    kept[step if step in steps else -1] = to_uint8(images[:1])[0].permute(2, 0, 1)

            started = time.perf_counter()
            result = pivotal_tuning(G, targets[i:i + 1], watch=watch, **options)
            seconds.append(time.perf_counter() - started)
            moved = locality_drift(G, result.generator(G), result.pivot.to(args.device))
            drift.append([moved["lpips"], moved["mse"]])
            snaps.append(torch.stack([kept[s] for s in steps]))
            tune = result.losses["tune"]
            padding = [math.nan] * (max(SNAPSHOTS) + 1 - len(tune["lpips"]))  # an early-stopped run's missing steps
            curves.append([tune["lpips"] + padding, tune["mse"] + padding])
            print(f"{name} face {i}: {seconds[-1]:.1f} s, tuning LPIPS {curves[-1][0][0]:.3f} -> "
                  f"{tune['lpips'][-1]:.4f} after {len(tune['lpips'])} steps", flush=True)
        kept_images = {} if args.no_snapshots else {"snapshots": torch.stack(snaps).numpy()}
        np.savez(args.out / f"{name}.{args.shard:02d}.npz", index=np.array(list(picked)), drift=np.array(drift),
                 **kept_images, curves=np.array(curves, np.float32),
                 seconds=np.array(seconds), steps=np.array(steps), device=str(args.device))


def rounded(value: object) -> object:
    """JSON-ready with floats to 4 significant digits (the per-step curves are most of the file)."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return float(f"{value:.4g}") if isinstance(value, float) else value


def score_runs(args: argparse.Namespace) -> None:
    from core.faces import from_uint8
    from core.identity import SAME_PERSON, embed, similarity
    from core.inversion.pti import to_scoring_size as upsample
    from core.measures import lpips_distance, ms_ssim, psnr

    data = np.load(args.faces)
    targets = from_uint8(torch.from_numpy(data["images"]))
    sets = data["sets"]
    report = {"machine": machine(), "faces": [str(n) for n in data["names"]], "sets": [str(s) for s in sets],
              "runs": {}}
    for name in RUNS:
        loaded = [np.load(p) for folder in args.folders for p in sorted(folder.glob(f"{name}.*.npz"))]
        with_images = [p for p in loaded if "snapshots" in p.files]
        if not with_images:
            continue
        order = np.concatenate([p["index"] for p in with_images])
        sort = np.argsort(order)
        snaps = torch.from_numpy(np.concatenate([p["snapshots"] for p in with_images])[sort])
        curves = np.concatenate([p["curves"] for p in with_images])[sort]
        steps = [int(s) for s in with_images[0]["steps"]]
        tgt, kinds = targets[order[sort]], sets[order[sort]]
        drift = {int(i): d for p in loaded if "drift" in p.files for i, d in zip(p["index"], p["drift"], strict=True)}
        rows = {}
        with torch.no_grad():
            for s, step in enumerate(steps):
                rec = snaps[:, s].float() / 127.5 - 1
                rows[step] = {
                    "lpips": lpips_distance(rec, tgt).tolist(),
                    "lpips256": lpips_distance(upsample(rec), upsample(tgt)).tolist(),
                    "psnr": psnr(rec, tgt).tolist(),
                    "ms_ssim": ms_ssim(rec, tgt).tolist(),
                    "identity": similarity(embed(rec), embed(tgt)).tolist(),
                }
        report["runs"][name] = {"faces": order[sort].tolist(), "steps": steps, "snapshots": rows,
                                "tune_lpips": curves[:, 0].tolist(), "tune_mse": curves[:, 1].tolist(),
                                "locality_lpips": {i: float(d[0]) for i, d in drift.items()}}
        print(f"\n### {name} ({len(order)} faces; identity: FaceNet cosine, same person > {SAME_PERSON})\n")
        print("| tuning steps | LPIPS | LPIPS 256 px | PSNR dB | MS-SSIM | identity | same person | lowest identity |")
        print("|---|---|---|---|---|---|---|---|")
        for step, m in rows.items():
            ident = np.array(m["identity"])
            ran = np.isfinite(curves[:, 0]).sum(1)
            label = step if step >= 0 else f"where it stopped ({ran.mean():.0f} steps, {ran.min()}-{ran.max()})"
            print(f"| {label} | {np.mean(m['lpips']):.4f} | {np.mean(m['lpips256']):.4f} | {np.mean(m['psnr']):.2f} "
                  f"| {np.mean(m['ms_ssim']):.4f} | {ident.mean():.3f} | {(ident > SAME_PERSON).mean():.0%} "
                  f"| {ident.min():.3f} |")
        last = rows[steps[-1]]
        print("\nPSNR per set at the last step: " + ", ".join(
            f"{kind} {np.mean([v for v, k in zip(last['psnr'], kinds, strict=True) if k == kind]):.1f}"
            for kind in dict.fromkeys(kinds)))
        if drift:
            print(f"locality drift after {steps[-1]} steps (LPIPS of base vs tuned images 30 away from the pivot, "
                  f"{len(drift)} faces): {np.mean([d[0] for d in drift.values()]):.3f}")
    if args.json:
        args.json.write_text(json.dumps(rounded(report)))


def figure(args: argparse.Namespace) -> None:
    """Quality and identity against tuning steps and against CPU seconds: one line per tuning lr of `RUNS`, and for
    the presets' lrs the seconds as measured on the CPU (`--seconds`: pivot seconds + steps x seconds per step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.identity import SAME_PERSON

    report = json.loads(args.curves.read_text())
    timing = {name: tuple(map(float, value.split(":"))) for name, value in (item.split("=") for item in args.seconds)}
    lines = {"fast-3e-4": "lr 3e-4 (paper's tuning)", "fast-1e-3": "lr 1e-3", "fast-3e-3": "lr 3e-3 (fast preset)"}
    seconds_of = {"fast-3e-4": "paper", "fast-3e-3": "fast"}
    panels = [("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"), ("lpips256", "LPIPS at 256 px (early stop: 0.06)"),
              ("identity", "FaceNet identity"), ("same", f"same person (> {SAME_PERSON})")]
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 7), constrained_layout=True)
    for color, (name, label) in enumerate(lines.items()):
        run = report["runs"].get(name)
        if run is None:
            continue
        steps = run["steps"]
        values = {key: [np.mean(run["snapshots"][str(s)][key]) for s in steps] for key, _ in panels if key != "same"}
        values["same"] = [np.mean(np.array(run["snapshots"][str(s)]["identity"]) > SAME_PERSON) for s in steps]
        preset = seconds_of.get(name)
        for col, (key, title) in enumerate(panels):
            axes[0, col].plot(steps, values[key], marker="o", label=label, color=f"C{color}")
            axes[0, col].set(title=title, xlabel="tuning steps")
            if preset in timing:
                pivot, per_step = timing[preset]
                axes[1, col].plot([pivot + s * per_step for s in steps], values[key], marker="o", color=f"C{color}",
                                  label=f"{preset} preset's tuning ({per_step:.2f} s/step after a {pivot:.0f} s pivot)")
                axes[1, col].set(title=title, xlabel="seconds on 2 CPU cores")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    for ax in axes[:, 2]:
        ax.axhline(0.06, color="grey", linestyle="--")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=7)
    faces = len(report["faces"])
    fig.suptitle(f"PTI on {faces} held-out faces (CelebA eval, LFW, FFHQ, UTKFace children and elderly), "
                 "100-step AlexNet pivot, early stop off; bottom: the same tuning after each preset's pivot time")
    fig.savefig(args.out, dpi=80)
    print(f"-> {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare")
    p.add_argument("--per-set", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.set_defaults(fn=prepare)
    p = commands.add_parser("run")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="default")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (what the fast preset uses on the CPU)")
    p.add_argument("--no-snapshots", action="store_true", help="keep only curves, timings and locality drift")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--out", type=Path, default=WORK / "runs")
    p.set_defaults(fn=run)
    p = commands.add_parser("score")
    p.add_argument("folders", type=Path, nargs="+", help="folders of `run` outputs")
    p.add_argument("--json", type=Path)
    p.set_defaults(fn=score_runs)
    p = commands.add_parser("figure")
    p.add_argument("--curves", type=Path, default=ROOT / "benchmarks" / "pti_curves.json", help="`score --json`")
    p.add_argument("--seconds", nargs="*", metavar="PRESET=PIVOT:PER_STEP",
                   default=["fast=24.4:0.236", "paper=215.3:0.360"],
                   help="each preset's pivot seconds and seconds per tuning step on the CPU (default: LFW "
                   "Tim_Henman_0008.jpg, 2 threads, load 2.0, benchmarks/README.md)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pti_curves.png")
    p.set_defaults(fn=figure)
    for p in commands.choices.values():
        p.add_argument("--faces", type=Path, default=WORK / "faces.npz")
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
