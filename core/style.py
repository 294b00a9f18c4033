"""Exemplar-based style transfer (DualStyleGAN, Yang et al. 2022) with the styles trained here.

    from core.style import load_style, stylize
    style = load_style("fantasy")                               # a shipped style (see `style_names()`)
    result = stylize("me.jpg", style, exemplar=3, structure=0.6, color=1.0)
    result.images["stylized"], result.measures

A style file (`core.training.dualstylegan.export_style`) holds DualStyleGAN's extrinsic path trained for one base
generator (int8 matrices with per-row scales) and the Z+ codes of its exemplars: the extrinsic code (the exemplar's
style) and the intrinsic one (its destylised face). The base generator is loaded once and shared; its sha256 is
checked. The content is the photo's Z+ code from the base generator's Z+ encoder, then fitted to the photo for
`refine_steps` (`refine_zplus`): the encoder alone gives back another person for most held-out faces.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from PIL import Image

from core import artifacts, identity
from core.artifacts import KINDS, CheckpointError
from core.encoders_io import load_dualstylegan, load_exstyle_codes
from core.faces import ImageSource, NoFaceFound, align_face, load_image
from core.inversion import Progress, as_targets
from core.inversion.optimise import TargetLPIPS, run_adam
from core.measures import DLIB_SAME_PERSON, identity_similarity, mse
from core.nets.dualstylegan import DualStyleGAN
from core.nets.encoders import EncoderModel
from core.nets.ops import dequantise_int8
from core.nets.stylegan2 import Generator
from core.registry import REGISTRY, available, load_generator, resolve_kind

# The encoder's Z+ code fitted to the photo before the style is applied (`refine_zplus`): what it buys in identity
# to the photo and costs in seconds, per structure weight: benchmarks/README.md, "DualStyleGAN keeps the person".
REFINE_STEPS = 50


def align_exemplar(image: ImageSource, size: int) -> tuple[Image.Image, bool]:
    """A style image FFHQ-aligned at `size` -> (RGB crop, found by landmarks?). dlib's HOG detector first, its CNN
    detector when HOG misses (it finds far more drawn faces), else the centre square: style images are roughly
    face-centred portraits, and an exemplar should not be refused because a detector does not read paintings."""
    image = load_image(image)
    for detector in ("hog", "cnn"):
        try:
            return align_face(image, size=size, detector=detector).image.convert("RGB"), True
        except NoFaceFound:
            continue
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side)).convert("RGB")
    return square.resize((size, size), resample=Image.LANCZOS), False


def style_names(generator: str = "default") -> list[str]:
    """The shipped styles made for `generator`, by their short names (registry order)."""
    return [e.extra.get("style", e.name) for e in available("style") if generator in e.extra.get("generators", ())]


DEFAULT_STRUCTURE = 0.6  # the official demo's structure weight, for styles that recommend none


def recommended_structure(name: str, generator: str | os.PathLike = "default") -> float:
    """The structure weight a shipped style's card recommends (registry `extra.structure`: the face128 styles keep
    the person at 0.2, STYLES.md), else the official 0.6."""
    entry = REGISTRY.get(style_entry(str(name), generator))
    return float(entry.extra.get("structure", DEFAULT_STRUCTURE)) if entry is not None else DEFAULT_STRUCTURE


def structure_layers(name: str, generator: str | os.PathLike = "default") -> int:
    """How many coarse layers a shipped style's structure path drives (its `res_index` + 1), from the file's
    metadata alone: the Style tab's per-layer weights start from it without loading the style."""
    path = resolve_kind(style_entry(str(name), generator), KINDS["style"].registry)
    return int(artifacts.read(path, "style", tensors=False)[1]["res_index"]) + 1


def style_entry(name: str, generator: str | os.PathLike = "default") -> str:
    """A short style name ('fantasy') -> the registry name of that style made for `generator` (a registry name),
    else of any generator (so that loading it is refused with "retrain", not "unknown"); a registry name or a file
    as it is -> what `resolve` takes."""
    named = [e for e in available("style") if e.extra.get("style") == name]
    for entry in named:
        if str(generator) in entry.extra.get("generators", ()):
            return entry.name
    return named[0].name if named else name


