"""Face photos in, FFHQ-aligned crops out.

Any upload a user may give (path, bytes, file, PIL image, array; EXIF-rotated, RGBA, CMYK, 16-bit, huge or
corrupt) becomes an RGB PIL image or a clear `ImageError`; dlib finds the faces and their 68 landmarks; the
FFHQ procedure (NVlabs/ffhq-dataset `recreate_aligned_images`, also used by PTI, e4e and DualStyleGAN) turns
the eyes and mouth into the oriented square crop every FFHQ StyleGAN2 model expects.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.ndimage
import torch
from PIL import Image, ImageOps

ImageSource = str | os.PathLike | bytes | BinaryIO | Image.Image | np.ndarray

# Longest side of the first detection pass, and the most a retry may upsample to: dlib's HOG window is 80 px,
# so small faces need upsampling, while a 48 MP photo is searched on a copy of at most ~5 MP.
DETECT_FIRST_SIDE = 1280
DETECT_MAX_SIDE = 2560
LANDMARK_MIN_FACE = 100
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


class ImageError(ValueError):
    """The input is not a usable image: unreadable, corrupt, truncated, too large or of an unsupported kind."""


class NoFaceFound(ValueError):
    """No face was detected where one was needed."""


class FaceTooSmall(ValueError):
    """The face is found but too small in the photo to be inverted: what the model would see is a blur."""


# How large the FFHQ crop is in the photo's own pixels (`AlignedFace.source_side`) decides how much of the person
# survives. Measured on 20 CelebA held-out photos shrunk until the crop spans N px, then aligned at 128 px: FaceNet
# similarity to the full-resolution crop 0.98 at 96 px, 0.96 at 64, 0.89 at 48, 0.73 at 32, 0.51 at 24 (13 / 18
# still the same person), 0.28 at 16 (2 / 14; 6 of 20 not even detected).
SMALL_FACE_PX = 48  # below: warn that details are lost
TINY_FACE_PX = 20  # below: refuse, the crop no longer shows the person


@dataclass(frozen=True)
class Box:
    """A face's bounding box in source-image pixels."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def area(self) -> float:
        return max(self.right - self.left, 0.0) * max(self.bottom - self.top, 0.0)


@dataclass(frozen=True)
class AlignedFace:
    """An FFHQ-aligned crop and where it came from: `landmarks` (68x2) and `quad` (4x2, corners top-left,
    bottom-left, bottom-right, top-right) are in the source image's pixels; `box` is None when the landmarks
    came from the caller."""

    image: Image.Image
    landmarks: np.ndarray
    quad: np.ndarray
    box: Box | None

    @property
    def source_side(self) -> float:
        """The side of the FFHQ crop in the source photo's pixels (the crop is resampled from this to its size)."""
        return float(np.linalg.norm(self.quad[1] - self.quad[0]))

    def size_warning(self) -> str | None:
        """None when the face is large enough in the photo; a warning when it is small (details lost); raises
        `FaceTooSmall` when it is too small to show the person (`SMALL_FACE_PX`, `TINY_FACE_PX`, measured)."""
        side = self.source_side
        if side < TINY_FACE_PX:
            raise FaceTooSmall(f"the face is only {side:.0f} px across in this photo (at least {TINY_FACE_PX} needed, "
                               f"{SMALL_FACE_PX} for good results): use a larger photo of the face")
        if side < SMALL_FACE_PX:
            return (f"the face is only {side:.0f} px across in this photo and is upsampled "
                    f"{self.image.width / side:.1f}x: fine details and some likeness are lost "
                    f"(below {SMALL_FACE_PX} px)")
        return None


# ---------------------------------------------------------------------------------------------------------------
# Image input


def load_image(source: ImageSource, *, max_pixels: int = 50_000_000) -> Image.Image:
    """Any image a user may upload as an upright 8-bit RGB PIL image, or an `ImageError` saying what is wrong.

    The size is checked from the header before any pixel is decoded, so a small file declaring huge dimensions
    (a decompression bomb) fails at once. Alpha is composited on white; 16-bit data is scaled, not clipped.
    """
    if isinstance(source, np.ndarray):
        return _check_size(_from_array(source), max_pixels)
    if isinstance(source, Image.Image):
        return _decode(_check_size(source, max_pixels))
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as image:
            return _decode(_check_size(image, max_pixels))
    except ImageError:
        raise
    except _DECODE_ERRORS as error:
        name = f" {os.fspath(source)!r}" if isinstance(source, (str, os.PathLike)) else ""
        raise ImageError(f"cannot read image{name}: {error}") from error


def _check_size(image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height} ({width * height / 1e6:.0f} MP), more than the "
                         f"{max_pixels / 1e6:.0f} MP allowed (raise max_pixels to accept it)")
    if width == 0 or height == 0:
        raise ImageError(f"image is empty ({width}x{height})")
    return image


