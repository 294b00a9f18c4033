"""Regenerate the seeded official-layout weights of `../shared/fixtures/official/` (its README's rule)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared(relative: str) -> Path:
    """A file or folder of `../shared/`, or skip the test with the reason when it is absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found (needs ../shared/ beside the repo)")
    return path


def fixture_dir(name: str) -> Path:
    return shared(f"fixtures/official/{name}/manifest.json").parent


def regenerate_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Rebuild every tensor from the manifest and check it against the stored `first4` / `sum_f64`."""
    manifest = json.loads((fixture_dir(name) / "manifest.json").read_text())
    state = {}
    for key, entry in manifest["state_dict"].items():
        dtype = getattr(torch, entry["dtype"])
        if entry["rule"] == "randn":
            assert zlib.crc32(key.encode("utf-8")) == entry["crc32_seed"], key
            gen = torch.Generator().manual_seed(entry["crc32_seed"])
            r = torch.randn(entry["shape"], generator=gen, dtype=torch.float32)
            tensor = (entry["mean_k"] + entry["s_k"] * r.double()).float()
        else:
            tensor = torch.tensor(entry["values"], dtype=dtype).reshape(entry["shape"])
        flat = tensor.reshape(-1)
        assert flat[:4].tolist() == entry["first4"], f"{key}: first4 differs"
        np.testing.assert_allclose(
            tensor.double().sum().item(), entry["sum_f64"], rtol=1e-9, atol=1e-12, err_msg=f"{key}: sum_f64 differs"
        )
        state[key] = tensor
    return state


def load_array(name: str, file: str) -> torch.Tensor:
    return torch.from_numpy(np.load(fixture_dir(name) / f"{file}.npy").astype(np.float32))


def outputs(name: str) -> dict:
    return json.loads((fixture_dir(name) / "outputs.json").read_text())