@dataclass
class Style:
    """One style over its base generator: DualStyleGAN and the exemplars' Z+ codes [N, n_latent, D]."""

    name: str
    model: DualStyleGAN
    extrinsic: torch.Tensor
    intrinsic: torch.Tensor
    exemplars: tuple[str, ...]
    meta: dict[str, str] = field(default_factory=dict)
    structure: float = DEFAULT_STRUCTURE  # the structure weight used when none is given
    truncation: float = 1.0  # the content code scaled towards 0 in W+ (the official demo's 0.75; ours train at 1)

    @property
    def generator(self) -> Generator:
        return self.model.generator

    def to_w(self, z_plus: torch.Tensor) -> torch.Tensor:
        """Z+ -> W+ through the base generator's mapping network, layer by layer."""
        return self.generator.map_zplus(z_plus)

    def weights(self, structure: float | None = None, color: float = 1.0, *, structure_only: bool = False,
                color_from: int | None = None) -> list[float]:
        """Per-layer weights from the two sliders (structure None: the style's own default); `structure_only`
        switches the colour path off; `color_from` starts it at that layer (`face_keeping_color_from`: the photo
        keeps its own code on the layers before)."""
        structure = self.structure if structure is None else structure
        return self.model.blend_weights(structure, 0.0 if structure_only else color, color_from)

    @property
    def face_keeping_color_from(self) -> int:
        """The first layer of the last resolution: a colour path from there keeps the photo's person where the full
        one paints the exemplar's face in (benchmarks/README.md, *Which layers of the colour path lose the
        person*), at a cost in style."""
        return self.model.n_latent - 2

    def exemplar_code(self, exemplar: int | torch.Tensor) -> torch.Tensor:
        """An exemplar's extrinsic Z+ code [1, n, D]: by index, or a code passed through (a user's, a sample)."""
        if isinstance(exemplar, torch.Tensor):
            return exemplar.reshape(1, *self.extrinsic.shape[1:]).to(self.extrinsic)
        if not 0 <= exemplar < len(self.extrinsic):
            raise ValueError(f"exemplar must be an index below {len(self.extrinsic)} for the {self.name} style")
        return self.extrinsic[exemplar : exemplar + 1]

    @torch.no_grad()
    def sample_exemplars(self, n: int = 1, seed: int = 0) -> torch.Tensor:
        """The exemplar sampler: random extrinsic codes [n, L, D] from a Gaussian with the exemplars' mean and
        covariance (drawn in their span, so a sample mixes the style's looks rather than leaving them)."""
        codes = self.extrinsic.flatten(1).float()
        mean = codes.mean(0)
        noise = torch.randn(n, len(codes), generator=torch.Generator().manual_seed(seed)).to(codes)
        return (mean + noise @ (codes - mean) / len(codes) ** 0.5).view(n, *self.extrinsic.shape[1:])

    @torch.no_grad()
    def transfer(self, content: torch.Tensor, exemplar: int | torch.Tensor, weights: list[float] | None = None, *,
                 preserve_color: bool = False) -> torch.Tensor:
        """Content Z+ codes [B, n, D] in the style of one exemplar -> images [B, 3, S, S] in [-1, 1].

        `weights`: per layer (`weights(structure, color)`; all 0 draws the base generator's face exactly);
        `preserve_color` keeps the content's own fine-layer code in the exemplar (only its structure is taken)."""
        content_w = self.to_w(content.float()) * self.truncation
        ex_w = self.to_w(self.exemplar_code(exemplar)).expand_as(content_w)
        if preserve_color:
            ex_w = torch.cat([ex_w[:, : self.model.res_index + 1], content_w[:, self.model.res_index + 1 :]], 1)
        noise = self.generator.noise_maps("const", len(content), content.device)
        weights = weights if weights is not None else self.weights()
        return self.model.synthesis(content_w, ex_w, weights, self.model.n_latent, noise).clamp(-1, 1)

    @torch.no_grad()
    def destylized(self, exemplar: int) -> torch.Tensor:
        """The exemplar's destylised face: the base generator's image of its intrinsic code [1, 3, S, S]."""
        return self.generator.synthesis(self.to_w(self.intrinsic[exemplar : exemplar + 1]),
                                        noise_mode="const").clamp(-1, 1)


