"""Train DualStyleGAN for a frozen face generator on a folder of style images (`python -m core train dualstylegan`).

The paper's pipeline (Yang et al., CVPR 2022), one phase after another in `out/`; a phase whose result exists is
skipped and a phase cut short by the time budget resumes, so a run spans several short GPU calls:

1. `styles.npz` -- the style images aligned like photos (dlib landmarks; a style the detector misses is centre-cropped
   instead, and the counts are logged) at the generator's size.
2. `finetune/` -- a copy of the generator fine-tuned on them with the StyleGAN2 trainer (ADA), its discriminator
   started from a face discriminator when one is given: G' draws the style (toonification).
3. `codes.safetensors` -- facial destylisation. Each style image S is encoded by the face model's Z+ encoder, the code
   optimised so that G' reconstructs S (LPIPS + L2, plus the spread of the code across layers, which keeps it a
   plausible face code), and rendered by the face generator: the destylised face. Its encoding is the exemplar's
   intrinsic code; the optimised code is its extrinsic code (Z+, mapped by the face generator's mapping network,
   as the official `style_transfer.py` does).
4. `pretrain/` -- progressive fine-tuning stage II, structure transfer in the face domain: for faces w1, w2,
   DualStyleGAN(w1, extrinsic w2, weight 1 on the layers <= l) must draw the face generator's image of w2's first
   l + 1 layers with w1's others (LPIPS + L2); l grows from 0 to `res_index`. It depends only on the generator, so
   it is trained once and shipped (`face128-dualstylegan-stage2`, `export_stage2`): a style run starts from it.
5. `style/` -- stage III on the style: each S is reconstructed (LPIPS) from its intrinsic code, colour layers
   drawn afresh, and its jittered extrinsic code; random faces with random exemplars, at a random structure weight,
   must fool the style discriminator of step 2 (adversarial, lazy R1), match the exemplar's feature statistics
   (AlexNet's first layers) and stay the same person (FaceNet, as the encoders' identity loss), and the ModRes
   weights stay small (the paper's L_reg). `ExtrinsicTrainer.style_loss` says why each differs from version 1.

Only the extrinsic path trains (structure MLP, ModRes blocks, colour transforms); DualStyleGAN starts as the face
generator exactly and stays it at weight 0. `export_style` ships the extrinsic path (int8 weights with per-row
scales) and the exemplar codes as one file that `core.style` loads over the base generator.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from core import artifacts, identity
from core.artifacts import KINDS, sha256_of
from core.data import list_photos
from core.faces import from_uint8, to_uint8
from core.measures import get_lpips, lpips_distance
from core.nets.dualstylegan import DualStyleGAN
from core.nets.ops import dequantise_int8, quantise_int8
from core.nets.stylegan2 import Generator
from core.registry import REGISTRY, load_encoder, load_generator, made_for, resolve, resolve_kind
from core.runtime import bf16
from core.style import align_exemplar
from core.training.augment import AdaptiveDiffAugment
from core.training.data import DeviceImageBank
from core.training.loss import discriminator_loss, generator_loss, r1_penalty
from core.training.scaffold import (
    RunConfig,
    StepMeans,
    full,
    half,
    read_parts,
    run,
    save_image_grid,
    setup_distributed,
    write_parts,
)
from core.training.stylegan2 import TrainConfig, Trainer


@dataclass
class DualStyleGANConfig(RunConfig):
    """Every knob of the pipeline; loss weights as the paper's where they carry over."""

    styles: str = ""  # a folder of style images (any size; aligned here, centre-cropped when no face is found); ''
        # = stage II only, which depends on the generator alone and is exported as OUT/stage2.safetensors
    name: str = ""  # the style's name ('' = the folder's)
    generator: str = "default"  # the face generator (frozen), registry name or file
    encoder: str = "face128-psp-zplus"  # its Z+ encoder (registry name or file)
    discriminator: str = ""  # face discriminator weights (compact folder with D-*.safetensors) for G' ('' = fresh)
    pretrained: str = ""  # stage II: '' = the registry's for the generator (else trained here), a shipped file
        # (`export_stage2`), a `pretrain/` folder of another run, or 'train' (train it in out/pretrain)
    facenet: str = ""  # FaceNet weights for the identity loss ('' = the converted cache)
    out: str = "runs/dualstylegan"  # output folder: styles.npz, finetune/, codes.safetensors, pretrain/, style/,
        # NAME.safetensors
    stop_after: str = ""  # align | finetune | codes: stop after that phase (align needs dlib, which a GPU machine
        # lacks; a GPU call may lack what the next phase needs)
    res_index: int = 6  # ModRes blocks after convs 0..res_index (structure), colour transforms above
    batch: int = 16
    amp: bool = True  # bf16 autocast (GPU)
    # 2. fine-tuning G' on the styles
    finetune_kimg: float = 20.0
    finetune_lr: float = 0.002
    # 3. destylisation
    destylize_steps: int = 300
    destylize_lr: float = 0.05
    destylize_spread: float = 0.5  # weight of the code's spread across layers (std over layers, mean over dims)
    # 4. stage II
    pretrain_kimg: float = 200.0
    # 5. stage III
    style_kimg: float = 30.0
    lr: float = 0.002
    l2: float = 1.0  # stage II: pixel L2 beside LPIPS
    lpips: float = 1.0  # stage II's reconstruction, and stage III's exemplars (LPIPS only: no pixel loss)
    adversarial: float = 0.1
    identity: float = 1.0  # FaceNet 1 - cosine between the face and its stylisation (0: off)
    style_loss: float = 1.0  # feature mean / std matching with the exemplar
    style_layers: int = 2  # ... on AlexNet's first layers only: deeper statistics carry the exemplar's face itself
    jitter: float = 0.1  # std of the noise on an exemplar's extrinsic Z+ code when it is rebuilt (the paper's)
    modres_l2: float = 0.015  # x the sum of the ModRes weights' norms (the paper's L_reg)
    r1: float = 0.1
    kimg: float = 0.0  # unused here: each phase has its own length (--finetune-kimg, --pretrain-kimg, --style-kimg)
    sample_minutes: float = 2.0

    @property
    def style_name(self) -> str:
        return self.name or Path(self.styles).name


