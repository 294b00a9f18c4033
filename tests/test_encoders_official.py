"""pSp, e4e and Style Transformer compute what the official code computes (../shared/fixtures/official).

Every fixture goes through the real loader: its seeded weights are saved in the official checkpoint container
(prefixes, `opts`, top-level `latent_avg`) and read back by `load_encoder_checkpoint`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
from official import fixture_dir, load_array, regenerate_state_dict
from test_stylegan2_official import LATENT, assert_close

from core.artifacts import CheckpointError
from core.encoders_io import load_encoder_checkpoint
from core.nets.encoders import Encoder4Editing, EncoderModel, GradualStyleEncoder
from core.nets.style_transformer import (
    EditTransformer,
    LatentAttributeClassifier,
    StyleTransformerEncoder,
    reference_edit_loss,
)
from core.nets.stylegan2 import Generator

DECODER = "rosinality_stylegan2_1024"
PSP = "psp_encoder_1024"


@pytest.fixture(scope="module")
def decoder_state() -> dict[str, torch.Tensor]:
    return regenerate_state_dict(DECODER)


@pytest.fixture(scope="module")
def ir_se50_heads_state() -> dict[str, torch.Tensor]:
    """e4e and pSp fixtures share one manifest (same layout, same constructor seed): regenerate it once."""
    e4e, psp = (json.loads((fixture_dir(f) / "manifest.json").read_text()) for f in ("e4e_encoder_1024", PSP))
    assert e4e["state_dict"] == psp["state_dict"]
    return regenerate_state_dict("e4e_encoder_1024")


def save_official(path: Path, fixture: str, encoder_state: dict, decoder_state: dict, opts, prefix: str = "") -> Path:
    """The container pSp / e4e coaches save (`encoder.` / `decoder.` keys; `.module.` for Style Transformer)."""
    state = {f"encoder.{prefix}{k}": v for k, v in encoder_state.items()}
    state.update({f"decoder.{prefix}{k}": v for k, v in decoder_state.items()})
    torch.save({"state_dict": state, "opts": opts, "latent_avg": load_array(fixture, "latent_avg")}, path)
    return path


def assert_encoded(model: EncoderModel, x: torch.Tensor, fixture: str) -> None:
    """`encode` = the official pSp.forward codes (offsets + latent_avg); the offsets alone = the bare encoder's."""
    codes = model.encode(x)
    assert_close(codes, fixture, "codes_plus_avg", **LATENT)
    assert_close(codes - model.latent_avg, fixture, "codes", **LATENT)
    torch.testing.assert_close(model.latent_avg, load_array(fixture, "latent_avg"), atol=0, rtol=0)


@pytest.mark.slow
def test_e4e_1024_and_chain_to_decoder(tmp_path: Path, ir_se50_heads_state, decoder_state):
    fx = "e4e_encoder_1024"
    opts = argparse.Namespace(encoder_type="Encoder4Editing", start_from_latent_avg=True, stylegan_size=1024)
    path = save_official(tmp_path / "e4e_ffhq_encode.pt", fx, ir_se50_heads_state, decoder_state, opts)
    model = load_encoder_checkpoint(path)
    assert isinstance(model.encoder, Encoder4Editing) and model.encoder.n_styles == 18
    x = load_array(fx, "x")
    with torch.no_grad():
        assert_encoded(model, x, fx)
        model.encoder.progressive_stage = 0  # official ProgressiveStage.WTraining: w0 only
        assert_close(model.encoder(x), fx, "codes_stage0", **LATENT)
        model.encoder.progressive_stage = 18
        # end to end (one image): encoder -> the rosinality decoder, as pSp.forward(randomize_noise=False) calls it
        images, _ = model(x[:1], resize=True)
        codes = load_array(fx, "codes_plus_avg")[:1]
        reference, _ = model.decoder([codes], input_is_latent=True, randomize_noise=False)
    assert images.shape == (1, 3, 256, 256) and torch.isfinite(images).all()
    torch.testing.assert_close(images, torch.nn.functional.adaptive_avg_pool2d(reference, 256), atol=2e-4, rtol=1e-4)


def test_psp_1024(tmp_path: Path, ir_se50_heads_state, decoder_state):
    fx = PSP
    opts = dict(encoder_type="GradualStyleEncoder", start_from_latent_avg=True, learn_in_w=False, input_nc=3)
    path = save_official(tmp_path / "psp_ffhq_encode.pt", fx, ir_se50_heads_state, decoder_state, opts)
    model = load_encoder_checkpoint(path)
    assert type(model.encoder) is GradualStyleEncoder and model.encoder.backbone == "ir_se50"
    x = load_array(fx, "x")
    with torch.no_grad():
        assert_encoded(model, x, fx)


def test_style_transformer_1024(tmp_path: Path, decoder_state):
    fx = "style_transformer_encoder_1024"
    opts = dict(start_from_latent_avg=True, learn_in_w=False, output_size=1024)  # no encoder_type in its opts
    state = regenerate_state_dict(fx)
    path = save_official(tmp_path / "style_transformer_ffhq.pt", fx, state, decoder_state, opts, prefix="module.")
    model = load_encoder_checkpoint(path)
    assert isinstance(model.encoder, StyleTransformerEncoder)
    x = load_array(fx, "x")
    with torch.no_grad():
        assert_close(model.encoder.query(model.decoder.style, 2), fx, "query", **LATENT)
        assert_encoded(model, x, fx)  # encode() builds the queries itself, as StyleTransformer.forward


