"""Generator forward time at 1024 px (official config-f architecture) and at the embedded config.

    python -m benchmarks.generator_speed                       # CPU
    python -m benchmarks.generator_speed --device cuda         # GPU: fp32 and bf16 autocast

Weights are random (speed does not depend on them). Prints a markdown table with the machine.
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from benchmarks.common import machine, peak_memory_mib, timed
from core.nets.stylegan2 import Generator, ModulatedConv2d

CONFIGS = {
    "ffhq1024 (config-f)": dict(size=1024, channel_base=32768, channel_max=512),
    "embedded 128": dict(size=128, channel_base=8192, channel_max=256),
}


def time_synthesis(g: Generator, ws: torch.Tensor, precision: str, device: str, repeats: int) -> float:
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def forward():
        with torch.inference_mode(), autocast:
            return g.synthesis(ws, noise_mode="const")

    return timed(forward, device, repeats=repeats, warmup=3 if device.startswith("cuda") else 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 3 on CPU, 20 on GPU)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    repeats = args.repeats or (20 if gpu else 3)
    precisions = ["fp32", "bf16"] if gpu else ["fp32"]
    print(f"machine: {machine()}\n")
    print("| model | batch | precision | modulated conv | ms / call | images / s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        g = Generator(**CONFIGS[name]).to(args.device).eval()
        for batch in args.batches:
            ws = g.mapping(torch.randn(batch, 512, device=args.device))
            for precision in precisions:
                for fused in [True, False] if batch > 1 else [True]:
                    for module in g.modules():
                        if isinstance(module, ModulatedConv2d):
                            module.fused = fused
                    if gpu:
                        torch.cuda.reset_peak_memory_stats()
                    median = time_synthesis(g, ws, precision, args.device, repeats)
                    peak = peak_memory_mib(args.device)
                    print(
                        f"| {name} | {batch} | {precision} | {'grouped (fused)' if fused else 'shared conv'} | "
                        f"{median * 1e3:.1f} | {batch / median:.1f} | {'' if peak is None else f'{peak / 1024:.2f}'} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