# ----------------------------------------------------------------------------------------------------
# 1. Aligned style images


def align_styles(folder: str | Path, size: int) -> tuple[np.ndarray, list[str], list[bool]]:
    """Every image of `folder` as `core.style.align_exemplar` crops it -> (uint8 [N, size, size, 3], names, aligned
    by landmarks?): no exemplar is lost to a detector that misses a drawn face, and the caller reports how many."""
    pixels, names, aligned = [], [], []
    for path in list_photos(folder):
        image, found = align_exemplar(path, size)
        pixels.append(np.asarray(image))
        names.append(path.name)
        aligned.append(found)
    if not pixels:
        raise FileNotFoundError(f"no images in {folder}")
    return np.stack(pixels), names, aligned


# ----------------------------------------------------------------------------------------------------
# 2. G' fine-tuned on the styles


def finetune_config(cfg: DualStyleGANConfig, G: Generator) -> TrainConfig:
    g = G.config
    return TrainConfig(size=g["size"], style_dim=g["style_dim"], n_mlp=g["n_mlp"], channel_base=g["channel_base"],
                       channel_max=g["channel_max"], batch=cfg.batch, lr=cfg.finetune_lr, kimg=cfg.finetune_kimg,
                       minutes=cfg.minutes, out=str(Path(cfg.out) / "finetune"), ada_kimg=20.0, amp=cfg.amp,
                       log_kimg=cfg.log_kimg, sample_minutes=cfg.sample_minutes, seed=cfg.seed, device=cfg.device)


def finetune(cfg: DualStyleGANConfig, G: Generator, styles: torch.Tensor, device: torch.device,
             start: float) -> Trainer:
    """Toonify: G and a discriminator trained on the style images, starting from the face generator (and D)."""
    tcfg = finetune_config(cfg, G)
    bank = DeviceImageBank(styles.permute(0, 3, 1, 2).contiguous().to(device), seed=cfg.seed)
    trainer = Trainer(tcfg, device, data=bank)
    compact = Path(tcfg.out) / "compact"
    if (compact / "meta.json").exists():
        trainer.load_compact(compact)
    else:
        for net in (trainer.G, trainer.G_ema):
            net.load_state_dict(G.state_dict())
        if cfg.discriminator:
            trainer.D.load_state_dict(full(read_parts(Path(cfg.discriminator), "D")))
    if trainer.nimg < tcfg.kimg * 1000:
        run(trainer, tcfg, start)
    return trainer


