"""Train reference-based editing for a Style Transformer encoder (Hu et al. 2022, Sec. 3.3), which its authors never
released: the latent attribute classifier over W+ and the edit transformer it supervises
(`python -m core train reference-edit`).

Both models see codes only, never images, so the CPU suffices: the slow part is encoding the photos once.
- Codes: the encoder's W+ of the prepared CelebA train faces with their CelebA labels, plus generator samples
  (`encoder.sample_wplus`) labelled by the project's image attribute classifier (probabilities as soft labels).
- Latent classifier (`LatentAttributeClassifier`, the official LCNet layout, narrower): binary cross-entropy on
  the 40 attributes; its accuracy is reported per attribute on the encoded held-out faces.
- Edit transformer (one model for every attribute, `EditTransformer(n_attributes=40)`): for a step's attribute,
  sources and references whose labels differ on it; the paper's loss (`reference_edit_loss`: stay near the source
  code, take the reference's embedding of the attribute, keep the source's embeddings of the others).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core import artifacts
from core.artifacts import sha256_of
from core.attributes import CELEBA_ATTRIBUTES, load_attribute_classifier
from core.data import decode_shard, shard_paths
from core.faces import from_uint8
from core.nets.style_transformer import EditTransformer, LatentAttributeClassifier, reference_edit_loss
from core.registry import load_encoder, load_generator, resolve
from core.training.attributes import read_labels
from core.training.encoder import sample_wplus
from core.training.scaffold import half

EDIT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Black_Hair", "Blond_Hair", "Young", "Male", "Bangs", "Mouth_Slightly_Open")


@dataclass
class ReferenceEditConfig:
    """Every knob of a run; the defaults trained the shipped `face128-reference-edit`."""

    encoder: str = "face128-style-transformer"  # whose codes are edited (registry name or file)
    generator: str = "default"  # the generator the encoder was trained for (registry name or file)
    data: str = ""  # prepared shards: train-*.npz (codes to train on), heldout-*.npz (accuracy); required
    labels: str = ""  # CelebA's attributes.csv (file, identity, split, 40 x ±1); required
    synthetic: int = 8000  # generator samples added to the encoded photos (soft labels from the image classifier)
    out: str = "models/face128/reference-edit.safetensors"  # the exported editor
    cache: str = "runs/reference_edit"  # encoded codes are kept here: a rerun skips the encoding
    attributes: str = ",".join(EDIT_ATTRIBUTES)  # what the edit transformer learns to take from a reference
    hidden: str = "512,256"  # the latent classifier's shared MLP after the flattened W+
    classifier_steps: int = 4000
    edit_steps: int = 2000
    batch: int = 256  # the latent classifier's
    edit_batch: int = 64  # (source, reference) pairs per edit-transformer step
    lr: float = 1e-3
    edit_lr: float = 3e-4
    edit_weights: str = "1,1,1"  # the paper's loss terms: stay near the source code, take the reference's
        # embedding of the attribute, keep the source's embeddings of the others
    correlated: float = 1.0  # attributes whose labels correlate with the target's beyond this (|Pearson r|) are not
        # held still: a smile brings an open mouth and high cheekbones (1.0: hold every other one, as the paper)
    seed: int = 0


def encode_split(cfg: ReferenceEditConfig, split: str, model, labels: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [N, n_latent, D] float16, labels [N, 40] 0/1) of a split's labelled faces, cached in `cfg.cache`."""
    cache = Path(cfg.cache) / f"codes-{split}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return torch.from_numpy(stored["codes"]), torch.from_numpy(stored["labels"]).float()
    codes, rows = [], []
    for path in shard_paths(cfg.data, split):
        pixels, names = decode_shard(path, threads=2)
        known = [i for i, name in enumerate(names) if Path(name).name in labels]
        for chunk in np.array_split(np.array(known), max(1, len(known) // 32)):
            with torch.no_grad():
                codes.append(model.encode(from_uint8(torch.from_numpy(pixels[chunk]))).half())
        rows += [labels[Path(names[i]).name][1] for i in known]
    if not rows:
        raise FileNotFoundError(f"no labelled {split}-*.npz faces in {cfg.data} (`python -m core data prepare`)")
    result = torch.cat(codes), torch.from_numpy(np.stack(rows)).float()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, codes=result[0].numpy(), labels=result[1].numpy().astype(np.uint8))
    return result


@torch.no_grad()
def synthetic_codes(cfg: ReferenceEditConfig, G) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator samples' W+ [N, n_latent, D] float16 and the image classifier's probabilities [N, 40]."""
    cache = Path(cfg.cache) / f"codes-synthetic-{cfg.synthetic}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return torch.from_numpy(stored["codes"]), torch.from_numpy(stored["labels"]).float()
    classifier = load_attribute_classifier()
    torch.manual_seed(cfg.seed)
    codes, probabilities = [], []
    for start in range(0, cfg.synthetic, 64):
        ws = sample_wplus(G, min(64, cfg.synthetic - start))
        codes.append(ws.half())
        probabilities.append(torch.sigmoid(classifier.logits(G.synthesis(ws, noise_mode="const"))))
    result = torch.cat(codes), torch.cat(probabilities)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, codes=result[0].numpy(), labels=result[1].numpy())
    return result


def classifier_widths(cfg: ReferenceEditConfig, codes: torch.Tensor) -> tuple[int, ...]:
    """The latent classifier's layer widths: the flattened W+, then `cfg.hidden`."""
    return (codes[0].numel(), *(int(w) for w in cfg.hidden.split(",")))


def train_latent_classifier(cfg: ReferenceEditConfig, codes: torch.Tensor, labels: torch.Tensor
                            ) -> LatentAttributeClassifier:
    torch.manual_seed(cfg.seed)
    classifier = LatentAttributeClassifier(classifier_widths(cfg, codes), n_classes=labels.shape[1])
    optimiser = torch.optim.Adam(classifier.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, cfg.classifier_steps)
    for step in range(cfg.classifier_steps):
        pick = torch.randint(len(codes), (cfg.batch,))
        loss = F.binary_cross_entropy_with_logits(classifier(codes[pick].float())[0], labels[pick])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 500 == 0 or step == cfg.classifier_steps - 1:
            print(f"latent classifier step {step}: bce {loss.item():.4f}", flush=True)
    return classifier.eval().requires_grad_(False)


@torch.no_grad()
def accuracy_table(classifier: LatentAttributeClassifier, codes: torch.Tensor, labels: torch.Tensor) -> dict:
    """Per attribute: accuracy of the latent classifier, and of always answering the majority label (the bar)."""
    predicted = torch.cat([classifier(chunk.float())[0] for chunk in codes.split(512)]) > 0
    truth = labels > 0.5
    majority = torch.maximum(truth.float().mean(0), 1 - truth.float().mean(0))
    accuracy = (predicted == truth).float().mean(0)
    return {name: {"accuracy": round(accuracy[i].item(), 4), "majority": round(majority[i].item(), 4)}
            for i, name in enumerate(CELEBA_ATTRIBUTES[: labels.shape[1]])}


def differing_pairs(labels: torch.Tensor, attribute: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n (source, reference) index pairs whose labels differ on `attribute`: half without it taking it, half the
    other way round."""
    has = (labels[:, attribute] > 0.5).nonzero().squeeze(1)
    lacks = (labels[:, attribute] <= 0.5).nonzero().squeeze(1)
    a, b = has[torch.randint(len(has), (n,))], lacks[torch.randint(len(lacks), (n,))]
    flip = torch.rand(n) < 0.5
    return torch.where(flip, a, b), torch.where(flip, b, a)


def held_still(labels: torch.Tensor, correlated: float) -> list[list[int]]:
    """For each attribute, the others an edit of it must not move: those whose labels correlate with it by at most
    `correlated` (|Pearson r| over the training labels; constant columns count as uncorrelated)."""
    r = torch.nan_to_num(torch.corrcoef(labels.T), nan=0.0).abs()
    return [[j for j in range(len(r)) if j != i and r[i, j] <= correlated] for i in range(len(r))]


def train_edit_transformer(cfg: ReferenceEditConfig, classifier: LatentAttributeClassifier, codes: torch.Tensor,
                           labels: torch.Tensor, attributes: list[int]) -> EditTransformer:
    torch.manual_seed(cfg.seed)
    model = EditTransformer(codes.shape[-1], n_attributes=labels.shape[1])
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.edit_lr)
    hard = (labels > 0.5).float()
    weights = tuple(float(w) for w in cfg.edit_weights.split(","))
    keep = held_still(hard, cfg.correlated)
    for step in range(cfg.edit_steps):
        attribute = attributes[step % len(attributes)]
        source, reference = differing_pairs(hard, attribute, cfg.edit_batch)
        source, reference = codes[source].float(), codes[reference].float()
        edited = model(source, reference, torch.full((cfg.edit_batch,), attribute))
        loss, terms = reference_edit_loss(classifier, source, reference, edited, attribute, weights, keep[attribute])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 500 == 0 or step == cfg.edit_steps - 1:
            print(f"edit transformer step {step} ({CELEBA_ATTRIBUTES[attribute]}): "
                  + ", ".join(f"{k} {v:.4f}" for k, v in terms.items()), flush=True)
    return model.eval().requires_grad_(False)


def train(cfg: ReferenceEditConfig) -> Path:
    """Encode (once), train both models, write them into one float16 file with their accuracy table."""
    started = time.perf_counter()
    generator_file = resolve(cfg.generator)
    G = load_generator(cfg.generator).eval().requires_grad_(False)
    model = load_encoder(cfg.encoder, generator=cfg.generator, decoder=G)
    labels = read_labels(cfg.labels)
    codes, targets = encode_split(cfg, "train", model, labels)
    heldout_codes, heldout_labels = encode_split(cfg, "heldout", model, labels)
    if cfg.synthetic:
        fake_codes, fake_labels = synthetic_codes(cfg, G)
        codes, targets = torch.cat([codes, fake_codes]), torch.cat([targets, fake_labels])
    print(f"{len(codes)} codes ({cfg.synthetic} synthetic), {len(heldout_codes)} held out; "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    cached = Path(cfg.cache) / f"classifier-{cfg.hidden}-{cfg.classifier_steps}-{cfg.synthetic}-{cfg.seed}.safetensors"
    if cached.is_file():  # the same classifier: only the edit transformer is retrained
        classifier = LatentAttributeClassifier(classifier_widths(cfg, codes), n_classes=targets.shape[1])
        classifier = classifier.eval().requires_grad_(False)
        classifier.load_state_dict(load_file(str(cached)))
    else:
        classifier = train_latent_classifier(cfg, codes, targets)
        save_file(classifier.state_dict(), str(cached))
    table = accuracy_table(classifier, heldout_codes, heldout_labels)
    attributes = [CELEBA_ATTRIBUTES.index(name) for name in cfg.attributes.split(",")]
    editor = train_edit_transformer(cfg, classifier, codes, targets, attributes)
    tensors = {f"classifier.{k}": v for k, v in half(classifier.state_dict()).items()}
    tensors |= {f"edit.{k}": v for k, v in half(editor.state_dict()).items()}
    encoder_file = resolve(cfg.encoder)
    meta = {"classifier_widths": json.dumps(
        list(classifier_widths(cfg, codes))), "n_styles": str(codes.shape[1]),
        "style_dim": str(codes.shape[2]), "attributes": json.dumps(list(CELEBA_ATTRIBUTES)),
        "trained_attributes": cfg.attributes, "generator_sha256": sha256_of(generator_file),
        "heldout_accuracy": json.dumps(table),
        "config": json.dumps(asdict(cfg)), "cpu_minutes": f"{(time.perf_counter() - started) / 60:.1f}"}
    return artifacts.write(cfg.out, "reference_edit", tensors, meta, made_for=encoder_file)
