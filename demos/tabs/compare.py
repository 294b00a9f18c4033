"""Compare: several inversion methods on one photo — how close each gets, and how well its result edits."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from demos.common import PROGRESS, AppContext, Page, user_errors, user_message
from demos.directions import direction_families, edited_latents, render
from demos.inversion import (
    METHODS,
    TABLE_HEADERS,
    aligned_crop,
    job_buttons,
    photo_picker,
    run_method,
    step_sliders,
    wire_job,
)
from demos.state import Session

TITLE = "Compare"
EDIT_FAMILY = "GANSpace"  # its first direction (the largest variation of W) shows each result's editability


def build(ctx: AppContext, page: Page) -> None:
    gr.Markdown("Invert one photo with several methods. The table shows the **distortion** of each (lower LPIPS, "
                "higher PSNR and MS-SSIM are closer; *same person* by FaceNet, calibrated on LFW); the grid shows its "
                f"**editability**: the same edit (the first {EDIT_FAMILY} direction, − and +) applied to each result.")
    with gr.Row():
        with gr.Column(scale=3):
            photo, crop = photo_picker(ctx, "compare")
        with gr.Column(scale=1, min_width=260):
            methods = gr.CheckboxGroup(list(METHODS), value=["W", "W+", "e4e", "PTI"], label="Methods")
            latent_steps, tune_steps = step_sliders("compare", 300, 200)
            strength = gr.Slider(0.5, 5, 2, step=0.5, label="Edit strength")
            buttons = job_buttons("Compare")
    with gr.Row():
        table = gr.Dataframe(headers=TABLE_HEADERS, label="Distortion (against the aligned original)",
                             interactive=False, elem_id="compare-table", scale=5)
        grid = gr.Gallery(label="Editability: original | inverted | edit − | edit +", columns=4, format="png",
                          height=125 * len(METHODS) + 40, object_fit="contain", elem_id="compare-grid", scale=4)

    @user_errors
    def compare(state: Session, path: str | None, labels: list[str], steps: float, tuning: float, edit: float,
                request: gr.Request, progress: gr.Progress = PROGRESS
                ) -> tuple[Image.Image, list[list[str]], list[tuple[Image.Image, str]]]:
        if not labels:
            raise user_message("Tick at least one method.", "No method")
        aligned = aligned_crop(ctx, path)
        direction = direction_families(ctx.generator, ctx.model_name)[EDIT_FAMILY][0]
        rows, cells = [], []
        with ctx.job(state, request):
            for label in labels:
                run = run_method(ctx, state, aligned, label, steps, tuning, progress)
                rows.append(run.table_row())
                cells += [(aligned, f"{label}: original"), (run.reconstruction, f"{label}: inverted")]
                for strength in (-edit, edit):
                    ws = edited_latents(run.result, [(direction, strength)], ctx.generator.n_latent)
                    cells.append((render(ctx.generator, run.result, ws)[0], f"{label}: {direction.name} {strength:+g}"))
        return aligned, rows, cells

    wire_job(ctx, page, buttons, compare, [photo, methods, latent_steps, tune_steps, strength], [crop, table, grid],
             "compare", progress_on=grid)
