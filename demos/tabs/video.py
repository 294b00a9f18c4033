"""Video: edit the face of a short clip along one direction, STIT-style (`core.video`), sound kept."""

from __future__ import annotations

import gradio as gr

from core.video import KEYFRAMES, VideoError, edit_video, read_video, write_video
from demos.common import PROGRESS, AppContext, Page, gpu, user_errors, user_message
from demos.inversion import job_buttons, wire_job
from demos.state import Session

TITLE = "Video"
MAX_SECONDS = 4.0  # longer clips are refused: every frame is aligned, drawn and pasted back (minutes on a CPU)
PHASES = {"align": "aligning the face in each frame", "tune": "tuning the generator on the clip",
          "paste": "putting the edited face back into each frame"}


def build(ctx: AppContext, page: Page) -> None:
    names = [d.name for d in ctx.playground.directions()]
    gr.Markdown(f"Upload a short clip (up to {MAX_SECONDS:g} s) of one face: every frame is aligned (landmarks "
                "smoothed over time), encoded with e4e, one generator is tuned on the clip (PTI), the edit is "
                "applied and each face is put back into its frame, with the clip's sound. The measures say how "
                "steady the edited face is against the input's own motion." + (
                    "" if names else " **This model has no attribute directions**: the tab needs them."))
    with gr.Row():
        with gr.Column(scale=3):
            clip = gr.Video(label="Clip", sources=["upload"], height=300, elem_id="video-input")
        with gr.Column(scale=2):
            direction = gr.Dropdown(names, value=names[0] if names else None, label="Direction",
                                    elem_id="video-direction")
            strength = gr.Slider(-5, 5, 2, step=0.5, label="Strength", elem_id="video-strength")
            steps = gr.Slider(10, 300, 100, step=10, label="Tuning steps", elem_id="video-steps")
            buttons = job_buttons("Edit the clip")
    with gr.Row():
        result = gr.Video(label="Edited clip", height=300, autoplay=True, elem_id="video-result", scale=3)
        table = gr.Dataframe(headers=["measure", "value"], label="Measures", interactive=False,
                             elem_id="video-table", scale=2)

    @gpu
    @user_errors
    def run(state: Session, path: str | None, name: str | None, value: float, tuning: float, request: gr.Request,
            progress: gr.Progress = PROGRESS) -> tuple[str, list[list[str]]]:
        if not path:
            raise user_message("Upload a clip first.", "No clip")
        if not name:
            raise user_message(f"The model {ctx.model_name!r} has no attribute directions.", "No directions")
        try:
            video = read_video(path, max_frames=10_000)
        except VideoError as error:
            raise user_message(str(error), "Unreadable clip") from None
        if len(video.frames) > MAX_SECONDS * video.fps:
            raise user_message(f"This clip is {len(video.frames) / video.fps:.1f} s long; the app edits clips of up "
                               f"to {MAX_SECONDS:g} s (`python -m core edit-video` takes longer ones).",
                               "Clip too long")

        def report(phase: str, done: int, total: int) -> None:
            state.check_cancelled()
            progress((done, total), desc=PHASES.get(phase, phase))

        with ctx.job(state, request):
            try:
                edit = edit_video(ctx.playground, video, [(name, value)], steps=int(tuning), keyframes=KEYFRAMES,
                                  progress=report)
            except VideoError as error:
                raise user_message(str(error), "No face") from None
        state.folder.mkdir(parents=True, exist_ok=True)
        out = write_video(state.folder / "edited.mp4", edit.frames, video.fps, audio_from=path if video.audio else None)
        m, missing = edit.measures, len(video.frames) - len(edit.with_face)
        rows = [["frames edited", f"{len(edit.with_face)} of {len(video.frames)}"
                 + (f" ({missing} without a face, left as they were)" if missing else "")],
                ["flicker (1: changes as much as the input)", f"{m['flicker']:.2f}"],
                ["motion error (0: moves exactly as the input)", f"{m['motion_error']:.2f}"],
                ["identity (FaceNet, edited vs frame): mean / min",
                 f"{m['identity_mean']:.2f} / {m['identity_min']:.2f}"],
                ["seconds per frame", f"{sum(edit.timings.values()) / len(video.frames):.1f}"]]
        return str(out), rows

    wire_job(ctx, page, buttons, run, [clip, direction, strength, steps], [result, table], "edit_video",
             progress_on=result)
