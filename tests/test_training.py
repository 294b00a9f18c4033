"""A tiny end-to-end StyleGAN2 training run on the CPU: finite losses, exact and compact resume, DDP at world
size 1 (gloo), the CLI, and data preparation on real photos."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from core.data import decode_shard, shard_paths
from core.training.augment import AdaptiveDiffAugment
from core.training.data import DeviceImageBank
from core.training.stylegan2 import TrainConfig, Trainer, train

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "data" / "faces" / "celeba"
TINY = TrainConfig(size=16, style_dim=16, n_mlp=2, channel_base=64, channel_max=16, batch=4, r1_interval=2,
                   pl_interval=2, augment="fixed", aug_p=0.5, log_kimg=0.008, device="cpu")


def images(n: int = 12, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def bank() -> DeviceImageBank:
    return DeviceImageBank(images())


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [t.detach().clone() for t in [*trainer.G.parameters(), *trainer.D.parameters(), *trainer.G_ema.parameters()]]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only contend
    yield
    torch.set_num_threads(threads)


def test_train_resumes_exactly(tmp_path: Path):
    cfg = dataclasses.replace(TINY, out=str(tmp_path / "run"), kimg=0.024)  # 6 steps: every phase runs
    trainer = train(cfg, data=bank())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log and all(math.isfinite(v) for record in log for v in record.values())
    assert {"loss_G", "loss_D", "r1_penalty", "pl_penalty"} <= {k for record in log for k in record}
    assert list((tmp_path / "run").glob("samples-*.png"))

    for _ in range(2):
        trainer.step()
    expected_stats, expected_weights = trainer.pop_stats(), weights(trainer)

    resumed = Trainer(cfg, torch.device("cpu"), data=bank())
    resumed.load(tmp_path / "run" / "state.pt")
    assert resumed.nimg == 24
    for _ in range(2):
        resumed.step()
    assert resumed.pop_stats() == expected_stats
    assert all(torch.equal(a, b) for a, b in zip(weights(resumed), expected_weights, strict=True))


@pytest.mark.slow
def test_compiled_steps_match_eager(monkeypatch: pytest.MonkeyPatch):
    """torch.compile of the main phases and the augmentation (the fast GPU path) computes the eager step."""
    import torch._inductor.config
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # eager's random numbers in the graphs
    torch._dynamo.reset()
    cfg = dataclasses.replace(TINY, r1_interval=3, pl_interval=3, augment="ada")  # every op, both regularisers
    eager, compiled = (Trainer(dataclasses.replace(cfg, compile=c), torch.device("cpu"), data=bank())
                       for c in (False, True))
    for trainer in (eager, compiled):
        torch.manual_seed(5)
        for _ in range(4):
            trainer.step()
    assert compiled.pop_stats() == pytest.approx(eager.pop_stats(), rel=1e-3, abs=1e-5)
    for a, b in zip(weights(compiled), weights(eager), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_compact_resume_is_half_precision_and_trains(tmp_path: Path):
    cfg = dataclasses.replace(TINY, out=str(tmp_path / "run"), kimg=0.016, channels_last=True)
    trainer = train(cfg, data=bank())
    compact = tmp_path / "run" / "compact"
    assert {p.name for p in compact.iterdir()} == {"G-00.safetensors", "G_ema-00.safetensors", "D-00.safetensors",
                                                   "meta.json"}
    (compact / "G_ema-00.safetensors").unlink()  # what a GPU call carries: G and D only
    resumed = Trainer(cfg, torch.device("cpu"), data=bank())
    resumed.load(compact)
    assert resumed.nimg == trainer.nimg and resumed.ema_start == trainer.nimg
    for a, b in zip(resumed.G.parameters(), trainer.G.parameters(), strict=True):
        torch.testing.assert_close(a, b.half().float())
    resumed.step()
    assert all(math.isfinite(v) for v in resumed.pop_stats().values())


def test_ddp_world_size_one_with_gloo(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cfg = dataclasses.replace(TINY, out=str(tmp_path / "run"), kimg=0.016, augment="ada")
        trainer = train(cfg, data=bank())
        assert isinstance(trainer.d_train, torch.nn.parallel.DistributedDataParallel)
        assert all(torch.isfinite(p).all() for p in trainer.G.parameters())
        assert trainer.nimg == 16
    finally:
        dist.destroy_process_group()


def test_augment_is_differentiable_and_identity_at_p0():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    torch.testing.assert_close(AdaptiveDiffAugment(p=0.0)(x), x)  # adaptive: every op runs, none changes x
    y = AdaptiveDiffAugment(p=1.0, adaptive=False)(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    augment = AdaptiveDiffAugment(speed_kimg=0.001)
    augment.observe(torch.ones(8, 1))  # D sure every real is real: overfitting, so p rises
    augment.adjust(images=1)
    assert float(augment.p) == 1.0 and float(augment.rt) == 1.0


def write_shard(path: Path, pixels: torch.Tensor) -> Path:
    """uint8 images [N, 3, H, W] as a prepared shard (JPEG bytes + offsets), as `core.data prepare` writes them."""
    from io import BytesIO

    from PIL import Image
    jpegs = []
    for image in pixels.permute(0, 2, 3, 1).numpy():
        buffer = BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG")
        jpegs.append(buffer.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    names = np.array([f"{i}.jpg" for i in range(len(jpegs))])
    np.savez(path, jpeg=np.frombuffer(b"".join(jpegs), np.uint8), names=names,
             offsets=np.cumsum([0] + [len(j) for j in jpegs]), size=np.int64(pixels.shape[-1]))
    return path


def test_quality_is_measured_in_the_loop_and_the_best_kept(tmp_path: Path):
    data = tmp_path / "data"
    write_shard(data / "train-00000.npz", images(16, 32))
    write_shard(data / "heldout-00000.npz", torch.flip(images(12, 32), dims=[0]))
    cfg = dataclasses.replace(TINY, size=32, data=str(data), out=str(tmp_path / "run"), kimg=0.032,
                              metric_kimg=0.016, metric_samples=12)
    trainer = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.0, 0.016, 0.032]  # at the start, every 16 images, at the end
    assert all(math.isfinite(r["alex_fd"]) and 0 <= r["alex_precision"] <= 1 for r in records)
    assert "alex_floor_fd" in records[0] and "alex_floor_fd" not in records[1]  # the floor once per process
    assert records[0]["saved_best"] and (tmp_path / "run" / "best" / "meta.json").is_file()
    best = json.loads((tmp_path / "run" / "best" / "meta.json").read_text())["nimg"]
    assert best == 1000 * min(records, key=lambda r: r["alex_fd"])["kimg"]

    cfg = dataclasses.replace(cfg, kimg=0.048, resume=str(tmp_path / "run" / "state.pt"))
    train(cfg)  # resumed in the same folder: not measured again at 32 images, compared with the earlier best
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.0, 0.016, 0.032, 0.048]
    assert records[-1].get("saved_best", False) == (records[-1]["alex_fd"] < min(r["alex_fd"] for r in records[:-1]))
    assert trainer.nimg == 32


def test_cli_runs_on_prepared_shard(tmp_path: Path):
    shard = write_shard(tmp_path / "data" / "train-00000.npz", images(8))
    args = ["--data", str(shard.parent), "--out", str(tmp_path / "run"), "--kimg", "0.008", "--size", "16",
            "--style-dim", "16", "--n-mlp", "1", "--channel-base", "64", "--channel-max", "16", "--batch", "4"]
    subprocess.run([sys.executable, "-m", "core.train", "stylegan2", *args], check=True, cwd=ROOT, timeout=120)
    assert (tmp_path / "run" / "state.pt").is_file()


@pytest.mark.skipif(not (CELEBA / "train").is_dir(), reason="needs ../shared/data/faces/celeba (real photos)")
def test_prepare_real_photos(tmp_path: Path):
    src = tmp_path / "photos"
    src.mkdir()
    photos = sorted((CELEBA / "train").iterdir())[:6]
    for photo in photos:
        (src / photo.name).write_bytes(photo.read_bytes())
    (src / "copy.jpg").write_bytes(photos[0].read_bytes())  # an exact duplicate
    (src / "broken.jpg").write_bytes(b"not an image")
    held = sorted((CELEBA / "eval").iterdir())[:2]
    (src / "leak.jpg").write_bytes(held[0].read_bytes())  # a held-out photo in the training folder
    holdout = tmp_path / "held"
    holdout.mkdir()
    for photo in held:
        (holdout / photo.name).write_bytes(photo.read_bytes())
    dst = tmp_path / "prepared"
    subprocess.run([sys.executable, "-m", "core.data", "prepare", str(src), str(dst), "--size", "64",
                    "--holdout", str(holdout), "--shard-size", "4"], check=True, cwd=ROOT, timeout=120)
    summary = json.loads((dst / "summary.json").read_text())
    train_split = summary["splits"]["train"]
    assert train_split["photos"] == 9
    assert train_split["dropped"]["duplicate"] == 1 and train_split["dropped"]["unreadable"] == 1
    assert train_split["dropped"].get("held_out", 0) == (1 if summary["splits"]["heldout"]["kept"] == 2 else 0)
    assert train_split["kept"] + sum(train_split["dropped"].values()) == 9
    pixels, names = decode_shard(shard_paths(dst)[0])
    assert pixels.shape[1:] == (64, 64, 3) and pixels.dtype == np.uint8 and "broken.jpg" not in names
    assert sum(s["images"] for s in train_split["shards"]) == train_split["kept"] >= 4


def test_compact_parts_split_at_the_size_asked_and_read_back_whole(tmp_path):
    """`--part-mb`: a compact state split into files of at most that size (0: one file a network), read back equal."""
    from core.training.scaffold import RunConfig, read_parts, write_parts

    tensors = {f"w{i}": torch.full((256, 256), float(i)) for i in range(4)}  # 256 KiB each
    write_parts(tmp_path, "G", tensors, RunConfig(part_mb=0.6).part_bytes)
    assert len(list(tmp_path.glob("G-*.safetensors"))) == 2
    assert all(torch.equal(read_parts(tmp_path, "G")[k], v) for k, v in tensors.items())
    write_parts(tmp_path, "G", tensors, RunConfig().part_bytes)  # replaces the old parts
    assert [p.name for p in tmp_path.glob("G-*.safetensors")] == ["G-00.safetensors"]


def test_option_help_is_read_from_the_config_dataclass():
    """Help is written once, beside the default: a trailing comment, continued by deeper-indented comment lines; a
    subclass that redeclares a field without a comment keeps its parent's help; a section comment is nobody's."""
    import argparse

    from core.training.scaffold import RunConfig, add_config_options, field_help

    @dataclasses.dataclass
    class Config(RunConfig):
        kimg: float = 3.0
        # a section header
        width: int = 8  # channels of the
            # first layer
        depth: int = 2

    help = field_help(Config)
    assert help["width"] == "channels of the first layer" and help["depth"] == ""
    assert help["kimg"] == field_help(RunConfig)["kimg"] != ""
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(parser, Config)
    text = " ".join(parser.format_help().split())
    assert "--width WIDTH channels of the first layer (default: 8)" in text and "--depth DEPTH default: 2" in text
    assert parser.parse_args(["--width", "4"]).width == 4