def read_style(path: str | os.PathLike, generator: Generator, generator_file: str | os.PathLike | None = None
               ) -> Style:
    """A file of `export_style` over `generator` (shared); with `generator_file`, refused when made for another
    generator than the one that file holds."""
    tensors, meta = artifacts.read(path, "style", made_for=generator_file)
    extrinsic = tensors.pop("exemplars.extrinsic").float()
    intrinsic = tensors.pop("exemplars.intrinsic").float()
    model = DualStyleGAN.over(generator, res_index=int(meta["res_index"]))
    missing, unexpected = model.load_state_dict(dequantise_int8(tensors), strict=False)
    if unexpected or any(not k.startswith("generator.") for k in missing):
        raise CheckpointError(f"{path}: weights do not fit DualStyleGAN over this generator "
                              f"(missing {[k for k in missing if not k.startswith('generator.')][:4]}, "
                              f"unexpected {unexpected[:4]})")
    device = next(generator.parameters()).device
    return Style(meta["style"], model.eval(), extrinsic.to(device), intrinsic.to(device),
                 tuple(json.loads(meta["exemplars"])), meta)


def read_official_style(generator_pt: str | os.PathLike, codes_npy: str | os.PathLike, name: str,
                        device: str | torch.device = "cpu") -> Style:
    """An official DualStyleGAN style (its `generator.pt` and `exstyle_code.npy` / `refined_exstyle_code.npy`) as a
    `Style` like ours. The official files hold one Z+ code per exemplar and no destylised one: it serves as both
    (the official demo draws an exemplar's face from that code with the extrinsic path off). Transfers run as the
    official `style_transfer.py` does (content truncated to 0.75)."""
    model = load_dualstylegan(generator_pt).to(device)
    codes = load_exstyle_codes(codes_npy)
    extrinsic = torch.cat([code.reshape(1, model.n_latent, -1) for code in codes.values()]).to(device)
    return Style(name, model, extrinsic, extrinsic, tuple(codes), {"source": "official DualStyleGAN"},
                 truncation=0.75)


def load_style(name_or_path: str | os.PathLike, *, generator: str | os.PathLike = "default",
               decoder: Generator | None = None, device: str | torch.device = "cpu") -> Style:
    """A shipped style by short name ('fantasy'), registry name or file, over `generator` (or the already loaded
    `decoder`), refused with "retrain" when the file was trained for another generator. An official style by
    registry name ('dualstylegan-cartoon': its generator and `-styles` codes) brings its own FFHQ generator."""
    entry = REGISTRY.get(str(name_or_path))
    if entry is not None and entry.kind == "dualstylegan":
        return read_official_style(resolve_kind(entry.name, ("dualstylegan",)),
                                   resolve_kind(f"{entry.name}-styles", ("exstyle_codes",)), entry.name, device)
    path = resolve_kind(style_entry(str(name_or_path), generator), KINDS["style"].registry)
    generator_file = resolve_kind(generator, KINDS["generator"].registry)
    artifacts.read(path, "style", made_for=generator_file, tensors=False)  # refused before a generator is loaded
    decoder = decoder if decoder is not None else load_generator(generator_file, device)
    style = read_style(path, decoder.requires_grad_(False))  # made for generator_file: checked above
    style.structure = recommended_structure(str(name_or_path), generator)
    return style


@dataclass
class StyleResult:
    """One stylisation: the aligned face, the base generator's reconstruction of its code ("the result is based on
    this"), the exemplar's image and destylised face when it has them, the result; codes and measures."""

    images: dict[str, torch.Tensor]  # [1, 3, S, S] in [-1, 1]: "photo", "reconstruction", "stylized", ...
    content: torch.Tensor  # the photo's Z+ code [1, n, D]
    measures: dict[str, float]


