"""Train reference-based editing for a Style Transformer encoder (Hu et al. 2022, Sec. 3.3), which its authors never
released: the latent attribute classifier over W+ and the edit transformer it supervises
(`python -m core train reference-edit`).

Both models see codes only, never images, so the CPU suffices: the slow part is encoding the photos once.
- Codes: the encoder's W+ of the prepared CelebA train faces, labelled by their photos' CelebA labels or (`--labels-from
  reconstruction`) by the project's image attribute classifier on each code's reconstruction, plus generator samples
  (`encoder.sample_wplus`) labelled by that classifier (probabilities as soft labels).
- Latent classifier (`LatentAttributeClassifier`, the official LCNet layout, narrower): binary cross-entropy on
  the 40 attributes; its accuracy is reported per attribute on the encoded held-out faces.
- Edit transformer (one model for every attribute, `EditTransformer(n_attributes=40)`): for a step's attribute,
  sources and references whose labels differ on it; the paper's loss (`reference_edit_loss`: stay near the source
  code, take the reference's embedding of the attribute, keep the source's embeddings of the others).

Both phases are trainers on the scaffold's run loop (log.jsonl, time budget, resume from `compact/`) in folders of
the run folder, named by the options that shape them, so a rerun with the same options skips or resumes them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import artifacts
from core.artifacts import sha256_of
from core.attributes import CELEBA_ATTRIBUTES, load_attribute_classifier
from core.data import decode_shard, shard_paths
from core.faces import from_uint8
from core.nets.style_transformer import EditTransformer, LatentAttributeClassifier, reference_edit_loss
from core.nets.stylegan2 import Generator
from core.registry import load_encoder, load_generator, resolve
from core.training.attributes import read_labels
from core.training.encoder import sample_wplus
from core.training.scaffold import (
    RunConfig,
    StepMeans,
    full,
    half,
    read_parts,
    resume_and_run,
    save_image_grid,
    setup_distributed,
    write_parts,
)

EDIT_ATTRIBUTES = ("Smiling", "Eyeglasses", "Black_Hair", "Blond_Hair", "Young", "Male", "Bangs", "Mouth_Slightly_Open")


@dataclass
class ReferenceEditConfig(RunConfig):
    """Every knob of a run; the defaults trained the shipped `face128-reference-edit` (its card says which)."""

    encoder: str = "face128-style-transformer"  # whose codes are edited (registry name or file)
    generator: str = "default"  # the generator the encoder was trained for (registry name or file)
    data: str = ""  # prepared shards: train-*.npz (codes to train on), heldout-*.npz (accuracy); required
    labels: str = ""  # CelebA's attributes.csv (file, identity, split, 40 x ±1); required
    labels_from: str = "celeba"  # what the encoded photos' codes are labelled with: "celeba" (the photo's labels) or
        # "reconstruction" (the image classifier's probabilities on the code's image: what the code shows, where the
        # photo's label also counts what the encoder lost, e.g. a blond photo encoded with brown hair)
    synthetic: int = 8000  # generator samples added to the encoded photos (soft labels from the image classifier)
    out: str = "runs/reference-edit.safetensors"  # the exported editor
    run_dir: str = "runs/reference_edit"  # the encoded codes (a rerun skips the encoding) and each phase's folder
    attributes: str = ",".join(EDIT_ATTRIBUTES)  # what the edit transformer learns to take from a reference
    hidden: str = "512,256"  # the latent classifier's shared MLP after the flattened W+
    classifier_steps: int = 4000
    edit_steps: int = 2000
    batch: int = 256  # the latent classifier's
    edit_batch: int = 64  # (source, reference) pairs per edit-transformer step
    lr: float = 1e-3  # the latent classifier's, with cosine decay
    classifier_noise: float = 1.0  # Gaussian noise added to its training codes, in units of each W+ coordinate's
        # spread: smooths the classifier, so the edit transformer cannot satisfy it with offsets the image ignores
    edit_lr: float = 3e-4
    edit_weights: str = "1,1,1"  # the paper's loss terms: stay near the source code, take the reference's
        # embedding of the attribute, keep the source's embeddings of the others
    correlated: float = 1.0  # attributes whose labels correlate with the target's beyond this (|Pearson r|) are not
        # held still: a smile brings an open mouth and high cheekbones (1.0: hold every other one, as the paper)
    exclusive: str = "Black_Hair|Blond_Hair|Brown_Hair|Gray_Hair"  # groups (comma-separated) of attributes CelebA
        # labels one at a time: an edit of one must move the others of its group (blond hair is no longer black),
        # so they are never held still, whatever their correlation
    strength: float = 1.0  # written into the file: how far `ReferenceEdit.edit` scales the offset by default
    log_kimg: float = 32.0  # log a line every this many thousand codes (or pairs)


def cache_file(cfg: ReferenceEditConfig, stem: str, made_by: str) -> Path:
    """`run_dir`/STEM-HASH.npz, HASH from the file (registry name or path) the cached arrays come from, so another
    encoder or generator never reads them."""
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    return Path(cfg.run_dir) / f"{stem}-{sha256_of(resolve(made_by))[:10]}.npz"


def encode_split(cfg: ReferenceEditConfig, split: str, model, labels: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [N, n_latent, D] float16, labels [N, 40] 0/1) of a split's labelled faces, cached in `cfg.run_dir` per
    encoder file."""
    cache = cache_file(cfg, f"codes-{split}", cfg.encoder)
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
    np.savez(cache, codes=result[0].numpy(), labels=result[1].numpy().astype(np.uint8))
    return result