def _decode(image: Image.Image) -> Image.Image:
    try:
        return _to_rgb(ImageOps.exif_transpose(image))
    except _DECODE_ERRORS as error:
        raise ImageError(f"cannot decode image ({image.format or 'in memory'}, {image.mode}): {error}") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit PNG/TIFF arrive as I;16* (0..65535) or, from some decoders, as I: scale by 257 so white stays white.
        values = np.asarray(image, dtype=np.float64)
        sixteen_bit = image.mode.startswith("I;16") or values.max(initial=0) > 255
        image = Image.fromarray(np.clip(np.rint(values / 257 if sixteen_bit else values), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    """uint8 / uint16 / bool arrays as stored; float arrays must hold [0, 1]. HxW, HxWx1, HxWx3 or HxWx4."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(f"an image array must be HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint16:
        array = np.rint(array / 257)
    elif array.dtype == bool:
        array = array * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min(initial=0) < 0 or array.max(initial=0) > 1:
            raise ImageError("a float image array must hold values in [0, 1]")
        array = np.rint(array * 255)
    elif array.dtype != np.uint8:
        raise ImageError(f"unsupported image array dtype {array.dtype} (use uint8, uint16, bool or float in [0, 1])")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)))


def pil_to_tensor(image: ImageSource) -> torch.Tensor:
    """An image as a float tensor [1, 3, H, W] in [-1, 1], the range StyleGAN and LPIPS work in."""
    pixels = np.asarray(load_image(image), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] as uint8 pixels [N, H, W, 3] on the CPU (values outside are clipped)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels [N, H, W, 3] as images [N, 3, H, W] in [-1, 1] (float32): the inverse of `to_uint8`."""
    return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """A tensor [3, H, W] or [1, 3, H, W] in [-1, 1] as an RGB PIL image (values outside are clipped)."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image; got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    return Image.fromarray(to_uint8(tensor[None])[0].numpy())


# ---------------------------------------------------------------------------------------------------------------
# dlib models and detection


def _dlib():
    """dlib, imported on first use: loading images and the inversion code work without it (e.g. on a GPU box)."""
    import dlib

    return dlib


def dlib_model_path(filename: str) -> Path:
    """A model file of the `face-recognition-models` package, found without importing it (its __init__ needs
    pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("dlib's model files come from `pip install face-recognition-models==0.3.0`")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models")
    return path


@functools.cache
def _hog_detector():
    return _dlib().get_frontal_face_detector()


@functools.cache
def _cnn_detector():
    return _dlib().cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector.dat")))


@functools.cache
def _landmark_predictor():
    return _dlib().shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))


def detect_faces(image: ImageSource, *, detector: str = "hog") -> list[Box]:
    """Faces in the image, biggest first ([] if none).

    `detector` is "hog" (dlib's frontal HOG detector, fast on CPU) or "cnn" (dlib's MMOD CNN: finds more
    turned faces, ~10x slower on CPU). Big photos are searched on a copy of at most DETECT_FIRST_SIDE px; when
    nothing is found the copy is doubled while it stays within DETECT_MAX_SIDE, which finds small faces.
    """
    if detector not in ("hog", "cnn"):
        raise ValueError(f"detector must be 'hog' or 'cnn', not {detector!r}")
    image = load_image(image)
    longest = max(image.size)
    scale = min(1.0, DETECT_FIRST_SIDE / longest)
    while longest * scale <= DETECT_MAX_SIDE:
        size = (max(round(image.width * scale), 1), max(round(image.height * scale), 1))
        pixels = np.asarray(image if scale == 1 else image.resize(size, Image.Resampling.BILINEAR))
        if detector == "hog":
            rects = _hog_detector()(pixels, 0)
        else:
            rects = [found.rect for found in _cnn_detector()(pixels, 0)]
        if rects:
            boxes = [Box(r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale)
                     for r in rects]
            return sorted(boxes, key=lambda box: box.area, reverse=True)
        scale *= 2
    return []


def face_landmarks(image: ImageSource, box: Box) -> np.ndarray:
    """dlib's 68 landmarks (iBUG 300-W order) of the face in `box`, as float (x, y) in the image's pixels.

    The predictor runs on a crop around the box, so a huge photo is never copied whole into dlib; a face smaller
    than LANDMARK_MIN_FACE px is upsampled first, which roughly halves the landmark error on tiny faces.
    """
    image = load_image(image)
    width, height = box.right - box.left, box.bottom - box.top
    region = (max(int(box.left - width), 0), max(int(box.top - height), 0),
              min(int(box.right + width) + 1, image.width), min(int(box.bottom + height) + 1, image.height))
    crop = image.crop(region)
    scale = max(1.0, LANDMARK_MIN_FACE / max(width, 1.0))
    if scale > 1:
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.BICUBIC)
    left, top = (box.left - region[0]) * scale, (box.top - region[1]) * scale
    right, bottom = (box.right - region[0]) * scale, (box.bottom - region[1]) * scale
    shape = _landmark_predictor()(np.asarray(crop), _dlib().rectangle(round(left), round(top), round(right) - 1,
                                                                   round(bottom) - 1))
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return (points + 0.5) / scale - 0.5 + region[:2]  # pixel centres map as in PIL's resize


