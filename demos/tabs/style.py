"""Style: restyle a face after an artistic exemplar (DualStyleGAN), in the shape of the DualStyleGAN demo."""

from __future__ import annotations

import gradio as gr
import torch
from PIL import Image

from core.faces import tensor_to_pil
from core.nets.dualstylegan import blend_weights
from core.style import (
    DEFAULT_STRUCTURE,
    REFINE_STEPS,
    Style,
    align_exemplar,
    encode_zplus,
    recommended_structure,
    structure_layers,
    style_names,
)
from demos.common import PROGRESS, AppContext, Page, gpu, progress_callback, user_errors, user_message
from demos.inversion import aligned_crop, in_photo, job_buttons, photo_picker, photo_upload, wire_job
from demos.state import Session

TITLE = "Style"
GALLERY = 24  # exemplars drawn in the gallery (the index reaches all of them)
SOURCES = ("the style's exemplar (index)", "my own exemplar image", "a random exemplar (the style's sampler)")
MEASURE_HEADERS = ["measure", "value"]


def parse_weights(text: str, n_latent: int) -> list[float]:
    try:
        weights = [float(part) for part in text.replace(",", " ").split()]
    except ValueError:
        weights = []
    if len(weights) != n_latent or not all(0 <= w <= 1 for w in weights):
        raise user_message(f"Give {n_latent} per-layer weights between 0 and 1, separated by commas.",
                           "Per-layer weights")
    return weights


