"""Write a stylegan2-ada-style snapshot pickle without stylegan2-ada's code, for the loader's tests.

NVIDIA pickles reduce every network to `torch_utils.persistence._reconstruct_persistent_obj(meta)` with the
module's `__dict__` (`_parameters`, `_buffers`, `_modules`, attributes) in `meta['state']`. This writes the
same structure by registering a throw-away `torch_utils.persistence` module only while pickling.
"""

from __future__ import annotations

import collections
import pickle
import sys
import types
from pathlib import Path

import torch


class _Network:
    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = dict(
            type="class",
            version=4,
            module_src="raise SystemExit('source code must never run')",
            class_name=self.class_name,
            state=self.state,
        )
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,)


class _Payload:
    """Would run a shell command if the loader honoured arbitrary globals."""

    def __reduce__(self):
        import os

        return os.system, ("touch /tmp/stylegan_playground_pickle_pwned",)


def _tree(state_dict: dict[str, torch.Tensor], attributes: dict[str, object]) -> _Network:
    root: dict = {}
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value

    def build(name: str, node: dict, prefix: str) -> _Network:
        params = collections.OrderedDict(
            (k, torch.nn.Parameter(v, requires_grad=False))
            for k, v in node.items()
            if isinstance(v, torch.Tensor) and k not in ("w_avg", "noise_const", "resample_filter")
        )
        buffers = collections.OrderedDict(
            (k, v) for k, v in node.items() if isinstance(v, torch.Tensor) and k not in params
        )
        modules = collections.OrderedDict(
            (k, build(k, v, f"{prefix}{k}.")) for k, v in node.items() if isinstance(v, dict)
        )
        state = dict(training=False, _parameters=params, _buffers=buffers, _modules=modules)
        state.update(
            {k[len(prefix) :]: v for k, v in attributes.items() if k.startswith(prefix) and "." not in k[len(prefix) :]}
        )
        return _Network(name, state)

    return build("Generator", root, "")


def write_snapshot(
    path: Path,
    state_dict: dict[str, torch.Tensor],
    attributes: dict[str, object] | None = None,
    with_payload: bool = True,
) -> Path:
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pickled by name only; the loader under test never calls it
        return meta

    _reconstruct_persistent_obj.__module__ = fake.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules["torch_utils"] = types.ModuleType("torch_utils")
    sys.modules["torch_utils.persistence"] = fake
    try:
        snapshot = {"G_ema": _tree(state_dict, attributes or {}), "training_set_kwargs": {"resolution": 1024}}
        if with_payload:
            snapshot["augment_pipe"] = _Payload()
        path.write_bytes(pickle.dumps(snapshot, protocol=4))
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]
    return path
