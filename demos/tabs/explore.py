"""Explore: what the generator draws on its own — samples by seed, the truncation trick, style mixing."""

from __future__ import annotations

import gradio as gr
import torch
from PIL import Image

from core import faces
from demos.common import AppContext, Page, render, seeded_z, user_errors

TITLE = "Explore"
MAX_SAMPLES = 8


def build(ctx: AppContext, page: Page) -> None:
    generator = ctx.generator

    @user_errors
    def sample(seed: float, count: float, psi: float) -> list[tuple[Image.Image, str]]:
        seeds = [int(seed) + i for i in range(int(count))]
        with torch.no_grad():
            ws = generator.mapping(torch.cat([seeded_z(generator, s) for s in seeds]), truncation_psi=psi)
        return [(image, f"seed {s}") for image, s in zip(render(generator, ws), seeds, strict=True)]

    @user_errors
    def mix(seed_a: float, seed_b: float, crossover: float, psi: float) -> tuple[Image.Image, ...]:
        z_a, z_b = seeded_z(generator, seed_a), seeded_z(generator, seed_b)
        with torch.no_grad():
            ws = generator.mapping(torch.cat([z_a, z_b]), truncation_psi=psi)
            mixed, _ = generator([z_a, z_b], inject_index=int(crossover), truncation=psi, randomize_noise=False)
        image_a, image_b = render(generator, ws)
        return image_a, faces.tensor_to_pil(mixed), image_b

    gr.Markdown("Faces the generator draws from random seeds. **Truncation ψ** trades variety (1) for typical, "
                "clean faces (0 = the average face).")
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            seed = gr.Number(0, label="First seed", precision=0, minimum=0)
            dice = gr.Button("Random seed", size="sm")
            count = gr.Slider(1, MAX_SAMPLES, MAX_SAMPLES, step=1, label="Samples")
            psi = gr.Slider(0, 1, 0.7, step=0.05, label="Truncation ψ")
            go = gr.Button("Generate", variant="primary")
        gallery = gr.Gallery(label="Samples", columns=4, height=470, format="png", object_fit="contain", scale=3)

    sample_inputs = [seed, count, psi]
    dice.click(None, outputs=seed, js="() => Math.floor(Math.random() * 100000)", api_name=False)
    gr.on([go.click, seed.change, count.release, psi.release, page.demo.load], sample, sample_inputs, gallery,
          api_name="sample")

    gr.Markdown(f"### Style mixing\nThe first *crossover* of the generator's {generator.n_latent} style inputs come "
                "from face A (pose, face shape), the rest from face B (fine features, colours).")
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            seed_a = gr.Number(1, label="Seed A", precision=0, minimum=0)
            seed_b = gr.Number(2, label="Seed B", precision=0, minimum=0)
            crossover = gr.Slider(1, generator.n_latent - 1, generator.n_latent // 2, step=1, label="Crossover")
            mix_button = gr.Button("Mix", variant="primary")
        image_a, image_mix, image_b = (gr.Image(label=label, format="png", height=256, interactive=False, scale=1,
                                                elem_classes="face")
                                       for label in ("Face A", "Mix", "Face B"))

    gr.on([mix_button.click, crossover.release, page.demo.load], mix, [seed_a, seed_b, crossover, psi],
          [image_a, image_mix, image_b], api_name="mix")
