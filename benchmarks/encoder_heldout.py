"""The shipped encoders on the prepared CelebA held-out shard: LPIPS against the mean face, how far codes leave W,
and CPU encoding time (the numbers of models/face128/ENCODERS.md, *Measured quality* and *Architecture*).

    python -m benchmarks.encoder_heldout        # needs .carry/data/heldout-00000.npz (`core data prepare`)

Faces 64-191 of the held-out shard (the trainer watched the first 64 during training). Layer spread: the mean
distance of each layer's w from the code's mean w (0 for a code in W); for the Z+ encoder, of its mapped W+.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from core.data import decode_shard
from core.faces import from_uint8
from core.inversion import ENCODER_METHODS
from core.measures import lpips_distance
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    faces = from_uint8(torch.from_numpy(decode_shard(args.shard)[0][64:192]))
    G = load_generator("default")
    mean_face = G.synthesis(G.w_avg.view(1, 1, -1).expand(len(faces), G.n_latent, -1), noise_mode="const")
    print(f"{len(faces)} held-out faces; mean face LPIPS {lpips_distance(mean_face, faces).mean():.3f}")
    print("| encoder | LPIPS | layer spread | ms / face, batch 1 | ms / face, batch 16 |\n|---|---|---|---|---|")
    for name in [*map(encoder_for, ENCODER_METHODS), made_for("dualstylegan_encoder")]:  # + the Z+ encoder
        model = load_encoder(name, decoder=G)
        codes = model.to_wplus(model.encode(faces))
        lpips = lpips_distance(G.synthesis(codes, noise_mode="const"), faces).mean().item()
        spread = (codes - codes.mean(1, keepdim=True)).norm(dim=2).mean().item()
        one, sixteen = median_seconds(model.encode, faces[:1]), median_seconds(model.encode, faces[:16], 5) / 16
        print(f"| {name} | {lpips:.3f} | {spread:.1f} | {one * 1000:.0f} | {sixteen * 1000:.0f} |")


if __name__ == "__main__":
    main()
