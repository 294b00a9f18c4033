"""Edit: move the current inversion along edit directions, drawn by the PTI-tuned and by the original generator."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from core.editing import Direction
from core.inversion import InversionResult
from demos.common import AppContext, Page, user_errors, user_message
from demos.directions import (
    MAX_DIRECTIONS,
    STRENGTH_SPAN,
    direction_families,
    edited_latents,
    family_names,
    family_note,
    find,
    render,
    traversal,
)
from demos.inversion import aligned_face
from demos.state import Edit, Session

TITLE = "Edit"


def build(ctx: AppContext, page: Page) -> None:
    names = family_names(ctx.generator, ctx.model_name)

    def all_directions() -> dict[str, list[Direction]]:
        return direction_families(ctx.generator, ctx.model_name)

    def note(family: str) -> str:
        return family_note(family)

    def missing(state: Session) -> str:
        return ("Your inversion was released to free memory: run it again in the Invert & PTI tab." if state.method
                else "Invert a photo first, in the Invert & PTI tab.")

    def current(state: Session) -> InversionResult:
        result = ctx.results.get(state.id)
        if result is None:
            raise user_message(missing(state), "Nothing to edit")
        return result

    def edits(state: Session, family: str, values: tuple[float, ...]) -> list[tuple[Direction, float]]:
        """The committed sequence, then the sliders' edit."""
        committed = [(find(all_directions(), e.name), e.strength) for e in state.edits]
        return committed + list(zip(all_directions()[family], values, strict=False))

    def sequence_text(state: Session) -> str:
        steps = " → ".join(f"{e.name} {e.strength:+.1f}" for e in state.edits)
        return f"**Sequence:** {steps}, then the sliders." if steps else "**Sequence:** empty (the sliders edit alone)."

    def family_controls(family: str) -> tuple:
        """The family's note, its directions in the animation menu, and its sliders back at 0."""
        labels = [d.name for d in all_directions()[family]]
        sliders_ = [gr.Slider(value=0, label=labels[i] if i < len(labels) else "", visible=i < len(labels))
                    for i in range(MAX_DIRECTIONS)]
        return gr.Radio(info=note(family)), gr.Dropdown(labels, value=labels[0]), *sliders_

    gr.Markdown("Edit the face you inverted in **Invert & PTI**. Each slider moves its latent along one direction; "
                "**Add to sequence** keeps the current edit and lets you stack another one on top.")
    status = gr.Markdown("Invert a photo first, in the Invert & PTI tab.")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            family = gr.Radio(names, value=names[0], label="Directions", info=note(names[0]))
            sliders = [gr.Slider(-STRENGTH_SPAN, STRENGTH_SPAN, 0, step=0.1, label=f"direction {i + 1}")
                       for i in range(MAX_DIRECTIONS)]
            with gr.Row():
                add = gr.Button("Add to sequence", size="sm")
                clear = gr.Button("Clear sequence", size="sm")
            sequence = gr.Markdown(sequence_text(Session()))
        with gr.Column(scale=2):
            with gr.Row(equal_height=True):
                before, after_tuned, after_original = (
                    gr.Image(label=label, format="png", height=260, interactive=False, elem_classes="face",
                             elem_id=f"edit-{key}")
                    for key, label in (("before", "Before (reconstruction)"), ("tuned", "Edited: tuned generator"),
                                       ("original", "Edited: original generator")))
            download = gr.DownloadButton("Download the edited PNG", visible=False, size="sm")
            with gr.Accordion("In your photo: the edited face put back, full size", open=False):
                paste = gr.Button("Put the edit back into the photo", size="sm")
                pasted = gr.Image(label="Your photo, edited", format="png", interactive=False, elem_id="edit-pasted")
                paste_note = gr.Markdown()
                paste_download = gr.DownloadButton("Download the edited photo", visible=False, size="sm")
            with gr.Accordion("Animate one direction (GIF and MP4)", open=False):
                with gr.Row():
                    direction = gr.Dropdown([], label="Direction", allow_custom_value=True)  # filled on first visit
                    span = gr.Slider(0.5, STRENGTH_SPAN, 3, step=0.5, label="From −strength to +strength")
                    frames = gr.Slider(4, 30, 12, step=1, label="Frames each way")
                animate = gr.Button("Make the animation")
                with gr.Row():
                    video = gr.Video(label="Traversal", autoplay=True, loop=True, height=260)
                    files = gr.File(label="Downloads", file_count="multiple")

    @user_errors
    def preview(state: Session, family_name: str, *values: float) -> tuple[Image.Image, Image.Image, gr.DownloadButton]:
        result = current(state)
        ws = edited_latents(result, edits(state, family_name, values), ctx.generator.n_latent)
        (tuned,), (original,) = render(ctx.generator, result, ws), render(ctx.generator, result, ws, tuned=False)
        state.folder.mkdir(parents=True, exist_ok=True)
        tuned.save(png := state.folder / "edited.png")
        return tuned, original, gr.DownloadButton(value=png, visible=True)

    @user_errors
    def paste_back(state: Session, family_name: str, *values: float) -> tuple:
        """The edited face (tuned generator) back in the uploaded photo: every other pixel unchanged."""
        result = current(state)
        if not state.photo or not Path(state.photo).is_file():
            raise user_message("The photo of this inversion is no longer here: invert it again.", "No photo")
        ws = edited_latents(result, edits(state, family_name, values), ctx.generator.n_latent)
        edited = result.render(ctx.generator, ws).clamp(-1, 1)
        unedited = result.render(ctx.generator, result.pivot).clamp(-1, 1)  # the mask takes in what the edit changed
        face = aligned_face(ctx, state.photo)
        back = ctx.playground.paste_back(state.photo, face, edited, unedited=unedited)
        state.folder.mkdir(parents=True, exist_ok=True)
        back.image.save(png := state.folder / "edited-photo.png")
        m = back.measures
        note = (f"Face {face.source_side:.0f} px wide in the photo, drawn at {edited.shape[-1]} px "
                f"({m['upsampling']:.1f}x upsampled{': softer than the photo around it' if m['upsampling'] > 2 else ''}"
                f"); seam {m['seam']:.2f} (1: no edge added); FaceNet identity of the pasted face {m['identity']:.2f}.")
        return back.image, note, gr.DownloadButton(value=png, visible=True)

    def preview_if_inverted(state: Session, family_name: str, *values: float) -> tuple:
        """The preview after opening the tab or changing family: no pop-up when there is nothing to edit yet."""
        return preview(state, family_name, *values) if ctx.results.get(state.id) else (gr.skip(),) * 3

    @user_errors
    def refresh(state: Session, family_name: str) -> tuple:
        """On opening the tab: the current inversion (or a note saying there is none) and fresh controls."""
        result = ctx.results.get(state.id)
        if result is None:
            note = missing(state)
        else:
            note = f"Editing your **{state.method}** inversion." + (
                "" if result.delta else " W and W+ do not tune the generator, so both edited images are the same.")
        before_image = render(ctx.generator, result, result.pivot)[0] if result else None
        return note, before_image, sequence_text(state), *family_controls(family_name)

    @user_errors
    def add_to_sequence(state: Session, family_name: str, *values: float) -> tuple:
        current(state)
        state.edits += [Edit(d.name, s) for d, s in zip(all_directions()[family_name], values, strict=False) if s]
        return sequence_text(state), *family_controls(family_name)[2:]

    @user_errors
    def clear_sequence(state: Session) -> str:
        state.edits = []
        return sequence_text(state)

    @user_errors
    def animate_direction(state: Session, family_name: str, name: str, strength: float, count: float,
                          *values: float) -> tuple[str, list[str]]:
        result = current(state)
        ws = edited_latents(result, edits(state, family_name, values), ctx.generator.n_latent)
        gif, mp4 = traversal(ctx.generator, result, ws, find(all_directions(), name), strength, int(count),
                             state.folder)
        return str(mp4), [str(gif), str(mp4)]

    session, edit_inputs = page.session, [page.session, family, *sliders]
    edit_outputs = [after_tuned, after_original, download]
    controls = [family, direction, *sliders]
    page.tab.select(refresh, [session, family], [status, before, sequence, *controls], api_name=False
                    ).then(preview_if_inverted, edit_inputs, edit_outputs, api_name=False)
    family.change(user_errors(family_controls), family, controls, api_name=False
                  ).then(preview_if_inverted, edit_inputs, edit_outputs, api_name=False)
    gr.on([s.input for s in sliders], preview, edit_inputs, edit_outputs, api_name="edit", trigger_mode="always_last")
    add.click(add_to_sequence, edit_inputs, [sequence, *sliders], api_name="add_to_sequence")
    clear.click(clear_sequence, session, sequence, api_name="clear_sequence"
                ).then(preview_if_inverted, edit_inputs, edit_outputs, api_name=False)
    paste.click(paste_back, edit_inputs, [pasted, paste_note, paste_download], api_name="paste_back", **ctx.heavy)
    animate.click(animate_direction, [session, family, direction, span, frames, *sliders], [video, files],
                  api_name="animate", **ctx.heavy)
