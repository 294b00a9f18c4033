"""Encoder speed: images per second of `EncoderTrainer.step` and of encoding alone, per architecture and batch,
with the frozen generator's modulated convs fused (grouped conv, per-sample weights) or on the shared-conv path
(the default when gradients pass through). Run on the GPU machine; prints one JSON line per setting.

    python -m benchmarks.encoder_train_speed --data .carry/enc_data --archs psp,e4e,style_transformer --batches 64
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from core.nets.stylegan2 import ModulatedConv2d
from core.training.encoder import EncoderConfig, EncoderTrainer
from core.training.scaffold import setup_distributed


def images_per_second(trainer: EncoderTrainer, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        trainer.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * trainer.batch / (time.perf_counter() - start)


@torch.no_grad()
def encode_images_per_second(trainer: EncoderTrainer, steps: int) -> float:
    """Inference: encoder forward (bf16 autocast on the GPU, as `EncoderTrainer` uses) at the trainer's batch."""
    images = trainer.synthetic_batch(trainer.batch)[0]
    trainer.encoder.eval()
    with trainer._autocast():
        for i in range(steps + 3):
            if i == 3:
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            trainer.encode(images)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    trainer.encoder.train()
    return steps * trainer.batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="")
    parser.add_argument("--facenet", default="")
    parser.add_argument("--archs", default="psp,e4e,style_transformer")
    parser.add_argument("--batches", default="64")
    parser.add_argument("--fused", default="shared,fused", help="modulated conv paths to time")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    _, _, device = setup_distributed()
    for arch in args.archs.split(","):
        for batch in map(int, args.batches.split(",")):
            for path in args.fused.split(","):
                ModulatedConv2d.fused = True if path == "fused" else None
                cfg = EncoderConfig(arch=arch, data=args.data, batch=batch, facenet=args.facenet,
                                    synthetic=0.5 if args.data else 1.0)
                trainer = EncoderTrainer(cfg, device)
                speed = images_per_second(trainer, args.steps, args.warmup)
                encode = encode_images_per_second(trainer, args.steps)
                memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
                print(json.dumps({"arch": arch, "batch": batch, "modconv": path, "train_img_per_s": round(speed, 1),
                                  "encode_img_per_s": round(encode, 1),
                                  "max_mem_gib": round(memory, 2), "device": str(torch.cuda.get_device_name(device)
                                                                                 if device.type == "cuda" else "cpu")}),
                      flush=True)
                del trainer
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
    ModulatedConv2d.fused = None


if __name__ == "__main__":
    main()