@torch.no_grad()
def encode_zplus(encoder: EncoderModel, image: ImageSource | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An aligned face (or any image of one) -> (image [1, 3, S, S] at the generator's size, its Z+ code)."""
    if encoder.latent_space != "z+":
        raise ValueError(f"style transfer needs a Z+ encoder; this one encodes into {encoder.latent_space}")
    size = encoder.decoder.size
    target = as_targets([image], size).to(encoder.latent_avg.device)
    resized = torch.nn.functional.interpolate(target, size=encoder.encoder.input_size, mode="area")
    return target, encoder.encode(resized)


def refine_zplus(generator: Generator, photo: torch.Tensor, content: torch.Tensor, steps: int = REFINE_STEPS, *,
                 lr: float = 0.01, identity_weight: float = 0.15, stay_weight: float = 1.0,
                 progress: Progress | None = None) -> torch.Tensor:
    """The Z+ code [B, n, D] that draws `photo` [B, 3, S, S] closer than the encoder's `content`: Adam on LPIPS
    (alex) + MSE + `identity_weight` x (1 - FaceNet cosine to the photo) + `stay_weight` x the squared distance to
    the encoder's code, which keeps the code where the style's extrinsic path was trained (the encoder's codes)."""
    noise = generator.noise_maps("const", len(photo), photo.device)
    photo = photo.to(content)
    lpips_target = TargetLPIPS(photo, "alex")
    net = identity.facenet(device=photo.device)
    photo_embedding = identity.embed(photo)
    code = content.detach().clone().requires_grad_(True)

    def loss_fn(step: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = generator.synthesis(generator.map_zplus(code), noise=noise)
        distance = lpips_target(image) + mse(image, photo)
        embedding = net(identity.standardise(identity.crop(image)))  # unit vectors already
        lost = 1 - (embedding * photo_embedding).sum(1)
        stray = (code - content).square().mean((1, 2))
        loss = distance + identity_weight * lost + stay_weight * stray
        return loss.sum(), {"lpips_mse": distance.mean(), "identity_lost": lost.mean()}

    with torch.enable_grad():
        run_adam(loss_fn, [{"params": [code], "lr": lr}], steps, progress=progress)
    return code.detach()


@torch.no_grad()
def stylize(photo: ImageSource | torch.Tensor, style: Style, encoder: EncoderModel, exemplar: int | torch.Tensor = 0,
            *, structure: float | None = None, color: float = 1.0, weights: list[float] | None = None,
            structure_only: bool = False, preserve_color: bool = False, keep_face: bool = False,
            refine_steps: int = REFINE_STEPS, progress: Progress | None = None) -> StyleResult:
    """An aligned photo in the style of one exemplar (an index, or a Z+ code: `encode_zplus` of a user's image, or a
    `sample_exemplars` draw), with FaceNet identity between the reconstruction and the result, and between the photo
    and the reconstruction (where identity is lost before any style). The encoder's code is fitted to the photo for
    `refine_steps` (0: the encoder's code as it is; `progress` sees the steps). `structure` None: the style's
    recommended weight (`Style.structure`); `keep_face`: the colour path on the last resolution only
    (`Style.face_keeping_color_from`)."""
    target, content = encode_zplus(encoder, photo)
    if refine_steps:
        content = refine_zplus(style.generator, target, content, refine_steps, progress=progress)
    reconstruction = style.generator.synthesis(style.to_w(content), noise_mode="const").clamp(-1, 1)
    first_color = style.face_keeping_color_from if keep_face else None
    weights = weights if weights is not None else style.weights(structure, color, structure_only=structure_only,
                                                                color_from=first_color)
    stylized = style.transfer(content, exemplar, weights, preserve_color=preserve_color)
    images = {"photo": target, "reconstruction": reconstruction, "stylized": stylized}
    if isinstance(exemplar, int):
        images["destylized"] = style.destylized(exemplar)
    embedded = identity.embed(torch.cat([stylized, reconstruction, target.to(stylized)]))
    similarity = identity.similarity(embedded[:1], embedded[1:2])[0].item()
    encoded = identity.similarity(embedded[1:2], embedded[2:])[0].item()  # where identity is lost before the style
    # the fit pulls FaceNet's embedding towards the photo's, so the photo's person is judged by dlib too: a network
    # the fit never saw (NaN where it finds no face)
    photo_dlib = identity_similarity(reconstruction, target)["distance"]
    measures = {"identity": similarity, "same_person": float(similarity > identity.SAME_PERSON),
                "reconstruction_identity": encoded, "reconstruction_same_person": float(encoded > identity.SAME_PERSON),
                "reconstruction_dlib_distance": photo_dlib,
                "reconstruction_dlib_same_person": float(photo_dlib < DLIB_SAME_PERSON), "refine_steps": refine_steps}
    return StyleResult(images, content, measures)

