"""The StyleGAN2 training loop: four phases per step as in StyleGAN2-ADA, built for short resumable runs.

Per step: G main (non-saturating loss through the augmented D), G path-length regularisation (every
`pl_interval` steps), D main, D R1 (every `r1_interval` steps); lazy regularisation scales its loss by the
interval and Adam's lr / betas by interval / (interval + 1). Then the EMA generator follows G.

Speed: optional bf16 autocast of the main phases, the data set held on the device (`data.DeviceImageBank`), fused Adam,
no host synchronisation inside a step (statistics and ADA's p stay on the device), optional channels-last and
torch.compile for the main phases and the augmentation, optionally replayed as CUDA graphs (`compile_mode`; the
regularisation phases need double backward, which compiled graphs do not support, so they run eagerly on the same
parameters). `benchmarks/train_speed.py` measures each.

Multi-GPU: start with `torchrun --nproc-per-node N -m core.train stylegan2 ...`; G (with its mapping and
style mixing, `loss.MappedSynthesis`) and D are wrapped in DistributedDataParallel whenever a process group
exists, also at world size 1 and on the CPU with gloo. `batch` is the total over all processes.

Checkpoints: `state.pt` is the exact state (fp32 nets, Adam, RNGs; `torch.load(weights_only=True)`), resuming
bit-identically. `compact/` is what travels between short GPU calls: G and D in float16 split into <= 15 MiB
safetensors files (G_ema beside them, optional) and `meta.json`; Adam's moments are dropped and re-estimated.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from core.checkpoints import save_generator
from core.nets.stylegan2 import Discriminator, Generator
from core.runtime import CUDA_GRAPH_MODES, bf16
from core.training.augment import AdaptiveDiffAugment
from core.training.data import DeviceImageBank
from core.training.loss import MappedSynthesis, PathLengthPenalty, discriminator_loss, generator_loss, r1_penalty
from core.training.metrics import MetricInputs, measure
from core.training.scaffold import (
    RunConfig,
    StepMeans,
    full,
    half,
    launch,
    read_parts,
    save_image_grid,
    update_ema,
    write_parts,
)

NETWORK_FIELDS = ("size", "style_dim", "n_mlp", "channel_base", "channel_max", "mbstd_group")


@dataclass
class TrainConfig(RunConfig):
    """Every knob of a run, with StyleGAN2-ADA's defaults where it has them (`None` = its auto rule)."""

    data: str = ""  # folder of train-*.npz shards from `python -m core.data prepare` (or one shard file)
    out: str = "runs/stylegan2"  # output folder: log.jsonl, samples-*.png, state.pt (exact resume), compact/ (float16
        # resume)
    resume: str | None = None  # state.pt or a compact/ folder to continue from (its network widths are used)
    # networks
    size: int = 128
    style_dim: int = 512
    n_mlp: int = 8
    channel_base: int = 8192  # widths: channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 256
    mbstd_group: int = 4
    # optimisation
    batch: int = 32  # images per step over all processes
    lr: float = 0.0025
    r1_gamma: float | None = None  # R1 weight (default: StyleGAN2-ADA's 0.0002 * size^2 / batch)
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    ema_kimg: float | None = None  # half-life of the EMA generator in kimg (default: batch * 10 / 32)
    ema_rampup: float = 0.05
    # augmentation
    augment: str = "ada"  # 'ada': DiffAugment ops with ADA's adaptive p; 'fixed': p = --aug-p; 'none'
    aug_p: float = 0.0  # augmentation probability (the start of ADA's)
    ada_target: float = 0.6  # ADA raises p while the discriminator's sign on reals is above this
    ada_kimg: float = 100.0
    ada_interval: int = 4
    mirror: bool = True
    # speed (what pays where: benchmarks/README.md, the training speed tables)
    amp: bool = False  # bf16 autocast of the main phases (GPU; measured in benchmarks/train_speed.py)
    amp_regularisers: bool = False  # with --amp, also R1 and path length in bf16
    channels_last: bool = False
    compile: bool = False  # torch.compile the main phases and the augmentation (measured in benchmarks/train_speed.py)
    compile_mode: str = "default"  # torch.compile's mode: "default", "reduce-overhead" (CUDA graphs), ...
    # quality in the loop (needs heldout-*.npz beside the training shards; `metric_kimg` 0 turns it off)
    metrics: str = "alex"  # core.training.metrics names, comma-separated, measured against heldout-*.npz beside the
        # data; the first picks the best
    metric_samples: int = 1000  # generated images per measurement

    @property
    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.size**2 / self.batch

    @property
    def ema_images(self) -> float:
        return 1000 * (self.ema_kimg if self.ema_kimg is not None else self.batch * 10 / 32)


