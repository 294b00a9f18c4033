"""One pipeline behind the command line, the app and the notebooks: `Playground.from_pretrained(model)` owns a
generator and loads what each method needs (encoders, directions, styles, the reference editor) on first use, once.

    pg = Playground.from_pretrained("default")
    for face in pg.faces("group.jpg", all_faces=True):          # AlignedFace: the crop and where it came from
        result = pg.invert(face, "pti")                          # InversionResult
        edited = pg.edit(result, [("Smiling", 2.0)])             # [1, 3, S, S] in [-1, 1]
        photo = pg.paste_back("group.jpg", face, edited).image   # the full photo, the face edited
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from core.editing import FAMILIES, Direction, apply_sequence, conditional_first, registered_directions
from core.faces import AlignedFace, ImageSource, NoFaceFound, align_all, align_face, load_image
from core.inversion import ENCODER_METHODS, InversionResult, Progress, invert
from core.nets.encoders import EncoderModel
from core.nets.stylegan2 import Generator
from core.paste import PasteBack, paste_back
from core.reference_edit import ReferenceEdit, ReferenceEditor, edit_by_reference, load_reference_editor
from core.registry import load_encoder, load_generator, made_for
from core.style import Style, StyleResult, load_style, stylize

Edit = tuple[Direction | str, float]  # a direction (or its name, see `Playground.direction`) and a strength


@dataclass
class Playground:
    """A generator (`model_name`: its registry name or file) on `device`, and the models made for it, each loaded
    the first time a method asks for it. `python -m core` and `demos/app.py` go through one of these, as does
    every notebook (which call `core` directly only for what a research experiment takes apart)."""

    generator: Generator
    model_name: str = "default"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    encoders: dict[str, EncoderModel] = field(default_factory=dict, repr=False)
    styles: dict[str, Style] = field(default_factory=dict, repr=False)
    editors: dict[str, ReferenceEditor] = field(default_factory=dict, repr=False)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = "default", device: str | torch.device = "cpu") -> Playground:
        """The generator a registry name or checkpoint file stands for (`core.registry`), on `device`."""
        return cls(load_generator(model, device), str(model), torch.device(device))

    @property
    def size(self) -> int:
        return self.generator.size

    # -- components, loaded once ---------------------------------------------------------------------

    def encoder(self, method: str, name_or_path: str | os.PathLike | None = None) -> EncoderModel:
        """The `method` encoder ('psp', 'e4e', 'style_transformer', 'dualstylegan_encoder') made for this generator,
        or the file / registry name given; KeyError when none is registered for it."""
        key = str(name_or_path or method)
        if key not in self.encoders:
            name = name_or_path or made_for(method, self.model_name)
            self.encoders[key] = load_encoder(name, self.device, generator=self.model_name, decoder=self.generator)
        return self.encoders[key]

    def reference_editor(self, name_or_path: str | os.PathLike | None = None) -> ReferenceEditor:
        """The Style Transformer's reference editor made for this generator (or the one given), checked against the
        Style Transformer it edits the codes of."""
        key = str(name_or_path or "reference_edit")
        if key not in self.editors:
            encoder = made_for("style_transformer", self.model_name)
            self.editors[key] = load_reference_editor(name_or_path or made_for("reference_edit", self.model_name),
                                                      encoder=encoder)
        return self.editors[key]

    def style(self, name_or_path: str | os.PathLike) -> Style:
        """A DualStyleGAN style (short name, registry name or file) over this generator."""
        key = str(name_or_path)
        if key not in self.styles:
            self.styles[key] = load_style(name_or_path, generator=self.model_name, decoder=self.generator)
        return self.styles[key]

    def directions(self) -> list[Direction]:
        """The attribute directions registered for this generator (InterFaceGAN), conditional ones first."""
        return conditional_first(registered_directions(self.generator, self.model_name))

    def direction(self, spec: str | Direction) -> Direction:
        """A direction by name: an attribute direction ('Smiling', 'Young|Male', case-insensitive), or
        'FAMILY:INDEX' of a direction family ('GANSpace:0', 'SeFa:3')."""
        if isinstance(spec, Direction):
            return spec
        family = re.fullmatch(r"(\w+):(\d+)", spec)
        families = {name.lower(): name for name in FAMILIES}
        if family and family[1].lower() in families:
            index = int(family[2])
            return FAMILIES[families[family[1].lower()]].find(self.generator, self.model_name, index + 1)[index]
        named = {d.name.lower(): d for d in self.directions()}
        if spec.lower() in named:
            return named[spec.lower()]
        known = ", ".join(d.name for d in self.directions()) or "none registered"
        raise KeyError(f"no direction {spec!r} for the model {self.model_name!r}: use one of {known}, or "
                       f"{' / '.join(f'{name}:INDEX' for name in FAMILIES)}")

    # -- the steps --------------------------------------------------------------------------------------

    def faces(self, photo: ImageSource, *, all_faces: bool = False) -> list[AlignedFace]:
        """The photo's largest face (or every face, biggest first) FFHQ-aligned at the generator's size; raises
        `NoFaceFound` when there is none and `FaceTooSmall` for a face too small to show the person."""
        image = load_image(photo)
        found = align_all(image, size=self.size) if all_faces else [align_face(image, size=self.size)]
        if not found:
            raise NoFaceFound(f"no face found in the {image.width}x{image.height} photo")
        return found

    def invert(self, face: AlignedFace | ImageSource | torch.Tensor, method: str = "pti", *,
               encoder: str | os.PathLike | None = None, progress: Progress | None = None,
               **settings: object) -> InversionResult:
        """`core.inversion.invert` of an aligned face with this generator; the encoder a method or a PTI pivot
        needs ('e4e', ...) is this generator's own unless `encoder` names another. PTI starts from the 'fast'
        preset unless `preset='paper'`."""
        image = face.image if isinstance(face, AlignedFace) else face
        needs = method if method in ENCODER_METHODS else settings.get("pivot")
        if isinstance(needs, str) and needs in ENCODER_METHODS:
            settings["encoder"] = self.encoder(needs, encoder)
        if method == "pti":
            settings.setdefault("preset", "fast")
        return invert(self.generator, image, method, progress=progress, **settings)

    @torch.no_grad()
    def edit(self, result: InversionResult, edits: Sequence[Edit], *, batch: int | None = None) -> torch.Tensor:
        """The result's face with the edits applied one after the other to its code and drawn by its (tuned)
        generator: [N, 3, S, S] in [-1, 1]; `batch` draws N codes (a video's frames) that many at a time."""
        steps = [(self.direction(d), float(s)) for d, s in edits]
        ws = apply_sequence(result.pivot.to(self.device), steps, self.generator.n_latent)
        chunks = ws.split(batch or len(ws))
        return torch.cat([result.render(self.generator, chunk) for chunk in chunks]).clamp(-1, 1)

    @torch.no_grad()
    def traverse(self, result: InversionResult, direction: Direction | str, strengths: Sequence[float],
                 before: Sequence[Edit] = ()) -> torch.Tensor:
        """The face at each strength along one direction (after the `before` edits): [len(strengths), 3, S, S]."""
        return torch.cat([self.edit(result, [*before, (direction, s)])[:1] for s in strengths])

    def paste_back(self, photo: ImageSource, face: AlignedFace, image: torch.Tensor, **options: object) -> PasteBack:
        """`core.paste.paste_back`: the image of an aligned face put back into the photo it was found in."""
        return paste_back(photo, face, image, **options)

    def stylize(self, face: AlignedFace | ImageSource | torch.Tensor, style: Style | str | os.PathLike,
                exemplar: int | torch.Tensor = 0, *, encoder: str | os.PathLike | None = None,
                **options: object) -> StyleResult:
        """`core.style.stylize` of an aligned face with a style over this generator (a `Style`, or its name or
        file) and this generator's Z+ encoder (unless `encoder` names another); `options`: structure, color,
        weights, refine_steps, progress, ..."""
        image = face.image if isinstance(face, AlignedFace) else face
        style = style if isinstance(style, Style) else self.style(style)
        return stylize(image, style, self.encoder("dualstylegan_encoder", encoder), exemplar, **options)

    def reference_edit(self, source: ImageSource | torch.Tensor, reference: ImageSource | torch.Tensor,
                       attribute: str, *, editor: str | os.PathLike | None = None,
                       encoder: str | os.PathLike | None = None) -> ReferenceEdit:
        """Give the source face the reference face's `attribute` (Style Transformer codes, the edit transformer)."""
        model = self.encoder("style_transformer", encoder)
        return edit_by_reference(model, self.reference_editor(editor), source, reference, attribute)
