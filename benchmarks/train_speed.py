"""StyleGAN2 training speed (s/kimg) at the official stylegan2-ada 128 px `--cfg=auto` config and the embedded one.

    python -m benchmarks.train_speed --device cuda                   # official and embedded rows (> 10 min)
    python -m benchmarks.train_speed --device cuda --rows separate   # the blurs as separate depthwise filters

Each row builds a new trainer (and a fresh torch.compile cache) and pays cuDNN's autotuning of shapes the process
has not seen yet and any compilation (5 s to 3 minutes on an H100). Row groups: "official" and "embedded" (bf16
autocast of the main phases, channels-last, lazy regularisation off, i.e. R1 and path length every step instead of
every 16th / 4th, fp32 (TF32), torch.compile, batch 64), "compiled" (compile with bf16 regularisers, CUDA graphs,
channels-last), "rerun" (session 4's clean re-measurement), all with the up / down-sampling blurs folded into the
conv weights (`core.nets.stylegan2.FOLD_FILTERS`, the GPU default); "separate" rows keep the depthwise blur
passes, so the table shows what each is worth. Augmentation is on (`--augment ada`: all operations run whatever p
is). The data are random uint8 images already on the device, as the trainer keeps real ones (`core.training.data`).
The official trainer's figure (5.9 s/kimg on the same H100, without augmentation) is in ../shared/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from benchmarks.common import machine
from core.nets import stylegan2
from core.training.data import DeviceImageBank
from core.training.scaffold import seconds_per_kimg, setup_distributed
from core.training.stylegan2 import TrainConfig, Trainer

# stylegan2-ada-pytorch `--cfg=auto` at 128 px on one GPU: batch 32, fmaps 0.5 (channel_base 16384), map 2,
# mbstd group 4, gamma 0.0002 * 128^2 / 32 = 0.1024, ema 10 kimg, lr 0.0025, pl weight 2, style mixing 0.9.
OFFICIAL = dict(channel_base=16384, channel_max=512, n_mlp=2, batch=32, mbstd_group=4, r1_gamma=0.1024, ema_kimg=10)
EMBEDDED: dict = {}  # TrainConfig's defaults are the embedded model's
VARIANTS = {  # every row folds the filters (the GPU default) unless it says "separate filters"
    "fp32 (TF32), separate filters": dict(amp=False, fold=False),
    "bf16 autocast, separate filters": dict(amp=True, fold=False),
    "fp32 (TF32)": dict(amp=False),
    "+ bf16 autocast (main phases)": dict(amp=True),
    "+ channels-last": dict(amp=True, channels_last=True),
    "bf16, lazy reg off": dict(amp=True, r1_interval=1, pl_interval=1),
    "bf16, batch 64": dict(amp=True, batch=64),
    "bf16 + torch.compile": dict(amp=True, compile=True),
    "bf16 + compile, bf16 regularisers": dict(amp=True, amp_regularisers=True, compile=True),
    "bf16 + compile, bf16 reg, channels-last": dict(amp=True, amp_regularisers=True, compile=True,
                                                    channels_last=True),
    "bf16 + compile (CUDA graphs), bf16 reg": dict(amp=True, amp_regularisers=True, compile=True,
                                                   compile_mode="reduce-overhead"),
    "fp32 + torch.compile": dict(compile=True),
    "fp32 + compile (CUDA graphs)": dict(compile=True, compile_mode="reduce-overhead"),
}
ROWS = {  # one config's rows in the order that re-uses cuDNN's autotuning (bf16 shapes first, fp32 last)
    "official": [("official auto", OFFICIAL, v) for v in ("+ bf16 autocast (main phases)", "bf16 + torch.compile",
                                                          "bf16, lazy reg off", "+ channels-last", "fp32 (TF32)")],
    "embedded": [("embedded", EMBEDDED, v) for v in ("fp32 (TF32)", "+ bf16 autocast (main phases)",
                                                     "bf16 + torch.compile", "bf16, batch 64")],
    "compiled": [("official auto", OFFICIAL, v) for v in (
        "bf16 + torch.compile", "bf16 + compile, bf16 regularisers", "bf16 + compile (CUDA graphs), bf16 reg",
        "bf16 + compile, bf16 reg, channels-last")] + [("embedded", EMBEDDED, v) for v in (
        "bf16 + compile, bf16 regularisers", "fp32 + torch.compile", "bf16 + compile (CUDA graphs), bf16 reg")],
    "rerun": [("official auto", OFFICIAL, "bf16 + compile (CUDA graphs), bf16 reg"),
              ("embedded", EMBEDDED, "fp32 + torch.compile"), ("embedded", EMBEDDED, "fp32 + compile (CUDA graphs)"),
              ("official auto", OFFICIAL, "bf16 + compile, bf16 reg, channels-last")],
    "separate": [("official auto", OFFICIAL, "bf16 autocast, separate filters"),
                 ("embedded", EMBEDDED, "fp32 (TF32), separate filters")],
}

def measure(config: dict, flags: dict, device: torch.device, steps: int, profile_steps: int = 0) -> dict:
    flags = dict(flags)
    stylegan2.FOLD_FILTERS = flags.pop("fold", None)
    torch._dynamo.reset()  # each row compiles afresh: earlier rows' graphs would count towards the recompile limit
    cfg = dataclasses.replace(TrainConfig(augment="ada", **config), **flags)
    bank = DeviceImageBank(torch.randint(0, 256, (2048, 3, cfg.size, cfg.size), dtype=torch.uint8, device=device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = Trainer(cfg, device, data=bank)
    warmup = 32 if cfg.compile else 16  # covers the first R1 and path-length steps (and their compilation)
    s_per_kimg = seconds_per_kimg(trainer, steps, cfg.batch, warmup=warmup)
    if profile_steps:
        profile(trainer, profile_steps)
    return {"s_per_kimg": s_per_kimg, "setup_s": time.perf_counter() - start - s_per_kimg * steps * cfg.batch / 1000,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            "g_params_m": sum(p.numel() for p in trainer.G.parameters()) / 1e6}


def profile(trainer: Trainer, steps: int) -> None:
    """The top CUDA-time ops over `steps` steps (a multiple of 16 keeps the regularisers' share)."""
    from torch.profiler import ProfilerActivity
    with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            trainer.step()
        torch.cuda.synchronize()
    print("\n```\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60)
          + "```\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", nargs="+", default=["official", "embedded"], choices=list(ROWS))
    parser.add_argument("--steps", type=int, default=48, help="timed steps per row (multiples of 16 keep the mix)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after each row, print the profiler's top ops over this many steps (CUDA)")
    args = parser.parse_args()
    _, _, device = setup_distributed(args.device)
    print(f"machine: {machine()}\n")
    print("| config | G params | variant | s / kimg | kimg / s | vs official 5.9 s/kimg | peak GiB | setup s |")
    print("|---|---|---|---|---|---|---|---|")
    results = []
    for row in args.rows:
        for config_name, config, variant in ROWS[row]:
            try:
                r = measure(config, VARIANTS[variant], device, args.steps, args.profile)
            except Exception as err:  # a variant that fails here (e.g. compile on an old stack) is a table row too
                print(f"| {config_name} | | {variant} | failed: {type(err).__name__}: {str(err)[:200]} |||||",
                      flush=True)
                continue
            results.append({"config": config_name, "variant": variant, **r})
            peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
            print(f"| {config_name} | {r['g_params_m']:.1f}M | {variant} | {r['s_per_kimg']:.2f} | "
                  f"{1 / r['s_per_kimg']:.2f} | {5.9 / r['s_per_kimg']:.1f}x | {peak} | {r['setup_s']:.0f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
