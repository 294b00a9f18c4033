"""The embedded model's InterFaceGAN directions: shipped files, what they do to faces, the app, and the recipe."""

from __future__ import annotations

import csv
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from core import editing
from core.artifacts import sha256_of
from core.attributes import CELEBA_ATTRIBUTES, load_attribute_classifier
from core.checkpoints import save_generator
from core.data import ShardWriter
from core.nets.stylegan2 import Generator
from core.registry import REGISTRY, load_generator, resolve
from core.training.attributes import train_attribute_classifier
from core.training.directions import YAW, measure_directions, train_directions
from demos.directions import direction_families, family_names


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.set_num_threads(1)
    return load_generator("default")


@pytest.mark.parametrize("name", ["face128-directions", "face128-v2-directions"])
def test_shipped_directions_are_unit_w_vectors_fitted_on_their_generator(name):
    directions = editing.load_directions(name)
    names = [d.name for d in directions]
    assert {"Smiling", "Young", "Male", "Eyeglasses", YAW} <= set(names) and any("|" in n for n in names)
    for direction in directions:
        assert direction.vector.shape == (512,) and direction.layers is None
        assert abs(float(direction.vector.norm()) - 1) < 1e-5
    generator = REGISTRY[name].extra["generators"][0]
    assert editing.directions_metadata(name)["generator_sha256"] == sha256_of(resolve(generator)), (
        f"{resolve(generator)} changed since the directions {name} were fitted: refit them with "
        "`python -m core.train directions` (its model card)")


def test_smiling_and_male_directions_move_the_classifier_score_their_way(generator):
    by_name = {d.name: d for d in editing.load_directions("face128-v2-directions")}
    rows = measure_directions(generator, load_attribute_classifier(), [by_name["Smiling"], by_name["Male"]],
                              samples=6, strengths=(-2.0, 2.0), progress=False)
    for row in rows:
        lower, higher = row["target"]
        assert lower < -0.3 and higher > 0.3, row
        assert all(-1 <= cos <= 1 for cos in row["id_cos"])


def test_edit_tab_offers_the_shipped_directions_for_the_embedded_model_only(generator):
    assert family_names(generator, "default") == ["GANSpace", "SeFa", "InterFaceGAN"]
    shipped = [d.name for d in editing.load_directions("face128-v2-directions")]
    offered = [d.name for d in direction_families(generator, "default")["InterFaceGAN"]]
    assert sorted(offered) == sorted(shipped)
    # the selective conditional directions take the plain ones' places; the plain ones stay, at the end
    assert offered[:4] == ["Smiling", "Young|Male", "Male|Young", "Eyeglasses|Male"]
    assert offered[-3:] == ["Young", "Male", "Eyeglasses"]
    other = Generator(16, style_dim=512, n_mlp=1, channel_base=64, channel_max=16)  # not the model they fit
    assert "InterFaceGAN" not in family_names(other, "default")


def test_recipe_runs_end_to_end_on_a_tiny_data_set_and_generator(tmp_path):
    """Classifier heads on 24 labelled faces, then directions for a tiny generator labelled by them (seconds)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for split, count in (("train", 24), ("heldout", 6)):
        writer = ShardWriter(data, split, 32, shard_size=100)
        for i in range(count):
            buffer = BytesIO()
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            writer.add(f"{split}_{i}.jpg", buffer.getvalue())
            rows.append([f"{split}_{i}.jpg", i % 5, split, *rng.choice(["-1", "1"], len(CELEBA_ATTRIBUTES))])
        writer.flush()
    labels = tmp_path / "attributes.csv"
    with open(labels, "w", newline="") as file:
        csv.writer(file).writerows([["file", "identity", "split", *CELEBA_ATTRIBUTES], *rows])
    classifier, table = train_attribute_classifier(data, labels, tmp_path / "heads.safetensors", steps=5)
    assert len(table) == len(CELEBA_ATTRIBUTES) and all(0 <= row["accuracy"] <= 1 for row in table)
    assert load_attribute_classifier(tmp_path / "heads.safetensors").names == CELEBA_ATTRIBUTES

    tiny = save_generator(Generator(32, style_dim=16, n_mlp=1, channel_base=64, channel_max=16),
                          tmp_path / "G.safetensors")
    out = tmp_path / "directions.safetensors"
    directions, metadata = train_directions(out, generator=str(tiny), classifier=str(tmp_path / "heads.safetensors"),
                                            samples=40, attributes=("Smiling", "Male"),
                                            conditional=(("Male", "Smiling"),), measure_samples=0)
    assert [d.name for d in directions] == ["Smiling", "Male", YAW, "Male|Smiling"]
    smiling, conditional = directions[0].vector, directions[-1].vector
    assert abs(float(smiling @ conditional)) < 1e-5
    assert [d.name for d in editing.load_directions(out)] == [d.name for d in directions]
    assert metadata["recipe"]["samples"] == 40 and "Smiling·Male" in metadata["cosines"]


def test_direction_files_refuse_other_files(tmp_path):
    save_generator(Generator(16, style_dim=16, n_mlp=1, channel_base=64, channel_max=16), tmp_path / "G.safetensors")
    with pytest.raises(ValueError, match="directions"):
        editing.load_directions(tmp_path / "G.safetensors")
    with pytest.raises(ValueError, match="directions"):
        editing.load_directions("default")
