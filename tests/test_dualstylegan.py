"""DualStyleGAN trained here: the phase runner, the pipeline end to end on a tiny generator (CPU, a few steps) with its
resumes, and the style file."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from official import shared
from PIL import Image
from safetensors.torch import load_file
from test_encoders import tiny_generator

from core.__main__ import main
from core.artifacts import CheckpointError
from core.checkpoints import save_generator
from core.nets.dualstylegan import DualStyleGAN
from core.style import load_style, recommended_structure, style_entry
from core.training.dualstylegan import DualStyleGANConfig, read_stage2, train
from core.training.dualstylegan.extrinsic import PretrainTrainer
from core.training.encoder import EncoderConfig, export_encoder
from core.training.encoder import train as train_encoder
from core.training.scaffold import Phase, run_phases


def test_dualstylegan_over_a_generator_draws_the_generator_at_weight_zero():
    G = tiny_generator()
    model = DualStyleGAN.over(G, res_index=4)
    for p in model.parameters():  # an extrinsic path that would change everything if it were used
        p.data.add_(torch.randn_like(p) * 0.1)
    w = G.mapping(torch.randn(2, G.style_dim))[:, None].expand(-1, G.n_latent, -1)
    ex = G.mapping(torch.randn(2, G.style_dim))[:, None].expand(-1, G.n_latent, -1)
    noise = G.noise_maps("const", 2)
    with torch.no_grad():
        plain = G.synthesis(w, noise_mode="const")
        assert torch.allclose(model.synthesis(w, ex, [0.0] * G.n_latent, G.n_latent, noise), plain, atol=1e-6)
        assert not torch.allclose(model.synthesis(w, ex, [1.0] * G.n_latent, G.n_latent, noise), plain, atol=1e-3)


def test_train_dualstylegan_runs_end_to_end_on_a_tiny_setting(tmp_path):
    """Align -> fine-tune G' -> destylise with a Z+ encoder -> stage II -> stage III -> export, a few steps each; a
    second call with the same output folder finds everything done and only exports again."""
    styles = tmp_path / "styles"
    styles.mkdir()
    for photo in sorted(shared("data/styles/ukiyoe").iterdir())[:3]:
        shutil.copy(photo, styles / photo.name)
    generator = save_generator(tiny_generator(), tmp_path / "G.safetensors")
    train_encoder(EncoderConfig(out=str(tmp_path / "enc"), generator=str(generator), latent_space="z+", synthetic=1.0,
                                identity=0.0, batch=2, device="cpu", widths="16,16,16,16", units="1,1,1,1",
                                head_width=8, kimg=0.002, sample_minutes=0))
    encoder = export_encoder(tmp_path / "enc" / "compact", tmp_path / "zplus.safetensors")
    cfg = DualStyleGANConfig(styles=str(styles), generator=str(generator), encoder=str(encoder),
                             out=str(tmp_path / "run"), res_index=4, batch=2, amp=False, finetune_kimg=0.004,
                             destylize_steps=3, pretrain_kimg=0.004, style_kimg=0.004, identity=0.0, device="cpu",
                             sample_minutes=0, log_kimg=0.002)
    stage2 = train(dataclasses.replace(cfg, styles="", out=str(tmp_path / "stage2")))  # stage II alone, exported
    assert stage2 == tmp_path / "stage2" / "stage2.safetensors"
    with pytest.raises(CheckpointError, match="retrain"):
        read_stage2(str(stage2), str(save_generator(tiny_generator(1), tmp_path / "other.safetensors")))
    run_cfg = dataclasses.replace(cfg, pretrained=str(stage2))  # a style run starting from the shipped file
    assert train(dataclasses.replace(run_cfg, minutes=0.01)) is None  # aligned; the time budget cuts fine-tuning
    assert json.loads((tmp_path / "run" / "finetune" / "compact" / "meta.json").read_text())["nimg"] == 0
    assert train(dataclasses.replace(run_cfg, stop_after="codes")) is None  # fine-tuning resumed, then destylised
    assert (tmp_path / "run" / "codes.safetensors").exists() and not (tmp_path / "run" / "style").exists()
    path = train(run_cfg)
    assert path is not None and path.name == "styles.safetensors"
    assert not (tmp_path / "run" / "pretrain").exists()
    tensors = load_file(str(path))
    assert tensors["exemplars.extrinsic"].shape == (3, 10, 32) and tensors["exemplars.intrinsic"].shape == (3, 10, 32)
    assert tensors["res.0.conv.0.weight"].dtype == torch.int8 and "res.0.conv.0.weight.scale" in tensors
    for phase in ("finetune", "style"):
        assert (tmp_path / "run" / phase / "compact" / "meta.json").exists()
    assert 0 <= json.loads((tmp_path / "run" / "style" / "compact" / "meta.json").read_text())["augment_p"] <= 1
    assert train(run_cfg) == path  # nothing left to do: the phases are skipped and the style exported again

    style = load_style(path, generator=generator)
    assert style.name == "styles" and len(style.exemplars) == 3 and style.model.res_index == 4
    assert style.structure == 0.6  # a style of one's own: the official default
    content = torch.randn(2, 10, 32)
    with torch.no_grad():
        face = style.generator.synthesis(style.to_w(content), noise_mode="const").clamp(-1, 1)
        assert torch.equal(style.transfer(content, 1, [0.0] * 10), face)
        assert style.transfer(content, 2, style.weights(1.0, 1.0)).shape == (2, 3, 64, 64)
        # the face-keeping colour path: the last resolution's two layers only, the layers before the content's own
        assert style.weights(0.6, 1.0, color_from=style.face_keeping_color_from) == [0.6] * 5 + [0.0] * 3 + [1.0] * 2
        assert style.sample_exemplars(4, seed=1).shape == (4, 10, 32)
    with pytest.raises(CheckpointError, match="retrain"):
        load_style(path, generator=save_generator(tiny_generator(1), tmp_path / "other.safetensors"))

    # the CLI, with a shipped exemplar and with a user's own exemplar image (a style image it never trained on)
    photo = sorted(shared("data/faces/celeba/eval").iterdir())[0]
    common = ["stylize", str(photo), "--style", str(path), "--model", str(generator), "--encoder", str(encoder),
              "--refine-steps", "2"]
    assert main([*common, "--exemplar", "2", "--structure", "1", "--out", str(tmp_path / "cli")]) == 0
    report = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert report["style"] == "styles" and 0 <= report["measures"]["identity"] <= 1
    assert -1 <= report["measures"]["reconstruction_identity"] <= 1 and report["refine_steps"] == 2
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "metrics.json").read_text())["structure"] == 0.6
    assert {p.name for p in (tmp_path / "cli").iterdir()} >= {"photo.png", "reconstruction.png", "stylized.png",
                                                             "exemplar.png", "strip.png"}
    unseen = sorted(shared("data/styles/ukiyoe").iterdir())[5]
    assert main([*common, "--exemplar", str(unseen), "--out", str(tmp_path / "own")]) == 0
    assert main([*common, "--random-exemplar", "3", "--preserve-color", "--out", str(tmp_path / "sampled")]) == 0
    assert main([*common, "--exemplar", "2", "--structure", "1", "--keep-face", "--out", str(tmp_path / "kept")]) == 0
    assert json.loads((tmp_path / "kept" / "metrics.json").read_text())["keep_face"]
    kept, full = (np.asarray(Image.open(tmp_path / run / "stylized.png"), float) for run in ("kept", "cli"))
    assert np.abs(kept - full).mean() > 0.5  # layers 5-7 drawn from the photo's code, not the exemplar's
    assert main([*common, "--exemplar", "7", "--out", str(tmp_path / "bad")]) == 2  # 3 exemplars only


def test_stage2_follows_the_papers_schedule_the_exemplar_taking_finer_layers_first():
    """The official pretrain_dualstylegan.py: the extrinsic face (weight 1 everywhere) takes layers 7.. for the first
    twelfth of the run, 6.. for the next, then 5..; the coarse schedule (face128's stage II) gives it layers 0..l."""
    G = tiny_generator()
    cfg = DualStyleGANConfig(res_index=6, batch=2, amp=False, pretrain_kimg=1.2, device="cpu")
    trainer = PretrainTrainer(cfg, G, torch.device("cpu"))
    for nimg, k in ((0, 7), (99, 7), (100, 6), (199, 6), (200, 5), (1200, 5)):
        trainer.nimg = nimg
        taken, weights = trainer.split()
        assert taken == [i >= k for i in range(G.n_latent)] and weights == [1.0] * G.n_latent
    coarse = PretrainTrainer(dataclasses.replace(cfg, pretrain_schedule="coarse"), G, torch.device("cpu"))
    for _ in range(5):
        taken, weights = coarse.split()
        assert taken == [t > 0 for t in weights] and taken[0] and not taken[1]  # at 0 kimg: layer 0 only
    with pytest.raises(ValueError, match="pretrain_schedule"):
        PretrainTrainer(dataclasses.replace(cfg, pretrain_schedule="fine"), G, torch.device("cpu"))


def test_run_phases_skips_what_is_done_stops_when_time_runs_out_and_after_the_named_phase():
    ran = []

    def phase(name: str, done: bool = False, finishes: bool = True) -> Phase:
        return Phase(name, lambda: done, lambda: ran.append(name) or finishes)

    assert run_phases([phase("a", done=True), phase("b"), phase("c")]) and ran == ["b", "c"]
    ran.clear()
    assert not run_phases([phase("a"), phase("b", finishes=False), phase("c")]) and ran == ["a", "b"]
    ran.clear()
    assert not run_phases([phase("a", done=True), phase("b"), phase("c")], stop_after="a") and ran == []
    assert not run_phases([phase("a"), phase("b"), phase("c")], stop_after="b") and ran == ["a", "b"]
    ran.clear()
    assert run_phases([phase("a"), phase("b")], stop_after="b") and ran == ["a", "b"]  # the last: all done
    with pytest.raises(ValueError, match="no phase 'codez'"):
        run_phases([phase("a")], stop_after="codez")


def test_the_shipped_stage2_moves_a_face_toward_the_extrinsic_faces_structure():
    """Stage II (trained once per generator, every style starts from it): DualStyleGAN(w1, extrinsic w2, weight 1 on
    the structure layers) comes closer to the face generator's mix (w2 coarse, w1 fine) than w1's face is, and the
    file is refused for another generator."""
    from core.measures import lpips_distance
    from core.registry import load_generator

    G = load_generator("face128")  # v1's stage II, the coarse schedule this test's mix describes
    model = DualStyleGAN.over(G, res_index=6)
    model.load_state_dict(read_stage2("face128-dualstylegan-stage2", "face128"), strict=False)
    torch.manual_seed(0)
    w1, w2 = (G.mapping(torch.randn(4, G.style_dim), truncation_psi=0.7)[:, None].expand(-1, G.n_latent, -1)
              for _ in range(2))
    mixed = torch.cat([w2[:, :7], w1[:, 7:]], 1)
    noise = G.noise_maps("const", 4)
    with torch.no_grad():
        target, face = G.synthesis(mixed, noise_mode="const"), G.synthesis(w1, noise_mode="const")
        moved = model.synthesis(w1, w2, [1.0] * 7 + [0.0] * (G.n_latent - 7), G.n_latent, noise)
    assert lpips_distance(moved, target).mean() < 0.7 * lpips_distance(face, target).mean()


def test_a_short_style_name_means_the_style_made_for_the_generator_asked_for():
    """'fantasy' is the face128-v2 style on face128-v2 (and `default`), the face128 style on face128; a style file
    on a generator it was not made for is refused with "retrain", not "unknown"; a name that only shares the registry
    prefix ('transformer') is no style."""
    assert style_entry("fantasy") == style_entry("fantasy", "face128-v2") == "face128-v2-style-fantasy"
    assert style_entry("fantasy", "face128") == "face128-style-fantasy"
    assert recommended_structure("fantasy", "face128") == 0.2 and recommended_structure("mine.safetensors") == 0.6
    assert style_entry("transformer") == "transformer"
    with pytest.raises(CheckpointError, match="retrain"):
        load_style("face128-style-fantasy", generator="face128-v2")


@pytest.mark.parametrize("name", ["fantasy", "illustration", "impasto", "sketch"])
def test_a_shipped_style_keeps_a_real_face_at_weight_zero_and_moves_it_toward_the_exemplar(name):
    """On a held-out CelebA photo: structure and colour weight 0 draw the face generator's reconstruction exactly;
    raising the structure weight (colour off) brings the result closer, in LPIPS, to the exemplar as the style
    rebuilds it (its intrinsic and extrinsic codes at weight 1)."""
    from app_server import face_photo

    from core.measures import lpips_distance
    from core.registry import load_encoder, load_generator
    from core.style import style_names, stylize

    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    assert name in style_names()
    G = load_generator("default")
    encoder = load_encoder("face128-v2-psp-zplus", decoder=G)
    style = load_style(name, decoder=G)
    exemplar = style.transfer(style.intrinsic[:1], 0, [1.0] * G.n_latent)
    plain = stylize(photo, style, encoder, 0, structure=0, color=0, refine_steps=0)
    torch.testing.assert_close(plain.images["stylized"], plain.images["reconstruction"], atol=1e-5, rtol=0)
    distance = [lpips_distance(stylize(photo, style, encoder, 0, structure=w, color=0, refine_steps=0)
                               .images["stylized"], exemplar).item() for w in (0.0, 0.2, 0.6, 1.0)]
    # closer at every step, and clearly so over the range (v2's styles move little by 0.2: they keep the person there)
    assert distance[1] < distance[0] and distance[2] < distance[1] - 0.02, distance
    assert distance[3] < distance[2] + 0.01 and distance[3] < distance[0] - 0.05, distance
    # the card's recommended structure weight (0.2 keeps the person with these files) is what no weight means
    assert style.structure == 0.2
    torch.testing.assert_close(stylize(photo, style, encoder, 0, refine_steps=0).images["stylized"],
                               stylize(photo, style, encoder, 0, structure=0.2, refine_steps=0).images["stylized"])


def test_fitting_the_zplus_code_brings_the_reconstruction_closer_to_the_photo():
    """The encoder's Z+ code fitted to a held-out photo: its reconstruction is closer in LPIPS and in dlib's
    descriptor (a network the fit never used), and the code stays near the encoder's."""
    from app_server import face_photo

    from core.measures import identity_similarity, lpips_distance
    from core.registry import load_encoder, load_generator
    from core.style import encode_zplus, refine_zplus

    photo = face_photo()
    if photo is None:
        pytest.skip("needs a face photo in ../shared/data/faces/celeba/eval (../shared beside the repo)")
    G = load_generator("default")
    target, content = encode_zplus(load_encoder("face128-v2-psp-zplus", decoder=G), photo)
    fitted = refine_zplus(G, target, content, 20)
    with torch.no_grad():
        before, after = (G.synthesis(G.map_zplus(code), noise_mode="const").clamp(-1, 1) for code in (content, fitted))
    assert lpips_distance(after, target).item() < lpips_distance(before, target).item() - 0.03
    assert identity_similarity(after, target)["distance"] < identity_similarity(before, target)["distance"]
    assert (fitted - content).square().mean().item() < 0.1 * content.square().mean().item()
