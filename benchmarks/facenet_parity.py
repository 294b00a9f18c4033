"""The PyTorch FaceNet (`core.nets.facenet`) against OpenCV's run of the same frozen graph, on real faces: the
numbers in that module's docstring. Writes the float16 and int8 conversions into OUT_DIR (the int8 one is what GPU
calls carry) and prints the report.

    python -m benchmarks.facenet_parity OUT_DIR          # needs opencv-python-headless 5.0 (requirements-dev.txt)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import faces, identity
from core.nets.facenet import (
    EMBEDDING,
    FILENAME,
    InceptionResnetV1,
    convert_graph,
    graph_state_dict,
    load_facenet,
)
from core.registry import resolve


def parity_faces(ffhq: int = 20, lfw_people: int = 5, shared: str | os.PathLike | None = None):
    """Standardised FaceNet inputs [N, 3, 160, 160] of real faces and a person id for each: the first `ffhq`
    FFHQ-aligned 128 px images (one person each), then two photos of each of the first `lfw_people` LFW people
    (by name) who have two that dlib finds, aligned by `core.faces.align_face`; all cut by `core.identity.crop`."""
    from collections import defaultdict

    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    images = [faces.pil_to_tensor(p) for p in sorted((root / "data/faces/ffhq").glob("*.png"))[:ffhq]]
    people = list(range(len(images)))
    ffhq_count = len(images)
    photos = defaultdict(list)
    for path in sorted((root / "data/faces/lfw").glob("*.jpg")):
        photos[path.stem.rsplit("_", 1)[0]].append(path)
    for name in sorted(photos):
        if len(people) >= ffhq_count + 2 * lfw_people:
            break
        aligned = []
        for path in photos[name]:
            try:
                aligned.append(faces.pil_to_tensor(faces.align_face(faces.load_image(path), size=128).image))
            except faces.NoFaceFound:
                continue
            if len(aligned) == 2:
                images += aligned
                people += [len(people)] * 2
                break
    return identity.standardise(identity.crop(torch.cat(images))), torch.tensor(people)


def opencv_forward(inputs: torch.Tensor) -> torch.Tensor:
    """The reference: OpenCV's dnn module running the graph itself on standardised inputs [B, 3, 160, 160] -> unit
    embeddings [B, 512], one image at a time (its importer fixes the graph's flatten to batch 1). Needs
    `opencv-python-headless` 5.0 (a development requirement: 4.10-4.14 fail to import this graph)."""
    import cv2

    net = cv2.dnn.readNetFromTensorflow(str(resolve("facenet")))
    embeddings = [torch.zeros(0, EMBEDDING)]
    for blob in inputs.detach().float().cpu().numpy():
        net.setInput(np.ascontiguousarray(blob[None]))
        embeddings.append(torch.from_numpy(net.forward().copy()))
    return F.normalize(torch.cat(embeddings), dim=1)


def parity_report(paths: dict[str, str | os.PathLike] | None = None, ffhq: int = 20, lfw_people: int = 5) -> dict:
    """How far this port is from OpenCV's run of the graph (`opencv_forward`) on real faces (`parity_faces`), for
    the exact float32 weights of the graph and for each converted file in `paths` ({label: path}): cosine to OpenCV's
    embedding (min / mean), the largest change of any pairwise similarity, the mean same- and different-person
    similarity; plus the parameter count and file sizes."""
    inputs, people = parity_faces(ffhq, lfw_people)
    same = (people[:, None] == people[None]).triu(1)
    different = (people[:, None] != people[None]).triu(1)

    def summary(emb):
        sims = emb @ emb.T
        return sims, {"same_person": sims[same].mean().item(), "different_person": sims[different].mean().item()}

    reference = opencv_forward(inputs)
    ref_sims, ref_summary = summary(reference)
    nets = {"float32": InceptionResnetV1().eval().requires_grad_(False)}
    nets["float32"].load_state_dict(graph_state_dict(resolve("facenet")))
    for label, path in (paths or {}).items():
        nets[label] = load_facenet(path)
    report = {"faces": len(inputs), "same_person_pairs": int(same.sum()), "opencv": ref_summary,
              "parameters": sum(p.numel() for p in nets["float32"].parameters())}
    for label, net in nets.items():
        with torch.no_grad():
            emb = net(inputs)
        cos = F.cosine_similarity(emb, reference, dim=1)
        sims, sims_summary = summary(emb)
        report[label] = {"min": cos.min().item(), "mean": cos.mean().item(),
                         "max_pair_change": (sims - ref_sims).abs().max().item(), **sims_summary}
        if label in (paths or {}):
            report[label]["bytes"] = Path(paths[label]).stat().st_size
    return report


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    graph = resolve("facenet")
    files = {
        "float16": convert_graph(graph, out / FILENAME),
        "int8": convert_graph(graph, out / FILENAME.replace(".safetensors", "-int8.safetensors"), quantise=True),
    }
    print(json.dumps(parity_report(files), indent=1))
