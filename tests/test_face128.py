"""The shipped embedded model really draws faces: dlib finds one in >= 90 % of 64 seeded samples at ψ = 0.7."""

from __future__ import annotations

import torch

from core.faces import detect_faces, tensor_to_pil
from core.registry import load_generator


def test_embedded_model_draws_faces():
    generator = load_generator("default")
    assert generator.config["size"] == 128 and generator.w_avg.abs().sum() > 0
    z = torch.randn(64, generator.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = torch.cat([generator.synthesis(generator.mapping(chunk, truncation_psi=0.7)) for chunk in z.split(16)])
    found = sum(bool(detect_faces(tensor_to_pil(image))) for image in images)
    assert found >= 0.9 * len(images), f"dlib found a face in only {found} of {len(images)} samples"
