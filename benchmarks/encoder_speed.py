"""Encoder forward (pSp, e4e, Style Transformer; 256 px in, 18 styles) and DualStyleGAN style transfer at 1024.

    python -m benchmarks.encoder_speed                        # CPU, batch 1 and 16
    python -m benchmarks.encoder_speed --device cuda          # GPU: fp32 and bf16 autocast

The official architectures with random weights (speed does not depend on them). "encode" is image -> W+
(for the Style Transformer including its queries through the mapping network); "style transfer" is
`DualStyleGAN.style_transfer` from two Z+ codes to a 1024² image. Prints a markdown table with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable

import torch

from benchmarks.common import machine, peak_memory_mib, timed
from core.nets.dualstylegan import DualStyleGAN
from core.nets.encoders import Encoder4Editing, EncoderModel, GradualStyleEncoder
from core.nets.style_transformer import StyleTransformerEncoder
from core.nets.stylegan2 import Generator

ENCODERS = {"psp": GradualStyleEncoder, "e4e": Encoder4Editing, "style_transformer": StyleTransformerEncoder}
MODELS = [*ENCODERS, "dualstylegan"]


def workload(name: str, batch: int, device: str, decoder: Generator) -> Callable[[], torch.Tensor]:
    """The call to time for one model at one batch size."""
    if name == "dualstylegan":
        model = DualStyleGAN(1024, 512, 8, 2, res_index=6).to(device).eval()
        content, exstyle = torch.randn(batch, 18, 512, device=device), torch.randn(1, 18, 512, device=device)
        return lambda: model.style_transfer(content, exstyle)
    model = EncoderModel(ENCODERS[name](), decoder).to(device).eval()
    images = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
    return lambda: model.encode(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 2 on CPU, 20 on GPU)")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    repeats = args.repeats or (20 if gpu else 2)
    print(f"machine: {machine()}\n")
    print("| model | call | batch | precision | ms / call | images / s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    decoder = Generator(1024).to(args.device).eval()  # the Style Transformer's queries use its mapping network
    for name in args.models:
        for batch in args.batches:
            fn = workload(name, batch, args.device, decoder)
            for precision in ["fp32", "bf16"] if gpu else ["fp32"]:
                autocast = torch.autocast("cuda", torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

                def call(fn=fn, autocast=autocast):
                    with torch.inference_mode(), autocast:
                        return fn()

                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                median, _ = timed(call, args.device, repeats=repeats, warmup=3 if gpu else 1)
                peak = peak_memory_mib(args.device)
                kind = "style transfer 1024" if name == "dualstylegan" else "encode 256"
                print(
                    f"| {name} | {kind} | {batch} | {precision} | {median * 1e3:.0f} | {batch / median:.2f} | "
                    f"{'' if peak is None else f'{peak / 1024:.2f}'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
