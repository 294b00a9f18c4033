"""Train a pSp, e4e or Style Transformer encoder for a frozen generator (`python -m core train encoder --arch ...`).

Each batch mixes real aligned faces (the prepared shards, on the device) with generator samples whose W+ is known:
- pSp (Richardson et al. 2021): L2 + LPIPS (AlexNet, weight 0.8) + identity (1 - cosine of FaceNet embeddings,
  0.1) between the photo and its reconstruction, plus an optional W-norm; on generator samples also the latent loss
  (MSE of the predicted W+ against the true one), which the papers do not have: it gives the encoder exact targets.
- e4e (Tov et al. 2021) adds what keeps codes editable: the delta regularisation (L2 norms of the per-layer offsets
  from w0, 2e-4), progressive training (w0 alone first, then one more layer's delta every `progressive_every_kimg`),
  and a latent discriminator that tells the encoder's per-layer w from the mapping network's (0.1, R1 10).
- Style Transformer (Hu et al. 2022): pSp's losses and weights; its queries come from the frozen generator's mapping
  network, so gradients reach the learned seeds `z` through it.
- `--latent-space z+` (DualStyleGAN, Yang et al. 2022): the encoder predicts one z per layer, which the frozen
  mapping network turns into W+; codes stay in the Gaussian the mapping network was trained on, which is what
  DualStyleGAN's destylisation and style path expect. The latent loss compares the mapped W+ with the true one.

`--init` starts from another encoder's weights (same network), e.g. a Z+ encoder from the shipped pSp.

The identity network is FaceNet (`core.nets.facenet`, a torch port of the graph `core.identity` runs with OpenCV),
on the same fixed crop of the aligned face. Evaluation reports dlib's descriptor distance beside FaceNet's
similarity, since the latter was trained on. The generator stays frozen; gradients reach the codes through it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from core import artifacts, identity
from core.artifacts import sha256_of
from core.encoders_io import build_encoder, read_encoder_file
from core.measures import lpips_distance
from core.nets.encoders import LatentDiscriminator
from core.nets.stylegan2 import Generator
from core.registry import load_generator, resolve
from core.runtime import bf16
from core.training.data import DeviceImageBank
from core.training.loss import discriminator_loss, generator_loss, r1_penalty
from core.training.metrics import MetricInputs, measure
from core.training.scaffold import (
    RunConfig,
    StepMeans,
    full,
    half,
    launch,
    read_parts,
    save_image_grid,
    write_parts,
)

NETWORK_FIELDS = ("arch", "latent_space", "backbone", "widths", "units", "head_width", "ff_dim")


@dataclass
class EncoderConfig(RunConfig):
    """Every knob of an encoder run; loss weights default to the papers' face-encoding settings."""

    arch: str = "psp"  # psp, e4e or style_transformer
    latent_space: str = "w+"  # w+ | z+ (one z per layer, mapped by the generator's frozen mapping network)
    generator: str = "default"  # registry name or generator file the encoder inverts (kept frozen)
    data: str = ""  # folder of train-*.npz shards (real faces) and optionally heldout-*.npz (sample grid, held-out
        # loss)
    out: str = "runs/encoder"  # output folder: log.jsonl, samples-*.png, compact/ (float16, resumable)
    resume: str | None = None  # a compact/ folder to continue from (its network widths are used)
    init: str = ""  # start from these encoder weights (a compact folder or a shipped .safetensors), at 0 kimg
    # network: an IR-SE pyramid sized for a 128 px input on a 2-core CPU (~7.7M parameters)
    backbone: str = "ir_se"
    widths: str = "32,64,128,256"
    units: str = "2,3,6,2"
    head_width: int = 64  # pSp / e4e: the map2style heads
    ff_dim: int = 1024  # Style Transformer: the attention layers' feed-forward width (they run at widths[3])
    # data
    synthetic: float = 0.5  # share of each batch drawn from the generator with known W+ (1: no real data needed)
    psi_min: float = 0.5  # synthetic samples are truncated with psi uniform in [psi_min, 1]
    mixing: float = 0.5  # probability that a synthetic sample mixes two latents (W+ beyond W)
    mirror: bool = True
    # losses
    l2: float = 1.0
    lpips: float = 0.8
    identity: float = -1.0  # -1: the paper's (pSp 0.1, e4e 0.5); 0: off (no FaceNet needed)
    latent: float = 1.0  # weight of the W+ loss on synthetic samples
    w_norm: float = 0.0
    delta_reg: float = 2e-4  # e4e
    w_discriminator: float = 0.1  # e4e
    r1: float = 10.0  # e4e's latent discriminator
    disc_lr: float = 2e-5
    progressive_start_kimg: float = 100.0  # e4e: w0 alone until then
    progressive_every_kimg: float = 20.0  # e4e: then one more layer's delta every this many kimg
    facenet: str = ""  # a converted FaceNet file (core.nets.facenet.convert_graph; '' = the registry's graph)
    # optimisation
    batch: int = 32  # over all processes
    lr: float = 1e-4
    amp: bool = True  # bf16 autocast (GPU)
    kimg: float = 3000.0
    log_kimg: float = 20.0
    # quality in the loop (`--metric-kimg`; needs heldout-*.npz beside the data)
    metrics: str = "person,reconstruction"  # core.training.metrics names: by default the share of held-out faces
        # that do not come back as the same person (FaceNet) picks the best snapshot, then LPIPS and PSNR
    metric_samples: int = 256  # held-out faces per measurement

    @property
    def identity_weight(self) -> float:
        return self.identity if self.identity >= 0 else {"e4e": 0.5}.get(self.arch, 0.1)

    def network(self) -> dict:
        return {k: getattr(self, k) for k in NETWORK_FIELDS[2:]}


