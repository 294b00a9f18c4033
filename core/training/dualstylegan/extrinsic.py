"""Progressive fine-tuning of DualStyleGAN's extrinsic path: stage II (face domain) and stage III (the style).

Only the extrinsic path trains (structure MLP, ModRes blocks, colour transforms); the face generator is frozen, and
DualStyleGAN over it draws it exactly at weight 0. Both trainers run on the scaffold's loop (`scaffold.run`) and
save the path in float16 parts with a meta.json that says how far they got.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from core import identity
from core.artifacts import sha256_of
from core.faces import from_uint8
from core.measures import get_lpips, lpips_distance
from core.nets.dualstylegan import DualStyleGAN
from core.nets.ops import dequantise_int8
from core.nets.stylegan2 import Generator
from core.registry import resolve
from core.runtime import bf16
from core.training.augment import AdaptiveDiffAugment
from core.training.dualstylegan.config import DualStyleGANConfig
from core.training.loss import discriminator_loss, generator_loss, r1_penalty
from core.training.scaffold import StepMeans, full, half, read_parts, save_image_grid, write_parts


def extrinsic_state(model: DualStyleGAN) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("generator.")}


def read_extrinsic(compact: Path) -> dict[str, torch.Tensor]:
    """The extrinsic path a compact folder holds, float32 (int8 parts, as shipped files have them, dequantised)."""
    return full(dequantise_int8(read_parts(compact, "extrinsic")))


class ExtrinsicTrainer:
    """What both stages share: DualStyleGAN over the frozen face generator, Adam on the extrinsic path, rendering,
    LPIPS, the sample grid's faces and the compact checkpoint. A stage gives `loss` and `sample_rows`."""

    stage = ""  # meta.json's name of the stage

    def __init__(self, cfg: DualStyleGANConfig, G: Generator, device: torch.device):
        self.cfg, self.device, self.rank = cfg, device, 0
        self.G = G.eval().requires_grad_(False)
        torch.manual_seed(cfg.seed)
        self.model = DualStyleGAN.over(G, res_index=cfg.res_index).to(device)
        params = [p for n, p in self.model.named_parameters() if not n.startswith("generator.")]
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.0, 0.99), fused=device.type == "cuda")
        self.n = G.n_latent
        self.nimg = self.step_index = 0
        self.means = StepMeans(device)
        self.sample_w = G.mapping(torch.randn(8, G.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(
            device), truncation_psi=0.7)

    def loss(self) -> torch.Tensor:
        raise NotImplementedError

    def sample_rows(self, w: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

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

    def perceptual(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS (AlexNet), logged as 'lpips'."""
        with bf16(self.cfg.amp, self.device):
            distance = lpips_distance(image, target).float().mean()
        self.means.add("lpips", distance)
        return distance

    def update(self) -> None:
        """One optimiser step of the extrinsic path."""
        loss = self.loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.means.add("loss", loss)

    def step(self) -> None:
        self.update()
        self.nimg += self.cfg.batch
        self.step_index += 1

    def pop_stats(self) -> dict[str, float]:
        return self.means.pop()

    @torch.no_grad()
    def sample_grid(self, path: str | Path) -> Path:
        """The first row the faces, then the stage's rows."""
        w = self.sample_w
        rows = [self.G.synthesis(w, noise_mode="const"), *self.sample_rows(w)]
        return save_image_grid(torch.cat(rows).float().clamp(-1, 1), path)

    def save(self, folder: Path, **meta) -> None:
        """folder/compact: the extrinsic path's parts and meta.json (counters, config, the generator's sha256, and
        `meta`)."""
        compact = Path(folder) / "compact"
        compact.mkdir(parents=True, exist_ok=True)
        write_parts(compact, "extrinsic", half(extrinsic_state(self.model)), self.cfg.part_bytes)
        meta = {"nimg": self.nimg, "step": self.step_index, "stage": self.stage,
                "config": dataclasses.asdict(self.cfg), "generator_sha256": sha256_of(resolve(self.cfg.generator)),
                **meta}
        (compact / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    def load(self, folder: str | Path) -> dict:
        """Resume from `save`'s compact folder; returns its meta.json."""
        folder = Path(folder)
        self.model.load_state_dict(read_extrinsic(folder), strict=False)
        meta = json.loads((folder / "meta.json").read_text())
        self.nimg, self.step_index = meta["nimg"], meta["step"]
        torch.manual_seed(self.cfg.seed + self.nimg)
        return meta


class PretrainTrainer(ExtrinsicTrainer):
    """Stage II, structure transfer in the face domain: for faces w1, w2, DualStyleGAN(w1, extrinsic w2) must draw
    the face generator's image of w1 on some layers and w2 on the others (LPIPS + L2), under one of two schedules:

    - paper (the official pretrain_dualstylegan.py): extrinsic weight 1 on every layer, target w1 below layer k and
      w2 from k on; k = res_index + 1 for the first twelfth of `pretrain_kimg`, res_index for the next, then
      res_index - 1. The exemplar moves the middle structure and the colours; the coarsest layers (pose, face shape)
      stay the face's, which stage III then adapts to the style.
    - coarse (face128's shipped stage II): weight 1 on layers <= l, target w2 on layers <= l and w1 above, the largest
      l drawn growing from 0 to `res_index` within the first two thirds of `pretrain_kimg`: the exemplar's face
      shape and pose come first.
    """

    stage = "pretrain"
    SCHEDULES = ("paper", "coarse")

    def __init__(self, cfg: DualStyleGANConfig, G: Generator, device: torch.device):
        if cfg.pretrain_schedule not in self.SCHEDULES:
            raise ValueError(f"pretrain_schedule {cfg.pretrain_schedule!r}: one of {self.SCHEDULES}")
        super().__init__(cfg, G, device)

    @property
    def progress(self) -> float:
        return self.nimg / max(self.cfg.pretrain_kimg * 1000, 1)

    @property
    def exemplar_from(self) -> int:
        """paper: the first layer the extrinsic face takes at this point of training."""
        return self.cfg.res_index + 1 - min(2, int(self.progress * 12))

    @property
    def structure_layers(self) -> int:
        """coarse: how many coarse layers (from 0) the extrinsic face may change at this point of training."""
        return min(self.cfg.res_index + 1, 1 + int(self.progress * 1.5 * (self.cfg.res_index + 1)))

    def split(self) -> tuple[list[bool], list[float]]:
        """Per layer: does the target take the extrinsic face's w there, and the extrinsic weight; for this step."""
        if self.cfg.pretrain_schedule == "paper":
            k = self.exemplar_from
            return [i >= k for i in range(self.n)], [1.0] * self.n
        layers = torch.randint(0, self.structure_layers, (), device="cpu").item()
        taken = [i <= layers for i in range(self.n)]
        return taken, [float(t) for t in taken]

    def loss(self) -> torch.Tensor:
        """DualStyleGAN(w1, ex w2) against g(w2 on the layers the schedule gives it, w1 on the others)."""
        b = self.cfg.batch
        w1, w2 = self.faces(b, psi=1.0), self.faces(b, psi=1.0)
        taken, weights = self.split()
        mixed = torch.where(torch.tensor(taken, device=self.device).view(1, -1, 1), w2[:, None], w1[:, None])
        with torch.no_grad(), bf16(self.cfg.amp, self.device):
            target = self.G.synthesis(mixed, noise_mode="const").float()
        with bf16(self.cfg.amp, self.device):
            image = self.render(w1, w2, weights)
        perceptual = self.perceptual(image, target)
        l2 = F.mse_loss(image, target)
        self.means.add("l2", l2)
        return self.cfg.lpips * perceptual + self.cfg.l2 * l2

    def pop_stats(self) -> dict[str, float]:
        layers = self.exemplar_from if self.cfg.pretrain_schedule == "paper" else self.structure_layers
        return super().pop_stats() | {"layers": layers}

    def sample_rows(self, w: torch.Tensor) -> list[torch.Tensor]:
        """Each face with the next one's layers swapped in by the extrinsic path, as at the end of the schedule."""
        k = self.cfg.res_index + 1
        weights = [1.0] * self.n if self.cfg.pretrain_schedule == "paper" else [1.0] * k + [0.0] * (self.n - k)
        return [self.render(w, w.roll(1, 0), weights)]


class StyleTrainer(ExtrinsicTrainer):
    """Stage III on the style, the paper's Eq. 4-6 with one batch of each kind a step, started from stage II.

    Exemplars: each S rebuilt from its (intrinsic, extrinsic) pair, the extrinsic code jittered (N(0, jitter) in Z+)
    and the intrinsic code's colour layers drawn afresh, so the path cannot memorise S from its code (LPIPS; no pixel
    loss). Random faces with random exemplars, at a structure weight drawn from [0, 1] (every slider position is
    trained, not only 1): adversarial against G's fine-tuned discriminator (augmented, lazy R1), AlexNet feature
    statistics of the first `style_layers` layers, FaceNet identity to the face. The ModRes weights' norms keep the
    structure path near stage II (the paper's L_reg).
    """

    stage = "style"

    def __init__(self, cfg: DualStyleGANConfig, G: Generator, device: torch.device, codes: dict[str, torch.Tensor],
                 styles: torch.Tensor, D: torch.nn.Module):
        super().__init__(cfg, G, device)
        self.styles = from_uint8(styles).to(device)
        self.intrinsic = codes["intrinsic"].float().to(device)  # Z+, mapped per step (after the jitter)
        self.extrinsic = codes["extrinsic"].float().to(device)
        self.D = D.to(device).train().requires_grad_(True)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(0.0, 0.99), fused=device.type == "cuda")
        self.augment = AdaptiveDiffAugment(p=0.2, adaptive=True, speed_kimg=20.0).to(device)
        self.alex = get_lpips("alex", device).eval().requires_grad_(False)
        self.facenet = None
        if cfg.identity > 0:
            self.facenet = identity.facenet(cfg.facenet or None, device)

    def feature_statistics(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        features = self.alex.net(self.alex.scaling_layer(images))[: self.cfg.style_layers]
        return [(f.float().mean((2, 3)), f.float().std((2, 3))) for f in features]

    def loss(self) -> torch.Tensor:
        cfg, b = self.cfg, self.cfg.batch
        pick = torch.randint(len(self.styles), (b,), device=self.device)
        extrinsic = self.to_w(self.extrinsic[pick] + cfg.jitter * torch.randn_like(self.extrinsic[pick]))
        fine = self.model.res_index + 1
        intrinsic = self.to_w(torch.cat([self.intrinsic[pick, :fine], torch.randn_like(self.intrinsic[pick, fine:])],
                                        1))
        with bf16(cfg.amp, self.device):
            rebuilt = self.render(intrinsic, extrinsic, [1.0] * self.n)
        loss = cfg.lpips * self.perceptual(rebuilt, self.styles[pick])
        w = self.faces(b)
        structure = torch.rand(()).item()
        with bf16(cfg.amp, self.device):
            fake = self.render(w, self.to_w(self.extrinsic[pick]), self.model.blend_weights(structure, 1.0))
            adversarial = generator_loss(self.D(self.augment(fake)))
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
            with torch.no_grad(), bf16(cfg.amp, self.device):
                face = self.G.synthesis(w, noise_mode="const").float()
            crops = identity.standardise(identity.crop(torch.cat([fake.float(), face])))
            with bf16(cfg.amp, self.device):
                a, f = self.facenet(crops).float().chunk(2)
            kept = (1 - F.cosine_similarity(a, f.detach(), dim=1)).mean()
            loss = loss + cfg.identity * kept
            self.means.add("id_loss", kept)
        if cfg.modres_l2:
            norms = sum(p.norm() for block in self.model.res[: cfg.res_index + 1] for p in block.parameters())
            loss = loss + cfg.modres_l2 * norms
            self.means.add("modres_norm", norms)
        return loss

    def update(self) -> None:
        """The extrinsic path's step, then the discriminator's on the fakes it drew."""
        super().update()
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
        return super().pop_stats() | {"aug_p": float(self.augment.p)}

    def sample_rows(self, w: torch.Tensor) -> list[torch.Tensor]:
        """The faces with 4 exemplars' styles at structure 0.6."""
        return [self.render(w, self.to_w(self.extrinsic[i : i + 1]).expand(len(w), -1, -1),
                            self.model.blend_weights(0.6, 1.0))
                for i in torch.linspace(0, len(self.styles) - 1, 4).long().tolist()]

    def save(self, folder: Path) -> None:
        """Also the discriminator, and the adaptive augmentation's p, which resumes where it was."""
        compact = Path(folder) / "compact"
        compact.mkdir(parents=True, exist_ok=True)
        write_parts(compact, "D", half(self.D.state_dict()), self.cfg.part_bytes)
        super().save(folder, augment_p=float(self.augment.p))

    def load(self, folder: str | Path) -> dict:
        meta = super().load(folder)
        if (tensors := read_parts(Path(folder), "D")) is not None:
            self.D.load_state_dict(full(tensors))
        if "augment_p" in meta:
            self.augment.p.fill_(meta["augment_p"])
        return meta