# ---------------------------------------------------------------------------------------------------------------
# FFHQ alignment


def align_face(image: ImageSource, *, size: int = 256, face: str | int = "largest",
               detector: str = "hog") -> AlignedFace:
    """The FFHQ-aligned crop (size x size) of one face: the largest by default, or the `face`-th biggest.

    Raises `NoFaceFound` when the detector finds no face (the official scripts crash there instead).
    """
    image = load_image(image)
    boxes = detect_faces(image, detector=detector)
    if not boxes:
        raise NoFaceFound(f"no face found in the {image.width}x{image.height} image by dlib's {detector} detector; "
                          "try a photo with a frontal face, or detector='cnn'")
    if face == "largest":
        index = 0
    elif isinstance(face, int) and -len(boxes) <= face < len(boxes):
        index = face
    else:
        raise ValueError(f"face must be 'largest' or an index below {len(boxes)} (faces found); got {face!r}")
    box = boxes[index]
    return _aligned(image, face_landmarks(image, box), size, box)


def align_all(image: ImageSource, *, size: int = 256, detector: str = "hog") -> list[AlignedFace]:
    """Every detected face FFHQ-aligned, biggest first ([] when there is none)."""
    image = load_image(image)
    return [_aligned(image, face_landmarks(image, box), size, box) for box in detect_faces(image, detector=detector)]


def align_from_landmarks(image: ImageSource, landmarks: np.ndarray, *, size: int = 256) -> AlignedFace:
    """The FFHQ crop from 68 landmarks a caller already has (any detector using the iBUG 300-W order)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"landmarks must be 68x2 (iBUG 300-W order); got shape {landmarks.shape}")
    return _aligned(load_image(image), landmarks, size, None)


def _aligned(image: Image.Image, landmarks: np.ndarray, size: int, box: Box | None) -> AlignedFace:
    quad = ffhq_quad(landmarks)
    return AlignedFace(warp_quad(image, quad, size), landmarks, quad, box)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """FFHQ's oriented crop square: centred a little below the eyes, turned so the eyes are level, sized by
    the larger of 2x the eye distance and 1.8x the eye-to-mouth distance. Corners: TL, BL, BR, TR."""
    eye_left, eye_right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    eye_to_mouth = (landmarks[48] + landmarks[54]) / 2 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # blends the eye line with the face's vertical axis
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) / np.hypot(*x)
    y = np.flipud(x) * [-1, 1]
    center = eye_avg + eye_to_mouth * 0.1
    return np.stack([center - x - y, center - x + y, center + x + y, center + x - y])


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def warp_quad(image: Image.Image, quad: np.ndarray, size: int) -> Image.Image:
    """FFHQ's steps: shrink a large face first, crop to the quad plus a border, fill what lies outside the photo
    by reflection blurred and faded to the median colour, then sample the quad 4x supersampled and downsize."""
    quad = quad.copy()
    qsize = np.hypot(*(quad[3] - quad[0]))

    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        image = image.resize((round(image.width / shrink), round(image.height / shrink)), Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(round(qsize * 0.1), 3)
    left, top, right, bottom = _bounds(quad)
    crop = (max(left - border, 0), max(top - border, 0), min(right + border, image.width),
            min(bottom + border, image.height))
    if crop[2] - crop[0] < image.width or crop[3] - crop[1] < image.height:
        image = image.crop(crop)
        quad -= crop[:2]

    left, top, right, bottom = _bounds(quad)
    pad = np.maximum(np.array([-left, -top, right - image.width, bottom - image.height]) + border, 0)
    if pad.max() > border - 4:
        pad = np.maximum(pad, round(qsize * 0.3))
        image = _reflect_pad(image, pad, blur=qsize * 0.02)
        quad += pad[:2]

    transform_size = 4 * size  # FFHQ renders 4096 px for its 1024 px images
    image = image.transform((transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                            Image.Resampling.BILINEAR)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _reflect_pad(image: Image.Image, pad: np.ndarray, blur: float) -> Image.Image:
    """Pad (left, top, right, bottom) by reflection; blur and fade towards the median colour with the distance
    from the photo's edge, so no mirrored eye or sharp seam ends up in the crop."""
    pixels = np.pad(np.float32(image), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    height, width, _ = pixels.shape
    y, x, _ = np.ogrid[:height, :width, :1]
    outside = np.maximum(1 - np.minimum(np.float32(x) / pad[0], np.float32(width - 1 - x) / pad[2]),
                         1 - np.minimum(np.float32(y) / pad[1], np.float32(height - 1 - y) / pad[3]))
    blurred = scipy.ndimage.gaussian_filter(pixels, [blur, blur, 0])
    pixels += (blurred - pixels) * np.clip(outside * 3 + 1, 0, 1)
    pixels += (np.median(pixels, axis=(0, 1)) - pixels) * np.clip(outside, 0, 1)
    return Image.fromarray(np.uint8(np.clip(np.rint(pixels), 0, 255)), "RGB")
