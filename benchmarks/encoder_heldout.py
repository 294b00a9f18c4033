"""The shipped encoders on the prepared CelebA held-out shard: LPIPS against the mean face, how far codes leave W,
and CPU encoding time (the numbers of models/face128/ENCODERS.md, *Measured quality* and *Architecture*).

    python -m benchmarks.encoder_heldout        # needs .carry/data/heldout-00000.npz (`core data prepare`)
    python -m benchmarks.encoder_heldout --encoders runs/a.safetensors runs/b.safetensors --no-timing   # others

Faces 64-191 of the held-out shard (the trainer watched the first 64 during training). Layer spread: the mean
distance of each layer's w from the code's mean w (0 for a code in W); for the Z+ encoder, of its mapped W+.
Identity: FaceNet cosine of reconstruction and photo, and the share FaceNet calls the same person.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from core.data import decode_shard
from core.faces import from_uint8
from core.inversion import ENCODER_METHODS
from core.measures import lpips_distance, score_each
from core.registry import encoder_for, load_encoder, load_generator, made_for


def median_seconds(fn, images: torch.Tensor, repeats: int = 30) -> float:
    fn(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shard", type=Path, default=Path(".carry/data/heldout-00000.npz"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoders", nargs="+", help="encoder files or registry names (default: the shipped ones)")
    parser.add_argument("--no-timing", action="store_true", help="measure quality only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    faces = from_uint8(torch.from_numpy(decode_shard(args.shard)[0][64:192]))
    G = load_generator("default")
    mean_face = G.synthesis(G.w_avg.view(1, 1, -1).expand(len(faces), G.n_latent, -1), noise_mode="const")
    print(f"{len(faces)} held-out faces; mean face LPIPS {lpips_distance(mean_face, faces).mean():.3f}")
    print("| encoder | LPIPS | MSE | FaceNet identity | same person | layer spread | ms / face, batch 1 "
          "| ms / face, batch 16 |\n|---|---|---|---|---|---|---|---|")
    names = args.encoders or [*map(encoder_for, ENCODER_METHODS), made_for("dualstylegan_encoder")]  # + Z+ encoder
    for name in names:
        model = load_encoder(name, decoder=G)
        codes = model.to_wplus(model.encode(faces))
        scores = score_each(G.synthesis(codes, noise_mode="const").clamp(-1, 1), faces)
        mean = {key: sum(values) / len(values) for key, values in scores.items() if key != "dlib_distance"}
        spread = (codes - codes.mean(1, keepdim=True)).norm(dim=2).mean().item()
        timing = "| - | -" if args.no_timing else (
            f"| {median_seconds(model.encode, faces[:1]) * 1000:.0f} "
            f"| {median_seconds(model.encode, faces[:16], 5) / 16 * 1000:.0f}")
        print(f"| {name} | {mean['lpips']:.3f} | {mean['mse']:.4f} | {mean['identity']:.3f} | "
              f"{mean['same_person']:.0%} | {spread:.1f} {timing} |", flush=True)


if __name__ == "__main__":
    main()
