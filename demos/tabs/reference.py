"""Reference edit: give a photo one attribute of another photo (the Style Transformer's reference-based editing)."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from core.faces import tensor_to_pil
from core.reference_edit import edit_by_reference
from demos.common import PROGRESS, AppContext, Page, gpu, user_errors
from demos.inversion import aligned_crop, in_photo, job_buttons, photo_picker, wire_job
from demos.state import Session

TITLE = "Reference edit"
MEASURE_HEADERS = ["measure", "value"]


def build(ctx: AppContext, page: Page) -> None:
    gr.Markdown("Pick a photo and a **reference** photo: the Style Transformer encodes both, and its edit transformer "
                "moves the photo's code towards the reference's value of one attribute, keeping the rest. The "
                "measures come from the image attribute classifier and FaceNet. How often each attribute transfers, "
                "against InterFaceGAN at the same identity loss: the editor's model card (REFERENCE_EDIT.md beside "
                "the generator, e.g. models/face128-v2/).")
    try:
        attributes = list(ctx.reference_editor().trained)
    except gr.Error:  # no editor for this model: the tab says so when used
        attributes = []
    with gr.Row():
        with gr.Column():
            photo, crop = photo_picker(ctx, "reference-photo")
        with gr.Column():
            reference, reference_crop = photo_picker(ctx, "reference-reference", label="Reference photo")
    with gr.Row():
        attribute = gr.Dropdown(attributes, value=attributes[0] if attributes else None, label="Attribute to take",
                                elem_id="reference-attribute", scale=2)
        with gr.Column(scale=2):
            buttons = job_buttons("Edit by reference")
    with gr.Row():
        gallery = gr.Gallery(label="photo (encoded) | reference (encoded) | edited", columns=3, format="png",
                             height=300, object_fit="contain", elem_id="reference-gallery", scale=3)
        table = gr.Dataframe(headers=MEASURE_HEADERS, label="What the edit did", interactive=False, wrap=True,
                             column_widths=["70%", "30%"], elem_id="reference-table", scale=2)
    pasted = gr.Image(label="The edited face in your photo", format="png", interactive=False,
                      elem_id="reference-pasted")

    @gpu
    @user_errors
    def edit(state: Session, path: str | None, reference_path: str | None, name: str, request: gr.Request,
             progress: gr.Progress = PROGRESS) -> tuple[Image.Image, Image.Image, list, list[list[str]], Image.Image]:
        source, other = aligned_crop(ctx, path), aligned_crop(ctx, reference_path)
        editor = ctx.reference_editor()
        with ctx.job(state, request):
            progress(0.1, desc="encoding both faces and editing")
            result = edit_by_reference(ctx.encoder("style_transformer"), editor, source, other, name)
        m = result.measures
        cells = [(tensor_to_pil(result.images[key]), label) for key, label in
                 (("source", "photo, encoded"), ("reference", "reference, encoded"), ("edited", f"edited: {name}"))]
        rows = [[f"{name}: photo", f"{m['source_probability']:.0%}"],
                [f"{name}: reference", f"{m['reference_probability']:.0%}"],
                [f"{name}: edited", f"{m['edited_probability']:.0%}"],
                ["other attributes moved (mean |logit change|)", f"{m['others_logit_change']:.2f}"],
                ["the encoded photo is the photo's person (FaceNet)",
                 f"{'yes' if m['encoding_same_person'] else 'no'} ({m['encoding_identity']:.2f})"],
                ["identity kept by the edit (FaceNet, edited vs photo encoded)",
                 f"{'yes' if m['same_person'] else 'no'} ({m['identity']:.2f})"]]
        return source, other, cells, rows, in_photo(ctx, path, result.images["edited"], result.images["source"])

    wire_job(ctx, page, buttons, edit, [photo, reference, attribute], [crop, reference_crop, gallery, table, pasted],
             "reference_edit", progress_on=gallery)
