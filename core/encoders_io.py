"""Safe loaders for the official encoder and DualStyleGAN checkpoints (nothing in a file can run code).

- pSp / e4e `.pt`: `{'state_dict': {'encoder.*', 'decoder.*'}, 'opts': dict or Namespace, 'latent_avg'}`.
- Style Transformer `.pt`: the same, with `nn.DataParallel`'s `encoder.module.*` / `decoder.module.*` keys.
- DualStyleGAN `generator.pt` (`g_ema`), its `exstyle_code.npy` (a pickled dict: style image name -> Z+ code)
  and `encoder.pt` (a pSp checkpoint whose codes are Z+).

`.pt` files go through `core.checkpoints.read_torch_file` (`weights_only=True`); the one extra type allowed
is `argparse.Namespace`, for checkpoints whose `opts` were saved as one (a plain attribute bag: unpickling it
sets attributes, nothing more). The `.npy` dict is read with an unpickler that only knows how to rebuild numpy
arrays; any other global in the file is refused.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from core import artifacts
from core.artifacts import CheckpointError
from core.checkpoints import (
    check_blur_kernel,
    generator_from_state_dict,
    infer_generator_config,
    load_numpy_pickle,
    load_strict,
    read_torch_file,
)
from core.nets.dualstylegan import DualStyleGAN
from core.nets.encoders import IR_UNITS, RESNET34_UNITS, Encoder4Editing, EncoderModel, GradualStyleEncoder
from core.nets.style_transformer import StyleTransformerEncoder

EncoderKind = Literal["psp", "e4e", "style_transformer"]
ARCHS = {"psp": GradualStyleEncoder, "e4e": Encoder4Editing, "style_transformer": StyleTransformerEncoder}
ENCODER_TYPES = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e"}  # official `opts.encoder_type`


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A torch checkpoint dict, read with weights_only=True (+ argparse.Namespace); `opts` becomes a dict."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(ckpt).__name__}")
    if isinstance(ckpt.get("opts"), argparse.Namespace):
        ckpt["opts"] = vars(ckpt["opts"])
    return ckpt


def submodule_state(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Keys under `name.` (or `name.module.`, as nn.DataParallel saves them), prefix removed."""
    for prefix in (f"{name}.module.", f"{name}."):
        found = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if found:
            return found
    return {}


def build_loaded(make: Callable[[], nn.Module], state_dict: dict[str, torch.Tensor], source: Any) -> nn.Module:
    """Build on the meta device and take the file's tensors: skips the random init of ~270M encoder weights."""
    with torch.device("meta"):
        module = make()
    try:
        module.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not fit the architecture: {str(err)[:600]}") from err
    return module


# ----------------------------------------------------------------------------------------------------
# pSp / e4e / Style Transformer


