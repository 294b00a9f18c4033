"""The pSp / e4e / Style Transformer encoders trained here: the shipped ones on held-out faces, the trainer on a
tiny generator, and every place a user reaches them (registry, `invert`, PTI's encoder pivot, the CLI)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from official import shared
from test_training import write_shard

from core.__main__ import main
from core.artifacts import CheckpointError, sha256_of
from core.checkpoints import save_generator
from core.encoders_io import read_encoder_file
from core.faces import align_face, pil_to_tensor
from core.inversion import ENCODER_METHODS, invert
from core.measures import lpips_distance
from core.nets.stylegan2 import Generator
from core.registry import encoder_for, load_encoder, resolve
from core.training.encoder import EncoderConfig, export_encoder, train


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    """Four CelebA eval photos (people nobody trained on), aligned at 128 px: [4, 3, 128, 128] in [-1, 1]."""
    photos = sorted(shared("data/faces/celeba/eval").iterdir())[::125][:4]
    return torch.stack([pil_to_tensor(align_face(p, size=128).image)[0] for p in photos])


@pytest.mark.parametrize("method", ENCODER_METHODS)
def test_shipped_encoder_reconstructs_held_out_faces_far_better_than_the_mean_face(method, held_out):
    model = load_encoder(encoder_for(method))
    G = model.decoder
    reconstruction = invert(G, held_out, method, encoder=model).reconstruction  # the path users take
    with torch.no_grad():
        mean_face = G.synthesis(G.w_avg.view(1, 1, -1).expand(len(held_out), G.n_latent, -1), noise_mode="const")
    ours, baseline = lpips_distance(reconstruction, held_out).mean(), lpips_distance(mean_face, held_out).mean()
    assert ours < 0.75 * baseline, (ours, baseline)


def layer_spread(codes: torch.Tensor) -> float:
    """Mean distance of each layer's w from the code's mean w: 0 for a code in W, larger the further into W+."""
    return (codes - codes.mean(1, keepdim=True)).norm(dim=2).mean().item()


def test_e4e_codes_stay_closer_to_w_than_psp_codes(held_out):
    with torch.no_grad():
        spread = {m: layer_spread(load_encoder(encoder_for(m)).encode(held_out)) for m in ("psp", "e4e")}
    assert spread["e4e"] < 0.9 * spread["psp"], spread


def test_shipped_z_plus_encoder_reconstructs_held_out_faces_through_the_mapping(held_out):
    """DualStyleGAN's content encoder: Z+ codes, mapped layer by layer, far closer to the photo than the mean face."""
    model = load_encoder(encoder_for("dualstylegan_encoder"))
    G = model.decoder
    with torch.no_grad():
        codes = model.encode(held_out)
        reconstruction = G.synthesis(model.to_wplus(codes), noise_mode="const")
        mean_face = G.synthesis(G.w_avg.view(1, 1, -1).expand(len(held_out), G.n_latent, -1), noise_mode="const")
    assert model.latent_space == "z+" and codes.abs().mean() < 3  # z codes: unit Gaussian scale, not w's
    ours, baseline = lpips_distance(reconstruction, held_out).mean(), lpips_distance(mean_face, held_out).mean()
    assert ours < 0.8 * baseline, (ours, baseline)


@pytest.mark.parametrize("method", [*ENCODER_METHODS, "dualstylegan_encoder"])
def test_shipped_encoders_belong_to_the_shipped_generator(method):
    _, _, meta = read_encoder_file(resolve(encoder_for(method)))
    assert meta["generator_sha256"] == sha256_of(resolve("default")), (
        f"{encoder_for(method)} was trained for another generator: retrain it (models/face128/ENCODERS.md)")


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(64, 32, 2, channel_base=256, channel_max=32)
    G.w_avg.copy_(G.mean_latent(256)[0])
    return G.eval()


def test_an_encoder_for_another_generator_is_refused_with_retrain(tmp_path):
    save_generator(tiny_generator(1), tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="retrain"):
        load_encoder("face128-e4e", generator=tmp_path / "other.safetensors")


@pytest.mark.parametrize("arch", ENCODER_METHODS)
def test_trainer_trains_resumes_and_exports_a_loadable_encoder(arch, tmp_path):
    generator = save_generator(tiny_generator(), tmp_path / "G.safetensors")
    common = dict(arch=arch, generator=str(generator), synthetic=1.0, identity=0.0, batch=2, device="cpu",
                  widths="16,16,16,16", units="1,1,1,1", head_width=8, ff_dim=16, log_kimg=0.002, sample_minutes=0,
                  progressive_start_kimg=0.002, progressive_every_kimg=0.002)
    first = train(EncoderConfig(out=str(tmp_path / "run"), kimg=0.004, **common))
    before = {k: v.clone() for k, v in first.encoder.state_dict().items()}
    assert any(not torch.equal(v, first.encoder.state_dict()[k]) for k, v in
               build_fresh(first).state_dict().items() if v.is_floating_point())
    second = train(EncoderConfig(out=str(tmp_path / "run2"), resume=str(tmp_path / "run" / "compact"), kimg=0.008,
                                 **common))
    assert second.nimg == 8 and (arch != "e4e" or second.encoder.progressive_stage > 0)
    assert any(not torch.allclose(before[k].float(), v.float()) for k, v in second.encoder.state_dict().items())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log and {"l2", "lpips", "latent", "loss"} <= set(log[-1])
    shipped = export_encoder(tmp_path / "run2" / "compact", tmp_path / f"{arch}.safetensors")
    model = load_encoder(shipped, generator=generator)
    assert model.encode(torch.zeros(1, 3, 64, 64)).shape == (1, 10, 32)


