"""Edit directions: SeFa, GANSpace, InterFaceGAN, official direction files, and applying edits to any generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from official import shared

from core.artifacts import CheckpointError
from core.editing import (
    Direction,
    apply,
    apply_sequence,
    ganspace,
    linear_boundary,
    load_ganspace,
    load_interfacegan,
    load_w_plus,
    sefa,
    style_affines,
    traverse,
)
from core.inversion import invert
from core.nets.stylegan2 import Generator


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    G = Generator(32, style_dim=64, n_mlp=2, channel_base=512, channel_max=64).eval()
    G.w_avg.copy_(G.mean_latent()[0])
    return G


def official(relative: str) -> Path:
    return shared(f"fixtures/directions/{relative}")


def test_sefa_gives_orthonormal_directions_matching_the_reference(G):
    directions = sefa(G, k=5)
    vectors = torch.stack([d.vector for d in directions])
    assert vectors.shape == (5, G.style_dim) and all(d.layers is None for d in directions)
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(5), atol=1e-5, rtol=0)
    # genforce/sefa `factorize_weight`: columns of the stacked W^T normalised, eigenvectors of W W^T
    weight = np.concatenate([a.weight.detach().numpy().T for a in style_affines(G)], axis=1)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors_ref = np.linalg.eig(weight.dot(weight.T))
    top = vectors_ref[:, np.argsort(-values.real)[0]].real
    assert abs(float(np.dot(top, directions[0].vector.numpy()))) > 0.999
    assert sefa(G, layers=[0, 1, 2], k=2)[0].layers == (0, 1, 2)


def test_ganspace_components_are_orthonormal_and_sorted(G):
    space = ganspace(G, n_components=8, samples=4000)
    assert space.mean.shape == (G.style_dim,) and space.components.shape == (8, G.style_dim)
    torch.testing.assert_close(space.components @ space.components.T, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.all(space.std[:-1] >= space.std[1:])
    torch.testing.assert_close(space.coordinates(space.mean), torch.zeros(8), atol=1e-4, rtol=0)
    assert space.coordinates(space.mean + space.direction(2).vector)[2].item() == pytest.approx(1, abs=1e-4)


def test_apply_keeps_w_and_limits_layer_edits(G):
    ws = G.w_avg.expand(2, -1).clone()
    direction = Direction("d", torch.randn(G.style_dim))
    assert apply(ws, direction, 2.0).shape == ws.shape
    per_layer = apply(ws, Direction("d", direction.vector, layers=(1, 3)), 1.0, n_latent=G.n_latent)
    assert per_layer.shape == (2, G.n_latent, G.style_dim)
    changed = (per_layer != ws[:, None]).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [1, 3]
    with pytest.raises(ValueError, match="n_latent"):
        apply(ws, Direction("d", direction.vector, layers=(1,)))
    with pytest.raises(ValueError, match="512-D generator"):
        apply(ws, Direction("ffhq", torch.randn(512)))
    other = Direction("e", torch.randn(G.style_dim))
    torch.testing.assert_close(apply_sequence(ws, [(direction, 1.5), (other, -2.0)]),
                               ws + 1.5 * direction.vector - 2.0 * other.vector)
    frames = traverse(ws, direction, [-1.0, 0.0, 1.0])
    assert frames.shape == (3, *ws.shape) and torch.equal(frames[1], ws)


def test_an_edit_changes_the_image_with_the_original_and_the_tuned_generator(G):
    target = G.synthesis(G.mapping(torch.randn(1, G.style_dim))).detach()
    result = invert(G, target, "pti", project_steps=5, steps=5, early_stop=None)
    for direction in (sefa(G, k=1)[0], ganspace(G, 4, 2000).direction(0)):
        edited = apply(result.pivot, direction, 3.0)
        with torch.no_grad():
            original = G.synthesis(result.pivot), G.synthesis(edited)
        tuned = result.render(G), result.render(G, edited)
        for before, after in (original, tuned):
            assert (before - after).abs().mean() > 0.01


def test_linear_boundary_finds_the_separating_direction():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(400, 16, generator=g)
    normal = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    direction = linear_boundary(latents, (latents @ normal > 0).float(), "attribute")
    assert torch.dot(direction.vector, normal) > 0.9 and direction.source == "interfacegan"


def test_official_interfacegan_and_pti_directions_load():
    for name in ("age", "smile"):
        direction = load_interfacegan(official(f"interfacegan_directions/{name}.pt"))
        assert direction.name == name and direction.vector.shape == (512,)
        assert direction.vector.norm().item() == pytest.approx(1, abs=1e-4)
    pose = load_interfacegan(official("interfacegan_directions/pose.pt"))
    assert pose.vector.shape == (18, 512)
    assert apply(torch.zeros(2, 512), pose, 1.0).shape == (2, 18, 512)  # a W+ direction makes W+ latents
    assert load_interfacegan(official("pti/interfacegan_directions/rotation.pt")).vector.shape == (512,)


def test_official_ganspace_and_styleclip_files_load():
    space = load_ganspace(official("ganspace_pca/ffhq_pca.pt"))
    assert space.mean.shape == (512,) and space.components.shape == (80, 512) and space.std.shape == (80,)
    torch.testing.assert_close(space.components.norm(dim=1), torch.ones(80), atol=1e-4, rtol=0)
    assert space.direction(0, layers=range(0, 5)).layers == (0, 1, 2, 3, 4)
    assert load_w_plus(official("pti/styleclip_global_ffhq_w_plus.npy")).shape == (68, 18, 512)


class Payload:
    """Stands in for code a malicious direction file would run when unpickled."""


def test_direction_loaders_refuse_files_that_need_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"mean": Payload(), "comp": 0, "std": 0}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_ganspace(path)
    torch.save(torch.zeros(3), tmp_path / "flat.pt")
    with pytest.raises(CheckpointError, match="InterFaceGAN"):
        load_interfacegan(tmp_path / "flat.pt")
