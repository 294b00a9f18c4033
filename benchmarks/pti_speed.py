"""Wall time of W projection + PTI tuning (the paper's 450 + 350 steps), steps/s and peak memory.

    python -m benchmarks.pti_speed                                  # CPU, embedded 128 px model
    python -m benchmarks.pti_speed --device cuda --arch ffhq1024    # GPU, official 1024 architecture (PTI's)
    python -m benchmarks.pti_speed --device cuda --arch ffhq1024 --batch 8   # multi-ID throughput
    python -m benchmarks.pti_speed --device cuda --arch ffhq1024 --batch 4 16 --independent   # B photos, each its own

`ffhq1024` is stylegan2-ada's config-f generator (conv_clamp 256, the one PTI loads) with seeded random weights (speed
does not depend on the values; until session 8 the seeded weights of `../shared/fixtures/official`). Each variant runs
`--project-steps` + `--tune-steps` steps (early stop off; on the GPU the paper's 450 + 350) `--repeats` times in one
process: the first run pays compilation and graph capture, the last is what every further photo costs. Prints a
markdown table with the machine.
"""

from __future__ import annotations

import argparse
import itertools
import resource
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
    # the whole step (forward, backward, Adam, noise renormalisation) one CUDA graph (`run_adam(cuda_graph=True)`)
    "fp32+step-graph": dict(cuda_graph=True),
    "bf16+cl+step-graph": dict(autocast=torch.bfloat16, channels_last=True, cuda_graph=True),
    "bf16+cl+compile+step-graph": dict(autocast=torch.bfloat16, channels_last=True, compile=True, cuda_graph=True),
    "fp32+compile+step-graph": dict(compile=True, cuda_graph=True),
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
    """One W projection + one PTI tuning of the batch, timed per phase with the device synchronised (no per-step
    readback: nothing asks for the losses); wall time and peak memory."""
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync()
    started = time.perf_counter()
    projection = invert(G, targets, "w", steps=args.project_steps, **options)
    sync()
    projected = time.perf_counter()
    invert(G, targets, "pti", pivot=projection.pivot.to(args.device), steps=args.tune_steps, early_stop=None,
           locality=args.locality, independent=len(targets) > 1 and args.independent, **options)
    sync()
    finished = time.perf_counter()
    peak = (torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"project": projected - started, "tune": finished - projected, "wall": finished - started, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", choices=["embedded", "ffhq1024"], default="embedded")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="default: fp32 and bf16+cl on CPU, all on GPU")
    parser.add_argument("--project-steps", type=int, default=None, help="default 30 on CPU, 450 on GPU")
    parser.add_argument("--tune-steps", type=int, default=None, help="default 30 on CPU, 350 on GPU")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per variant; the first pays compilation / capture (default 1 on CPU, 2 on GPU)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="images tuned at once (multi-ID, or "
                        "--independent); several: one table row per batch size")
    parser.add_argument("--independent", action="store_true", help="each image its own generator (batched PTI)")
    parser.add_argument("--locality", action="store_true", help="PTI with locality regularisation")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.project_steps = args.project_steps or (450 if gpu else 30)
    args.tune_steps = args.tune_steps or (350 if gpu else 30)
    args.repeats = args.repeats or (2 if gpu else 1)
    variants = args.variants or (list(VARIANTS) if gpu else ["fp32", "bf16+cl"])
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    G = load_architecture(args.arch).to(args.device)
    face = str(FACE) if FACE.is_file() else torch.rand(1, 3, G.size, G.size) * 2 - 1
    mode = "independent PTI" if args.independent else "multi-ID PTI"
    print(f"machine: {machine()}\narch: {args.arch} ({G.size} px), {mode}, locality {args.locality}, "
          f"{args.project_steps} + {args.tune_steps} steps run, {args.repeats} runs per row, early stop off; "
          f"per photo: the last run, scaled to 450 + 350 steps\n")
    time_noise_regularisation(G, args.device)
    print("| variant | B | first run (s) | last run (s) | per photo, 450 + 350 (s) | photos / hour "
          "| projection it/s | tuning it/s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, name in itertools.product(args.batch, variants):
        targets = as_targets([face] * batch, G.size).to(args.device)
        runs = [run(G, targets, args, VARIANTS[name]) for _ in range(args.repeats)]
        last = runs[-1]
        full = 450 * last["project"] / args.project_steps + 350 * last["tune"] / args.tune_steps
        print(f"| {name} | {batch} | {runs[0]['wall']:.1f} | {last['wall']:.1f} | {full / batch:.1f} | "
              f"{3600 * batch / full:.0f} | {args.project_steps / last['project']:.2f} | "
              f"{args.tune_steps / last['tune']:.2f} | {max(r['peak_gib'] for r in runs):.2f} |", flush=True)


if __name__ == "__main__":
    main()