# ----------------------------------------------------------------------------------------------------
# 3. Destylisation


def destylize(cfg: DualStyleGANConfig, G: Generator, G_style: Generator, encoder, styles: torch.Tensor,
              device: torch.device) -> dict[str, torch.Tensor]:
    """Exemplar codes: {'extrinsic': Z+ [N, L, D] (optimised on G'), 'intrinsic': Z+ of the destylised faces,
    'destylized': those faces as uint8 [N, S, S, 3], 'lpips': G'(extrinsic) against S}."""
    targets = from_uint8(styles).to(device)
    with torch.no_grad():
        start = torch.cat([encoder.encode(chunk) for chunk in targets.split(64)])
    code = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=cfg.destylize_lr)
    for step in range(cfg.destylize_steps):
        lr = cfg.destylize_lr * min(1.0, 0.5 * (1 + math.cos(math.pi * step / cfg.destylize_steps)) * 1.2)
        for group in opt.param_groups:
            group["lr"] = lr
        image = G_style.synthesis(G_style.map_zplus(code), noise_mode="const")
        loss = (lpips_distance(image, targets).mean() + F.mse_loss(image, targets)
                + cfg.destylize_spread * code.std(1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        code = code.detach()
        reconstruction = G_style.synthesis(G_style.map_zplus(code), noise_mode="const")
        faces = torch.cat([G.synthesis(G.map_zplus(chunk), noise_mode="const") for chunk in code.split(64)])
        intrinsic = torch.cat([encoder.encode(chunk) for chunk in faces.split(64)])
        distance = lpips_distance(reconstruction, targets)
    return {"extrinsic": code.cpu(), "intrinsic": intrinsic.cpu(), "destylized": to_uint8(faces).contiguous(),
            "lpips": distance.cpu()}


# ----------------------------------------------------------------------------------------------------
# 4-5. Progressive fine-tuning of the extrinsic path


def extrinsic_state(model: DualStyleGAN) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("generator.")}


def extrinsic_parameters(model: DualStyleGAN) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if not n.startswith("generator.")]