@pytest.mark.parametrize(
    "cls, backbone, input_size",
    [
        (GradualStyleEncoder, "ir_se50", 128),
        (Encoder4Editing, "ir_se50", 128),
        (GradualStyleEncoder, "ir50", 64),
        (GradualStyleEncoder, "resnet34", 64),
    ],
)
def test_small_encoders_round_trip(tmp_path: Path, cls, backbone: str, input_size: int):
    """An encoder for a 128 px generator (12 styles) is the same class; its config is read back off the weights."""
    decoder = Generator(128, 512, 2, channel_base=4096, channel_max=512).eval()
    encoder = cls(12, backbone, input_size=input_size).eval()
    kind = "e4e" if cls is Encoder4Editing else "psp"
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    torch.save({"state_dict": state, "opts": {"start_from_latent_avg": False}}, tmp_path / "enc.pt")
    loaded = load_encoder_checkpoint(tmp_path / "enc.pt", kind=kind)
    assert type(loaded.encoder) is cls and loaded.latent_avg is None
    assert (loaded.encoder.backbone, loaded.encoder.n_styles, loaded.encoder.input_size) == (backbone, 12, input_size)
    with torch.no_grad():
        assert loaded.encode(torch.rand(1, 3, input_size, input_size) * 2 - 1).shape == (1, 12, 512)


def test_e4e_progressive_stage_trains_only_active_heads():
    encoder = Encoder4Editing(12, input_size=64).train()
    encoder.progressive_stage = 2
    codes = encoder(torch.rand(2, 3, 64, 64))
    codes.square().mean().backward()
    trained = [head.linear.weight.grad is not None for head in encoder.styles]
    assert trained == [True] * 3 + [False] * 9
    assert torch.equal(codes[:, 3:], codes[:, :1].expand(-1, 9, -1))  # no deltas beyond the stage


def test_zplus_encoder_model_maps_codes_layer_by_layer():
    """DualStyleGAN's encoder.pt codes are Z+: the decoder maps each row (its `z_plus_latent=True`)."""
    decoder = Generator(64, 512, 2, channel_base=1024, channel_max=64).eval()
    model = EncoderModel(GradualStyleEncoder(10, input_size=64), decoder, latent_space="z+").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        images, codes = model(x, resize=False)
        w = torch.stack([decoder.style(codes[:, i]) for i in range(10)], 1)
        torch.testing.assert_close(images, decoder.synthesis(w), atol=1e-4, rtol=0)  # batched vs per-row mapping


def test_edit_transformer_shapes_and_gradients():
    """No official weights exist: check the layout, shapes, and that the loss trains only the edit transformer."""
    editor = EditTransformer().train()
    classifier = LatentAttributeClassifier().eval().requires_grad_(False)
    assert editor.state_dict()["transformerlayer.self_attn.in_proj_weight"].shape == (1536, 512)
    assert classifier.state_dict()["fcs.0.weight"].shape == (2048, 9216)
    assert classifier.state_dict()["indep_fcs.39.weight"].shape == (32, 512)
    source, reference = torch.randn(2, 18, 512), torch.randn(2, 18, 512)
    edited = editor(source, reference)
    assert edited.shape == (2, 18, 512)
    logits, embeddings = classifier(edited)
    assert logits.shape == (2, 40) and embeddings.shape == (2, 40, 32)
    loss, terms = reference_edit_loss(classifier, source, reference, edited, attribute=5)
    loss.backward()
    assert set(terms) == {"loss", "loss_l2_src_code", "loss_l2_ref_attr", "loss_l2_src_attr"}
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in editor.parameters())
    assert all(p.grad is None for p in classifier.parameters())


def test_bad_encoder_checkpoints(tmp_path: Path):
    generator_only = tmp_path / "stylegan2.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, generator_only)
    with pytest.raises(CheckpointError, match="not a pSp / e4e / Style Transformer"):
        load_encoder_checkpoint(generator_only)
    encoder = GradualStyleEncoder(10, input_size=64)
    decoder = Generator(64, 512, 2, channel_base=1024, channel_max=64)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    ambiguous = tmp_path / "no_opts.pt"
    torch.save({"state_dict": state}, ambiguous)
    with pytest.raises(CheckpointError, match="cannot tell pSp from e4e"):
        load_encoder_checkpoint(ambiguous)
    assert isinstance(load_encoder_checkpoint(ambiguous, kind="psp").encoder, GradualStyleEncoder)
    code = tmp_path / "code.pt"
    torch.save({"state_dict": state, "opts": os.getcwd}, code)  # a global that weights_only refuses
    with pytest.raises(CheckpointError, match="code execution"):
        load_encoder_checkpoint(code)
    truncated = {k: v for k, v in state.items() if "styles.9." not in k or "linear" not in k}
    torch.save({"state_dict": truncated, "opts": {"encoder_type": "GradualStyleEncoder"}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_encoder_checkpoint(tmp_path / "bad.pt")
