"""Reference-based editing (Style Transformer, Hu et al. 2022): take one attribute from a reference photo.

    from core.reference_edit import load_reference_editor
    editor = load_reference_editor()  # the one made for the default generator
    edited_ws = editor.edit(source_ws, reference_ws, "Smiling")       # W+ codes of the Style Transformer encoder
    result = edit_by_reference(model, editor, "me.png", "them.png", "Smiling")   # aligned photos -> images + measures

The file holds the latent attribute classifier (40 CelebA attributes over W+) and the edit transformer it trained,
both made here for one encoder's codes (`core.training.reference_edit`); the sha256 of that encoder and of its
generator are in the metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from core import artifacts, identity
from core.artifacts import KINDS
from core.attributes import AttributeClassifier, load_attribute_classifier
from core.encoders_io import build_loaded
from core.faces import ImageSource
from core.inversion import as_targets, encoder_pivot
from core.nets.encoders import EncoderModel
from core.nets.style_transformer import EditTransformer, LatentAttributeClassifier
from core.registry import made_for, resolve_kind


@dataclass
class ReferenceEditor:
    """The latent classifier and the edit transformer of one encoder's W+ space."""

    classifier: LatentAttributeClassifier
    transformer: EditTransformer
    attributes: tuple[str, ...]  # the classifier's outputs, in order
    trained: tuple[str, ...]  # the attributes the edit transformer was trained to take
    meta: dict[str, str] = field(default_factory=dict)

    def index(self, attribute: str) -> int:
        if attribute not in self.trained:
            raise ValueError(f"the edit transformer was trained for {', '.join(self.trained)}; not {attribute!r}")
        return self.attributes.index(attribute)

    @torch.no_grad()
    def edit(self, source: torch.Tensor, reference: torch.Tensor, attribute: str, strength: float | None = None
             ) -> torch.Tensor:
        """Source W+ [N, n, D] takes `attribute` from reference W+ ([N or 1, n, D]); the rest stays the source's.
        `strength` scales the transformer's offset from the source (1: the paper's edit; None: the strength the
        file's model card measured, metadata "strength")."""
        strength = float(self.meta.get("strength", 1.0)) if strength is None else strength
        reference = reference.expand_as(source)
        index = torch.full((source.shape[0],), self.index(attribute), dtype=torch.long, device=source.device)
        edited = self.transformer(source.float(), reference.float(), index)
        return edited if strength == 1 else source.float() + strength * (edited - source.float())

    @torch.no_grad()
    def probabilities(self, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """The latent classifier's probability of every attribute, per code: {name: [N]}."""
        probabilities = torch.sigmoid(self.classifier(codes.float())[0])
        return {name: probabilities[:, i] for i, name in enumerate(self.attributes)}


def read_reference_editor(path: str | os.PathLike) -> ReferenceEditor:
    """A file written by `core.training.reference_edit.train`."""
    tensors, meta = artifacts.read(path, "reference_edit")
    attributes = tuple(json.loads(meta["attributes"]))
    parts = {prefix: {k[len(prefix) + 1:]: v.float() for k, v in tensors.items() if k.startswith(prefix + ".")}
             for prefix in ("classifier", "edit")}
    classifier = build_loaded(lambda: LatentAttributeClassifier(tuple(json.loads(meta["classifier_widths"])),
                                                                n_classes=len(attributes)), parts["classifier"], path)
    transformer = build_loaded(lambda: EditTransformer(int(meta["style_dim"]), n_attributes=len(attributes)),
                               parts["edit"], path)
    return ReferenceEditor(classifier.eval(), transformer.eval(), attributes,
                           tuple(meta["trained_attributes"].split(",")), meta)


def load_reference_editor(name_or_path: str | os.PathLike | None = None, *,
                          encoder: str | os.PathLike | None = None) -> ReferenceEditor:
    """The editor a registry name or file stands for (None: the one made for the `default` generator); with `encoder`
    (a name or file), checked to be made for that encoder's codes (sha256), since another encoder's W+ is another
    space."""
    name_or_path = made_for("reference_edit") if name_or_path is None else name_or_path
    path = resolve_kind(name_or_path, KINDS["reference_edit"].registry)
    editor = read_reference_editor(path)
    if encoder is not None:
        artifacts.check_made_for(path, "reference_edit", editor.meta, resolve_kind(encoder, ("style_transformer",)))
    return editor


@dataclass
class ReferenceEdit:
    """One reference edit: the three W+ codes, their images [1, 3, S, S] in [-1, 1], and what it did."""

    attribute: str
    codes: dict[str, torch.Tensor]  # "source", "reference", "edited"
    images: dict[str, torch.Tensor]  # the generator's renderings of those codes
    measures: dict[str, float]


@torch.no_grad()
def edit_by_reference(model: EncoderModel, editor: ReferenceEditor, source: ImageSource | torch.Tensor,
                      reference: ImageSource | torch.Tensor, attribute: str,
                      classifier: AttributeClassifier | None = None, strength: float | None = None) -> ReferenceEdit:
    """Encode two aligned faces, give the source the reference's `attribute`, render all three, and measure with the
    image attribute classifier (never seen by the editor) and FaceNet: the attribute's probability on the source,
    the reference and the edit, how far the other attributes' logits moved, whether the encoded source is still the
    photo's person, and whether the edit kept the encoded source's."""
    G = model.decoder
    targets = as_targets([source, reference], G.size).to(model.latent_avg.device)
    source_ws, reference_ws = encoder_pivot(model, size=model.encoder.input_size)(targets).split(1)
    codes = {"source": source_ws, "reference": reference_ws, "edited": editor.edit(source_ws, reference_ws, attribute,
                                                                                          strength)}
    images = {name: G.synthesis(ws, noise_mode="const").clamp(-1, 1) for name, ws in codes.items()}
    classifier = classifier or load_attribute_classifier()
    logits = {name: classifier.logits(image)[0] for name, image in images.items()}
    index = classifier.index(attribute)
    others = [i for i in range(len(logits["source"])) if i != index]
    edited, encoded, photo = identity.embed(torch.cat([images["edited"], images["source"], targets[:1]]))
    similarity = identity.similarity(edited[None], encoded[None])[0].item()
    encoding = identity.similarity(encoded[None], photo[None])[0].item()  # the edit cannot keep whom the code lost
    measures = {f"{name}_probability": torch.sigmoid(logits[name][index]).item() for name in codes}
    measures |= {"others_logit_change": (logits["edited"][others] - logits["source"][others]).abs().mean().item(),
                 "identity": similarity, "same_person": float(similarity > identity.SAME_PERSON),
                 "encoding_identity": encoding, "encoding_same_person": float(encoding > identity.SAME_PERSON)}
    return ReferenceEdit(attribute, codes, images, measures)
