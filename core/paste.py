"""An aligned face put back into the photo it came from: the inverse of the FFHQ alignment (`core.faces`).

    face = align_face(photo, size=G.size)            # AlignedFace: the crop and its quad in the photo's pixels
    pasted = paste_back(photo, face, edited_crop)    # PasteBack: the full-size photo, its mask and measures

The crop is mapped back through the alignment's own square (`AlignedFace.quad`), upsampled bicubically, and blended
with a soft mask that follows the face's landmarks (jaw line and eyebrows, lifted over the forehead). The mask is
exactly 0 outside the face, so every other pixel of the photo is returned bit for bit. The face's brightness and
colour are matched to the photo on the mask's soft edge (one offset per channel), so a reconstruction that is a
little darker than the photo leaves no visible seam.

An edit can change more than the face (hair colour, a fringe): given the crop before the edit (`unedited`), the
mask also takes in the regions the edit changed clearly that touch the face, so a blond edit shows in the photo's
hair instead of stopping at the forehead; changes below the chin, far from the face or not touching it (the
generator redrawing clothes or background) stay the photo's.
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
REACH = 0.12  # how far past the face an edit's change is taken in, as a share of the face's side (hair, not scenery)
CHANGED = 0.2  # an edit changed a pixel when the crops differ by this (mean over channels, [-1, 1] units, blurred)


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
    jaw, brows = face.landmarks[0:17], face.landmarks[17:27]
    return np.concatenate([jaw, (brows + FOREHEAD * chin_to_brows(face))[::-1]])


def chin_to_brows(face: AlignedFace) -> np.ndarray:
    """The face's up vector in photo pixels: from the chin (landmark 8) to the eyebrows' mean."""
    return face.landmarks[17:27].mean(0) - face.landmarks[8]


def soft_edge(region: np.ndarray, width: float) -> np.ndarray:
    """A boolean region as weights: 1 deeper than `width` pixels inside it, a smoothstep ramp (no kink where it
    meets the flat inside) down to exactly 0 on its edge and outside."""
    ramp = np.clip(scipy.ndimage.distance_transform_edt(region) / max(width, 1.0), 0, 1)
    return (ramp * ramp * (3 - 2 * ramp)).astype(np.float32)


def face_mask(face: AlignedFace, width: int, height: int, feather: float = FEATHER) -> np.ndarray:
    """[height, width] float32 in [0, 1]: 1 well inside the face outline, a smooth ramp `feather` x the face's side
    wide inside its edge, exactly 0 on and outside the edge (and outside the crop's square)."""
    outline = Image.new("L", (width, height))
    ImageDraw.Draw(outline).polygon([tuple(p) for p in face_outline(face)], fill=1)
    inside = np.asarray(outline, dtype=bool)
    if not inside.any():
        return np.zeros((height, width), np.float32)
    mask = soft_edge(inside, feather * face.source_side)
    ys, xs = np.nonzero(mask)
    a, b = crop_coordinates(face, xs.astype(np.float64), ys.astype(np.float64))
    mask[ys, xs] *= ((a > 0) & (a < 1) & (b > 0) & (b < 1))
    return mask.astype(np.float32)


def changed_mask(face: AlignedFace, width: int, height: int, edited: torch.Tensor, unedited: torch.Tensor,
                 inside: np.ndarray, feather: float = FEATHER, threshold: float = CHANGED) -> np.ndarray:
    """[height, width] float32 in [0, 1]: where the edit changed the crop (`edited` against `unedited`, [3, S, S])
    by more than `threshold`, in the regions of the photo that touch `inside` (the face mask's pixels over 0),
    within `REACH` of it and above the chin, with holes filled and the same soft edge as the face mask. Worked out
    in the crop's bounding box only."""
    change = (edited.float() - unedited.float()).abs().mean(0)
    change = scipy.ndimage.gaussian_filter(change.numpy(), sigma=change.shape[-1] / 96)
    (x0, y0), (x1, y1) = np.floor(face.quad.min(0)).astype(int), np.ceil(face.quad.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    out = np.zeros((height, width), np.float32)
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1]
    a, b = crop_coordinates(face, xs.astype(np.float64), ys.astype(np.float64))
    in_crop = (a > 0) & (a < 1) & (b > 0) & (b < 1)
    grid = torch.from_numpy(np.stack([a[in_crop], b[in_crop]], -1) * 2 - 1).float().view(1, 1, -1, 2)
    sampled = F.grid_sample(torch.from_numpy(change)[None, None], grid, mode="bilinear", align_corners=False)
    changed = np.zeros(in_crop.shape, bool)
    changed[in_crop] = sampled.view(-1).numpy() > threshold
    face_inside = inside[y0:y1, x0:x1]
    up = chin_to_brows(face)  # below the chin is clothes and background
    changed &= (xs - face.landmarks[8, 0]) * up[0] + (ys - face.landmarks[8, 1]) * up[1] > 0
    changed &= scipy.ndimage.distance_transform_edt(~face_inside) < REACH * face.source_side
    changed = scipy.ndimage.binary_opening(changed, iterations=max(1, round(0.01 * face.source_side)))
    joined = scipy.ndimage.binary_closing(changed | face_inside, iterations=max(1, round(0.015 * face.source_side)))
    labels, _ = scipy.ndimage.label(joined)
    touching = np.unique(labels[face_inside])
    region = scipy.ndimage.binary_fill_holes(np.isin(labels, touching[touching > 0])) & in_crop
    out[y0:y1, x0:x1] = soft_edge(region, feather * face.source_side)
    return out


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


def as_crop(image: ImageSource | torch.Tensor) -> torch.Tensor:
    """[3, S, S] float in [-1, 1] on the CPU from an image or a [3, S, S] / [1, 3, S, S] tensor."""
    image = (image if isinstance(image, torch.Tensor) else pil_to_tensor(image)).detach().float().cpu()
    return image.reshape(-1, *image.shape[-3:])[0]


def paste_back(photo: ImageSource, face: AlignedFace, crop: ImageSource | torch.Tensor, *,
               unedited: ImageSource | torch.Tensor | None = None, feather: float = FEATHER,
               match_colour: bool = True, measure: bool = True) -> PasteBack:
    """`crop` (an image the size of the aligned crop or any square size, e.g. an edited face; [3, S, S] or
    [1, 3, S, S] in [-1, 1] as a tensor) put back where `face` (from `align_face(photo)`) was found in `photo`.
    `unedited` (the same face before the edit, the same size): the mask also covers what the edit changed around
    the face (`changed_mask`), e.g. the hair of a hair-colour edit.

    measures: `outside_changed` (photo pixels outside the mask that differ: 0), `seam` (`seam_ratio`),
    `identity` (FaceNet cosine of the pasted face, re-aligned from the result, to the crop), `upsampling` (photo
    pixels per crop pixel: above ~2 the face is softer than the photo around it); `measure=False` skips them (a
    video's frames are measured together, `core.video`).
    """
    photo = load_image(photo)
    pixels = np.asarray(photo, dtype=np.uint8)
    crop = as_crop(crop)
    mask = face_mask(face, photo.width, photo.height, feather)
    face_edge = (mask > 0) & (mask < 1)
    if unedited is not None and mask.any():
        unedited = F.interpolate(as_crop(unedited)[None], size=crop.shape[-2:], mode="area")[0]
        mask = np.maximum(mask, changed_mask(face, photo.width, photo.height, crop, unedited, mask > 0, feather))
    ys, xs = np.nonzero(mask)
    result = pixels.copy()
    if len(xs):
        face_pixels = (warp_to_photo(face, crop, xs, ys).T.numpy() + 1) * 127.5  # [n, 3] in 0..255
        original = pixels[ys, xs].astype(np.float32)
        weight = mask[ys, xs, None]
        if match_colour:  # one offset per channel, measured where the face's own soft edge is still an edge
            edge = face_edge[ys, xs] & (weight[:, 0] < 1)
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