def load_generator_for(name: str, device: torch.device) -> Generator:
    return load_generator(name, device).eval().requires_grad_(False)


class EncoderTrainer:
    """The encoder (+ e4e's latent discriminator), its optimisers, the frozen generator and the loss."""

    def __init__(self, cfg: EncoderConfig, device: torch.device, rank: int = 0, world: int = 1):
        if cfg.batch % world:
            raise ValueError(f"batch {cfg.batch} must split evenly over {world} processes")
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.batch = cfg.batch // world
        self.n_synthetic = round(self.batch * cfg.synthetic)
        self.G = load_generator_for(cfg.generator, device)
        torch.manual_seed(cfg.seed)
        self.encoder = build_encoder(cfg.arch, self.G.n_latent, self.G.size, self.G.style_dim, cfg.network())
        if cfg.latent_space not in ("w+", "z+"):
            raise ValueError(f"latent_space must be 'w+' or 'z+', not {cfg.latent_space!r}")
        if cfg.init:
            self.encoder.load_state_dict(encoder_weights(cfg.init))
        self.encoder = self.encoder.to(device)
        self.z_plus = cfg.latent_space == "z+"  # z codes are centred on 0, W+ codes on w_avg
        self.latent_avg = self.G.w_avg.detach().clone().view(1, 1, -1) * (0 if self.z_plus else 1)
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, fused=device.type == "cuda")
        self.e4e = cfg.arch == "e4e"
        if self.e4e:
            self.D = LatentDiscriminator(self.G.style_dim).to(device)
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.disc_lr, fused=device.type == "cuda")
        self.facenet = None
        if cfg.identity_weight > 0 or (cfg.metric_kimg and "person" in cfg.metrics.split(",")):
            self.facenet = identity.facenet(cfg.facenet or None, device)
        self.data = self.heldout = self.heldout_faces = None
        if self.n_synthetic < self.batch:
            self.data = DeviceImageBank.from_shards(cfg.data, device, size=self.G.size, mirror=cfg.mirror,
                                                    seed=cfg.seed, rank=rank)
        if cfg.data and any(Path(cfg.data).glob("heldout-*.npz")):  # read once: the metrics' faces (uint8), the
            # first 64 of them for the held-out loss and the sample grid
            self.heldout_faces = DeviceImageBank.from_shards(cfg.data, device, size=self.G.size, split="heldout").images
            self.heldout = self.heldout_faces[:64].float() / 127.5 - 1
        torch.manual_seed(cfg.seed + rank + 1)
        self.nimg, self.step_index = 0, 0
        self.means = StepMeans(device)
        self.net: torch.nn.Module = self.encoder
        if dist.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.encoder, device_ids=ids)
            if self.e4e:
                self.D = DistributedDataParallel(self.D, device_ids=ids)

    # -- the step ------------------------------------------------------------------------------------

    @property
    def progressive_stage(self) -> int:
        """e4e: how many per-layer deltas are on at this point of training."""
        cfg = self.cfg
        if self.nimg < cfg.progressive_start_kimg * 1000:
            return 0
        return min(int((self.nimg - cfg.progressive_start_kimg * 1000) // (cfg.progressive_every_kimg * 1000)) + 1,
                   self.G.n_latent - 1)

    @torch.no_grad()
    def synthetic_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n generator images with their true W+ (`sample_wplus`)."""
        g = self.G
        ws = sample_wplus(g, n, self.cfg.psi_min, self.cfg.mixing)
        with bf16(self.cfg.amp, self.device):
            images = g.synthesis(ws, noise_mode="const").float().clamp(-1, 1)
        return images, ws

    def encode(self, images: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        net = net or self.encoder
        if self.encoder.needs_query:
            return net(images, self.encoder.query(self.G.style, images.shape[0])).float() + self.latent_avg
        return net(images).float() + self.latent_avg

    def to_wplus(self, codes: torch.Tensor) -> torch.Tensor:
        """The codes the synthesis network takes: Z+ goes through the mapping network layer by layer."""
        return self.G.map_zplus(codes) if self.z_plus else codes

    def identity_loss(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        faces = identity.standardise(identity.crop(torch.cat([reconstruction, target]).float()))
        with bf16(self.cfg.amp, self.device):
            embeddings = self.facenet(faces).float()
        a, b = embeddings.chunk(2)
        return (1 - F.cosine_similarity(a, b.detach(), dim=1)).mean()

    def step(self) -> None:
        cfg, n_fake = self.cfg, self.n_synthetic
        if self.e4e:
            self.encoder.progressive_stage = self.progressive_stage
        images, true_ws = self.synthetic_batch(n_fake) if n_fake else (None, None)
        if self.data is not None:
            real = self.data.sample(self.batch - n_fake)
            images = real if images is None else torch.cat([real, images])
        with bf16(self.cfg.amp, self.device):
            codes = self.encode(images, self.net)
            wplus = self.to_wplus(codes)
            reconstruction = self.G.synthesis(wplus, noise_mode="const").float()
        loss = cfg.l2 * F.mse_loss(reconstruction, images)
        self.means.add("l2", loss)
        if cfg.lpips:
            with bf16(self.cfg.amp, self.device):
                value = lpips_distance(reconstruction, images).float().mean()
            loss = loss + cfg.lpips * value
            self.means.add("lpips", value)
        if cfg.identity_weight > 0:
            value = self.identity_loss(reconstruction, images)
            loss = loss + cfg.identity_weight * value
            self.means.add("id_loss", value)
        if n_fake and cfg.latent:
            value = F.mse_loss(wplus[-n_fake:].float(), true_ws)
            loss = loss + cfg.latent * value
            self.means.add("latent", value)
        if cfg.w_norm:
            loss = loss + cfg.w_norm * (wplus.float() - self.G.w_avg).norm(dim=2).mean()
        active = self.progressive_stage + 1 if self.e4e else self.G.n_latent
        if self.e4e and cfg.delta_reg and active > 1:
            deltas = (codes[:, 1:active] - codes[:, :1]).norm(dim=2).sum(1).mean()
            loss = loss + cfg.delta_reg * deltas
            self.means.add("delta_norm", deltas)
        if self.e4e and cfg.w_discriminator:
            with bf16(self.cfg.amp, self.device):
                adversarial = generator_loss(self.D(codes[:, :active].flatten(0, 1)))
            loss = loss + cfg.w_discriminator * adversarial
            self.means.add("adv", adversarial)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.means.add("loss", loss)
        if self.e4e and cfg.w_discriminator:
            self.discriminator_step(codes[:, :active].detach().flatten(0, 1))
        self.nimg += cfg.batch
        self.step_index += 1

    def discriminator_step(self, fake_w: torch.Tensor) -> None:
        """The latent discriminator: the mapping network's w (real) against the encoder's per-layer w (fake)."""
        with torch.no_grad():
            real_w = self.G.mapping(torch.randn(self.batch, self.G.style_dim, device=self.device))
        with bf16(self.cfg.amp, self.device):
            loss = discriminator_loss(self.D(fake_w), self.D(real_w))
        if self.step_index % 16 == 0:  # lazy R1 on real codes, as StyleGAN2
            penalty, logits = r1_penalty(self.D, real_w)
            loss = loss + penalty * (self.cfg.r1 / 2) * 16 + 0 * logits.float().sum()
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        self.means.add("loss_D", loss)

    # -- monitoring ----------------------------------------------------------------------------------

    @torch.no_grad()
    def heldout_loss(self) -> dict[str, torch.Tensor]:
        if self.heldout is None:
            return {}
        with bf16(self.cfg.amp, self.device):
            reconstruction = self.G.synthesis(self.to_wplus(self.encode(self.heldout)), noise_mode="const").float()
        return {"heldout_mse": F.mse_loss(reconstruction, self.heldout),
                "heldout_lpips": lpips_distance(reconstruction, self.heldout).mean()}

    def measure(self) -> dict[str, float]:
        """The run's metrics (`cfg.metrics`) of the encoder's round trip on the held-out faces beside the data."""

        @torch.no_grad()
        def reconstruct(images: torch.Tensor) -> torch.Tensor:
            with bf16(self.cfg.amp, self.device):
                return self.G.synthesis(self.to_wplus(self.encode(images)), noise_mode="const").float()

        names = [name for name in self.cfg.metrics.split(",") if name]
        return measure(names, MetricInputs(self.G, self.heldout_faces, samples=self.cfg.metric_samples,
                                           reconstruct=reconstruct, facenet=self.facenet, batch=32))

    def save_best(self, folder: Path) -> None:
        """`folder`/compact, what `export-encoder` reads, kept while it is the best by the first metric."""
        self.save(folder)

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call (one host sync), the held-out losses and e4e's progressive stage."""
        values = self.means.pop(self.heldout_loss())
        return values | ({"stage": self.progressive_stage} if self.e4e else {})

    @torch.no_grad()
    def sample_grid(self, path: str | Path) -> Path:
        """Held-out faces (or training ones) over their reconstructions, 8 per row."""
        targets = self.heldout if self.heldout is not None and len(self.heldout) >= 8 else self.synthetic_batch(16)[0]
        targets = targets[: 8 * (min(len(targets), 16) // 8)]  # one or two rows of 8
        with bf16(self.cfg.amp, self.device):
            reconstruction = self.G.synthesis(self.to_wplus(self.encode(targets)), noise_mode="const").float()
        rows = torch.cat([targets[:8], reconstruction[:8], targets[8:], reconstruction[8:]])
        return save_image_grid(rows, path)

    # -- state ---------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """`compact/`: the encoder (and latent discriminator) in float16 parts + meta.json, what travels."""
        compact = Path(folder) / "compact"
        compact.mkdir(parents=True, exist_ok=True)
        write_parts(compact, "encoder", half(self.encoder.state_dict()), self.cfg.part_bytes)
        if self.e4e:
            write_parts(compact, "D", half(_unwrap(self.D).state_dict()), self.cfg.part_bytes)
        meta = {"nimg": self.nimg, "step": self.step_index, "config": dataclasses.asdict(self.cfg),
                "generator_sha256": generator_sha256(self.cfg.generator)}
        (compact / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    def load(self, folder: str | Path) -> None:
        """Resume from `save`'s compact folder (Adam restarts)."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        self.encoder.load_state_dict(full(read_parts(folder, "encoder")))
        if self.e4e and (tensors := read_parts(folder, "D")) is not None:
            _unwrap(self.D).load_state_dict(full(tensors))
        self.nimg, self.step_index = meta["nimg"], meta["step"]
        torch.manual_seed(self.cfg.seed + self.rank + self.nimg)
        if self.data is not None:
            self.data.generator.manual_seed(self.cfg.seed + self.rank + self.nimg)


@torch.no_grad()
def sample_wplus(G: Generator, n: int, psi_min: float = 0.5, mixing: float = 0.5) -> torch.Tensor:
    """n W+ codes [n, n_latent, D] of G's own distribution: truncation psi ~ U[psi_min, 1] towards `w_avg`, two
    latents mixed at a random layer with probability `mixing` (codes beyond W, as real photos need)."""
    device, w_avg = G.w_avg.device, G.w_avg.view(1, 1, -1)
    psi = torch.empty(n, 1, 1, device=device).uniform_(psi_min, 1.0)
    w = G.mapping(torch.randn(2 * n, G.style_dim, device=device)).view(2, n, 1, -1)
    w = w_avg + psi * (w - w_avg)
    cutoff = torch.randint(1, G.n_latent, (n, 1, 1), device=device)
    cutoff = torch.where(torch.rand(n, 1, 1, device=device) < mixing, cutoff, G.n_latent)
    layer = torch.arange(G.n_latent, device=device).view(1, -1, 1)
    return torch.where(layer < cutoff, w[0], w[1])


def encoder_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Float32 encoder weights of a compact folder (`EncoderTrainer.save`) or a shipped file (`export_encoder`)."""
    path = Path(path)
    tensors = read_parts(path, "encoder") if path.is_dir() else read_encoder_file(path)[0].state_dict()
    if tensors is None:
        raise FileNotFoundError(f"{path}: no encoder-*.safetensors parts")
    return full(tensors)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def generator_sha256(name: str) -> str:
    return sha256_of(resolve(name))


def network_of(folder: str | Path) -> dict:
    config = json.loads((Path(folder) / "meta.json").read_text())["config"]
    return {k: config[k] for k in NETWORK_FIELDS if k in config}


def train(cfg: EncoderConfig) -> EncoderTrainer:
    """Train until `cfg.kimg` images or the `cfg.minutes` budget; saves `compact/` and sample grids in `cfg.out`."""
    return launch(cfg, EncoderTrainer, network_of, lambda t: (
        f"training {t.cfg.arch} ({sum(p.numel() for p in t.encoder.parameters()) / 1e6:.2f}M params) for "
        f"{t.cfg.generator} on {t.world}x {t.device}: {len(t.data or [])} real images, {t.cfg.synthetic:.0%} "
        f"synthetic; identity weight {t.cfg.identity_weight}; from {t.nimg / 1000:.1f} kimg"))


def export_encoder(compact: str | Path, path: str | Path) -> Path:
    """Ship a compact folder's encoder as one float16 safetensors file: weights, `latent_avg`, and in the metadata
    its architecture, training length and the sha256 of the generator it was trained for."""
    compact = Path(compact)
    meta = json.loads((compact / "meta.json").read_text())
    cfg = meta["config"]
    generator = load_generator_for(cfg["generator"], torch.device("cpu"))
    tensors = half(read_parts(compact, "encoder"))
    z_plus = cfg.get("latent_space", "w+") == "z+"
    tensors["latent_avg"] = generator.w_avg.detach().clone().float() * (0 if z_plus else 1)
    info = {"arch": cfg["arch"], "latent_space": cfg.get("latent_space", "w+"),
            "network": json.dumps({k: cfg[k] for k in NETWORK_FIELDS[2:] if k in cfg}),
            "kimg": str(round(meta["nimg"] / 1000, 1)), "n_styles": str(generator.n_latent),
            "input_size": str(generator.size), "style_dim": str(generator.style_dim)}
    return artifacts.write(path, "encoder", tensors, info, made_for_sha256=meta["generator_sha256"])