class ExtrinsicTrainer:
    """Stage II (`stage='pretrain'`, face domain) or III (`'style'`, with exemplars and a style discriminator)."""

    def __init__(self, cfg: DualStyleGANConfig, stage: str, G: Generator, device: torch.device, *,
                 codes: dict | None = None, styles: torch.Tensor | None = None, D: torch.nn.Module | None = None):
        self.cfg, self.stage, self.device, self.rank = cfg, stage, device, 0
        self.G = G.eval().requires_grad_(False)
        torch.manual_seed(cfg.seed)
        self.model = DualStyleGAN.over(G, res_index=cfg.res_index).to(device)
        self.params = extrinsic_parameters(self.model)
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, betas=(0.0, 0.99), fused=device.type == "cuda")
        self.n = G.n_latent
        self.nimg = self.step_index = 0
        self.means = StepMeans(device)
        self.sample_w = G.mapping(torch.randn(8, G.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(
            device), truncation_psi=0.7)
        if stage == "style":
            self.styles = from_uint8(styles).to(device)
            self.intrinsic = codes["intrinsic"].float().to(device)  # Z+, mapped per step (after the jitter)
            self.extrinsic = codes["extrinsic"].float().to(device)
            self.D = D.to(device).train().requires_grad_(True)
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(0.0, 0.99),
                                          fused=device.type == "cuda")
            self.augment = AdaptiveDiffAugment(p=0.2, adaptive=True, speed_kimg=20.0).to(device)
            self.alex = get_lpips("alex", device).eval().requires_grad_(False)
            self.facenet = None
            if cfg.identity > 0:
                from core.nets.facenet import load_facenet

                self.facenet = load_facenet(cfg.facenet or None, device=device).eval().requires_grad_(False)

    def to_w(self, z_plus: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.G.map_zplus(z_plus)

    def faces(self, n: int, psi: float = 0.7) -> torch.Tensor:
        with torch.no_grad():
            return self.G.mapping(torch.randn(n, self.G.style_dim, device=self.device), truncation_psi=psi)

    def render(self, w: torch.Tensor, extrinsic: torch.Tensor | None, weights: list[float]) -> torch.Tensor:
        noise = self.G.noise_maps("const", w.shape[0], self.device)
        w = w if w.ndim == 3 else w.unsqueeze(1).expand(-1, self.n, -1)
        return self.model.synthesis(w, extrinsic, weights, self.n, noise).float()

    @property
    def structure_layers(self) -> int:
        """Stage II: how many coarse layers (from 0) the extrinsic face may change at this point of training."""
        progress = self.nimg / max(self.cfg.pretrain_kimg * 1000, 1)
        return min(self.cfg.res_index + 1, 1 + int(progress * 1.5 * (self.cfg.res_index + 1)))

    def reconstruction_loss(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with bf16(self.cfg.amp, self.device):
            perceptual = lpips_distance(image, target).float().mean()
        l2 = F.mse_loss(image, target)
        self.means.add("lpips", perceptual)
        self.means.add("l2", l2)
        return self.cfg.lpips * perceptual + self.cfg.l2 * l2

    def step(self) -> None:
        loss = self.pretrain_loss() if self.stage == "pretrain" else self.style_loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.means.add("loss", loss)
        if self.stage == "style":
            self.discriminator_step()
        self.nimg += self.cfg.batch
        self.step_index += 1

    def pretrain_loss(self) -> torch.Tensor:
        """DualStyleGAN(w1, ex w2, 1 on layers <= l) against g(w2 on layers <= l, w1 above), l per sample."""
        b = self.cfg.batch
        w1, w2 = self.faces(b, psi=1.0), self.faces(b, psi=1.0)
        layers = torch.randint(0, self.structure_layers, (), device="cpu").item()
        mixed = torch.cat([w2[:, None].expand(-1, layers + 1, -1), w1[:, None].expand(-1, self.n - layers - 1, -1)], 1)
        with torch.no_grad(), bf16(self.cfg.amp, self.device):
            target = self.G.synthesis(mixed, noise_mode="const").float()
        weights = [1.0] * (layers + 1) + [0.0] * (self.n - layers - 1)
        with bf16(self.cfg.amp, self.device):
            image = self.render(w1, w2, weights)
        return self.reconstruction_loss(image, target)

    def feature_statistics(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        features = self.alex.net(self.alex.scaling_layer(images))[: self.cfg.style_layers]
        return [(f.float().mean((2, 3)), f.float().std((2, 3))) for f in features]

    def style_loss(self) -> torch.Tensor:
        """Stage III as the paper's Eq. 4-6, one batch of each kind per step.

        Exemplars: each S rebuilt from its (intrinsic, extrinsic) pair, the extrinsic code jittered (N(0, jitter) in
        Z+) and the intrinsic code's colour layers drawn afresh, so the path cannot memorise S from its code (LPIPS;
        no pixel loss). Random faces with random exemplars, at a structure weight drawn from [0, 1] (every slider
        position is trained, not only 1): adversarial, AlexNet feature statistics of the first `style_layers`
        layers, FaceNet identity to the face. The ModRes weights' norms keep the structure path near stage II."""
        cfg, b = self.cfg, self.cfg.batch
        pick = torch.randint(len(self.styles), (b,), device=self.device)
        extrinsic = self.to_w(self.extrinsic[pick] + cfg.jitter * torch.randn_like(self.extrinsic[pick]))
        fine = self.model.res_index + 1
        intrinsic = self.to_w(torch.cat([self.intrinsic[pick, :fine], torch.randn_like(self.intrinsic[pick, fine:])],
                                        1))
        with bf16(self.cfg.amp, self.device):
            rebuilt = self.render(intrinsic, extrinsic, [1.0] * self.n)
            perceptual = lpips_distance(rebuilt, self.styles[pick]).float().mean()
        self.means.add("lpips", perceptual)
        loss = cfg.lpips * perceptual
        w = self.faces(b)
        structure = torch.rand(()).item()
        with bf16(self.cfg.amp, self.device):
            fake = self.render(w, self.to_w(self.extrinsic[pick]), self.model.blend_weights(structure, 1.0))
            adversarial = generator_loss(self.D(self.augment(fake)))
            with torch.no_grad():
                self.last_fake = fake.detach()
            fake_stats = self.feature_statistics(fake)
            with torch.no_grad():
                real_stats = self.feature_statistics(self.styles[pick])
        style = sum(F.mse_loss(m, rm) + F.mse_loss(s, rs) for (m, s), (rm, rs) in zip(fake_stats, real_stats,
                                                                                       strict=True))
        loss = loss + cfg.adversarial * adversarial + cfg.style_loss * style
        self.means.add("adv", adversarial)
        self.means.add("style", style)
        if self.facenet is not None:
            with torch.no_grad(), bf16(self.cfg.amp, self.device):
                face = self.G.synthesis(w, noise_mode="const").float()
            crops = identity.standardise(identity.crop(torch.cat([fake.float(), face])))
            with bf16(self.cfg.amp, self.device):
                a, f = self.facenet(crops).float().chunk(2)
            kept = (1 - F.cosine_similarity(a, f.detach(), dim=1)).mean()
            loss = loss + cfg.identity * kept
            self.means.add("id_loss", kept)
        if cfg.modres_l2:
            norms = sum(p.norm() for block in self.model.res[: cfg.res_index + 1] for p in block.parameters())
            loss = loss + cfg.modres_l2 * norms
            self.means.add("modres_norm", norms)
        return loss

    def discriminator_step(self) -> None:
        real = self.styles[torch.randint(len(self.styles), (self.cfg.batch,), device=self.device)]
        real = torch.where(torch.rand(len(real), 1, 1, 1, device=self.device) < 0.5, real, real.flip(3))
        real = self.augment(real)
        with bf16(self.cfg.amp, self.device):
            fake_logits, real_logits = self.D(self.augment(self.last_fake)), self.D(real)
            loss = discriminator_loss(fake_logits, real_logits)
        if self.step_index % 16 == 0:
            penalty, logits = r1_penalty(self.D, real)
            loss = loss + penalty * (self.cfg.r1 / 2) * 16 + 0 * logits.float().sum()
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        self.augment.observe(real_logits)
        if self.step_index % 4 == 3:
            self.augment.adjust(self.cfg.batch * 4)
        self.means.add("loss_D", loss)

    def pop_stats(self) -> dict[str, float]:
        values = self.means.pop()
        return values | ({"layers": self.structure_layers} if self.stage == "pretrain" else {"aug_p": float(
            self.augment.p)})

    @torch.no_grad()
    def sample_grid(self, path: str | Path) -> Path:
        """Stage II: faces | their coarse layers swapped in by the extrinsic path. III: faces x 4 exemplars."""
        w = self.sample_w
        rows = [self.G.synthesis(w, noise_mode="const")]
        if self.stage == "pretrain":
            other = w.roll(1, 0)
            rows.append(self.render(w, other, [1.0] * (self.cfg.res_index + 1) + [0.0] * (self.n - self.cfg.res_index
                                                                                         - 1)))
        else:
            for i in torch.linspace(0, len(self.styles) - 1, 4).long().tolist():
                rows.append(self.render(w, self.to_w(self.extrinsic[i : i + 1]).expand(len(w), -1, -1),
                                        self.model.blend_weights(0.6, 1.0)))
        return save_image_grid(torch.cat(rows).float().clamp(-1, 1), path)

    def save(self, folder: Path) -> None:
        compact = Path(folder) / "compact"
        compact.mkdir(parents=True, exist_ok=True)
        write_parts(compact, "extrinsic", half(extrinsic_state(self.model)), self.cfg.part_bytes)
        if self.stage == "style":
            write_parts(compact, "D", half(self.D.state_dict()), self.cfg.part_bytes)
        meta = {"nimg": self.nimg, "step": self.step_index, "stage": self.stage,
                "config": dataclasses.asdict(self.cfg), "generator_sha256": sha256_of(resolve(self.cfg.generator))}
        if self.stage == "style":  # the adaptive augmentation's p resumes where it was, not at its start value
            meta["augment_p"] = float(self.augment.p)
        (compact / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    def load(self, folder: str | Path) -> None:
        """Resume from `save`'s compact folder."""
        folder = Path(folder)
        self.model.load_state_dict(full(dequantise_int8(read_parts(folder, "extrinsic"))), strict=False)
        meta = json.loads((folder / "meta.json").read_text())
        if self.stage == "style" and (tensors := read_parts(folder, "D")) is not None:
            self.D.load_state_dict(full(tensors))
        if self.stage == "style" and "augment_p" in meta:
            self.augment.p.fill_(meta["augment_p"])
        self.nimg, self.step_index = meta["nimg"], meta["step"]
        torch.manual_seed(self.cfg.seed + self.nimg)


def phase_done(folder: Path, kimg: float) -> bool:
    meta = folder / "compact" / "meta.json"
    return meta.exists() and json.loads(meta.read_text())["nimg"] >= kimg * 1000


def stage2_source(cfg: DualStyleGANConfig) -> str:
    """Where stage II comes from: `cfg.pretrained`, or the registry's stage II made for the generator, or 'train'."""
    if cfg.pretrained:
        return cfg.pretrained
    try:
        return made_for("dualstylegan_stage2", cfg.generator)
    except KeyError:
        return "train"


def stage2_kimg(cfg: DualStyleGANConfig) -> float:
    """How long the stage II a style started from trained: a shipped file says so in its metadata."""
    source = stage2_source(cfg)
    if source in REGISTRY or Path(source).suffix == ".safetensors":
        path = resolve_kind(source, KINDS["dualstylegan_stage2"].registry)
        return float(artifacts.read(path, "dualstylegan_stage2", tensors=False)[1]["kimg"])
    return cfg.pretrain_kimg


def pretrain(cfg: DualStyleGANConfig, G: Generator, device: torch.device, start: float
             ) -> dict[str, torch.Tensor] | None:
    """Stage II's extrinsic weights: read from a shipped file, or trained in a folder (`cfg.pretrained`, else
    `out/pretrain`) until done; None when time ran out."""
    source = stage2_source(cfg)
    if source in REGISTRY or Path(source).suffix == ".safetensors":
        return read_stage2(source, cfg.generator)
    folder = Path(source) if source != "train" else Path(cfg.out) / "pretrain"
    if not phase_done(folder, cfg.pretrain_kimg):
        stage2 = ExtrinsicTrainer(cfg, "pretrain", G, device)
        if (folder / "compact" / "meta.json").exists():
            stage2.load(folder / "compact")
        run(stage2, dataclasses.replace(cfg, kimg=cfg.pretrain_kimg, out=str(folder)), start)
        if stage2.nimg < cfg.pretrain_kimg * 1000:
            return None
    return full(dequantise_int8(read_parts(folder / "compact", "extrinsic")))


def int8_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Matrices as int8 with per-row float16 scales, the rest float16: what a shipped extrinsic path stores."""
    tensors = {}
    for key, value in full(dequantise_int8(state)).items():
        if value.ndim >= 2:
            tensors[key], tensors[f"{key}.scale"] = quantise_int8(value)
        else:
            tensors[key] = value.half()
    return tensors


def export_stage2(folder: str | Path, path: str | Path) -> Path:
    """A finished stage II (`pretrain/` folder) as one shipped file: the int8 extrinsic path and, in the metadata,
    the base generator's sha256, `res_index` and the kimg it trained."""
    compact = Path(folder) / "compact"
    meta = json.loads((compact / "meta.json").read_text())
    info = {"res_index": str(meta["config"]["res_index"]), "kimg": str(round(meta["nimg"] / 1000, 1)),
            "config": json.dumps(meta["config"])}
    return artifacts.write(path, "dualstylegan_stage2", int8_state(read_parts(compact, "extrinsic")), info,
                           made_for_sha256=meta["generator_sha256"])


def read_stage2(name_or_path: str, generator: str) -> dict[str, torch.Tensor]:
    """A shipped stage II's extrinsic weights, refused with "retrain" when it was made for another generator."""
    path = resolve_kind(name_or_path, KINDS["dualstylegan_stage2"].registry)
    tensors, _ = artifacts.read(path, "dualstylegan_stage2", made_for=resolve(generator))
    return full(dequantise_int8(tensors))


def train(cfg: DualStyleGANConfig) -> Path | None:
    """Run the phases that are not done yet within `cfg.minutes`; returns the exported style file when all are.
    Without `cfg.styles` only stage II runs (it depends on the generator alone; style runs reuse it)."""
    import time

    start = time.time()
    _, _, device = setup_distributed(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    G = load_generator(cfg.generator, device).requires_grad_(False)
    if not cfg.styles:  # stage II alone: exported as the file style runs start from
        folder = Path(cfg.pretrained) if cfg.pretrained not in ("", "train") else out / "pretrain"
        done = pretrain(dataclasses.replace(cfg, pretrained=str(folder)), G, device, start)
        return None if done is None else export_stage2(folder, out / "stage2.safetensors")
    styles_file = out / "styles.npz"
    if not styles_file.exists():
        pixels, names, aligned = align_styles(cfg.styles, G.size)
        np.savez_compressed(styles_file, pixels=pixels, names=np.array(names), aligned=np.array(aligned))
        print(f"{len(names)} style images: {sum(aligned)} aligned by landmarks, {len(names) - sum(aligned)} "
              "centre-cropped (no face found)", flush=True)
    if cfg.stop_after == "align":
        return None
    with np.load(styles_file) as saved:
        styles = torch.from_numpy(saved["pixels"])

    tuner = finetune(cfg, G, styles, device, start)
    if tuner.nimg < cfg.finetune_kimg * 1000 or cfg.stop_after == "finetune":
        return None
    codes_file = out / "codes.safetensors"
    if not codes_file.exists():
        encoder = load_encoder(cfg.encoder, device, generator=cfg.generator, decoder=G).eval()
        if encoder.latent_space != "z+":
            raise ValueError(f"{cfg.encoder} encodes into {encoder.latent_space}; destylisation needs a Z+ encoder")
        save_file(destylize(cfg, G, tuner.G_ema.requires_grad_(False), encoder, styles, device), str(codes_file))
    codes = load_file(str(codes_file))
    if cfg.stop_after == "codes":
        return None
    pretrained = pretrain(cfg, G, device, start)
    if pretrained is None:
        return None
    stage3 = ExtrinsicTrainer(cfg, "style", G, device, codes=codes, styles=styles, D=tuner.D)
    style_dir = out / "style"
    if (style_dir / "compact" / "meta.json").exists():
        stage3.load(style_dir / "compact")
    else:
        stage3.model.load_state_dict(pretrained, strict=False)
    run(stage3, dataclasses.replace(cfg, kimg=cfg.style_kimg, out=str(style_dir)), start)
    if stage3.nimg < cfg.style_kimg * 1000:
        return None
    return export_style(out, out / f"{cfg.style_name}.safetensors")


# ----------------------------------------------------------------------------------------------------
# Shipping a style


def export_style(out: str | Path, path: str | Path) -> Path:
    """One file per style: the trained extrinsic path (matrices as int8 with per-row float16 scales, the rest
    float16), the exemplars' extrinsic and intrinsic Z+ codes (float16), their file names, and in the metadata the
    base generator's sha256, `res_index`, and how the style images were aligned."""
    out = Path(out)
    meta = json.loads((out / "style" / "compact" / "meta.json").read_text())
    cfg = meta["config"]
    tensors = int8_state(read_parts(out / "style" / "compact", "extrinsic"))
    codes = load_file(str(out / "codes.safetensors"))
    with np.load(out / "styles.npz") as saved:
        names, aligned = [str(n) for n in saved["names"]], saved["aligned"].tolist()
    tensors["exemplars.extrinsic"] = codes["extrinsic"].half()
    tensors["exemplars.intrinsic"] = codes["intrinsic"].half()
    info = {"style": cfg["name"] or Path(cfg["styles"]).name, "res_index": str(cfg["res_index"]),
            "exemplars": json.dumps(names), "aligned_by_landmarks": str(sum(aligned)),
            "kimg": json.dumps({"finetune": cfg["finetune_kimg"], "pretrain": stage2_kimg(DualStyleGANConfig(**cfg)),
                                "style": round(meta["nimg"] / 1000, 1)})}
    return artifacts.write(path, "style", tensors, info, made_for_sha256=meta["generator_sha256"])

