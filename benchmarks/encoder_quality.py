"""The e4e paper's experiment on the embedded model: distortion and editability of each inversion method.

    python -m benchmarks.pti_curves prepare            # once: 40 aligned held-out faces -> .carry/pti_curves/faces.npz
    python -m benchmarks.encoder_quality --json benchmarks/encoder_quality.json --grid benchmarks/encoder_grid.png
    python -m benchmarks.encoder_quality --methods psp e4e --per-set 8 --json benchmarks/encoders_40.json
    python -m benchmarks.encoder_quality --generator face128-v2 --methods psp e4e style_transformer zplus \
        --per-set 8 --json benchmarks/encoders_40_v2.json       # the family made for another generator

Faces: `per_set` of each held-out set (CelebA eval, LFW, FFHQ, UTKFace children and elderly; nobody trained on them).
Methods: W and W+ projection (`steps`, AlexNet LPIPS and lr 0.03 as the fast PTI preset's pivot), pSp, e4e and the
Style Transformer (one pass), DualStyleGAN's Z+ encoder (`zplus`: one pass, its Z+ code mapped to W+ by the frozen
mapping network: the code every stylisation starts from), PTI (fast preset, W pivot) and PTI with the e4e code as its
pivot (fast tuning, `pti-e4e`); on request the paper's PTI settings from either pivot (`pti-paper`, `pti-e4e-paper`).
Distortion per face: `core.measures.score_each` (PSNR, LPIPS, MS-SSIM, FaceNet identity and same-person, dlib
distance; the encoders were trained with a FaceNet identity loss, so dlib's distance is the identity measure they did
not see) and CPU seconds. Editability: each method's code moved along the embedded InterFaceGAN directions (`EDITS`,
+- `strength`), rendered by the method's generator (PTI's tuned one): the attribute classifier's logit change in the
intended direction (higher: the edit took), dlib distance to the method's own reconstruction (lower: the person
stayed), and the Fréchet distance of all edited faces to the real faces in dlib's descriptor space (lower: edits stay
realistic). The paper's ordering (FFHQ-1024, CelebA-HQ): W+ opt distorts least among latent-only methods, then pSp,
e4e; e4e's edits are the best; W opt edits well but distorts most.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine
from core.attributes import load_attribute_classifier
from core.editing import apply
from core.faces import from_uint8, to_uint8
from core.inversion import ENCODER_METHODS, invert
from core.measures import face_descriptors, frechet_distance, score_each
from core.pipeline import Playground
from core.threads import use_threads

METHODS = ("w", "w+", *ENCODER_METHODS, "zplus", "pti", "pti-e4e")
ENCODER_KINDS = {**{m: m for m in ENCODER_METHODS}, "zplus": "dualstylegan_encoder"}  # benchmark method -> model
PAPER_TUNING = ("pti-paper", "pti-e4e-paper")  # slow on the CPU: the paper's settings, on request
EDITS = ("Smiling", "Young", "Male", "Eyeglasses")
FACES = Path(".carry/pti_curves/faces.npz")


def invert_with(method: str, G: torch.nn.Module, targets: torch.Tensor, encoders: dict, steps: int):
    """One method on one face -> InversionResult (timed in `result.timings`)."""
    if method in ("w", "w+"):  # the projector with the fast PTI preset's pivot settings (VGG LPIPS: 2.3x slower)
        return invert(G, targets, method, steps=steps, lpips_net="alex", lr=0.03, autocast=torch.bfloat16,
                      channels_last=True)
    if method in ENCODER_METHODS:
        return invert(G, targets, method, encoder=encoders[method])
    if method == "zplus":  # the encoder gives Z+; its pivot is the mapped W+
        return invert(G, targets, "psp", encoder=encoders[method])
    preset = "paper" if method.endswith("-paper") else "fast"
    if method.startswith("pti-e4e"):
        return invert(G, targets, "pti", preset=preset, pivot="e4e", encoder=encoders["e4e"])
    if method.startswith("pti"):
        return invert(G, targets, "pti", preset=preset)
    raise ValueError(f"unknown method {method!r}")


def nanmean(values: list[float]) -> float:
    found = [v for v in values if not math.isnan(v)]
    return sum(found) / len(found) if found else math.nan


@torch.no_grad()
def edit_measures(result, G, classifier, directions: dict, strength: float) -> tuple[dict, list[torch.Tensor]]:
    """Per edit: logit change towards the edit (mean of + and -), dlib distance to the unedited reconstruction."""
    base = result.render(G)
    base_logits = classifier.logits(base)
    base_descriptor = face_descriptors(base)[0]
    measures, images = {}, []
    for name in EDITS:
        index = classifier.index(name)
        change, distance = [], []
        for sign in (1, -1):
            edited = result.render(G, apply(result.pivot, directions[name], sign * strength, G.n_latent))
            images.append(edited)
            change.append(sign * (classifier.logits(edited)[0, index] - base_logits[0, index]).item())
            distance.append(float(np.linalg.norm(face_descriptors(edited)[0] - base_descriptor)))
        measures[name] = {"logit_change": sum(change) / 2, "dlib_distance": nanmean(distance)}
    return measures, images


def found(descriptors: np.ndarray) -> list[np.ndarray]:
    """The rows of faces dlib found (the others are NaN)."""
    return [row for row in descriptors if not np.isnan(row).any()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generator", default="default",
                        help="registry name of the generator whose family (encoders, directions) is measured")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + PAPER_TUNING)
    parser.add_argument("--per-set", type=int, default=1, help="faces of each held-out set (at most 8)")
    parser.add_argument("--steps", type=int, default=300, help="W / W+ projection steps")
    parser.add_argument("--strength", type=float, default=3.0, help="edit strength along each unit direction")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--json", type=Path, help="write per-face rows and the tables here")
    parser.add_argument("--update", action="store_true", help="with --json: replace only these methods' rows and "
                        "table entries in the existing file (e.g. after retraining one encoder)")
    parser.add_argument("--grid", type=Path, help="photo | each method's reconstruction, one row per face")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    data = np.load(args.faces)
    sets = [str(s) for s in data["sets"]]
    picked = [i for i, s in enumerate(sets) if sets[:i].count(s) < args.per_set]
    playground = Playground.from_pretrained(args.generator)
    G = playground.generator
    encoders = {m: playground.encoder(kind) for m, kind in ENCODER_KINDS.items()
                if m in args.methods or (m == "e4e" and any(n.startswith("pti-e4e") for n in args.methods))}
    classifier = load_attribute_classifier()
    directions = {d.name: d for d in playground.directions()}
    targets = from_uint8(torch.from_numpy(data["images"]))
    real_descriptors = found(face_descriptors(targets))
    rows, grid, edited_descriptors = [], {}, {m: [] for m in args.methods}
    for method in args.methods:
        for i in picked:
            started = time.perf_counter()
            result = invert_with(method, G, targets[i:i + 1], encoders, args.steps)
            seconds = time.perf_counter() - started
            scores = {k: v[0] for k, v in score_each(result.reconstruction, targets[i:i + 1]).items()}
            edits, images = edit_measures(result, G, classifier, directions, args.strength)
            edited_descriptors[method] += found(face_descriptors(torch.cat(images)))
            rows.append({"method": method, "set": sets[i], "face": str(data["names"][i]), "seconds": seconds,
                         **scores, "edits": edits})
            grid.setdefault(i, [to_uint8(targets[i:i + 1])[0].numpy()]).append(
                to_uint8(result.reconstruction)[0].numpy())
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "edits"}), flush=True)
    tables = {"distortion": {}, "editability": {}}
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        tables["distortion"][method] = {k: nanmean([r[k] for r in mine]) for k in (
            "psnr", "lpips", "ms_ssim", "identity", "same_person", "dlib_distance", "seconds")}
        tables["editability"][method] = {
            **{f"{e}_logit": nanmean([r["edits"][e]["logit_change"] for r in mine]) for e in EDITS},
            "dlib_distance": nanmean([r["edits"][e]["dlib_distance"] for r in mine for e in EDITS]),
            "frechet_dlib": frechet_distance(np.stack(edited_descriptors[method]), np.stack(real_descriptors))}
    if args.update and args.json and args.json.is_file():
        kept = json.loads(args.json.read_text())
        rows = [r for r in kept["rows"] if r["method"] not in args.methods] + rows
        for name, table in tables.items():
            tables[name] = {m: t for m, t in kept["tables"][name].items() if m not in args.methods} | table
    print(markdown(tables, len(picked)))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "generator": args.generator, "faces": len(picked),
                                         "strength": args.strength, "steps": args.steps, "tables": tables,
                                         "rows": rows}, indent=1) + "\n")
    if args.grid:
        from PIL import Image

        Image.fromarray(np.concatenate([np.concatenate(row, 1) for row in grid.values()], 0)).save(args.grid)


def markdown(tables: dict, faces: int) -> str:
    lines = [f"Distortion ({faces} held-out faces; identity = FaceNet cosine, dlib = descriptor distance, < 0.6 same)",
             "", "| method | PSNR dB ↑ | LPIPS ↓ | MS-SSIM ↑ | FaceNet ↑ | same person | dlib ↓ | CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for method, t in tables["distortion"].items():
        lines.append(f"| {method} | {t['psnr']:.2f} | {t['lpips']:.4f} | {t['ms_ssim']:.3f} | {t['identity']:.3f} | "
                     f"{t['same_person']:.0%} | {t['dlib_distance']:.3f} | {t['seconds']:.2f} |")
    lines += ["", "Editability (attribute logit change towards each edit ↑; dlib distance edit ↔ reconstruction ↓; "
              "Fréchet distance of edits to real faces in dlib space ↓)", "",
              "| method | " + " | ".join(EDITS) + " | dlib ↓ | FD ↓ |", "|---" * (len(EDITS) + 3) + "|"]
    for method, t in tables["editability"].items():
        lines.append(f"| {method} | " + " | ".join(f"{t[f'{e}_logit']:.2f}" for e in EDITS)
                     + f" | {t['dlib_distance']:.3f} | {t['frechet_dlib']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
