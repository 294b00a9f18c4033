"""DualStyleGAN computes what the official code computes (../shared/fixtures/official/dualstylegan_1024).

The seeded weights go through the real loader (`generator.pt` with `g_ema`); the exstyle-code reader is
checked on files written by numpy itself, including one that would run code if unpickled naively.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from official import load_array, outputs, regenerate_state_dict
from test_stylegan2_official import IMAGE, LATENT, assert_close, assert_image_1024

from core.artifacts import CheckpointError
from core.encoders_io import load_dualstylegan, load_exstyle_codes
from core.nets.dualstylegan import DualStyleGAN

FX = "dualstylegan_1024"


@pytest.mark.slow
def test_dualstylegan_1024_all_calls(tmp_path: Path):
    torch.save({"g_ema": regenerate_state_dict(FX)}, tmp_path / "generator.pt")
    model = load_dualstylegan(tmp_path / "generator.pt")
    assert (model.generator.size, model.res_index) == (1024, 6)
    info = outputs(FX)["info"]
    weights, exstyle = info["interp_weights"], load_array(FX, "exstyle")
    assert weights == model.blend_weights()  # the style_transfer.py default, [0.75]*7 + [1]*11
    call = dict(truncation=info["truncation"], truncation_latent=0, interp_weights=weights, randomize_noise=False)
    with torch.no_grad():
        code = load_array(FX, "exstyle_code_zplus")
        assert_close(model.generator.style(code.reshape(18, 512)).reshape(1, 18, 512), FX, "exstyle", **LATENT)
        zplus = load_array(FX, "instyle_zplus")
        image, latent = model([zplus], exstyle, z_plus_latent=True, return_latents=True, **call)
        assert_image_1024(image, FX, "A_img")
        assert_close(latent, FX, "A_latent", **LATENT)
        # the app's one call, from the two Z+ codes, is that same A call
        torch.testing.assert_close(model.style_transfer(zplus, code), image, **IMAGE)
        plain, _ = model([zplus], exstyle, z_plus_latent=True, use_res=False, **call)
        assert_close(torch.nn.functional.adaptive_avg_pool2d(plain, 256), FX, "A_nores_img_pool256", **IMAGE)
        wplus = load_array(FX, "instyle_wplus")
        image, latent = model([wplus], exstyle, input_is_latent=True, return_latents=True, **call)
        assert_image_1024(image, FX, "B_img")
        assert_close(latent, FX, "B_latent", **LATENT)


def small_model() -> DualStyleGAN:
    """A 64 px DualStyleGAN (10 layers: ModRes on 0-6, colour transforms on 7-9), randomly initialised."""
    torch.manual_seed(0)
    return DualStyleGAN(64, 64, 8, channel_base=512, channel_max=64).eval()


def test_small_model_round_trip_and_switches(tmp_path: Path):
    model = small_model()
    torch.save({"g_ema": model.state_dict()}, tmp_path / "generator.pt")
    loaded = load_dualstylegan(tmp_path / "generator.pt")
    assert loaded.res_index == 6 and loaded.generator.config["channel_base"] == 512
    z, ex = torch.randn(2, 10, 64), torch.randn(1, 10, 64)
    with torch.no_grad():
        styled = loaded([z], ex, z_plus_latent=True, randomize_noise=False)[0]
        torch.testing.assert_close(styled, model([z], ex, z_plus_latent=True, randomize_noise=False)[0])
        w = model.intrinsic_latent([z], z_plus_latent=True)
        plain = model.generator.synthesis(w, noise_mode="const")
        # the extrinsic path off in each of its three ways is the plain StyleGAN2 image
        for off in (dict(use_res=False), dict(fuse_index=0), dict(interp_weights=[0.0] * 10)):
            image = model([w], ex, input_is_latent=True, randomize_noise=False, **off)[0]
            torch.testing.assert_close(image, plain, atol=1e-6, rtol=0)
        assert (styled - plain).abs().max() > 1e-3
        # fuse_index=6: ModRes only, the colour transforms above layer 6 are left out
        partial = model([w], ex, input_is_latent=True, randomize_noise=False, fuse_index=6)[0]
        assert not torch.allclose(partial, plain) and not torch.allclose(partial, styled)


def test_an_official_style_loads_as_a_style_like_ours(tmp_path: Path):
    """generator.pt + exstyle_code.npy -> core.style.Style: its transfer is the official style_transfer call."""
    from core.style import read_official_style

    model = small_model()
    torch.save({"g_ema": model.state_dict()}, tmp_path / "generator.pt")
    codes = {f"{i}.jpg": np.random.default_rng(i).standard_normal((1, 10, 64)).astype(np.float32) for i in range(3)}
    np.save(tmp_path / "exstyle_code.npy", codes, allow_pickle=True)
    style = read_official_style(tmp_path / "generator.pt", tmp_path / "exstyle_code.npy", "toy")
    assert style.exemplars == ("0.jpg", "1.jpg", "2.jpg") and style.extrinsic.shape == (3, 10, 64)
    content, weights = torch.randn(2, 10, 64), model.blend_weights(0.6, 1.0)
    with torch.no_grad():
        expected = model.style_transfer(content, torch.from_numpy(codes["1.jpg"]), weights)
    torch.testing.assert_close(style.transfer(content, 1, weights), expected.clamp(-1, 1), atol=1e-5, rtol=0)


def test_style_transfer_options():
    model = small_model()
    content, exstyle = torch.randn(2, 10, 64), torch.randn(1, 10, 64)
    with torch.no_grad():
        image = model.style_transfer(content, exstyle)
        assert image.shape == (2, 3, 64, 64) and torch.isfinite(image).all()
        # preserve_color: the exemplar's fine (colour) rows are replaced by the content's, as style_transfer.py does
        mixed = torch.cat([exstyle.expand(2, -1, -1)[:, :7], content[:, 7:]], 1)
        torch.testing.assert_close(model.style_transfer(content, exstyle, preserve_color=True),
                                   model.style_transfer(content, mixed))
        to_w = lambda codes: model.generator.style(codes.flatten(0, 1)).view_as(codes)  # noqa: E731
        torch.testing.assert_close(
            model.style_transfer(to_w(content), to_w(exstyle), content_space="w+", exstyle_space="w+"), image,
            atol=1e-5, rtol=0,
        )
        assert model.blend_weights(0.5, 0.25) == [0.5] * 7 + [0.25] * 3
        assert model.blend_weights(0.5, 0.25, color_from=9) == [0.5] * 7 + [0.0] * 2 + [0.25]  # layers 7-8: content's
        assert model.blend_weights(0.5, 0.25, color_from=3) == model.blend_weights(0.5, 0.25)  # never into structure


def test_extrinsic_path_trains():
    model = small_model().train()
    image = model.style_transfer(torch.randn(2, 10, 64), torch.randn(2, 10, 64))
    image.square().mean().backward()
    for module in (model.style, model.res[0], model.res[6], model.res[9]):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_exstyle_codes_are_read_without_running_code(tmp_path: Path):
    codes = {f"Cartoons_{i:05d}_01.jpg": np.random.randn(1, 18, 512).astype(np.float32) for i in range(3)}
    np.save(tmp_path / "exstyle_code.npy", codes)
    loaded = load_exstyle_codes(tmp_path / "exstyle_code.npy")
    assert list(loaded) == list(codes)
    assert all(torch.equal(loaded[k], torch.from_numpy(v)) for k, v in codes.items())
    # numpy 1.x wrote protocol-3 pickles naming `numpy.core` (numpy 2: `numpy._core`), as the official files are
    old = tmp_path / "old_numpy.npy"
    with open(old, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(pickle.dumps(np.array(codes), protocol=3).replace(b"numpy._core.", b"numpy.core."))
    assert list(load_exstyle_codes(old)) == list(codes)

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    np.save(tmp_path / "evil.npy", np.array({"style.jpg": Payload()}), allow_pickle=True)
    with pytest.raises(CheckpointError, match="refused global"):
        load_exstyle_codes(tmp_path / "evil.npy")
    assert not marker.exists()
    np.save(tmp_path / "plain.npy", np.zeros((1, 18, 512), np.float32))
    with pytest.raises(CheckpointError, match="not a pickled dict"):
        load_exstyle_codes(tmp_path / "plain.npy")


def test_bad_dualstylegan_files(tmp_path: Path):
    stylegan = tmp_path / "stylegan2.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, stylegan)
    with pytest.raises(CheckpointError, match="DualStyleGAN"):
        load_dualstylegan(stylegan)
    with pytest.raises(CheckpointError, match="not found"):
        load_dualstylegan(tmp_path / "missing.pt")
