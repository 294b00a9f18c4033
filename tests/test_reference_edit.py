"""Reference-based editing (Style Transformer): the training of the latent classifier and the edit transformer on
codes with a planted attribute, and the shipped editor on real held-out faces."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import torch
from official import shared
from PIL import Image

from core.attributes import CELEBA_ATTRIBUTES, load_attribute_classifier
from core.faces import align_face, pil_to_tensor
from core.reference_edit import load_reference_editor
from core.registry import encoder_for, load_encoder, made_for
from core.training.attributes import read_labels
from core.training.reference_edit import (
    EditTransformerTrainer,
    LatentClassifierTrainer,
    ReferenceEditConfig,
    accuracy_table,
    exclusive_groups,
    held_still,
    run_phase,
)


def planted_codes(n: int = 2048, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random W+ codes [n, 4, 16] whose attribute k is the sign of coordinate k of layer 0 (3 attributes)."""
    codes = torch.randn(n, 4, 16, generator=torch.Generator().manual_seed(seed))
    return codes, (codes[:, 0, :3] > 0).float()


def test_training_learns_the_planted_attributes_and_edits_one_at_a_time(tmp_path):
    """Both phases on the scaffold's run loop: cut short by the time budget, they resume from their folders and
    end where they would have; then the classifier knows the planted attributes and an edit takes one of them."""
    torch.manual_seed(0)
    codes, labels = planted_codes()
    cfg = ReferenceEditConfig(hidden="64,32", classifier_steps=400, edit_steps=300, batch=128, edit_batch=128, lr=3e-3,
                              edit_lr=1e-3, log_kimg=8.0, device="cpu", classifier_noise=0.0)  # 2,048 codes pin
    # down all 64 coordinates: no blind spots to smooth (the noise's own test is below)
    cpu = torch.device("cpu")
    out_of_time = LatentClassifierTrainer(cfg, codes, labels, cpu)
    assert not run_phase(out_of_time, replace(cfg, minutes=1e-9), tmp_path / "spent", 400, 128, time.time())
    first = LatentClassifierTrainer(cfg, codes, labels, cpu)
    assert run_phase(first, cfg, tmp_path / "classifier", 200, 128, time.time()) and first.step_index == 200
    first = LatentClassifierTrainer(cfg, codes, labels, cpu)  # a new process: resumes at step 200 from the folder
    assert run_phase(first, cfg, tmp_path / "classifier", 400, 128, time.time()) and first.step_index == 400
    assert (tmp_path / "classifier" / "log.jsonl").read_text().count("bce") >= 5
    classifier = first.model.eval().requires_grad_(False)
    held_codes, held_labels = planted_codes(512, seed=1)
    table = accuracy_table(classifier, held_codes, held_labels)
    assert all(row["accuracy"] > 0.9 for row in table.values()), table
    second = EditTransformerTrainer(cfg, classifier, codes, labels, [0, 1], cpu)
    assert run_phase(second, cfg, tmp_path / "edit", 300, 128, time.time())
    editor = second.model.eval()
    source, reference = held_codes[held_labels[:, 0] == 0][:64], held_codes[held_labels[:, 0] == 1][:64]
    with torch.no_grad():
        edited = editor(source, reference, torch.zeros(64, dtype=torch.long))
        before, after = torch.sigmoid(classifier(source)[0]), torch.sigmoid(classifier(edited)[0])
    assert (after[:, 0] - before[:, 0]).mean() > 0.3  # took the attribute
    assert (after[:, 2] - before[:, 2]).abs().mean() < 0.15  # not trained on, left alone