def network_of(path: str | Path) -> dict:
    """The network fields of a checkpoint (`state.pt` or a compact folder), so a resume rebuilds the same nets."""
    path = Path(path)
    if path.is_dir():
        config = json.loads((path / "meta.json").read_text())["config"]
    else:
        config = torch.load(path, map_location="cpu", weights_only=True)["config"]
    return {k: config[k] for k in NETWORK_FIELDS}


# ----------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Networks, optimisers, augmentation and the step; `save` / `load` its exact or compact state."""

    def __init__(self, cfg: TrainConfig, device: torch.device, rank: int = 0, world: int = 1,
                 data: DeviceImageBank | None = None):
        if cfg.batch % world or (cfg.batch // world) % min(cfg.mbstd_group, cfg.batch // world):
            raise ValueError(f"batch {cfg.batch} must split evenly over {world} process(es) and mbstd groups")
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.batch = cfg.batch // world
        torch.manual_seed(cfg.seed)  # identical initial weights on every process
        self.G = Generator(cfg.size, cfg.style_dim, cfg.n_mlp, cfg.channel_base, cfg.channel_max).to(device)
        self.D = Discriminator(cfg.size, cfg.channel_base, cfg.channel_max, stddev_group=cfg.mbstd_group).to(device)
        if cfg.channels_last:
            self.D = self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if cfg.augment not in ("ada", "fixed", "none"):
            raise ValueError(f"augment must be 'ada', 'fixed' or 'none', not {cfg.augment!r}")
        self.augment = AdaptiveDiffAugment(p=cfg.aug_p if cfg.augment != "none" else 0.0,
                                           adaptive=cfg.augment == "ada", target=cfg.ada_target,
                                           speed_kimg=cfg.ada_kimg).to(device)
        self.path_length = PathLengthPenalty().to(device)
        self.opt_G = self._adam(self.G, cfg.pl_interval if cfg.pl_weight > 0 else 0)
        self.opt_D = self._adam(self.D, cfg.r1_interval if cfg.gamma > 0 else 0)
        self.data = data if data is not None else DeviceImageBank.from_shards(
            cfg.data, device, size=cfg.size, mirror=cfg.mirror, seed=cfg.seed, rank=rank)
        torch.manual_seed(cfg.seed + rank + 1)  # different latents and noise on each process
        self.nimg, self.step_index, self.ema_start = 0, 0, 0
        self.means = StepMeans(device)
        self.heldout: torch.Tensor | None = None  # the held-out faces `measure` compares with, loaded on first use
        self.floor_measured = False
        self.sample_z = torch.randn(32, cfg.style_dim, generator=torch.Generator().manual_seed(cfg.seed))

        self.g_train: torch.nn.Module = MappedSynthesis(self.G, cfg.style_mixing)
        self.d_train: torch.nn.Module = self.D
        if dist.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self.g_train = DistributedDataParallel(self.g_train, device_ids=ids, broadcast_buffers=False)
            self.d_train = DistributedDataParallel(self.D, device_ids=ids, broadcast_buffers=False)
        # Main phases may run compiled; the regularisers (double backward) run the eager modules.
        def compiled(module: torch.nn.Module) -> torch.nn.Module:
            return torch.compile(module, mode=cfg.compile_mode) if cfg.compile else module
        self.g_main, self.d_main, self.d_judge = compiled(self.g_train), compiled(self.d_train), compiled(self.D)
        self.augment_main = compiled(self.augment)
        self.cuda_graphs = cfg.compile and cfg.compile_mode in CUDA_GRAPH_MODES

    def _adam(self, net: torch.nn.Module, reg_interval: int) -> torch.optim.Adam:
        ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
        return torch.optim.Adam(net.parameters(), lr=self.cfg.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8,
                                fused=self.device.type == "cuda")

    def _autocast(self, regulariser: bool = False) -> contextlib.AbstractContextManager:
        return bf16(self.cfg.amp and (self.cfg.amp_regularisers or not regulariser), self.device)

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _optimise(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, inputs: list | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=inputs)
        optimizer.step()

    def step(self) -> None:
        """One training step over `batch` images on every process."""
        cfg, batch, i = self.cfg, self.batch, self.step_index
        latents = lambda n: torch.randn(n, cfg.style_dim, device=self.device)  # noqa: E731
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten

        with self._autocast():  # G main: D's weights are not trained here, so only G's gradients are computed
            fake, ws = self.g_main(latents(batch))
            loss = generator_loss(self.d_judge(self._images(self.augment_main(fake))))
        self._optimise(self.opt_G, loss, inputs=list(self.G.parameters()))
        self.means.add("loss_G", loss)
        with torch.no_grad():
            self.G.w_avg.lerp_(ws[:, 0].float().mean(0), 0.005)

        if cfg.pl_weight > 0 and i % cfg.pl_interval == 0:
            with self._autocast(regulariser=True):
                fake, ws = self.g_train(latents(max(batch // cfg.pl_batch_shrink, 1)))
                penalty = self.path_length(fake, ws)  # + 0 x image: every parameter is in the graph, as DDP expects
            self._optimise(self.opt_G, penalty * cfg.pl_weight * cfg.pl_interval + 0 * fake[:, 0, 0, 0].sum())
            self.means.add("pl_penalty", penalty)

        with torch.no_grad(), self._autocast():
            fake, _ = self.g_main(latents(batch))
        real = self._images(self.augment_main(self.data.sample(batch)))
        with self._autocast():
            fake_logits = self.d_main(self._images(self.augment_main(fake)))
            real_logits = self.d_main(real)
            loss = discriminator_loss(fake_logits, real_logits)
        self._optimise(self.opt_D, loss)
        self.augment.observe(real_logits)
        if (i + 1) % cfg.ada_interval == 0:
            self.augment.adjust(cfg.batch * cfg.ada_interval)
        self.means.add("loss_D", loss)
        self.means.add("D_real", real_logits.float().mean())
        self.means.add("D_fake", fake_logits.float().mean())

        if cfg.gamma > 0 and i % cfg.r1_interval == 0:
            with self._autocast(regulariser=True):
                penalty, logits = r1_penalty(self.d_train, real)
            self._optimise(self.opt_D, penalty * (cfg.gamma / 2) * cfg.r1_interval + 0 * logits.float().sum())
            self.means.add("r1_penalty", penalty)

        self.nimg += cfg.batch
        self.step_index += 1
        self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        images = min(self.cfg.ema_images, (self.nimg - self.ema_start) * self.cfg.ema_rampup)
        update_ema(self.G_ema, self.G, 0.5 ** (self.cfg.batch / max(images, 1e-8)))

    def measure(self) -> dict[str, float]:
        """The run's metrics (`cfg.metrics`) of the EMA generator against the held-out faces beside the training data;
        the first call also measures the real-vs-real floor once (`alex_floor_*`), for reading the numbers against."""
        if self.heldout is None:
            self.heldout = DeviceImageBank.from_shards(self.cfg.data, self.device, size=self.cfg.size,
                                                       split="heldout").images
        names = [name for name in self.cfg.metrics.split(",") if name]
        if not self.floor_measured:
            names.append("alex_floor")
            self.floor_measured = True
        return measure(names, MetricInputs(self.G_ema, self.heldout, self.data.images,
                                           samples=self.cfg.metric_samples, seed=self.cfg.seed))

    def save_best(self, folder: Path) -> None:
        """The EMA generator alone (float16 parts + meta.json): what `export` ships if it stays the best."""
        folder.mkdir(parents=True, exist_ok=True)
        write_parts(folder, "G_ema", {**half(self.G_ema.state_dict()), "w_avg": self.G_ema.w_avg}, self.cfg.part_bytes)
        (folder / "meta.json").write_text(json.dumps({"nimg": self.nimg, "config": dataclasses.asdict(self.cfg)},
                                                     indent=1) + "\n")

    def pop_stats(self) -> dict[str, float]:
        """Means since the last call (one host sync), plus the augmentation and regulariser state."""
        return self.means.pop({"aug_p": self.augment.p, "ada_rt": self.augment.rt, "pl_mean": self.path_length.mean})

    def sample_grid(self, path: str | Path, psi: float = 1.0) -> Path:
        """The EMA generator's images for 32 fixed latents as one PNG grid."""
        return save_grid(self.G_ema, self.sample_z.to(self.device), path, psi)

    # -- state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        rng = {"cpu": torch.get_rng_state(), "data": self.data.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "w_avg": self.G.w_avg, "w_avg_ema": self.G_ema.w_avg,
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "augment": self.augment.state_dict(), "path_length": self.path_length.state_dict(),
            "nimg": self.nimg, "step": self.step_index, "ema_start": self.ema_start, "rng": rng,
            "config": dataclasses.asdict(self.cfg),
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.G.w_avg.copy_(state["w_avg"])
        self.G_ema.w_avg.copy_(state["w_avg_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.augment.load_state_dict(state["augment"])
        self.path_length.load_state_dict(state["path_length"])
        self.nimg, self.step_index, self.ema_start = state["nimg"], state["step"], state["ema_start"]
        torch.set_rng_state(state["rng"]["cpu"])
        self.data.generator.set_state(state["rng"]["data"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if self.rank:  # one saved RNG state would give every process the same latents
            torch.manual_seed(self.cfg.seed + self.rank + self.nimg)

    def save_compact(self, folder: str | Path) -> Path:
        """G, D and G_ema in float16 parts plus `meta.json`: ~2 bytes a parameter, no optimiser state."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_parts(folder, "G", {**half(self.G.state_dict()), "w_avg": self.G.w_avg}, self.cfg.part_bytes)
        write_parts(folder, "G_ema", {**half(self.G_ema.state_dict()), "w_avg": self.G_ema.w_avg}, self.cfg.part_bytes)
        write_parts(folder, "D", half(self.D.state_dict()), self.cfg.part_bytes)
        meta = {"nimg": self.nimg, "step": self.step_index, "aug_p": float(self.augment.p),
                "pl_mean": float(self.path_length.mean), "config": dataclasses.asdict(self.cfg)}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        return folder

    def load_compact(self, folder: str | Path) -> None:
        """Resume from `save_compact`: Adam restarts, and without G_ema parts the EMA restarts from G."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        for net, name in ((self.G, "G"), (self.D, "D"), (self.G_ema, "G_ema")):
            tensors = read_parts(folder, name)
            if tensors is None and name == "G_ema":
                self.G_ema.load_state_dict(self.G.state_dict())
                self.G_ema.w_avg.copy_(self.G.w_avg)
                self.ema_start = meta["nimg"]
                continue
            if tensors is None:
                raise FileNotFoundError(f"{folder}: no {name}-*.safetensors parts")
            w_avg = tensors.pop("w_avg", None)
            net.load_state_dict(full(tensors))
            if w_avg is not None:
                net.w_avg.copy_(w_avg.float())
        self.augment.p.fill_(meta["aug_p"])
        self.path_length.mean.fill_(meta["pl_mean"])
        self.nimg, self.step_index = meta["nimg"], meta["step"]
        torch.manual_seed(self.cfg.seed + self.rank + self.nimg)
        self.data.generator.manual_seed(self.cfg.seed + self.rank + self.nimg)

    def save(self, folder: Path) -> None:
        """`state.pt` (exact) and `compact/` (float16, travels) in `folder`."""
        torch.save(self.state_dict(), folder / "state.pt")
        self.save_compact(folder / "compact")

    def load(self, path: str | Path) -> None:
        """Resume from `state.pt` (exact) or a compact folder."""
        path = Path(path)
        if path.is_dir():
            self.load_compact(path)
        else:
            self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


# ----------------------------------------------------------------------------------------------------
# The run


def train(cfg: TrainConfig, data: DeviceImageBank | None = None) -> Trainer:
    """Train until `cfg.kimg` images in total or the `cfg.minutes` budget; saves state, compact state, samples."""
    return launch(cfg, lambda c, device, rank, world: Trainer(c, device, rank, world, data), network_of, lambda t: (
        f"training {t.cfg.size}px G {sum(p.numel() for p in t.G.parameters()) / 1e6:.2f}M "
        f"D {sum(p.numel() for p in t.D.parameters()) / 1e6:.2f}M params on {t.world}x {t.device}, "
        f"{len(t.data)} images (decoded in {t.data.load_seconds:.1f} s), from {t.nimg / 1000:.1f} kimg; "
        f"gamma {t.cfg.gamma:.4g}, "
        f"ema {t.cfg.ema_images / 1000:.3g} kimg"))


@torch.no_grad()
def save_grid(generator: Generator, z: torch.Tensor, path: str | Path, psi: float = 1.0, columns: int = 8) -> Path:
    """Images of `generator` for latents `z` (ψ-truncated, fixed noise) as one PNG grid, `columns` wide."""
    images = torch.cat([generator.synthesis(generator.mapping(chunk, truncation_psi=psi), noise_mode="const")
                        for chunk in z.split(16)])
    return save_image_grid(images, path, columns)


def export_generator(compact: str | Path, path: str | Path, *, mean_samples: int = 100_000) -> Path:
    """Ship a compact folder's G_ema as the project's generator file (float16 safetensors), with `w_avg` re-estimated
    from `mean_samples` mapped latents (the truncation centre that inversion and editing start from)."""
    compact = Path(compact)
    meta = json.loads((compact / "meta.json").read_text())
    cfg = meta["config"]
    generator = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_base"], cfg["channel_max"])
    tensors = read_parts(compact, "G_ema")
    if tensors is None:
        raise FileNotFoundError(f"{compact}: no G_ema-*.safetensors parts")
    tensors.pop("w_avg", None)
    generator.load_state_dict(full(tensors))
    generator.w_avg.copy_(generator.mean_latent(mean_samples)[0])
    return save_generator(generator, path, half=True, extra={"kimg": round(meta["nimg"] / 1000, 1), "trainer": {
        k: cfg[k] for k in ("batch", "lr", "r1_interval", "pl_weight", "style_mixing", "augment", "mbstd_group")}})