@torch.no_grad()
def synthetic_codes(cfg: ReferenceEditConfig, G: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator samples' W+ [N, n_latent, D] float16 and the image classifier's probabilities [N, 40]."""
    cache = cache_file(cfg, f"codes-synthetic-{cfg.synthetic}", cfg.generator)
    if cache.is_file():
        with np.load(cache) as stored:
            return torch.from_numpy(stored["codes"]), torch.from_numpy(stored["labels"]).float()
    torch.manual_seed(cfg.seed)
    codes = torch.cat([sample_wplus(G, min(64, cfg.synthetic - start)).half()
                       for start in range(0, cfg.synthetic, 64)])
    result = codes, image_probabilities(G, codes)
    np.savez(cache, codes=result[0].numpy(), labels=result[1].numpy())
    return result


@torch.no_grad()
def image_probabilities(G: Generator, codes: torch.Tensor) -> torch.Tensor:
    """The image attribute classifier's probabilities [N, 40] on the codes' images."""
    classifier = load_attribute_classifier()
    return torch.cat([torch.sigmoid(classifier.logits(G.synthesis(chunk.float(), noise_mode="const")))
                      for chunk in codes.split(64)])


def reconstruction_labels(cfg: ReferenceEditConfig, split: str, G: Generator, codes: torch.Tensor) -> torch.Tensor:
    """`image_probabilities` of a split's encoded codes, cached beside them."""
    cache = cache_file(cfg, f"labels-reconstruction-{split}", cfg.encoder)
    if cache.is_file():
        with np.load(cache) as stored:
            return torch.from_numpy(stored["labels"]).float()
    labels = image_probabilities(G, codes)
    np.savez(cache, labels=labels.numpy())
    return labels


def classifier_widths(cfg: ReferenceEditConfig, codes: torch.Tensor) -> tuple[int, ...]:
    """The latent classifier's layer widths: the flattened W+, then `cfg.hidden`."""
    return (codes[0].numel(), *(int(w) for w in cfg.hidden.split(",")))


class LatentClassifierTrainer:
    """The latent attribute classifier: binary cross-entropy on the 40 attributes (soft labels for the synthetic
    codes), Adam with cosine decay over `classifier_steps`."""

    def __init__(self, cfg: ReferenceEditConfig, codes: torch.Tensor, labels: torch.Tensor, device: torch.device):
        torch.manual_seed(cfg.seed)
        self.cfg, self.device, self.rank, self.nimg, self.step_index = cfg, device, 0, 0, 0
        self.codes, self.labels = codes.to(device), labels.to(device)
        self.model = LatentAttributeClassifier(classifier_widths(cfg, codes), n_classes=labels.shape[1]).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.spread = cfg.classifier_noise * self.codes.float().std(0)
        self.means = StepMeans(device)

    def step(self) -> None:
        for group in self.optimiser.param_groups:  # cosine decay, resumable from the step alone
            group["lr"] = self.cfg.lr * 0.5 * (1 + math.cos(math.pi * self.step_index / self.cfg.classifier_steps))
        pick = torch.randint(len(self.codes), (self.cfg.batch,), device=self.device)
        codes = self.codes[pick].float()
        codes = codes + self.spread * torch.randn_like(codes) if self.cfg.classifier_noise else codes
        loss = F.binary_cross_entropy_with_logits(self.model(codes)[0], self.labels[pick])
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        self.means.add("bce", loss)
        self.nimg, self.step_index = self.nimg + self.cfg.batch, self.step_index + 1

    def pop_stats(self) -> dict[str, float]:
        return self.means.pop()

    def save(self, folder: Path) -> None:
        save_phase(folder, {"classifier": self.model}, self)

    def load(self, folder: str | Path) -> None:
        load_phase(folder, {"classifier": self.model}, self)


class EditTransformerTrainer:
    """The edit transformer, one model for every attribute: each step one attribute in turn, sources and references
    whose labels differ on it, the paper's loss through the frozen latent classifier. Its sample grid draws
    held-out sources, references and edits with the generator."""

    def __init__(self, cfg: ReferenceEditConfig, classifier: LatentAttributeClassifier, codes: torch.Tensor,
                 labels: torch.Tensor, attributes: list[int], device: torch.device, G: Generator | None = None,
                 sample_codes: torch.Tensor | None = None):
        torch.manual_seed(cfg.seed)
        self.cfg, self.device, self.rank, self.nimg, self.step_index = cfg, device, 0, 0, 0
        self.classifier, self.codes, self.attributes = classifier.to(device), codes.to(device), attributes
        self.hard = (labels > 0.5).float()
        self.model = EditTransformer(codes.shape[-1], n_attributes=labels.shape[1]).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg.edit_lr)
        self.weights = tuple(float(w) for w in cfg.edit_weights.split(","))
        self.keep = held_still(self.hard, cfg.correlated, exclusive_groups(cfg.exclusive))
        self.means = StepMeans(device)
        self.G, self.sample_codes = G, sample_codes

    def step(self) -> None:
        attribute = self.attributes[self.step_index % len(self.attributes)]
        source, reference = differing_pairs(self.hard, attribute, self.cfg.edit_batch)
        source, reference = self.codes[source.to(self.device)].float(), self.codes[reference.to(self.device)].float()
        edited = self.model(source, reference, torch.full((self.cfg.edit_batch,), attribute, device=self.device))
        loss, terms = reference_edit_loss(self.classifier, source, reference, edited, attribute, self.weights,
                                          self.keep[attribute])
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        for name, value in terms.items():
            self.means.add(name, value)
        self.nimg, self.step_index = self.nimg + self.cfg.edit_batch, self.step_index + 1

    def pop_stats(self) -> dict[str, float]:
        return self.means.pop()

    @torch.no_grad()
    def sample_grid(self, path: str | Path) -> Path | None:
        """Rows: 8 held-out sources, their references (the next source), each edited towards its reference on the
        first trained attribute."""
        if self.G is None or self.sample_codes is None:
            return None
        source = self.sample_codes[:8].float().to(self.device)
        reference = source.roll(1, 0)
        edited = self.model.eval()(source, reference, torch.full((len(source),), self.attributes[0],
                                                                 device=self.device))
        self.model.train()
        images = self.G.synthesis(torch.cat([source, reference, edited]), noise_mode="const")
        return save_image_grid(images.float().clamp(-1, 1), path)

    def save(self, folder: Path) -> None:
        save_phase(folder, {"edit": self.model}, self)

    def load(self, folder: str | Path) -> None:
        load_phase(folder, {"edit": self.model}, self)


