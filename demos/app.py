"""The playground's browser demo: `python demos/app.py [--model NAME_OR_PATH] [--port 7860] [--share]`.

One tab per method, each a module of `demos/tabs/` built over `core`. The same file is the Hugging Face Spaces
entry (`app_file: demos/app.py`): it finds `core` from its own location and uses the GPU when there is one; a Space
picks its model with the variable PLAYGROUND_MODEL (its settings' "Variables"), which --model overrides.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # `core` and `demos` import without installing the project (Spaces)

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from core import registry  # noqa: E402
from core.artifacts import CheckpointError  # noqa: E402
from core.pipeline import Playground  # noqa: E402
from core.threads import use_threads  # noqa: E402
from demos.common import AppContext, Page, example_photos  # noqa: E402
from demos.state import ResultCache, session_state  # noqa: E402
from demos.tabs import compare, edit, explore, invert, reference, style, video  # noqa: E402

TABS = (invert, edit, reference, style, video, compare, explore)
CSS = """
.gradio-container {width: 100% !important; max-width: 1280px !important; margin: 0 auto !important}
.face img {width: 100% !important; height: 100% !important; object-fit: contain}
"""  # .face: small generator outputs (64-256 px) fill their box instead of sitting tiny in its middle
# gradio's default font ships weights 400 and 600 only; markdown's **bold** (700) then fell back to another font
THEME = gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 600, 700)), "ui-sans-serif",
                                "system-ui", "sans-serif"])


def build_app(ctx: AppContext) -> gr.Blocks:
    """The Blocks app: a header naming the model, then one tab per module of `TABS`."""
    g = ctx.generator
    with gr.Blocks(title="StyleGAN playground", fill_width=True, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# StyleGAN playground\nInvert a face photo into StyleGAN2, then edit or restyle it. Model: "
                    f"**{ctx.model_name}** ({g.size}×{g.size} px) on {ctx.device.type.upper()}.")
        session = session_state(ctx.results)
        for tab in TABS:
            with gr.Tab(tab.TITLE) as page_tab:
                tab.build(ctx, Page(demo, session, page_tab))
        demo.unload(ctx.stop_jobs)
    return demo


def load_context(model: str, device: str, max_results: int, examples: Path | None = None) -> AppContext:
    """Load the generator (a clear message and exit when it cannot be found) and everything the tabs share."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    try:
        playground = Playground.from_pretrained(model, device)
    except (FileNotFoundError, CheckpointError, ValueError) as error:
        entry = registry.REGISTRY.get(model)
        if entry is not None and entry.embedded and not (REPO_ROOT / entry.path).is_file():
            others = ", ".join(e.name for e in registry.available("generator") if not e.embedded)
            sys.exit(f"The embedded face model {entry.path} is not in this checkout yet.\n"
                     "Start the app on another generator: python demos/app.py --model NAME_OR_PATH, with a generator "
                     f"file (.safetensors, rosinality .pt, NVIDIA .pkl) or a registry name: {others}.")
        sys.exit(f"Cannot load the model {model!r}: {error}")
    playground.generator.requires_grad_(False)
    return AppContext(playground, results=ResultCache(max_results),
                      examples=example_photos(playground.generator, examples),
                      heavy_limit=1 if device.type == "cpu" else 2)


def env_number(name: str, default: float | None = None) -> float | None:
    """A number from the environment (a Space's variables), or the default when unset or empty."""
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("PLAYGROUND_MODEL") or "default",
                        help="registry name or generator checkpoint file (default: $PLAYGROUND_MODEL, else "
                        "'default', the embedded 128 px face model)")
    parser.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or "
                                                     "127.0.0.1; 0.0.0.0 to serve the local network)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    parser.add_argument("--device", default="auto",
                        help="auto (default: the GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-results", type=int, default=8,
                        help="inversion results (tuned generators) kept in memory across all sessions (default: 8)")
    parser.add_argument("--queue-size", type=int, default=32, help="jobs that may wait in the queue (default: 32)")
    parser.add_argument("--job-seconds", type=float, default=env_number("PLAYGROUND_JOB_SECONDS"),
                        help="a heavy job (inversion, video) ends with a message after this many seconds (default: "
                        "$PLAYGROUND_JOB_SECONDS, else no limit; a public Space sets one)")
    parser.add_argument("--max-upload-mb", type=float, default=env_number("PLAYGROUND_MAX_UPLOAD_MB", 50),
                        help="uploads larger than this are refused by the server (default: "
                        "$PLAYGROUND_MAX_UPLOAD_MB, else 50)")
    parser.add_argument("--examples", type=Path, default=os.environ.get("PLAYGROUND_EXAMPLES") or None,
                        help="a folder of real face photos: the first of each subfolder become the Invert tab's "
                        "examples (default: $PLAYGROUND_EXAMPLES, else faces the model draws)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the cores other jobs leave free at start, at least 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger(__name__).info("torch uses %d CPU threads", use_threads(args.threads))
    ctx = load_context(args.model, args.device, args.max_results, args.examples)
    ctx.job_seconds = args.job_seconds
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=ctx.heavy_limit * 2, max_size=args.queue_size)
    allowed = sorted({str(Path(p).parent) for p in ctx.examples})
    _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                                          allowed_paths=allowed, prevent_thread_lock=True, css=CSS, theme=THEME,
                                          max_file_size=f"{args.max_upload_mb:g}mb",
                                          footer_links=["api", "settings"])
    print(f"StyleGAN playground on {ctx.model_name}: open {share_url or local_url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
