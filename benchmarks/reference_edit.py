"""Reference-based editing (Style Transformer) against InterFaceGAN direction edits of the same attribute, on held-out
pairs (the numbers of models/face128/REFERENCE_EDIT.md).

    python -m benchmarks.reference_edit --json benchmarks/reference_edit.json --grid benchmarks/reference_edit.png

Faces: CelebA eval and LFW photos (nobody trained on them), aligned and encoded by the Style Transformer made for
`--generator`. For each attribute, sources the image attribute classifier scores below 0.5 on their reconstruction are
paired with references above 0.5, and the other way round. Per edit: *transfer* (the edit's probability crossed 0.5
towards the reference's), the target logit change towards the reference, the mean |logit change| of the 39 other
attributes, and identity (FaceNet similarity and dlib distance to the source's reconstruction); for the reference edit
also *latent transfer* (the JSON's `latent_transfer`: the editor's own latent classifier says it crossed). The
InterFaceGAN edit of each source moves along the embedded direction towards the reference's side with the strength
(from `STRENGTHS`) whose mean identity loss (FaceNet similarity to the source) is closest to the reference edit's, as
issue #34 asks: at the same cost in identity, which edit moves the attribute more often. `--match target` matches the
mean target change instead (how versions 0-4 were compared).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine
from core import identity
from core.attributes import load_attribute_classifier
from core.editing import apply
from core.faces import NoFaceFound, align_face, pil_to_tensor, to_uint8
from core.measures import face_descriptors
from core.pipeline import Playground
from core.threads import use_threads

ATTRIBUTES = ("Smiling", "Eyeglasses", "Black_Hair", "Blond_Hair", "Young", "Male")
STRENGTHS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
MATCHED = {"identity": ("facenet", "identity loss"), "target": ("target_change", "target change")}  # measure, words
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def held_out_faces(per_set: int) -> tuple[torch.Tensor, list[str]]:
    photos = sorted((SHARED / "celeba" / "eval").iterdir())[::5][:per_set]
    photos += sorted((SHARED / "lfw").iterdir())[::3][:per_set]
    faces, names = [], []
    for photo in photos:
        try:
            faces.append(pil_to_tensor(align_face(photo, size=128).image))
            names.append(f"{photo.parent.name}/{photo.name}")
        except NoFaceFound:
            continue
    return torch.cat(faces), names


def measures(classifier, index: int, toward: torch.Tensor, source_images, edited_images) -> dict[str, np.ndarray]:
    """Per edit: transfer, target change towards the reference's side, others' |change|, FaceNet, dlib distance."""
    before, after = classifier.logits(source_images), classifier.logits(edited_images)
    change = after - before
    others = [i for i in range(change.shape[1]) if i != index]
    dlib = np.linalg.norm(face_descriptors(edited_images) - face_descriptors(source_images), axis=1)
    return {"transfer": ((after[:, index] > 0) == (toward > 0)).float().numpy(),
            "target_change": (change[:, index] * toward).numpy(),
            "others_change": change[:, others].abs().mean(1).numpy(),
            "facenet": identity.similarity(identity.embed(edited_images), identity.embed(source_images)).numpy(),
            "dlib_distance": dlib}


def mean(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.nanmean(v)) for k, v in values.items()}


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-set", type=int, default=60, help="photos of CelebA eval and of LFW")
    parser.add_argument("--pairs", type=int, default=24, help="(source, reference) pairs per attribute")
    parser.add_argument("--generator", default="default",
                        help="registry name of the generator whose family (Style Transformer, editor, directions) runs")
    parser.add_argument("--editor", help="registry name or file (a candidate; default: the one made for --generator)")
    parser.add_argument("--strength", type=float, help="scale of the edit transformer's offset (default: the file's)")
    parser.add_argument("--match", choices=sorted(MATCHED), default="identity",
                        help="the InterFaceGAN strength whose mean FaceNet similarity (identity) or target change is "
                             "closest to the reference edit's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--grid", type=Path, help="per attribute: source | reference | reference edit | InterFaceGAN")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    random.seed(0)
    playground = Playground.from_pretrained(args.generator)
    model, G = playground.encoder("style_transformer"), playground.generator
    editor = playground.reference_editor(args.editor)
    classifier = load_attribute_classifier()
    directions = {d.name: d for d in playground.directions()}
    faces, names = held_out_faces(args.per_set)
    codes = torch.cat([model.encode(chunk) for chunk in faces.split(32)])
    images = torch.cat([G.synthesis(chunk, noise_mode="const").clamp(-1, 1) for chunk in codes.split(32)])
    logits = classifier.logits(images)
    table, grid = {}, []
    for attribute in ATTRIBUTES:
        index = classifier.index(attribute)
        lacks, has = (logits[:, index] < 0).nonzero().squeeze(1).tolist(), (logits[:, index] > 0).nonzero().squeeze(
            1).tolist()
        if not lacks or not has:
            continue
        pairs = [(random.choice(lacks), random.choice(has)) if i % 2 == 0 else (random.choice(has),
                 random.choice(lacks)) for i in range(args.pairs)]
        source, reference = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
        toward = torch.where(logits[reference, index] > 0, 1.0, -1.0)
        edited = editor.edit(codes[source], codes[reference], attribute, args.strength)
        edited_images = G.synthesis(edited, noise_mode="const").clamp(-1, 1)
        ours = measures(classifier, index, toward, images[source], edited_images)
        # what the editor's own latent classifier says: far above `transfer`, the edit satisfies it, not the image
        ours["latent_transfer"] = ((editor.classifier(edited.float())[0][:, editor.index(attribute)] > 0)
                                   == (toward > 0)).float().numpy()
        sweep = {}
        for strength in STRENGTHS:
            moved = apply(codes[source], directions[attribute], 1.0, G.n_latent)
            moved = codes[source] + strength * toward.view(-1, 1, 1) * (moved - codes[source])
            sweep[strength] = (moved, measures(classifier, index, toward, images[source],
                                               G.synthesis(moved, noise_mode="const").clamp(-1, 1)))
        key = MATCHED[args.match][0]
        matched = min(STRENGTHS, key=lambda s: abs(np.nanmean(sweep[s][1][key]) - np.nanmean(ours[key])))
        table[attribute] = {"pairs": len(pairs), "reference_edit": mean(ours),
                            "interfacegan": {"strength": matched, **mean(sweep[matched][1])}}
        print(attribute, json.dumps(table[attribute]), flush=True)
        first = 0
        matched_image = G.synthesis(sweep[matched][0][:1], noise_mode="const").clamp(-1, 1)
        grid.append(torch.cat([images[source[first]:source[first] + 1], images[reference[first]:reference[first] + 1],
                               edited_images[:1], matched_image]))
    print(markdown(table, len(names), args.match))
    if args.json:
        strength = args.strength if args.strength is not None else float(editor.meta.get("strength", 1.0))
        args.json.write_text(json.dumps({"machine": machine(), "editor": args.editor, "strength": strength,
                                         "generator": args.generator, "match": args.match,
                                         "faces": names, "table": table}, indent=1) + "\n")
    if args.grid:
        from PIL import Image

        rows = [np.concatenate(list(to_uint8(row).numpy()), 1) for row in grid]
        Image.fromarray(np.concatenate(rows, 0)).save(args.grid)


def markdown(table: dict, faces: int, match: str) -> str:
    lines = [f"Reference edits vs InterFaceGAN at matched {MATCHED[match][1]} ({faces} held-out faces, CelebA eval "
             "+ LFW)", "",
             "| attribute | method | transfer ↑ | target logit change | others' |change| ↓ | FaceNet ↑ | dlib ↓ |",
             "|---|---|---|---|---|---|---|"]
    for attribute, row in table.items():
        for method, label in (("reference_edit", "reference edit"), ("interfacegan", "InterFaceGAN")):
            m = row[method]
            name = label + (f" (strength {m['strength']:g})" if method == "interfacegan" else "")
            lines.append(f"| {attribute} | {name} | {m['transfer']:.0%} | {m['target_change']:.2f} | "
                         f"{m['others_change']:.2f} | {m['facenet']:.3f} | {m['dlib_distance']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