def build(ctx: AppContext, page: Page) -> None:
    names = style_names(ctx.model_name)

    def structure_for(name: str | None) -> float:
        return recommended_structure(name, ctx.model_name) if name else DEFAULT_STRUCTURE

    n_latent = ctx.generator.n_latent

    def layer_defaults(name: str | None) -> tuple[str, str]:
        """The per-layer box's text and label for a style: its recommended structure weight on the layers its
        structure path drives (from the file), colour 1 above."""
        k = structure_layers(name, ctx.model_name) if name else 0
        text = ", ".join(f"{w:g}" for w in blend_weights(n_latent, k - 1, structure_for(name), 1.0))
        return text, f"{n_latent} weights, coarse to fine" + (f" (layers 0-{k - 1}: structure, above: colour)" if k
                                                               else "")

    def layer_box(name: str | None) -> dict:
        text, label = layer_defaults(name)
        return gr.update(value=text, label=label)

    gr.Markdown("Restyle a face after an artistic **exemplar** (DualStyleGAN): the photo is encoded into Z+, the "
                "exemplar's code drives the style path — **structure** (face shape, on the coarse layers) and "
                "**colour** (the fine layers) — with a weight each. " + (
                    "" if names else "**No style is shipped for this model yet**: train one with `python -m core "
                    "train dualstylegan --styles FOLDER` (models/face128-v2/STYLES.md)."))
    with gr.Row():
        with gr.Column(scale=3):
            photo, crop = photo_picker(ctx, "style")
        reconstruction = gr.Image(label="The result is based on this (the photo's code, unstyled)", format="png",
                                  height=280, interactive=False, elem_classes="face", scale=1,
                                  elem_id="style-reconstruction")
    with gr.Row():
        with gr.Column(scale=2):
            style_name = gr.Dropdown(names, value=names[0] if names else None, label="Style type",
                                     elem_id="style-name")
            gallery = gr.Gallery(label=f"Exemplars (the first {GALLERY}, as the model draws them): click one",
                                 columns=6, height=220, object_fit="contain", allow_preview=False,
                                 elem_id="style-gallery")
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Exemplar", elem_id="style-source")
            with gr.Row():
                index = gr.Number(0, precision=0, minimum=0, label="Exemplar index", elem_id="style-index")
                seed = gr.Number(0, precision=0, minimum=0, label="Random exemplar seed", elem_id="style-seed")
            own = photo_upload(label="My exemplar (any portrait)", sources=["upload", "clipboard"], height=160,
                               elem_id="style-own")
        with gr.Column(scale=2):
            structure = gr.Slider(0, 1, structure_for(names[0] if names else None), step=0.05,
                                  label="Structure weight (each style starts at its recommended one)",
                                  elem_id="style-structure")
            color = gr.Slider(0, 1, 1.0, step=0.05, label="Colour weight", elem_id="style-color")
            with gr.Row():
                structure_only = gr.Checkbox(False, label="Structure only (no colour)", elem_id="style-structure-only")
                preserve_color = gr.Checkbox(False, label="Preserve the photo's colour", elem_id="style-preserve")
            fit = gr.Checkbox(True, label=f"Fit the face's code to the photo first ({REFINE_STEPS} steps: keeps the "
                              "person, slower)", elem_id="style-fit")
            with gr.Accordion("Per-layer weights (override the two sliders)", open=False):
                per_layer = gr.Checkbox(False, label="Use the per-layer weights", elem_id="style-per-layer")
                text, label = layer_defaults(names[0] if names else None)
                layer_text = gr.Textbox(text, label=label, elem_id="style-layers")
                keep_face = gr.Button("Keep the face: colour on the last resolution's layers only (less style; "
                                      "benchmarks/README.md, Which layers of the colour path lose the person)",
                                      size="sm", elem_id="style-keep-face")
            buttons = job_buttons("Stylize")
            result = gr.Image(label="Result", format="png", height=280, interactive=False, elem_classes="face",
                              elem_id="style-result")
            table = gr.Dataframe(headers=MEASURE_HEADERS, label="Measures", interactive=False, wrap=True,
                                 column_widths=["70%", "30%"], elem_id="style-table")
    pasted = gr.Image(label="The restyled face in your photo", format="png", interactive=False, elem_id="style-pasted")

    def load(name: str | None) -> Style:
        if not name:
            raise user_message("No style is shipped for this model yet.", "No style")
        return ctx.style(name)

    galleries: dict[str, list[tuple[Image.Image, str]]] = {}  # drawn once per style, not at every tab visit

    @user_errors
    def exemplars(name: str | None) -> list[tuple[Image.Image, str]]:
        """The style's first exemplars as DualStyleGAN reconstructs them (intrinsic + extrinsic code, weights 1)."""
        if not name:
            return []
        if name not in galleries:
            style = load(name)
            shown = min(GALLERY, len(style.extrinsic))
            with torch.no_grad():
                images = [style.transfer(style.intrinsic[i : i + 1], i, [1.0] * n_latent) for i in range(shown)]
            galleries[name] = [(tensor_to_pil(image), str(i)) for i, image in enumerate(images)]
        return galleries[name]

    def pick(event: gr.SelectData) -> tuple[int, str]:
        return event.index, SOURCES[0]

    @gpu
    @user_errors
    def run(state: Session, path: str | None, name: str | None, kind: str, number: float, seed_value: float,
            own_path: str | None, structure_value: float, color_value: float, only: bool, preserve: bool,
            layered: bool, layer_weights: str, fitted: bool, request: gr.Request,
            progress: gr.Progress = PROGRESS) -> tuple:
        face = aligned_crop(ctx, path)
        weights = parse_weights(layer_weights, n_latent) if layered else None
        style = load(name)
        encoder = ctx.encoder("dualstylegan_encoder")
        with ctx.job(state, request):
            progress(0.2, desc="encoding the face and the exemplar")
            if kind == SOURCES[1]:
                if not own_path:
                    raise user_message("Upload your exemplar image first.", "No exemplar")
                exemplar = encode_zplus(encoder, align_exemplar(own_path, ctx.generator.size)[0])[1]
            elif kind == SOURCES[2]:
                exemplar = style.sample_exemplars(1, seed=int(seed_value))
            else:
                exemplar = int(number)
                if not 0 <= exemplar < len(style.extrinsic):
                    raise user_message(f"The {style.name} style has exemplars 0 to {len(style.extrinsic) - 1}.",
                                       "No such exemplar")
            progress(0.3, desc="fitting the face's code" if fitted else "stylising")
            out = ctx.playground.stylize(face, style, exemplar, structure=structure_value, color=color_value,
                                         structure_only=only, preserve_color=preserve, weights=weights,
                                         refine_steps=REFINE_STEPS if fitted else 0,
                                         progress=progress_callback(progress, state, "fitting the face's code"))
        m = out.measures
        judged = ("dlib; the fit used FaceNet", m["reconstruction_dlib_same_person"],
                  f"distance {m['reconstruction_dlib_distance']:.2f}") if fitted else \
            ("FaceNet", m["reconstruction_same_person"], f"{m['reconstruction_identity']:.2f}")
        rows = [[f"the reconstruction is the photo's person ({judged[0]})",
                 f"{'yes' if judged[1] else 'no'} ({judged[2]})"],
                ["identity kept by the style (FaceNet, result vs reconstruction)",
                 f"{'yes' if m['same_person'] else 'no'} ({m['identity']:.2f})"],
                ["exemplar", kind if kind != SOURCES[0] else f"{style.name} #{exemplar}"]]
        stylized = out.images["stylized"]
        return (face, tensor_to_pil(out.images["reconstruction"]), tensor_to_pil(stylized), rows,
                in_photo(ctx, path, stylized))

    @user_errors
    def face_keeping(name: str | None, structure_value: float, color_value: float) -> tuple[bool, str]:
        """The sliders' weights with the colour path moved to the last resolution, filled in and switched on."""
        style = load(name)
        weights = style.weights(structure_value, color_value, color_from=style.face_keeping_color_from)
        return True, ", ".join(f"{w:g}" for w in weights)

    keep_face.click(face_keeping, [style_name, structure, color], [per_layer, layer_text], api_name=False)
    page.tab.select(exemplars, style_name, gallery, api_name=False)
    style_name.change(exemplars, style_name, gallery, api_name=False)
    style_name.change(structure_for, style_name, structure, api_name=False)
    style_name.change(layer_box, style_name, layer_text, api_name=False)
    gallery.select(pick, None, [index, source], api_name=False)
    wire_job(ctx, page, buttons, run, [photo, style_name, source, index, seed, own, structure, color, structure_only,
                                       preserve_color, per_layer, layer_text, fit],
             [crop, reconstruction, result, table, pasted], "stylize", progress_on=result)
