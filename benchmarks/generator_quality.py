"""Generator quality without Inception weights: distances between face sets in dlib's 128-D descriptor space.

    python benchmarks/generator_quality.py models/face128/G_ema.safetensors --data .carry/data
    python benchmarks/generator_quality.py A.safetensors B.safetensors ... --data .carry/data   # a curve

For each generator: `n` seeded samples (ψ = `--psi`), the share in which dlib finds a face, and between the
found faces' descriptors and the held-out real faces': the Fréchet distance (FD), the kernel distance (KID,
cubic polynomial kernel, unbiased, x1000) and k-NN precision / recall (Kynkäänniemi et al., k = 3). The same
measures between `n` training faces and the held-out ones give the floor (two real sets of different people),
so a generator's numbers read against it. Real descriptors are cached beside the data (`descriptors-*.npz`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.checkpoints import load_generator_file  # noqa: E402
from core.data import decode_shard, shard_paths  # noqa: E402
from core.faces import to_uint8  # noqa: E402
from core.measures import face_descriptors, frechet_distance  # noqa: E402


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


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 50, size: int = 200, seed: int = 0) -> float:
    """KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets."""
    rng, d = np.random.default_rng(seed), a.shape[1]
    size = min(size, len(a), len(b))
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = size * (size - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    return float(np.mean(values))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Share of fakes inside the real set's k-NN balls (precision) and of reals inside the fakes' (recall)."""

    def inside(support: np.ndarray, queries: np.ndarray) -> float:
        radius = np.sort(np.linalg.norm(support[:, None] - support[None], axis=2), axis=1)[:, k]
        distances = np.linalg.norm(queries[:, None] - support[None], axis=2)
        return float((distances <= radius[None]).any(1).mean())

    return inside(real, fake), inside(fake, real)


def compare(real: np.ndarray, other: np.ndarray) -> dict[str, float]:
    precision, recall = precision_recall(real, other)
    return {"fd": frechet_distance(real, other), "kid_x1000": 1000 * kernel_distance(real, other),
            "precision": precision, "recall": recall}


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
    rows = [{"set": f"real: {len(train)} train faces (floor)", "faces_found": None, **compare(heldout, train)}]
    for path in args.models:
        found, count = descriptors(generated_images(path, args.n, args.psi, args.seed), path.name)
        rows.append({"set": f"{path} (ψ={args.psi})", "faces_found": count / args.n, **compare(heldout, found)})
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
