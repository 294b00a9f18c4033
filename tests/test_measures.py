"""core.measures: LPIPS reference values, gradients, the restricted unpickler, pixel measures, dlib identity."""

from __future__ import annotations

import io
import math
import os
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import pytorch_msssim
import torch
from official import shared
from PIL import Image, ImageOps

from core import faces, measures
from core.checkpoints import load_numpy_pickle

LPIPS_REFERENCE = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}  # ref vs p0, ref vs p1 (the LPIPS authors')



@pytest.fixture(scope="module")
def lpips_examples() -> list[torch.Tensor]:
    """ref, p0, p1 read as the LPIPS repo does (RGB, x / 127.5 - 1)."""
    return [faces.pil_to_tensor(shared(f"fixtures/lpips/ex_{name}.png")) for name in ("ref", "p0", "p1")]


@pytest.fixture(scope="module")
def lfw_people() -> dict[str, list[Path]]:
    people = defaultdict(list)
    for path in sorted(shared("data/faces/lfw").glob("*.jpg")):
        people[path.stem.rsplit("_", 1)[0]].append(path)
    return people


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_reproduces_the_reference_values(lpips_examples, net):
    ref, p0, p1 = lpips_examples
    distances = measures.lpips_distance(torch.cat([ref, ref]), torch.cat([p0, p1]), net=net)
    assert distances.shape == (2,)
    assert [round(value, 3) for value in distances.tolist()] == list(LPIPS_REFERENCE[net])


def test_lpips_is_a_loss(lpips_examples):
    ref, p0, _ = lpips_examples
    model = measures.get_lpips("alex")
    assert model is measures.get_lpips("alex", torch.device("cpu")) and not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())
    image = p0.clone().requires_grad_(True)
    before = measures.lpips_distance(image, ref)
    before.sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    with torch.no_grad():
        image -= 0.5 * image.grad / image.grad.abs().max()
    assert measures.lpips_distance(image, ref).item() < before.item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_lpips_on_gpu_matches_cpu(lpips_examples):
    ref, p0, _ = lpips_examples
    on_gpu = measures.lpips_distance(ref.cuda().requires_grad_(True), p0.cuda())
    on_gpu.sum().backward()
    assert on_gpu.item() == pytest.approx(measures.lpips_distance(ref, p0).item(), abs=1e-4)


def test_weight_files_cannot_run_code():
    class Payload:
        def __reduce__(self):
            return os.system, ("echo unsafe",)

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|not allowed"):
        load_numpy_pickle(io.BytesIO(pickle.dumps({"kernel": Payload()})))
    arrays = {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    loaded = load_numpy_pickle(io.BytesIO(pickle.dumps(arrays)))
    np.testing.assert_array_equal(loaded["Conv_0"]["kernel"], arrays["Conv_0"]["kernel"])


def test_mse_and_psnr_on_the_unit_scale():
    a = torch.zeros(2, 3, 8, 8)
    b = a + torch.tensor([0.2, 0.02]).view(2, 1, 1, 1)  # 0.1 and 0.01 on the [0, 1] scale
    torch.testing.assert_close(measures.mse(a, b), torch.tensor([1e-2, 1e-4]))
    torch.testing.assert_close(measures.psnr(a, b), torch.tensor([20.0, 40.0]))


def test_ms_ssim_matches_pytorch_msssim_and_handles_small_images():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 192, 192, generator=generator) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=generator)).clamp(-1, 1)
    expected = pytorch_msssim.ms_ssim((a + 1) / 2, (b + 1) / 2, data_range=1.0, size_average=False)
    torch.testing.assert_close(measures.ms_ssim(a, b), expected)
    small_a, small_b = a[..., :128, :128], b[..., :128, :128]  # 4 scales
    assert measures.ms_ssim(small_a, small_a).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    noisier = (small_a + 0.6 * torch.randn(small_a.shape, generator=generator)).clamp(-1, 1)
    assert (measures.ms_ssim(small_a, noisier) < measures.ms_ssim(small_a, small_b)).all()
    with pytest.raises(ValueError, match="larger than"):
        measures.ms_ssim(a[..., :8, :8], b[..., :8, :8])


