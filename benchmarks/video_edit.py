"""Video editing (`core.video`) against the naive per-frame baseline, on the shared talking-head clip.

    python -m benchmarks.video_edit --json benchmarks/video_edit.json --frames benchmarks/video_edit.jpg

The same edit (Smiling +2) with the same tuning (`--steps` PTI steps on `--keyframes` keyframes) two ways:
STIT-style (landmarks and e4e pivots smoothed over time) and per frame (each frame aligned and encoded on its own).
For each: flicker (the edited face's frame-to-frame change over the input's), motion error (how far the edited
face's frame-to-frame change departs from the input's: 0 moves exactly as the input), FaceNet identity of each
edited face to its frame, and CPU (or GPU) seconds per frame. The figure: a few frames, input above, each way below.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import machine
from core.pipeline import Playground
from core.threads import use_threads
from core.video import KEYFRAMES, edit_video, read_video

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "talking_head_720p.mp4"
WAYS = {"smoothed (STIT-style)": True, "per frame (baseline)": False}


def strip(frames: list[np.ndarray], picks: list[int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The picked frames side by side, each cut to `box` (left, top, right, bottom)."""
    left, top, right, bottom = box
    return np.concatenate([frames[i][top:bottom, left:right] for i in picks], 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--keyframes", type=int, default=KEYFRAMES)
    parser.add_argument("--strength", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--frames", type=Path, help="the figure (the face region of 5 frames: input, each way)")
    args = parser.parse_args(argv)
    use_threads(args.threads)
    clip = read_video(args.clip)
    playground = Playground.from_pretrained("default", args.device)
    rows, edited = {}, {}
    for name, smooth in WAYS.items():
        edit = edit_video(playground, clip, [("Smiling", args.strength)], smooth=smooth, steps=args.steps,
                          keyframes=args.keyframes)
        rows[name] = {**edit.measures, "seconds_per_frame": sum(edit.timings.values()) / len(clip.frames),
                      "timings": edit.timings}
        edited[name] = edit.frames
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items() if k != "timings"}), flush=True)
    print(f"\n{len(clip.frames)} frames of {args.clip.name}, Smiling {args.strength:+g}, {args.steps} PTI steps on "
          f"{args.keyframes} keyframes; {machine()}\n")
    print("| way | flicker (1: as the input) | motion error ↓ | identity mean / min | s per frame |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['flicker']:.2f} | {r['motion_error']:.2f} | {r['identity_mean']:.2f} / "
              f"{r['identity_min']:.2f} | {r['seconds_per_frame']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "clip": args.clip.name, "frames": len(clip.frames),
                                         "steps": args.steps, "keyframes": args.keyframes,
                                         "strength": args.strength, "ways": rows}, indent=1) + "\n")
    if args.frames:
        picks = np.linspace(0, len(clip.frames) - 1, 5).round().astype(int).tolist()
        height, width = clip.frames[0].shape[:2]
        box = (int(width * 0.57), int(height * 0.04), int(width * 0.76), int(height * 0.58))  # the face, fixed
        strips = [strip(frames, picks, box) for frames in [clip.frames, *edited.values()]]
        figure = Image.fromarray(np.concatenate(strips, 0))
        figure.thumbnail((900, 900))
        figure.save(args.frames, quality=85)


if __name__ == "__main__":
    main()
