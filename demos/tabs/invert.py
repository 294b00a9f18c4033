"""Invert & PTI: a photo, aligned, into the generator — W, W+ or Pivotal Tuning — with its measures."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from demos.common import PROGRESS, AppContext, user_errors
from demos.inversion import aligned_crop, photo_picker, run_method
from demos.state import Session

TITLE = "Invert & PTI"


def build(ctx: AppContext, demo: gr.Blocks, session: gr.State) -> None:
    gr.Markdown("Upload a face photo: it is aligned like FFHQ, then inverted. **W** and **W+** find a latent "
                "for the fixed generator; **PTI** then fine-tunes the generator around that latent, so the "
                "reconstruction keeps the identity and stays editable. The result is what the Edit tab edits.")
    with gr.Row():
        with gr.Column(scale=3):
            photo, crop = photo_picker(ctx, "invert")
        with gr.Column(scale=1, min_width=260):
            method = gr.Radio(["W", "W+", "PTI"], value="PTI", label="Method")
            locality = gr.Checkbox(False, label="Locality regularisation (PTI)",
                                   info="keeps the tuned generator unchanged away from this face")
            latent_steps = gr.Slider(10, 1000, 450, step=10, label="Latent steps", info="W / W+, or PTI's pivot",
                                     elem_id="invert-latent-steps")
            tune_steps = gr.Slider(10, 500, 350, step=10, label="Tuning steps (PTI)",
                                   info="stops early once LPIPS ≤ 0.06", elem_id="invert-tune-steps")
            with gr.Row():
                go = gr.Button("Invert", variant="primary", scale=3, min_width=80)
                stop = gr.Button("Stop", variant="secondary", scale=1, min_width=60)
    with gr.Row(equal_height=True):
        original = gr.Image(label="Original (aligned)", format="png", height=300, interactive=False,
                            elem_classes="face")
        reconstruction = gr.Image(label="Reconstruction", format="png", height=300, interactive=False,
                                  elem_classes="face", elem_id="invert-reconstruction")
        with gr.Column():
            measures = gr.Dataframe(headers=["measure", "value"], label="Measures (against the aligned original)",
                                    interactive=False, elem_id="invert-measures")
            gr.Markdown("Then open the **Edit** tab to change the face.")

    @user_errors
    def run(state: Session, path: str | None, method_name: str, local: bool, steps: float, tuning: float,
            progress: gr.Progress = PROGRESS) -> tuple[Image.Image, Image.Image, Image.Image, list[list[str]]]:
        state.start_job()
        aligned = aligned_crop(ctx, path)
        label = "PTI + locality" if method_name == "PTI" and local else method_name
        result = run_method(ctx, state, aligned, label, steps, tuning, progress)
        ctx.results.put(state.id, result.result)
        state.photo, state.method, state.edits = aligned, label, []
        return aligned, aligned, result.reconstruction, result.table_column()

    running = go.click(run, [session, photo, method, locality, latent_steps, tune_steps],
                       [crop, original, reconstruction, measures], api_name="invert", **ctx.heavy)
    stop.click(Session.request_stop, session, None, cancels=[running], queue=False, api_name=False)
