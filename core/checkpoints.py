"""Safe readers and writers for generator checkpoints: the project's own format and the official ones.

- own format: a safetensors file (tensors + JSON config in its metadata); nothing in it can execute.
- rosinality `.pt` (`{'g_ema', 'latent_avg', ...}`): `torch.load(weights_only=True)`.
- NVIDIA stylegan2-ada `.pkl`: a pickle of persistence-wrapped modules that normally *imports and runs the
  source code stored inside the file*. `read_nvidia_pickle` instead unpickles with an allow-list of tensor
  rebuild functions; every other global becomes an inert placeholder, so no code from the file ever runs.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from core import artifacts
from core.artifacts import CheckpointError
from core.nets.ops import make_kernel
from core.nets.stylegan2 import Generator, channel_widths

# ----------------------------------------------------------------------------------------------------
# The project's own format


def save_generator(generator: Generator, path: str | Path, *, half: bool = False, extra: dict | None = None) -> Path:
    """Write G (and its `w_avg`) as safetensors; `half` stores float16 (halves the size, for shipping)."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tensors["w_avg"] = generator.w_avg.detach().cpu().clone()
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    return artifacts.write(path, "generator", tensors, {"config": json.dumps(generator.config),
                                                      "extra": json.dumps(extra or {})})


def load_generator_file(path: str | Path) -> Generator:
    """Load a generator written by `save_generator`."""
    tensors, meta = artifacts.read(path, "generator")
    w_avg = tensors.pop("w_avg")
    generator = Generator(**json.loads(meta["config"]))
    load_strict(generator, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, path)
    generator.w_avg.copy_(w_avg.float())
    return generator.eval()


# ----------------------------------------------------------------------------------------------------
# rosinality layout


def read_torch_file(path: str | Path) -> Any:
    """`torch.load` with `weights_only=True`, turning every failure into a CheckpointError that says why."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file needs pickle code execution, which is never allowed "
            f"(only plain tensors and containers are read). Details: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {err}") from err


def infer_generator_config(state_dict: dict[str, torch.Tensor]) -> dict:
    """Read size, widths and mapping depth off a rosinality-layout state dict."""
    if "input.input" not in state_dict or "style.1.weight" not in state_dict:
        raise CheckpointError(
            "not a StyleGAN2 generator state dict (no 'input.input' / 'style.1.weight'); "
            f"first keys: {list(state_dict)[:5]}"
        )
    n_rgb = len({k.split(".")[1] for k in state_dict if k.startswith("to_rgbs.")})
    size = 2 ** (n_rgb + 2)
    style_dim = state_dict["style.1.weight"].shape[1]
    n_mlp = len([k for k in state_dict if re.fullmatch(r"style\.\d+\.weight", k)])
    widths = {4: state_dict["input.input"].shape[1]}
    for i in range(n_rgb):
        widths[2 ** (i + 3)] = state_dict[f"to_rgbs.{i}.conv.weight"].shape[2]
    channel_max = widths[4]
    narrower = [res for res, ch in widths.items() if ch < channel_max]
    channel_base = widths[min(narrower)] * min(narrower) if narrower else channel_max * size
    if channel_widths(size, channel_base, channel_max) != widths:
        raise CheckpointError(f"channel widths {widths} do not follow min(channel_base // res, channel_max)")
    return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_base=channel_base, channel_max=channel_max)


def generator_from_state_dict(
    state_dict: dict[str, torch.Tensor], w_avg: torch.Tensor | None = None, **config: Any
) -> Generator:
    """Build a Generator that fits a rosinality-layout state dict; estimate w_avg if none is given."""
    generator = Generator(**{**infer_generator_config(state_dict), **config})
    load_strict(generator, state_dict, "state dict")
    check_blur_kernel(generator)
    if w_avg is None:
        w_avg = generator.mean_latent()
    generator.w_avg.copy_(w_avg.reshape(-1).float())
    return generator.eval()


def load_rosinality(path: str | Path) -> Generator:
    """rosinality `.pt` (`g_ema` + `latent_avg`), the decoder format of most StyleGAN2 inversion repos."""
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: no 'g_ema' entry, so not a rosinality StyleGAN2 checkpoint (found {keys})")
    return generator_from_state_dict(ckpt["g_ema"], ckpt.get("latent_avg"))


def load_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: Any) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not fit the architecture: {str(err)[:600]}") from err


# ----------------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada pickles


class _Inert:
    """Stands in for any class or function the pickle names that is not on the allow-list."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Persistent:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would have rebuilt, as data only."""

    def __init__(self, meta: dict):
        self.class_name = meta.get("class_name", "?")
        self.state = meta.get("state", {})


def _storage_from_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


NUMPY_GLOBALS = {  # what rebuilds numpy arrays (and their dtypes) in a pickle, under both module spellings
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
}
NVIDIA_GLOBALS = {  # what rebuilds the tensors of a stylegan2-ada snapshot; its code objects stay inert
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Persistent,
}


