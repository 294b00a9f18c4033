"""Invert & PTI: a photo, aligned, into the generator — W, W+ or Pivotal Tuning — with its measures."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from demos.common import PROGRESS, AppContext, Page, user_errors
from demos.inversion import (
    METHODS,
    aligned_crop,
    job_buttons,
    photo_picker,
    preset_locality,
    preset_steps,
    run_method,
    step_sliders,
    wire_job,
)
from demos.state import Session

TITLE = "Invert & PTI"


def build(ctx: AppContext, page: Page) -> None:
    gr.Markdown("Upload a face photo: it is aligned like FFHQ, then inverted. **W** and **W+** find a latent "
                "for the fixed generator; **pSp** and **e4e** encode it in one pass (instant, a lookalike rather "
                "than the person); **PTI** then fine-tunes the generator around a latent (W projection, or the "
                "e4e code: faster), so the reconstruction keeps the identity and stays editable. The result is "
                "what the Edit tab edits.")
    with gr.Row():
        with gr.Column(scale=3):
            photo, crop = photo_picker(ctx, "invert")
        with gr.Column(scale=1, min_width=260):
            method = gr.Radio([label for label in METHODS if label != "PTI + locality"], value="PTI", label="Method",
                              elem_id="invert-method")
            locality = gr.Checkbox(preset_locality("fast"), label="Locality regularisation (PTI)",
                                   info="keeps the tuned generator unchanged away from this face, and its edits "
                                   "closer to the original generator's")
            preset = gr.Radio([("Fast (100 + ≤ 100 steps)", "fast"), ("Paper (450 + 350 steps)", "paper")],
                              value="fast", label="PTI settings", elem_id="invert-preset",
                              info="fast: 100-step pivot, ≤ 100 tuning steps at 3x the paper's lr with locality; both "
                              "give back the person, the paper's edits a little more strongly (seconds and "
                              "measures: benchmarks/README.md)")
            latent_steps, tune_steps = step_sliders("invert", *preset_steps("fast"))
            preset.change(lambda name: (*preset_steps(name), preset_locality(name)), preset,
                          [latent_steps, tune_steps, locality], api_name=False, queue=False)
            buttons = job_buttons("Invert")
    with gr.Row(equal_height=True):
        original = gr.Image(label="Original (aligned)", format="png", height=300, interactive=False,
                            elem_classes="face")
        reconstruction = gr.Image(label="Reconstruction", format="png", height=300, interactive=False,
                                  elem_classes="face", elem_id="invert-reconstruction")
        with gr.Column():
            measures = gr.Dataframe(headers=["measure", "value"], label="Measures (against the aligned original)",
                                    interactive=False, wrap=True, column_widths=["62%", "38%"],
                                    elem_id="invert-measures")
            gr.Markdown("Then open the **Edit** tab to change the face.")

    @user_errors
    def run(state: Session, path: str | None, method_name: str, local: bool, steps: float, tuning: float,
            settings: str, request: gr.Request, progress: gr.Progress = PROGRESS
            ) -> tuple[Image.Image, Image.Image, Image.Image, list[list[str]]]:
        aligned = aligned_crop(ctx, path)
        label = "PTI + locality" if method_name == "PTI" and local else method_name
        with ctx.job(state, request):
            result = run_method(ctx, state, aligned, label, steps, tuning, progress, settings, locality=local)
        ctx.results.put(state.id, result.result)
        state.method, state.edits, state.photo = label, [], path
        return aligned, aligned, result.reconstruction, result.table_column()

    wire_job(ctx, page, buttons, run, [photo, method, locality, latent_steps, tune_steps, preset],
             [crop, original, reconstruction, measures], "invert", progress_on=reconstruction)