def save_phase(folder: Path, nets: dict[str, torch.nn.Module], trainer) -> None:
    compact = Path(folder) / "compact"
    compact.mkdir(parents=True, exist_ok=True)
    for name, net in nets.items():
        write_parts(compact, name, half(net.state_dict()), trainer.cfg.part_bytes)
    (compact / "meta.json").write_text(json.dumps({"nimg": trainer.nimg, "step": trainer.step_index}) + "\n")


def load_phase(folder: str | Path, nets: dict[str, torch.nn.Module], trainer) -> None:
    for name, net in nets.items():
        net.load_state_dict(full(read_parts(Path(folder), name)))
    meta = json.loads((Path(folder) / "meta.json").read_text())
    trainer.nimg, trainer.step_index = meta["nimg"], meta["step"]
    torch.manual_seed(trainer.cfg.seed + trainer.nimg)


def run_phase(trainer, cfg: ReferenceEditConfig, folder: Path, steps: int, batch: int, start: float) -> bool:
    """Resume `trainer` from `folder`, run it to `steps` within the time budget; True when done."""
    return resume_and_run(trainer, replace(cfg, kimg=steps * batch / 1000, batch=batch, out=str(folder)), start)


def phase_folder(cfg: ReferenceEditConfig, phase: str, *fields: str) -> Path:
    """`run_dir`/PHASE-HASH: the hash of the options that shape the phase, so other options start afresh."""
    key = json.dumps({f: getattr(cfg, f) for f in fields}, sort_keys=True)
    return Path(cfg.run_dir) / f"{phase}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


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


