"""Wall time of W projection + PTI tuning (the paper's 450 + 350 steps), steps/s and peak memory.

    python -m benchmarks.pti_speed                                  # CPU, embedded 128 px model
    python -m benchmarks.pti_speed --device cuda --arch ffhq1024    # GPU, official 1024 architecture (PTI's)
    python -m benchmarks.pti_speed --device cuda --arch ffhq1024 --batch 8   # multi-ID throughput
    python -m benchmarks.pti_speed --device cuda --arch ffhq1024 --batch 16 --independent   # 16 photos, each its own

`ffhq1024` is stylegan2-ada's config-f generator (conv_clamp 256, the one PTI loads) with seeded random weights (speed
does not depend on the values; until session 8 the seeded weights of `../shared/fixtures/official`). Each variant runs
`--project-steps` + `--tune-steps` steps (early stop off), times every step after `--warmup` steps, and
extrapolates the steady-state step time to 450 + 350 steps. Prints a markdown table with the machine.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import machine, timed
from core.inversion import as_targets, invert
from core.inversion.optimise import noise_regularisation
from core.nets.stylegan2 import Generator

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "fp32": {},
    "bf16": dict(autocast=torch.bfloat16),
    "bf16+cl": dict(autocast=torch.bfloat16, channels_last=True),
    "bf16+cl+compile": dict(autocast=torch.bfloat16, channels_last=True, compile=True),
    "fp32+graphs": dict(compile="reduce-overhead"),  # torch.compile replaying forward and backward as CUDA graphs
    "bf16+cl+graphs": dict(autocast=torch.bfloat16, channels_last=True, compile="reduce-overhead"),
}
FACE = ROOT.parent / "shared" / "data" / "faces" / "ffhq" / "00001.png"


def load_architecture(arch: str) -> Generator:
    if arch == "ffhq1024":  # the official config-f architecture; speed does not depend on the weights' values
        torch.manual_seed(0)
        G = Generator(1024, conv_clamp=256)
        G.w_avg.copy_(G.mean_latent()[0])
        return G.eval()
    try:
        from core.registry import load_generator

        return load_generator("default")
    except FileNotFoundError:  # embedded model not trained yet: its architecture with random weights
        G = Generator(128, channel_base=8192, channel_max=256)
        G.w_avg.copy_(G.mean_latent()[0])
        return G.eval()


def official_noise_regularisation(noise: list[torch.Tensor]) -> torch.Tensor:
    """stylegan2-ada projector.py's loop (one map, one pyramid level at a time): the baseline of the batched one."""
    loss = 0.0
    for maps in noise:
        while True:
            loss += (maps * torch.roll(maps, shifts=1, dims=3)).mean() ** 2
            loss += (maps * torch.roll(maps, shifts=1, dims=2)).mean() ** 2
            if maps.shape[2] <= 8:
                break
            maps = F.avg_pool2d(maps, kernel_size=2)
    return loss


def time_noise_regularisation(G: Generator, device: str) -> None:
    noise = [torch.randn(1, 1, *m.shape[-2:], device=device, requires_grad=True) for m in G.noise_maps("const")]
    step = lambda fn: lambda: fn(noise).sum().backward()
    loop = timed(step(official_noise_regularisation), device, repeats=20)[0]
    batched = timed(step(noise_regularisation), device, repeats=20)[0]
    print(f"noise regularisation (forward + backward, {len(noise)} maps): official loop {loop * 1e3:.2f} ms, "
          f"batched pyramid {batched * 1e3:.2f} ms ({loop / batched:.1f}x)\n")


def run(G: Generator, targets: torch.Tensor, args: argparse.Namespace, options: dict) -> dict[str, float]:
    """One W projection + one PTI tuning; steady-state seconds per step of each phase, wall time, peak memory."""
    stamps: dict[str, list[float]] = {"project": [], "tune": []}
    record = lambda step, total, values: stamps[values["phase"]].append(time.perf_counter())
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    projection = invert(G, targets, "w", steps=args.project_steps, progress=record, **options)
    invert(G, targets, "pti", pivot=projection.pivot.to(args.device), steps=args.tune_steps, early_stop=None,
           locality=args.locality, independent=args.independent, progress=record, **options)
    sync()
    wall = time.perf_counter() - started
    step_time = {phase: statistics.median(b - a for a, b in itertools.pairwise(t[args.warmup:]))
                 for phase, t in stamps.items()}
    peak = (torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {**step_time, "wall": wall, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", choices=["embedded", "ffhq1024"], default="embedded")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="default: fp32 and bf16+cl on CPU, all on GPU")
    parser.add_argument("--project-steps", type=int, default=None, help="default 30 on CPU, 100 on GPU")
    parser.add_argument("--tune-steps", type=int, default=None, help="default 30 on CPU, 100 on GPU")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the step time (compilation, caches)")
    parser.add_argument("--batch", type=int, default=1, help="images tuned at once (multi-ID, or --independent)")
    parser.add_argument("--independent", action="store_true", help="each image its own generator (batched PTI)")
    parser.add_argument("--locality", action="store_true", help="PTI with locality regularisation")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.project_steps = args.project_steps or (100 if gpu else 30)
    args.tune_steps = args.tune_steps or (100 if gpu else 30)
    variants = args.variants or (list(VARIANTS) if gpu else ["fp32", "bf16+cl"])
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    G = load_architecture(args.arch).to(args.device)
    face = str(FACE) if FACE.is_file() else torch.rand(1, 3, G.size, G.size) * 2 - 1
    targets = as_targets([face] * args.batch, G.size).to(args.device)
    mode = " independent" if args.independent else ""
    print(f"machine: {machine()}\narch: {args.arch} ({G.size} px), batch {args.batch}{mode}, locality {args.locality}, "
          f"{args.project_steps} + {args.tune_steps} steps run, step times after {args.warmup} warm-up steps\n")
    time_noise_regularisation(G, args.device)
    print("| variant | projection it/s | tuning it/s | 450 + 350 steps (s) | per image (s) | photos / hour "
          "| measured wall (s) | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    baseline = None
    for name in variants:
        r = run(G, targets, args, VARIANTS[name])
        full = 450 * r["project"] + 350 * r["tune"]
        baseline = baseline or full
        print(f"| {name} | {1 / r['project']:.2f} | {1 / r['tune']:.2f} | {full:.1f} ({baseline / full:.2f}x) | "
              f"{full / args.batch:.1f} | {3600 * args.batch / full:.0f} | {r['wall']:.1f} | {r['peak_gib']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
