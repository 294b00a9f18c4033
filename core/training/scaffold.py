"""What every trainer shares: distributed set-up, the run loop (time budget, logging, sample grids, saving), compact
float16 checkpoints that travel between short GPU calls, EMA, and options built from a config dataclass.

A trainer is a file (`stylegan2.py`, `encoder.py`) with a config dataclass and a class that has `nimg`,
`step_index`, `device`, `rank`, `step()`, `pop_stats()` and `save(folder)`, and draws `sample_grid(path)` when it has
images to show; `run` does the rest.
A trainer that can `measure()` its quality (a dict, `core.training.metrics`) is measured every `metric_kimg` and keeps
its best snapshot (`save_best(folder)`, chosen by the first value the measure returns, lower is better).
A pipeline of several runs and other steps in one folder (`dualstylegan/`) is a list of `Phase`s: `run_phases` skips
those whose result is there and stops at one the time budget cuts short, so the next call resumes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import os
import re
import time
import tokenize
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from core.faces import to_uint8

SAVE_RESERVE_S = 20.0  # seconds of a time budget kept for saving at the end


@dataclasses.dataclass
class RunConfig:
    """The knobs every run has: its length, budget, logging and seed (a trainer's config adds its own)."""

    kimg: float = 25000.0  # stop when this many thousand images were seen in total
    minutes: float = 0.0  # wall-clock budget of this process (0: none); stops cleanly, saving first
    log_kimg: float = 4.0  # log a line every this many kimg
    sample_minutes: float = 5.0  # write a sample grid every this many minutes
    metric_kimg: float = 0.0  # measure quality every this many kimg, at the start and at the end; keep the best
        # snapshot in OUT/best (0: never)
    seed: int = 0
    device: str = "auto"  # auto: the GPU when there is one, else cpu
    part_mb: float = 0.0  # compact checkpoints split into files of at most this many MiB (0: one file per network)

    @property
    def part_bytes(self) -> int:
        return int(self.part_mb * 2**20)


def setup_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group torchrun describes in the environment."""
    if "RANK" in os.environ and dist.is_available() and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if device == "auto":
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return rank, world, device


# ----------------------------------------------------------------------------------------------------
# Compact checkpoints: float16 safetensors in parts small enough to travel


class StepMeans:
    """Values summed on the device during the steps and averaged at the log interval with one host sync (no
    `.item()` inside a step)."""

    def __init__(self, device: torch.device):
        self.device, self.sums = device, {}

    def add(self, name: str, value: torch.Tensor) -> None:
        total = self.sums.setdefault(name, [torch.zeros((), device=self.device), 0])
        total[0] += value.detach().float()
        total[1] += 1

    def pop(self, extra: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """The means since the last call, then `extra` (current values, e.g. held-out losses); starts over."""
        values = {n: total / count for n, (total, count) in self.sums.items()} | (extra or {})
        self.sums = {}
        if not values:
            return {}
        stacked = torch.stack([torch.as_tensor(v, device=self.device).float().reshape(()) for v in values.values()])
        return dict(zip(values, stacked.tolist(), strict=True))


def write_parts(folder: Path, name: str, tensors: dict[str, torch.Tensor], max_bytes: int = 0) -> None:
    """Write `tensors` as `{name}-00.safetensors`, `{name}-01...`, each at most `max_bytes` (0: one file)."""
    for old in folder.glob(f"{name}-*.safetensors"):
        old.unlink()
    parts: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for key, value in tensors.items():
        size = value.numel() * value.element_size()
        if max_bytes and parts[-1] and used + size > max_bytes:
            parts.append({})
            used = 0
        parts[-1][key] = value.detach().cpu().contiguous()
        used += size
    for i, part in enumerate(parts):
        save_file(part, str(folder / f"{name}-{i:02d}.safetensors"))


def read_parts(folder: Path, name: str) -> dict[str, torch.Tensor] | None:
    files = sorted(Path(folder).glob(f"{name}-*.safetensors"))
    return {k: v for f in files for k, v in load_file(str(f)).items()} if files else None


def half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def full(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * net for parameters; buffers are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - beta)
    for ema_buffer, buffer in zip(ema.buffers(), net.buffers(), strict=True):
        ema_buffer.copy_(buffer)


def save_image_grid(images: torch.Tensor, path: str | Path, columns: int = 8) -> Path:
    """Images [N, 3, H, W] in [-1, 1] (N a multiple of `columns`) as one PNG grid."""
    pixels = to_uint8(images)  # [N, H, W, 3]
    rows = pixels.view(-1, columns, *pixels.shape[1:]).permute(0, 2, 1, 3, 4)  # [rows, H, columns, W, 3]
    Image.fromarray(np.ascontiguousarray(rows.reshape(rows.shape[0] * rows.shape[1], -1, 3).numpy())).save(path)
    return Path(path)


# ----------------------------------------------------------------------------------------------------
# The run


class Trainable(Protocol):
    nimg: int
    step_index: int
    device: torch.device
    rank: int

    def step(self) -> None: ...
    def pop_stats(self) -> dict[str, float]: ...
    def save(self, folder: Path) -> None: ...
    def load(self, path: str | Path) -> None: ...


def launch(cfg: Any, make: Callable[[Any, torch.device, int, int], Trainable], network_of: Callable[[str], dict],
           describe: Callable[[Trainable], str]) -> Trainable:
    """Join the process group, build the trainer (`make(cfg, device, rank, world)`; a resumed run takes its network
    fields from the checkpoint), resume, say what trains, and `run` it."""
    start = time.time()
    rank, world, device = setup_distributed(cfg.device)
    if cfg.resume:
        cfg = dataclasses.replace(cfg, **network_of(cfg.resume))
    trainer = make(cfg, device, rank, world)
    if cfg.resume:
        trainer.load(cfg.resume)
    if rank == 0:
        print(describe(trainer), flush=True)
    return run(trainer, cfg, start)


def run(trainer: Trainable, cfg: Any, start: float) -> Trainable:
    """Step `trainer` until `cfg.kimg` thousand images or the `cfg.minutes` budget (from `start`), logging every
    `cfg.log_kimg` to `cfg.out`/log.jsonl, a sample grid every `cfg.sample_minutes`, and saving at the end."""
    out, rank = Path(cfg.out), trainer.rank
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    last_log = last_sample = time.time()
    log_nimg = trainer.nimg
    quality = QualityLog(trainer, out, cfg.metric_kimg)
    quality.measure()
    with tqdm(total=int(cfg.kimg * 1000), initial=trainer.nimg, unit="img", unit_scale=True, disable=rank != 0,
              mininterval=1 if os.isatty(2) else 30) as bar:
        for _ in budget_steps(trainer, cfg.kimg, cfg.minutes, start):
            bar.update(cfg.batch)
            if trainer.nimg - log_nimg >= cfg.log_kimg * 1000:
                now = time.time()
                record = {"kimg": round(trainer.nimg / 1000, 3), "s_per_kimg": round(
                    (now - last_log) / ((trainer.nimg - log_nimg) / 1000), 3), "minutes": round((now - start) / 60, 2),
                    **{k: round(v, 4) for k, v in trainer.pop_stats().items()}}
                last_log, log_nimg = now, trainer.nimg
                if rank == 0:
                    bar.write(json.dumps(record))
                    with open(out / "log.jsonl", "a") as log:
                        log.write(json.dumps(record) + "\n")
            if rank == 0 and hasattr(trainer, "sample_grid") and time.time() - last_sample > cfg.sample_minutes * 60:
                trainer.sample_grid(out / f"samples-{trainer.nimg // 1000:06d}.png")
                last_sample = time.time()
            if quality.due():
                quality.measure()
    quality.measure()
    if rank == 0:
        trainer.save(out)
        if hasattr(trainer, "sample_grid"):
            trainer.sample_grid(out / f"samples-{trainer.nimg // 1000:06d}.png")
        print(f"stopped at {trainer.nimg / 1000:.1f} kimg after {(time.time() - start) / 60:.2f} min; saved in {out}",
              flush=True)
    return trainer


class QualityLog:
    """Measures a trainer's quality (when it has `measure` and `metric_kimg` is set) into `out`/metrics.jsonl and
    keeps the best snapshot in `out`/best/ (the first measured value decides, lower is better; the best so far
    is read back from metrics.jsonl, so a resumed run in the same folder keeps comparing with it)."""

    def __init__(self, trainer: Trainable, out: Path, every_kimg: float):
        self.trainer, self.out, self.every = trainer, out, every_kimg if hasattr(trainer, "measure") else 0.0
        self.nimg, self.best = -1, float("inf")
        log = out / "metrics.jsonl"
        if self.every and log.is_file():
            records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            self.best = min((r["best_by"] for r in records), default=float("inf"))
            if records and round(records[-1]["kimg"] * 1000) == trainer.nimg:  # resumed where it was last measured
                self.nimg = trainer.nimg

    def due(self) -> bool:
        return bool(self.every) and self.trainer.nimg - self.nimg >= self.every * 1000

    def measure(self) -> None:
        if not self.every or self.trainer.nimg == self.nimg:
            return
        self.nimg = self.trainer.nimg
        if dist.is_initialized():
            dist.barrier()
        if self.trainer.rank == 0:
            start = time.time()
            values = self.trainer.measure()
            record = {"kimg": round(self.nimg / 1000, 3), "seconds": round(time.time() - start, 1),
                      "best_by": next(iter(values.values())), **{k: round(v, 5) for k, v in values.items()}}
            if record["best_by"] < self.best:
                self.best = record["best_by"]
                self.trainer.save_best(self.out / "best")
                record["saved_best"] = True
            print(json.dumps(record), flush=True)
            with open(self.out / "metrics.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
        if dist.is_initialized():
            dist.barrier()


def budget_steps(trainer: Trainable, kimg: float, minutes: float, start: float) -> Iterator[None]:
    """Step until the image target or the time budget (checked every step; with several processes, every 16th
    step, where they agree on it)."""
    while trainer.nimg < kimg * 1000:
        if minutes and (not dist.is_initialized() or trainer.step_index % 16 == 0):
            stop = torch.tensor(float(time.time() - start > minutes * 60 - SAVE_RESERVE_S), device=trainer.device)
            if dist.is_initialized():
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            if stop.item():
                return
        trainer.step()
        yield


def seconds_per_kimg(trainer: Trainable, steps: int, batch: int, warmup: int = 10) -> float:
    """Measured speed of `trainer.step` (after `warmup` steps), synchronising the device around the timing."""
    for _ in range(warmup):
        trainer.step()
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    begin = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    sync()
    return (time.perf_counter() - begin) / (steps * batch / 1000)


# ----------------------------------------------------------------------------------------------------
# Phases: a pipeline of runs whose results live in one folder, so that it spans several short calls


@dataclasses.dataclass(frozen=True)
class Phase:
    """One step of a pipeline. `done()`: its result is in the run folder already; `run()`: make it (resuming what
    an earlier call left), True when it finished, False when the time budget cut it short."""

    name: str
    done: Callable[[], bool]
    run: Callable[[], bool]


def kimg_done(folder: Path, kimg: float) -> bool:
    """Whether the trainer saved in `folder`/compact has seen `kimg` thousand images."""
    meta = Path(folder) / "compact" / "meta.json"
    return meta.exists() and json.loads(meta.read_text())["nimg"] >= kimg * 1000


def resume_and_run(trainer: Trainable, cfg: Any, start: float) -> bool:
    """A phase that trains: resume `trainer` from `cfg.out`/compact when an earlier call saved it there, run it
    towards `cfg.kimg` within the time budget; whether it got there."""
    compact = Path(cfg.out) / "compact"
    if (compact / "meta.json").exists():
        trainer.load(compact)
    if trainer.nimg < cfg.kimg * 1000:
        run(trainer, cfg, start)
    return trainer.nimg >= cfg.kimg * 1000


def run_phases(phases: Sequence[Phase], stop_after: str = "") -> bool:
    """Run the phases that are not done, in order, until one is cut short by the time budget or the one named
    `stop_after` is done; True when every phase is."""
    names = [phase.name for phase in phases]
    if stop_after and stop_after not in names:
        raise ValueError(f"no phase {stop_after!r} to stop after: the phases are {', '.join(names)}")
    for phase in phases:
        if not phase.done():
            print(f"phase {phase.name}", flush=True)
            if not phase.run():
                return False
        if phase.name == stop_after:
            return phase is phases[-1]
    return True


# ----------------------------------------------------------------------------------------------------
# Command-line options from a config dataclass


def _option_type(annotation: str) -> type:
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def field_help(config: type) -> dict[str, str]:
    """Each field's help, read from the dataclass source: the comment after the field, continued by the comment
    lines under it that are indented deeper. So an option's help is written once, beside the default it explains;
    a subclass that redeclares a field redeclares its help."""
    help: dict[str, str] = {}
    for cls in reversed(config.__mro__):
        if "__dataclass_fields__" not in vars(cls):
            continue
        field, field_indent = None, 0
        for line in inspect.getsource(cls).splitlines():
            text, indent = line.strip(), len(line) - len(line.lstrip())
            if text.startswith("#"):
                if field is not None and indent > field_indent:
                    help[field] += " " + text.lstrip("# ")
                else:
                    field = None
                continue
            declared = re.match(r"(\w+)\s*:", text)
            field = declared[1] if declared and declared[1] in cls.__dataclass_fields__ else None
            if field is not None:
                field_indent = indent
                comments = [t.string for t in tokenize.generate_tokens(io.StringIO(text + "\n").readline)
                            if t.type == tokenize.COMMENT]
                help[field] = comments[0].lstrip("# ") if comments else help.get(field, "")
    return help


def add_config_options(parser: argparse.ArgumentParser, config: type, required: tuple[str, ...] = ()) -> None:
    """One `--option` per field of the dataclass `config`, with its default and help (`field_help`); booleans get
    `--no-...`."""
    help = field_help(config)
    for field in dataclasses.fields(config):
        kind, flag = _option_type(str(field.type)), "--" + field.name.replace("_", "-")
        text = help.get(field.name) or "default: %(default)s"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=text)
        else:
            parser.add_argument(flag, type=kind, default=field.default, help=text, required=field.name in required)