class SafeUnpickler(pickle.Unpickler):
    """The project's one unpickler: only the globals in `allowed` are rebuilt. Any other global is refused, or with
    `inert=True` (NVIDIA pickles, which carry their source code) becomes an inert placeholder type: data, never run."""

    def __init__(self, file: BinaryIO, allowed: dict[tuple[str, str], Any], *, inert: bool = False):
        super().__init__(file)
        self.allowed, self.inert = allowed, inert

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if self.inert:
            return type(name, (_Inert,), {"qualname": f"{module}.{name}"})
        raise pickle.UnpicklingError(f"refused global {module}.{name}: only {sorted({m for m, _ in self.allowed})} "
                                     "objects may be unpickled here")


def load_numpy_pickle(file: BinaryIO) -> Any:
    """A pickle of numpy arrays in plain dicts / lists (weight files, `exstyle_code.npy`); nothing else is rebuilt."""
    return SafeUnpickler(file, NUMPY_GLOBALS).load()


def read_nvidia_pickle(path: str | Path, network: str = "G_ema") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of one network of a stylegan2-ada snapshot, without running code from the file.

    Returns the network's flat state dict (NVIDIA key names) and the plain attributes of its sub-modules
    (e.g. `synthesis.b8.conv0.conv_clamp`), which carry constructor settings the tensors don't show.
    """
    try:
        with open(path, "rb") as f:
            data = SafeUnpickler(f, NVIDIA_GLOBALS, inert=True).load()
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint not found: {path}") from err
    except Exception as err:  # any malformed pickle  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable stylegan2-ada pickle: {type(err).__name__}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get(network), _Persistent):
        found = list(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: no persistent network {network!r} in this pickle (found {found})")
    tensors: dict[str, torch.Tensor] = {}
    attributes: dict[str, Any] = {}

    def walk(obj: _Persistent, prefix: str) -> None:
        state = obj.state if isinstance(obj.state, dict) else {}
        for group in ("_parameters", "_buffers"):
            for name, value in (state.get(group) or {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[prefix + name] = value.detach().clone()
        for name, value in state.items():
            if not name.startswith("_") and isinstance(value, (int, float, str, bool, type(None))):
                attributes[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if isinstance(child, _Persistent):
                walk(child, f"{prefix}{name}.")

    walk(data[network], "")
    return tensors, attributes


def convert_nvidia_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """NVIDIA `Generator` keys -> rosinality keys (same maths: see core.nets.stylegan2); returns (sd, w_avg)."""
    if "synthesis.b4.const" not in sd or "mapping.fc0.weight" not in sd:
        raise CheckpointError("not a stylegan2-ada generator (no 'synthesis.b4.const' / 'mapping.fc0.weight')")
    if "mapping.embed.weight" in sd:
        raise CheckpointError("class-conditional stylegan2-ada generators (c_dim > 0) are not supported")
    out: dict[str, torch.Tensor] = {}
    n_mlp = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    for i in range(n_mlp):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    noises: list[torch.Tensor] = []

    def layer(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        noises.append(sd[f"{src}.noise_const"][None, None])

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, 3, 1, 1)

    layer("synthesis.b4.conv1", "conv1")
    to_rgb("synthesis.b4.torgb", "to_rgb1")
    resolutions = sorted({int(m.group(1)) for k in sd if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    for i, res in enumerate(resolutions[1:]):
        block = f"synthesis.b{res}"
        layer(f"{block}.conv0", f"convs.{2 * i}")
        layer(f"{block}.conv1", f"convs.{2 * i + 1}")
        to_rgb(f"{block}.torgb", f"to_rgbs.{i}")
        # NVIDIA applies its normalised filter with gain up**2; rosinality stores the kernel pre-multiplied.
        out[f"convs.{2 * i}.conv.blur.kernel"] = sd[f"{block}.conv0.resample_filter"] * 4
        out[f"to_rgbs.{i}.upsample.kernel"] = sd[f"{block}.resample_filter"] * 4
    for i, noise in enumerate(noises):
        out[f"noises.noise_{i}"] = noise
    return out, sd["mapping.w_avg"]


def load_nvidia_pickle(path: str | Path) -> Generator:
    """stylegan2-ada `.pkl` (PTI's format) -> Generator, including its `conv_clamp`."""
    sd, attributes = read_nvidia_pickle(path)
    converted, w_avg = convert_nvidia_state_dict(sd)
    return generator_from_state_dict(converted, w_avg, conv_clamp=attributes.get("synthesis.b4.conv1.conv_clamp"))


def load_generator_checkpoint(path: str | Path) -> Generator:
    """Any supported generator file, told apart by content: own safetensors, rosinality `.pt`, NVIDIA `.pkl`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors":
        return load_generator_file(path)
    if head[:2] == b"PK":  # torch.save zip archive
        return load_rosinality(path)
    if head[:1] == b"\x80":  # a raw pickle stream
        return load_nvidia_pickle(path)
    raise CheckpointError(f"{path}: unknown checkpoint format (expected .safetensors, a torch .pt or an NVIDIA .pkl)")


def check_blur_kernel(generator: Generator) -> None:
    """Official checkpoints carry their FIR kernels; ours must be the [1,3,3,1] filter the code assumes."""
    expected = make_kernel(generator.config["blur_kernel"]) * 4
    for name, buf in generator.named_buffers():
        if name.endswith("blur.kernel") or name.endswith("upsample.kernel"):
            if not torch.allclose(buf.cpu(), expected, atol=1e-6):
                raise CheckpointError(f"{name}: FIR kernel differs from {generator.config['blur_kernel']}")