def test_a_face_is_close_to_its_mirror_and_far_from_someone_else(lfw_people):
    names = [name for name, photos in lfw_people.items() if len(photos) >= 2][:6]
    for name, other in zip(names, names[1:] + names[:1], strict=True):
        photo = faces.load_image(lfw_people[name][0])
        mirror = measures.identity_similarity(photo, ImageOps.mirror(photo))
        stranger = measures.identity_similarity(photo, lfw_people[other][0])
        assert mirror["distance"] < 0.35 < 0.6 < stranger["distance"], (name, other)
        assert mirror["cosine"] > stranger["cosine"]


def test_the_same_person_is_closer_than_another_on_average(lfw_people):
    names = [name for name, photos in lfw_people.items() if len(photos) >= 2][6:12]
    descriptors = {}
    for name in names:
        try:
            descriptors[name] = [measures.face_descriptor(path) for path in lfw_people[name][:2]]
        except faces.NoFaceFound:
            continue
    assert len(descriptors) >= 4
    keys = list(descriptors)
    same = [np.linalg.norm(first - second) for first, second in descriptors.values()]
    other = [np.linalg.norm(descriptors[a][0] - descriptors[b][1]) for a, b in zip(keys, keys[1:], strict=False)]
    assert np.mean(same) < measures.DLIB_SAME_PERSON < np.mean(other)
    assert descriptors[keys[0]][0].shape == (128,)


def test_identity_is_nan_without_a_face(lfw_people):
    photo = next(iter(lfw_people.values()))[1]
    result = measures.identity_similarity(photo, Image.new("RGB", (150, 150), (128, 128, 128)))
    assert math.isnan(result["cosine"]) and math.isnan(result["distance"])
    with pytest.raises(faces.NoFaceFound):
        measures.face_descriptor(Image.new("RGB", (150, 150), (128, 128, 128)))


def test_score(lfw_people):
    people = iter(lfw_people.values())
    target = faces.align_face(next(people)[0], size=128).image
    same = measures.score(target, target)
    assert set(same) == {"mse", "psnr", "lpips", "ms_ssim", "identity", "same_person", "dlib_distance"}
    assert same["mse"] == 0 and same["psnr"] == math.inf and same["lpips"] < 1e-6
    assert same["ms_ssim"] == pytest.approx(1, abs=1e-5) and same["identity"] == pytest.approx(1, abs=1e-5)
    assert same["same_person"] == 1 and same["dlib_distance"] == pytest.approx(0, abs=1e-6)

    clean = faces.pil_to_tensor(target)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    blank = torch.zeros_like(clean)
    stranger = faces.pil_to_tensor(faces.align_face(next(people)[0], size=128).image)
    batch = measures.score(torch.cat([noisy, blank]), torch.cat([clean, clean]))
    alone = measures.score(noisy, clean)
    assert 0 < alone["mse"] < batch["mse"] and 20 < alone["psnr"] < 40
    assert 0 < alone["lpips"] < 0.5 and 0.5 < alone["ms_ssim"] < 1
    assert alone["identity"] > 0.8 and alone["same_person"] == 1 and alone["dlib_distance"] < 0.4
    assert batch["same_person"] == 0.5  # the blank image is nobody
    assert batch["dlib_distance"] == alone["dlib_distance"]  # dlib finds no face in the blank: left out of the mean
    other = measures.score(stranger, clean)
    assert other["same_person"] == 0 and other["identity"] < 0.477 and other["dlib_distance"] > 0.6
    with pytest.raises(ValueError, match="differ in shape"):
        measures.score(clean, clean[..., :64])


def test_distribution_distances_separate_a_set_from_a_shifted_one():
    """FD / KID / precision-recall, shared by the generator, encoder and style benchmarks: near 0 / 1 for two
    samples of one distribution, clearly worse for a shifted one."""
    import numpy as np

    from core.measures import distribution_distances

    rng = np.random.default_rng(0)
    real, same, shifted = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1.5
    close, far = distribution_distances(real, same), distribution_distances(real, shifted)
    assert close["fd"] < 0.5 < far["fd"] and close["kid_x1000"] < far["kid_x1000"]
    assert close["precision"] > 0.8 and far["precision"] < 0.5 and close["recall"] > 0.8
