"""core.identity: FaceNet embeddings of FFHQ-aligned faces and the LFW-calibrated same-person threshold."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from official import shared

from core import faces, identity

PEOPLE = 10  # the first 10 LFW people (by name) with two photos: 10 same-person pairs, 30 different-person pairs


@pytest.fixture(scope="module")
def lfw_pairs() -> torch.Tensor:
    """[10, 2, 3, 128, 128]: two FFHQ-aligned photos of each of the first 10 LFW people who have two."""
    people = defaultdict(list)
    for path in sorted(shared("data/faces/lfw").glob("*.jpg")):
        people[path.stem.rsplit("_", 1)[0]].append(path)
    chosen = [photos[:2] for _, photos in sorted(people.items()) if len(photos) >= 2][:PEOPLE]
    return torch.stack([torch.cat([faces.pil_to_tensor(faces.align_face(photo, size=128).image) for photo in pair])
                        for pair in chosen])


@pytest.fixture(scope="module")
def embeddings(lfw_pairs) -> torch.Tensor:
    return identity.embed(lfw_pairs.flatten(0, 1)).unflatten(0, (PEOPLE, 2))


def test_embeddings_are_unit_vectors(lfw_pairs, embeddings):
    assert embeddings.shape == (PEOPLE, 2, 512) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(PEOPLE, 2), atol=1e-5)
    assert identity.embed(lfw_pairs[0, :1]).shape == (1, 512)  # batch 1 gives the batch's first row
    assert torch.allclose(identity.embed(lfw_pairs[0, :1])[0], embeddings[0, 0], atol=1e-5)


def test_any_resolution_and_the_mirror_are_the_same_person(lfw_pairs, embeddings):
    face = lfw_pairs[0, :1]
    larger = torch.nn.functional.interpolate(face, size=256, mode="bicubic", align_corners=False).clamp(-1, 1)
    mirrored = face.flip(-1)
    others = torch.cat([identity.embed(larger), identity.embed(mirrored)])
    similarities = identity.similarity(embeddings[0, :1].expand(2, -1), others)
    assert similarities[0] > 0.95, "the same face at 256 px must embed like at 128 px"
    assert identity.same_person(similarities).all(), f"a face and its mirror: {similarities.tolist()}"


def test_lfw_pairs_are_told_apart(embeddings):
    same = identity.similarity(embeddings[:, 0], embeddings[:, 1])
    # photo 1 of person i against photo 2 of persons i+1, i+2, i+3 (mod 10): 30 different-person pairs
    others = torch.stack([embeddings[(torch.arange(PEOPLE) + shift) % PEOPLE, 1] for shift in (1, 2, 3)])
    different = identity.similarity(embeddings[:, 0].expand(3, -1, -1), others).flatten()
    assert identity.same_person(same).float().mean() >= 0.9, same.tolist()
    assert (~identity.same_person(different)).float().mean() >= 0.99, different.tolist()
    assert same.mean() - different.mean() > 0.4, (same.mean(), different.mean())


def test_crop_is_differentiable():
    images = torch.zeros(2, 3, 128, 128, requires_grad=True)
    identity.crop(images).square().sum().backward()
    assert identity.crop(images).shape == (2, 3, identity.INPUT_SIZE, identity.INPUT_SIZE)
    assert images.grad is not None and images.grad.shape == images.shape
