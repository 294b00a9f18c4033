"""The project's StyleGAN2 computes what the official code computes (../shared/fixtures/official)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from nvidia_pickle import write_snapshot
from official import load_array, regenerate_state_dict

from core.artifacts import CheckpointError
from core.checkpoints import generator_from_state_dict, load_generator_checkpoint
from core.nets import stylegan2
from core.nets.stylegan2 import Discriminator

IMAGE = dict(atol=2e-4, rtol=1e-4)
LATENT = dict(atol=1e-5, rtol=1e-5)


def assert_close(actual: torch.Tensor, fixture: str, name: str, **tol) -> None:
    torch.testing.assert_close(actual, load_array(fixture, name), **tol)


def assert_image_1024(image: torch.Tensor, fixture: str, name: str) -> None:
    """1024² references are stored as a float32 centre crop, a float32 256 pooling and a float16 whole."""
    assert_close(image[..., 448:576, 448:576], fixture, f"{name}.crop_f32", **IMAGE)
    assert_close(torch.nn.functional.adaptive_avg_pool2d(image, 256), fixture, f"{name}_pool256", **IMAGE)
    torch.testing.assert_close(image, load_array(fixture, f"{name}.f16"), atol=5e-3, rtol=0)


def rosinality_generator(fixture: str):
    state = regenerate_state_dict(fixture)
    # through the same converter a real `.pt` goes through (load_rosinality reads g_ema/latent_avg from the file)
    return generator_from_state_dict(state, load_array(fixture, "truncation_latent"))


def test_rosinality_256_all_calls():
    fx = "rosinality_stylegan2_256"
    g = rosinality_generator(fx)
    z, tl = load_array(fx, "z"), load_array(fx, "truncation_latent")
    noise = [load_array(fx, f"D_noise_{i:02d}") for i in range(g.num_layers)]
    with torch.no_grad():
        assert_close(g.style(load_array(fx, "z_map")), fx, "w_map", **LATENT)
        calls = {
            "A": dict(styles=[z], randomize_noise=False),
            "B": dict(styles=[z], truncation=0.7, truncation_latent=tl, randomize_noise=False),
            "C": dict(styles=[load_array(fx, "C_wplus")], input_is_latent=True, randomize_noise=False),
            "D": dict(styles=[load_array(fx, "D_w")], input_is_latent=True, truncation=0.7, truncation_latent=tl,
                      noise=noise),
            "E": dict(styles=[z, load_array(fx, "E_z2")], inject_index=4, noise=noise),
        }
        for name, kwargs in calls.items():
            image, latent = g(return_latents=True, **kwargs)
            assert_close(image, fx, f"{name}_img", **IMAGE)
            assert_close(latent, fx, f"{name}_latent", **LATENT)


def test_training_path_matches_fused_path():
    """The non-fused modulated conv (used for batched training) is the same maths as the fused one."""
    fx = "rosinality_stylegan2_256"
    g = rosinality_generator(fx).train()
    image = g.synthesis(load_array(fx, "C_wplus"), noise_mode="const")  # batch 2, grad enabled: non-fused
    assert_close(image.detach(), fx, "C_img", **IMAGE)


def test_folded_filters_match_official(monkeypatch):
    """The GPU default, blurs folded into the up / down-sampling convs, is the same maths (checked on the CPU)."""
    monkeypatch.setattr(stylegan2, "FOLD_FILTERS", True)
    fx = "rosinality_stylegan2_256"
    g = rosinality_generator(fx)
    with torch.no_grad():  # fused (grouped) modulated convs
        assert_close(g.synthesis(load_array(fx, "C_wplus"), noise_mode="const"), fx, "C_img", **IMAGE)
    image = g.train().synthesis(load_array(fx, "C_wplus"), noise_mode="const")  # shared-conv training path
    assert_close(image.detach(), fx, "C_img", **IMAGE)
    test_rosinality_discriminator_256()


def test_rosinality_discriminator_256():
    fx = "rosinality_discriminator_256"
    d = Discriminator(256).eval()
    d.load_state_dict(regenerate_state_dict(fx), strict=True)
    x4 = load_array(fx, "x4")
    with torch.no_grad():
        for n in (4, 2, 1):  # minibatch-stddev groups 4, 2, 1
            assert_close(d(x4[:n]), fx, f"out{n}", atol=1e-5, rtol=0)


@pytest.mark.slow
def test_rosinality_1024_all_calls(tmp_path: Path):
    fx = "rosinality_stylegan2_1024"
    state = regenerate_state_dict(fx)
    path = tmp_path / "g.pt"
    torch.save({"g_ema": state, "latent_avg": load_array(fx, "truncation_latent")[0]}, path)
    g = load_generator_checkpoint(path)  # the real `.pt` path: weights_only load + config inference
    assert g.config["size"] == 1024 and g.n_latent == 18
    z, tl = load_array(fx, "z"), load_array(fx, "truncation_latent")
    with torch.no_grad():
        assert_close(g.style(load_array(fx, "z_map")), fx, "w_map", **LATENT)
        for name, kwargs in {
            "A": dict(styles=[z]),
            "B": dict(styles=[z], truncation=0.7, truncation_latent=tl),
            "C": dict(styles=[load_array(fx, "C_wplus")], input_is_latent=True),
        }.items():
            image, latent = g(return_latents=True, randomize_noise=False, **kwargs)
            assert_image_1024(image, fx, f"{name}_img")
            assert_close(latent, fx, f"{name}_latent", **LATENT)


@pytest.mark.slow
def test_nvidia_1024_pickle(tmp_path: Path):
    fx = "nvidia_stylegan2ada_1024"
    state = regenerate_state_dict(fx)
    clamp = {f"synthesis.b{r}.conv{i}.conv_clamp": 256 for r in (4, 8) for i in (0, 1)}
    marker = Path("/tmp/stylegan_playground_pickle_pwned")
    marker.unlink(missing_ok=True)
    g = load_generator_checkpoint(write_snapshot(tmp_path / "network-snapshot.pkl", state, clamp))
    assert not marker.exists(), "the restricted unpickler executed a global from the file"
    assert g.config["conv_clamp"] == 256
    torch.testing.assert_close(g.w_avg, load_array(fx, "w_avg")[0], atol=0, rtol=0)
    z_map = load_array(fx, "z_map")
    with torch.no_grad():
        assert_close(g.mapping(z_map).unsqueeze(1).expand(-1, 18, -1), fx, "ws_map", **LATENT)
        assert_close(g.mapping(z_map, 0.7).unsqueeze(1).expand(-1, 18, -1), fx, "ws_map_psi07", **LATENT)
        assert_close(g.mapping(z_map, 0.7, truncation_cutoff=8), fx, "ws_map_psi07_cut8", **LATENT)
        z = load_array(fx, "z")
        assert_image_1024(g.synthesis(g.mapping(z), noise_mode="const"), fx, "A_img")
        assert_image_1024(g.synthesis(g.mapping(z, 0.7), noise_mode="const"), fx, "B_img")
        assert_image_1024(g.synthesis(load_array(fx, "C_ws"), noise_mode="const"), fx, "C_img")  # PTI's call


def test_bad_checkpoints_give_clear_errors(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        load_generator_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_generator_checkpoint(corrupt)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}}, wrong)
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        load_generator_checkpoint(wrong)
    code = tmp_path / "code.pt"
    torch.save({"g_ema": os.getcwd, "latent_avg": torch.zeros(1)}, code)  # needs code execution to load
    with pytest.raises(CheckpointError, match="code execution"):
        load_generator_checkpoint(code)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_generator_checkpoint(text)
    bad_pickle = tmp_path / "bad.pkl"
    bad_pickle.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="stylegan2-ada pickle"):
        load_generator_checkpoint(bad_pickle)