def test_z_plus_encoder_starts_from_a_w_plus_one_and_decodes_through_the_mapping(tmp_path):
    """DualStyleGAN's encoder: one z per layer, initialised from a W+ encoder's weights, shipped and loaded as Z+."""
    generator = save_generator(tiny_generator(), tmp_path / "G.safetensors")
    common = dict(arch="psp", generator=str(generator), synthetic=1.0, identity=0.0, batch=2, device="cpu",
                  widths="16,16,16,16", units="1,1,1,1", head_width=8, log_kimg=0.002, sample_minutes=0)
    train(EncoderConfig(out=str(tmp_path / "w"), kimg=0.004, **common))
    w_plus = export_encoder(tmp_path / "w" / "compact", tmp_path / "w.safetensors")
    z_run = train(EncoderConfig(out=str(tmp_path / "z"), kimg=0.004, latent_space="z+", init=str(w_plus), **common))
    assert z_run.nimg == 4 and z_run.latent_avg.abs().max() == 0
    model = load_encoder(export_encoder(tmp_path / "z" / "compact", tmp_path / "z.safetensors"), generator=generator)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        codes = model.encode(images)
        mapped = model.decoder.style(codes.flatten(0, 1)).view_as(codes)
        assert model.latent_space == "z+" and torch.allclose(model.to_wplus(codes), mapped)
        assert torch.allclose(z_run.encode(images, z_run.encoder.eval()), codes, atol=3e-2)  # float16 export


def build_fresh(trainer) -> torch.nn.Module:
    """The same architecture, freshly initialised with the trainer's seed: what training must have moved away from."""
    from core.encoders_io import build_encoder

    torch.manual_seed(trainer.cfg.seed)
    return build_encoder(trainer.cfg.arch, trainer.G.n_latent, trainer.G.size, trainer.G.style_dim,
                         trainer.cfg.network())


def test_pti_with_an_e4e_pivot_starts_from_the_encoder_code(held_out):
    model = load_encoder("face128-v2-e4e")  # the default generator's
    result = invert(model.decoder, held_out[:1], "pti", preset="fast", pivot="e4e", encoder=model, steps=3)
    with torch.no_grad():
        assert torch.allclose(result.pivot, model.encode(held_out[:1]), atol=1e-5)
    assert result.options["pivot"] == "e4e" and len(result.losses["tune"]["lpips"]) <= 3
    with pytest.raises(ValueError, match="needs encoder"):
        invert(model.decoder, held_out[:1], "pti", pivot="e4e")


@pytest.mark.parametrize("method", ["e4e", "style_transformer"])
def test_cli_inverts_with_an_encoder(method, tmp_path):
    photo = sorted(shared("data/faces/celeba/eval").iterdir())[0]
    shutil.copy(photo, tmp_path / "face.jpg")
    assert main(["invert", str(tmp_path / "face.jpg"), "--method", method, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "face" / "metrics.json").read_text())
    assert report["method"] == method and 0 < report["measures"]["lpips"] < 0.6 and report["timings"]["total"] < 5


def test_one_cli_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(command in listed for command in ("invert", "train", "data"))
    with pytest.raises(SystemExit):
        main(["train", "encoder", "--help"])
    assert "--progressive-start-kimg" in capsys.readouterr().out


def test_encoder_quality_is_measured_in_the_loop_and_the_best_kept(tmp_path):
    """`--metric-kimg`: the held-out round trip measured by name (the share of people lost, then LPIPS / PSNR),
    logged in metrics.jsonl, and the best snapshot kept as a compact folder that exports."""
    generator = save_generator(tiny_generator(), tmp_path / "G.safetensors")
    shard = tmp_path / "data" / "heldout-00000.npz"
    write_shard(shard, (torch.rand(6, 3, 64, 64) * 255).to(torch.uint8))
    cfg = EncoderConfig(arch="psp", generator=str(generator), data=str(shard.parent), synthetic=1.0, identity=0.0,
                        batch=2, device="cpu", widths="16,16,16,16", units="1,1,1,1", head_width=8, log_kimg=0.002,
                        sample_minutes=0, kimg=0.006, metric_kimg=0.002, metric_samples=4,
                        out=str(tmp_path / "run"))
    trainer = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.0, 0.002, 0.004, 0.006]
    assert {"person_lost", "person_similarity", "reconstruction_lpips", "reconstruction_psnr"} <= set(records[0])
    assert all(0 <= r["person_lost"] <= 1 and r["best_by"] == r["person_lost"] for r in records)
    assert trainer.facenet is not None and records[0].get("saved_best")
    best = export_encoder(tmp_path / "run" / "best" / "compact", tmp_path / "best.safetensors")
    assert load_encoder(best, generator=generator).encode(torch.zeros(1, 3, 64, 64)).shape == (1, 10, 32)