def exclusive_groups(spec: str) -> list[set[int]]:
    """'A|B|C,D|E' -> the groups' CELEBA_ATTRIBUTES indices."""
    return [{CELEBA_ATTRIBUTES.index(name) for name in group.split("|")} for group in spec.split(",") if group]


def held_still(labels: torch.Tensor, correlated: float, exclusive: Sequence[set[int]] = ()) -> list[list[int]]:
    """For each attribute, the others an edit of it must not move: those whose labels correlate with it by at most
    `correlated` (|Pearson r| over the training labels; constant columns count as uncorrelated) and that share no
    `exclusive` group with it."""
    r = torch.nan_to_num(torch.corrcoef(labels.T), nan=0.0).abs()
    rivals = [set().union(*(g for g in exclusive if i in g)) for i in range(len(r))]
    return [[j for j in range(len(r)) if j != i and r[i, j] <= correlated and j not in rivals[i]]
            for i in range(len(r))]


CLASSIFIER_OPTIONS = ("encoder", "data", "labels", "labels_from", "synthetic", "hidden", "classifier_steps", "batch",
                      "lr", "seed", "classifier_noise")
EDIT_OPTIONS = (*CLASSIFIER_OPTIONS, "attributes", "edit_steps", "edit_batch", "edit_lr", "edit_weights",
                "correlated", "exclusive")


def train(cfg: ReferenceEditConfig) -> Path | None:
    """Encode (once), train both models (resuming where a run stopped), write them into one float16 file with the
    latent classifier's held-out accuracy table; None when the time budget ran out first."""
    if cfg.labels_from not in ("celeba", "reconstruction"):
        raise ValueError(f"--labels-from {cfg.labels_from!r}: 'celeba' or 'reconstruction'")
    started, clock = time.perf_counter(), time.time()
    _, _, device = setup_distributed(cfg.device)
    generator_file = resolve(cfg.generator)
    G = load_generator(cfg.generator).eval().requires_grad_(False)
    model = load_encoder(cfg.encoder, generator=cfg.generator, decoder=G)
    labels = read_labels(cfg.labels)
    codes, targets = encode_split(cfg, "train", model, labels)
    heldout_codes, heldout_labels = encode_split(cfg, "heldout", model, labels)
    if cfg.labels_from == "reconstruction":
        targets = reconstruction_labels(cfg, "train", G, codes)
    if cfg.synthetic:
        fake_codes, fake_labels = synthetic_codes(cfg, G)
        codes, targets = torch.cat([codes, fake_codes]), torch.cat([targets, fake_labels])
    print(f"{len(codes)} codes ({cfg.synthetic} synthetic), {len(heldout_codes)} held out; "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    first = LatentClassifierTrainer(cfg, codes, targets, device)
    if not run_phase(first, cfg, phase_folder(cfg, "classifier", *CLASSIFIER_OPTIONS), cfg.classifier_steps,
                     cfg.batch, clock):
        return None
    classifier = first.model.eval().requires_grad_(False)
    table = accuracy_table(classifier, heldout_codes.to(device), heldout_labels.to(device))
    attributes = [CELEBA_ATTRIBUTES.index(name) for name in cfg.attributes.split(",")]
    second = EditTransformerTrainer(cfg, classifier, codes, targets, attributes, device, G.to(device), heldout_codes)
    if not run_phase(second, cfg, phase_folder(cfg, "edit", *EDIT_OPTIONS), cfg.edit_steps, cfg.edit_batch, clock):
        return None
    tensors = {f"classifier.{k}": v for k, v in half(classifier.state_dict()).items()}
    tensors |= {f"edit.{k}": v for k, v in half(second.model.eval().state_dict()).items()}
    meta = {"classifier_widths": json.dumps(list(classifier_widths(cfg, codes))), "n_styles": str(codes.shape[1]),
            "style_dim": str(codes.shape[2]), "attributes": json.dumps(list(CELEBA_ATTRIBUTES)),
            "trained_attributes": cfg.attributes, "generator_sha256": sha256_of(generator_file),
            "heldout_accuracy": json.dumps(table), "strength": str(cfg.strength), "config": json.dumps(asdict(cfg)),
            "cpu_minutes": f"{(time.perf_counter() - started) / 60:.1f}"}
    return artifacts.write(cfg.out, "reference_edit", tensors, meta, made_for=resolve(cfg.encoder))