def infer_encoder_config(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Backbone, style count, input channels and (for map2style heads) input size, read off the weights."""
    units = len({k.split(".")[1] for k in state_dict if k.startswith("body.")})
    if "conv1.weight" in state_dict and units == sum(RESNET34_UNITS):
        backbone, stem = "resnet34", "conv1.weight"
    else:
        depth = next((d for d, counts in IR_UNITS.items() if sum(counts) == units), None)
        if depth is None or "input_layer.0.weight" not in state_dict:
            raise CheckpointError(f"encoder weights fit no IR / IR-SE / ResNet-34 backbone ({units} body units)")
        se = any(k.endswith("res_layer.5.fc1.weight") for k in state_dict)
        backbone, stem = f"{'ir_se' if se else 'ir'}{depth}", "input_layer.0.weight"
    config = dict(backbone=backbone, in_channels=state_dict[stem].shape[1])
    if "z" in state_dict:
        return {**config, "n_styles": state_dict["z"].shape[1]}
    heads = {int(m[1]) for k in state_dict if (m := re.match(r"styles\.(\d+)\.", k))}
    n_convs = len([k for k in state_dict if re.fullmatch(r"styles\.0\.convs\.\d+\.weight", k)])
    if not heads:
        raise CheckpointError("encoder weights have neither map2style heads ('styles.*') nor queries ('z')")
    return {**config, "n_styles": len(heads), "input_size": 16 * 2**n_convs}


def load_encoder_checkpoint(
    path: str | Path, kind: EncoderKind | None = None, latent_space: Literal["w+", "z+"] = "w+"
) -> EncoderModel:
    """An official pSp / e4e / Style Transformer checkpoint -> EncoderModel (encoder, decoder, latent_avg).

    `kind` is read from the file when possible (Style Transformer by its queries, pSp vs e4e by
    `opts['encoder_type']`: their weights are identical in layout). `latent_space="z+"` for DualStyleGAN's
    `encoder.pt`. `latent_avg` is added to the codes when `opts['start_from_latent_avg']` (the official default).
    """
    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict")
    encoder_sd = submodule_state(state, "encoder") if isinstance(state, dict) else {}
    decoder_sd = submodule_state(state, "decoder") if isinstance(state, dict) else {}
    if not encoder_sd or not decoder_sd:
        raise CheckpointError(
            f"{path}: no 'state_dict' with 'encoder.*' and 'decoder.*' keys, so not a pSp / e4e / Style Transformer "
            f"checkpoint (top-level keys: {list(ckpt)[:8]})"
        )
    opts = ckpt.get("opts") or {}
    config = infer_encoder_config(encoder_sd)
    if kind is None:
        kind = "style_transformer" if "z" in encoder_sd else ENCODER_TYPES.get(opts.get("encoder_type"))
        if kind is None:
            raise CheckpointError(
                f"{path}: cannot tell pSp from e4e (opts encoder_type={opts.get('encoder_type')!r}); pass kind="
            )
    cls = {"style_transformer": StyleTransformerEncoder, "e4e": Encoder4Editing, "psp": GradualStyleEncoder}[kind]
    encoder = build_loaded(lambda: cls(**config), encoder_sd, path)
    latent_avg = ckpt.get("latent_avg") if opts.get("start_from_latent_avg", True) else None
    w_avg = latent_avg.reshape(-1, latent_avg.shape[-1])[0] if latent_avg is not None and latent_space == "w+" else None
    decoder = generator_from_state_dict(decoder_sd, w_avg)
    return EncoderModel(encoder, decoder, latent_avg, latent_space).eval()


def _ints(text: str | list | tuple) -> tuple[int, ...]:
    return tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))


def build_encoder(arch: str, n_styles: int, input_size: int, style_dim: int, network: dict) -> nn.Module:
    """An encoder of the project's own size (`network`: backbone, widths, units; head_width for pSp / e4e's heads,
    ff_dim for the Style Transformer's attention layers)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, not {arch!r}")
    size = dict(widths=_ints(network["widths"]), units=_ints(network["units"]), style_dim=style_dim)
    if arch == "style_transformer":
        return StyleTransformerEncoder(n_styles, network["backbone"], 3, ff_dim=int(network["ff_dim"]),
                                       input_size=input_size, **size)
    return ARCHS[arch](n_styles, network["backbone"], 3, input_size, head_width=int(network["head_width"]), **size)


def read_encoder_file(path: str | Path) -> tuple[nn.Module, torch.Tensor, dict[str, str]]:
    """(encoder, latent_avg, metadata) of an encoder trained here; the metadata names the generator's sha256."""
    tensors, meta = artifacts.read(path, "encoder")
    latent_avg = tensors.pop("latent_avg").float()
    encoder = build_loaded(lambda: build_encoder(meta["arch"], int(meta["n_styles"]), int(meta["input_size"]),
                                                 int(meta["style_dim"]), json.loads(meta["network"])),
                           {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, path)
    return encoder.eval(), latent_avg, meta


# ----------------------------------------------------------------------------------------------------
# DualStyleGAN


def load_dualstylegan(path: str | Path) -> DualStyleGAN:
    """Official DualStyleGAN `generator.pt` (`g_ema`) -> DualStyleGAN, its size and res_index read off the keys."""
    ckpt = read_checkpoint(path)
    state = ckpt.get("g_ema")
    if not isinstance(state, dict) or not any(k.startswith("res.") for k in state):
        raise CheckpointError(f"{path}: no 'g_ema' with DualStyleGAN 'res.*' blocks (top-level keys: {list(ckpt)[:8]})")
    config = infer_generator_config(submodule_state(state, "generator"))
    n_modres = len([k for k in state if re.fullmatch(r"res\.\d+\.conv\.0\.weight", k)])
    model = DualStyleGAN(
        config["size"],
        config["style_dim"],
        config["n_mlp"],
        res_index=n_modres - 1,
        channel_base=config["channel_base"],
        channel_max=config["channel_max"],
    )
    load_strict(model, state, path)
    check_blur_kernel(model.generator)
    model.generator.w_avg.copy_(model.generator.mean_latent()[0])
    return model.eval()


NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def load_exstyle_codes(path: str | Path) -> dict[str, torch.Tensor]:
    """DualStyleGAN `exstyle_code.npy` / `refined_exstyle_code.npy` -> {style image name: Z+ code [1, 18, 512]}.

    `np.load(allow_pickle=True)` would run any code the pickle names; this reads the same file with
    `core.checkpoints.load_numpy_pickle` instead (numpy arrays only).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    try:
        with open(path, "rb") as f:
            read_header = NPY_HEADER_READERS.get(np.lib.format.read_magic(f))
            if read_header is None:
                raise ValueError("unsupported .npy format version")
            _, _, dtype = read_header(f)
            if not dtype.hasobject:
                raise CheckpointError(f"{path}: a plain {dtype} array, not a pickled dict of style codes")
            array = load_numpy_pickle(f)
    except (ValueError, EOFError, pickle.UnpicklingError, TypeError) as err:
        raise CheckpointError(f"{path}: not a readable exstyle-code .npy file: {err}") from err
    codes = array.item() if isinstance(array, np.ndarray) and array.shape == () else None
    if not isinstance(codes, dict) or not all(isinstance(v, np.ndarray) for v in codes.values()):
        raise CheckpointError(f"{path}: expected a dict of style name -> code array, found {type(codes).__name__}")
    return {str(name): torch.from_numpy(np.asarray(code, dtype=np.float32)) for name, code in codes.items()}
