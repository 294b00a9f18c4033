"""Generator quality without Inception weights: distances between face sets in dlib's 128-D descriptor space.

    python -m benchmarks.generator_quality models/face128/G_ema.safetensors --data .carry/data
    python -m benchmarks.generator_quality A.safetensors B.safetensors ... --data .carry/data   # a curve

For each generator: `n` seeded samples (ψ = `--psi`), the share in which dlib finds a face, and between the
found faces' descriptors and the held-out real faces': the Fréchet distance (FD), the kernel distance (KID,
cubic polynomial kernel, unbiased, x1000) and k-NN precision / recall (Kynkäänniemi et al., k = 3). The same
measures between `n` training faces and the held-out ones give the floor (two real sets of different people),
so a generator's numbers read against it. Real descriptors are cached beside the data (`descriptors-*.npz`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.checkpoints import load_generator_file
from core.data import decode_shard, shard_paths
from core.faces import to_uint8
from core.measures import distribution_distances, face_descriptors


def descriptors(images: np.ndarray, desc: str) -> tuple[np.ndarray, int]:
    """Descriptors of the uint8 images [N, H, W, 3] in which a face is found, and how many were found."""
    rows = face_descriptors(tqdm(images, desc=desc, unit="img"))
    found = rows[~np.isnan(rows[:, 0])]
    return found, len(found)


def real_descriptors(data: Path, split: str, n: int, seed: int = 0) -> np.ndarray:
    cache = data / f"descriptors-{split}-{n}-{seed}.npz"
    if cache.is_file():
        return np.load(cache)["descriptors"]
    pixels = np.concatenate([decode_shard(p)[0] for p in shard_paths(data, split)])
    pick = np.random.default_rng(seed).permutation(len(pixels))[:n]
    found, _ = descriptors(pixels[np.sort(pick)], f"{split} faces")
    np.savez(cache, descriptors=found)
    return found


@torch.no_grad()
def generated_images(path: Path, n: int, psi: float, seed: int, batch: int = 16) -> np.ndarray:
    generator = load_generator_file(path)
    z = torch.randn(n, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    images = [generator.synthesis(generator.mapping(chunk, truncation_psi=psi), noise_mode="const")
              for chunk in z.split(batch)]
    return to_uint8(torch.cat(images)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="generator files (core.checkpoints format)")
    parser.add_argument("--data", type=Path, required=True, help="prepared data (train-* and heldout-* shards)")
    parser.add_argument("-n", type=int, default=500, help="samples per generator and training faces for the floor")
    parser.add_argument("--psi", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    heldout = real_descriptors(args.data, "heldout", args.n)
    train = real_descriptors(args.data, "train", args.n)
    rows = [{"set": f"real: {len(train)} train faces (floor)", "faces_found": None,
             **distribution_distances(heldout, train)}]
    for path in args.models:
        found, count = descriptors(generated_images(path, args.n, args.psi, args.seed), path.name)
        rows.append({"set": f"{path} (ψ={args.psi})", "faces_found": count / args.n,
                     **distribution_distances(heldout, found)})
    print(f"against {len(heldout)} held-out real faces (dlib descriptors)\n")
    print("| set | faces found | FD | KID x1000 | precision | recall |\n|---|---|---|---|---|---|")
    for r in rows:
        found = f"{r['faces_found']:.0%}" if r["faces_found"] is not None else "-"
        print(f"| {r['set']} | {found} | {r['fd']:.4f} | {r['kid_x1000']:.3f} | {r['precision']:.2f} | "
              f"{r['recall']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
