"""An aligned face put back into the photo it came from: the inverse of the FFHQ alignment (`core.faces`).

    face = align_face(photo, size=G.size)            # AlignedFace: the crop and its quad in the photo's pixels
    pasted = paste_back(photo, face, edited_crop)    # PasteBack: the full-size photo, its mask and measures

The crop is mapped back through the alignment's own square (`AlignedFace.quad`), upsampled bicubically, and blended
with a soft mask that follows the face's landmarks (jaw line and eyebrows, lifted over the forehead). The mask is
exactly 0 outside the face, so every other pixel of the photo is returned bit for bit. The face's brightness and
colour are matched to the photo on the mask's soft edge (one offset per channel), so a reconstruction that is a
little darker than the photo leaves no visible seam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from core import identity
from core.faces import AlignedFace, ImageSource, load_image, pil_to_tensor, warp_quad

FOREHEAD = 0.3  # the eyebrows lifted by this share of the chin-to-eyebrow height: the mask's top edge
FEATHER = 0.06  # the mask's soft edge, as a share of the face's side in the photo


@dataclass
class PasteBack:
    """The photo with the face put back. `mask` [H, W] in [0, 1] is the weight the face got (0: the photo's own
    pixel, untouched); `measures` says how well it sits (see `paste_back`)."""

    image: Image.Image
    mask: np.ndarray
    measures: dict[str, float]


def crop_coordinates(face: AlignedFace, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where photo pixels (x, y) (pixel centres at integers) fall in the aligned crop, as fractions of its side
    (0..1 inside; the crop's pixel i covers [i, i + 1] / size). The quad's corners are the crop's TL, BL, BR, TR."""
    origin, right, down = face.quad[0], face.quad[3] - face.quad[0], face.quad[1] - face.quad[0]
    inverse = np.linalg.inv(np.stack([right, down], axis=1))  # photo offset -> (a, b)
    a, b = inverse @ np.stack([xs.ravel() - origin[0], ys.ravel() - origin[1]])
    return a.reshape(xs.shape), b.reshape(xs.shape)


def face_outline(face: AlignedFace) -> np.ndarray:
    """The mask's polygon [N, 2] in photo pixels: the jaw line (landmarks 0-16), then the eyebrows (17-26) lifted
    over the forehead, right to left."""
    points = face.landmarks
    jaw, brows = points[0:17], points[17:27]
    up = brows.mean(0) - points[8]  # chin to eyebrows
    return np.concatenate([jaw, (brows + FOREHEAD * up)[::-1]])


def face_mask(face: AlignedFace, width: int, height: int, feather: float = FEATHER) -> np.ndarray:
    """[height, width] float32 in [0, 1]: 1 well inside the face outline, a smooth ramp `feather` x the face's side
    wide inside its edge, exactly 0 on and outside the edge (and outside the crop's square)."""
    outline = Image.new("L", (width, height))
    ImageDraw.Draw(outline).polygon([tuple(p) for p in face_outline(face)], fill=1)
    inside = np.asarray(outline, dtype=bool)
    if not inside.any():
        return np.zeros((height, width), np.float32)
    depth = scipy.ndimage.distance_transform_edt(inside)
    ramp = np.clip(depth / max(feather * face.source_side, 1.0), 0, 1)
    mask = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no kink where the ramp meets the flat inside
    ys, xs = np.nonzero(mask)
    a, b = crop_coordinates(face, xs.astype(np.float64), ys.astype(np.float64))
    mask[ys, xs] *= ((a > 0) & (a < 1) & (b > 0) & (b < 1))
    return mask.astype(np.float32)


def warp_to_photo(face: AlignedFace, crop: torch.Tensor, xs: np.ndarray, ys: np.ndarray) -> torch.Tensor:
    """The crop [3, S, S] in [-1, 1] sampled (bicubic) at photo pixels (xs, ys): [3, len(xs)]."""
    a, b = crop_coordinates(face, xs.astype(np.float64), ys.astype(np.float64))
    grid = torch.from_numpy(np.stack([a, b], -1) * 2 - 1).float().view(1, 1, -1, 2)
    sampled = F.grid_sample(crop[None].float(), grid, mode="bicubic", padding_mode="border", align_corners=False)
    return sampled[0, :, 0].clamp(-1, 1)


def seam_ratio(result: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude of the result on the mask's soft edge over the photo's own there: 1 when the paste
    adds no edge, above 1 when a seam shows."""
    def gradient(image: np.ndarray) -> np.ndarray:
        grey = image.astype(np.float32).mean(-1)
        return np.hypot(scipy.ndimage.sobel(grey, 0), scipy.ndimage.sobel(grey, 1))

    edge = (mask > 0) & (mask < 1)
    return float(gradient(result)[edge].mean() / max(gradient(photo)[edge].mean(), 1e-6))


def paste_back(photo: ImageSource, face: AlignedFace, crop: ImageSource | torch.Tensor, *,
               feather: float = FEATHER, match_colour: bool = True, measure: bool = True) -> PasteBack:
    """`crop` (an image the size of the aligned crop or any square size, e.g. an edited face; [3, S, S] or
    [1, 3, S, S] in [-1, 1] as a tensor) put back where `face` (from `align_face(photo)`) was found in `photo`.

    measures: `outside_changed` (photo pixels outside the mask that differ: 0), `seam` (`seam_ratio`),
    `identity` (FaceNet cosine of the pasted face, re-aligned from the result, to the crop), `upsampling` (photo
    pixels per crop pixel: above ~2 the face is softer than the photo around it); `measure=False` skips them (a
    video's frames are measured together, `core.video`).
    """
    photo = load_image(photo)
    pixels = np.asarray(photo, dtype=np.uint8)
    crop = (crop if isinstance(crop, torch.Tensor) else pil_to_tensor(crop)).detach().float().cpu()
    crop = crop.reshape(-1, *crop.shape[-3:])[0]
    mask = face_mask(face, photo.width, photo.height, feather)
    ys, xs = np.nonzero(mask)
    result = pixels.copy()
    if len(xs):
        face_pixels = (warp_to_photo(face, crop, xs, ys).T.numpy() + 1) * 127.5  # [n, 3] in 0..255
        original = pixels[ys, xs].astype(np.float32)
        weight = mask[ys, xs, None]
        if match_colour:  # one offset per channel, measured on the soft edge, where face and photo meet
            edge = (weight[:, 0] < 1)
            if edge.any():
                face_pixels += (original[edge] - face_pixels[edge]).mean(0)
        blended = original + weight * (face_pixels - original)
        result[ys, xs] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    image = Image.fromarray(result)
    if not measure:
        return PasteBack(image, mask, {})
    outside = mask == 0
    measures = {"outside_changed": float((result[outside] != pixels[outside]).any(-1).mean()) if outside.any() else 0.0,
                "seam": seam_ratio(result, pixels, mask) if len(xs) else float("nan"),
                "upsampling": face.source_side / crop.shape[-1]}
    realigned = pil_to_tensor(warp_quad(image, face.quad, crop.shape[-1]))
    measures["identity"] = float(identity.similarity(identity.embed(realigned), identity.embed(crop[None]))[0])
    return PasteBack(image, mask, measures)