def test_an_edit_does_not_hold_still_what_goes_with_its_attribute():
    """With `correlated` < 1 the keep-the-others term leaves out attributes whose labels go with the target's (a
    smile and an open mouth), so holding them still cannot cancel taking the target."""
    labels = (torch.randn(1000, 3) > 0).float()
    labels = torch.cat([labels, labels[:, :1], torch.ones(1000, 1)], 1)  # attribute 3 = attribute 0; 4 constant
    assert held_still(labels, 1.0)[0] == [1, 2, 3, 4]  # the paper's: every other attribute
    assert held_still(labels, 0.3)[0] == [1, 2, 4] and held_still(labels, 0.3)[3] == [1, 2, 4]
    # one label of a group at a time (hair colours): an edit to one moves the others, however weakly they correlate
    assert held_still(labels, 1.0, [{1, 2}])[1] == [0, 3, 4] and held_still(labels, 1.0, [{1, 2}])[0] == [1, 2, 3, 4]
    hair = exclusive_groups(ReferenceEditConfig.exclusive)[0]
    assert {CELEBA_ATTRIBUTES.index(n) for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")} == hair


@pytest.fixture(scope="module")
def labelled_held_out() -> tuple[torch.Tensor, torch.Tensor]:
    """24 CelebA eval photos (nobody trained on them), aligned at 128 px, and their 40 CelebA labels."""
    folder = shared("data/faces/celeba/eval")
    labels = read_labels(shared("data/faces/celeba/attributes.csv"))
    photos = sorted(folder.iterdir())[::20][:24]
    faces = torch.stack([pil_to_tensor(align_face(p, size=128).image)[0] for p in photos])
    return faces, torch.stack([torch.from_numpy(labels[p.name][1]).float() for p in photos])


@pytest.mark.parametrize("generator", ["face128", "face128-v2"])
def test_shipped_reference_edit_moves_the_target_attribute_towards_the_reference(labelled_held_out, generator):
    """Each generator's editor, over that generator's Style Transformer (checked by sha256)."""
    faces, labels = labelled_held_out
    encoder = encoder_for("style_transformer", generator)
    editor = load_reference_editor(made_for("reference_edit", generator), encoder=encoder)
    model = load_encoder(encoder, generator=generator)
    classifier = load_attribute_classifier()
    attribute = "Smiling"
    index = classifier.index(attribute)
    lacks, has = labels[:, index] == 0, labels[:, index] == 1
    n = int(min(lacks.sum(), has.sum()))
    assert n >= 4
    with torch.no_grad():
        source, reference = model.encode(faces[lacks][:n]), model.encode(faces[has][:n])
        edited = editor.edit(source, reference, attribute)
        render = model.decoder.synthesis
        change = classifier.logits(render(edited, noise_mode="const")) - classifier.logits(
            render(source, noise_mode="const"))
    assert change[:, index].mean() > 0.5, change[:, index]  # the photos take the reference's smile
    assert (change[:, index] > 0).float().mean() >= 0.75, change[:, index]
    others = torch.cat([change[:, :index], change[:, index + 1:]], 1).abs().mean()
    assert others < change[:, index].mean(), others  # the others move less (version 0 moved them as much or more)


def test_cli_edits_a_photo_by_reference(tmp_path):
    from core.__main__ import main

    photos = sorted(shared("data/faces/celeba/eval").iterdir())
    code = main(["edit", str(photos[0]), "--reference", str(photos[1]), "--attribute", "Eyeglasses",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["attribute"] == "Eyeglasses" and 0 <= report["measures"]["edited_probability"] <= 1
    assert Image.open(tmp_path / "out" / "strip.png").size == (3 * 128, 128)
    assert main(["edit", str(photos[0]), "--reference", str(photos[1]), "--attribute", "Wearing_Hat",
                 "--out", str(tmp_path / "no")]) == 2  # not a trained attribute: a clear refusal


def test_noise_makes_the_latent_classifier_follow_the_attribute_not_the_rest_of_the_code():
    """`classifier_noise`: with more code coordinates than the data pins down (as W+'s 6,144 for ~23k faces), the
    classifier trained on jittered codes has its gradient (what an edit follows) more along the planted coordinate
    and less along the 255 that carry nothing."""
    codes = torch.randn(256, 4, 64, generator=torch.Generator().manual_seed(0))
    labels = (codes[:, 0, :3] > 0).float()
    share = {}
    for noise in (0.0, 1.0):
        cfg = ReferenceEditConfig(hidden="64,32", batch=128, lr=3e-3, classifier_steps=300, classifier_noise=noise)
        trainer = LatentClassifierTrainer(cfg, codes, labels, torch.device("cpu"))
        for _ in range(300):
            trainer.step()
        probe = codes.clone().requires_grad_(True)
        trainer.model(probe)[0][:, 0].sum().backward()
        gradient = probe.grad.flatten(1)
        share[noise] = (gradient[:, 0].abs() / gradient.norm(dim=1)).mean().item()
    assert share[1.0] > share[0.0] + 0.1, share


def test_codes_can_be_labelled_by_what_their_reconstruction_shows(tmp_path):
    """`labels_from="reconstruction"`: each code's label is the image classifier's probabilities on the code's image
    (a photo labelled blond whose code draws brown hair is labelled brown), computed once and cached per encoder."""
    from core.registry import load_generator
    from core.training.encoder import sample_wplus
    from core.training.reference_edit import reconstruction_labels, train

    G = load_generator("default").eval().requires_grad_(False)
    torch.manual_seed(0)
    codes = sample_wplus(G, 3).half()
    cfg = ReferenceEditConfig(run_dir=str(tmp_path), labels_from="reconstruction")
    labels = reconstruction_labels(cfg, "train", G, codes)
    with torch.no_grad():
        shown = torch.sigmoid(load_attribute_classifier().logits(G.synthesis(codes.float(), noise_mode="const")))
    assert labels.shape == (3, len(CELEBA_ATTRIBUTES)) and torch.allclose(labels, shown, atol=1e-4)
    assert torch.equal(reconstruction_labels(cfg, "train", G, codes[:1]), labels)  # read back, not recomputed
    with pytest.raises(ValueError, match="labels-from"):
        train(replace(cfg, labels_from="photo", data=str(tmp_path), labels=str(tmp_path / "none.csv")))
