"""`python -m core COMMAND ...`: command-line tools, thin over the library.

Each command is an `add_<name>_command(subparsers)` that registers its arguments and a `run` function; add new
ones to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def photos_in(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted)."""
    photos = []
    for item in map(Path, inputs):
        if item.is_dir():
            photos += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            photos.append(item)
    return photos


def _finite(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


class PhotoError(Exception):
    """A photo that cannot be used: unreadable, no face, or a face too small (the message says which)."""


def aligned_photo(photo: Path, size: int, aligned: bool = False):
    """The FFHQ-aligned crop (PIL) of a photo's largest face at `size`, or the photo resized when it is `aligned`
    already; warns on stderr when the face is small, raises PhotoError when it cannot be used."""
    from PIL import Image

    from core.faces import FaceTooSmall, ImageError, NoFaceFound, align_face, load_image

    try:
        image = load_image(photo)
        if aligned:
            return image.resize((size, size), Image.LANCZOS)
        face = align_face(image, size=size)
        warning = face.size_warning()
    except (NoFaceFound, FaceTooSmall, ImageError, FileNotFoundError) as err:
        raise PhotoError(str(err)) from err
    if warning:
        print(f"{photo}: warning: {warning}", file=sys.stderr)
    return face.image


# ----------------------------------------------------------------------------------------------------
# invert


def add_invert_command(subparsers: argparse._SubParsersAction) -> None:
    from core.inversion import ENCODER_METHODS, METHODS

    parser = subparsers.add_parser(
        "invert", help=f"align face photos and invert them ({', '.join(m.label for m in METHODS.values())})",
        description="For every photo: FFHQ-align the largest face, invert it, and write <out>/<photo>/ "
        "aligned.png, reconstruction.png, metrics.json and result.safetensors (an InversionResult).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("photos", nargs="+", help="photo files and/or folders of photos")
    parser.add_argument("--method", choices=list(METHODS), default="pti",
                        help="; ".join(f"{name}: {info.summary}" for name, info in METHODS.items()))
    parser.add_argument("--encoder", help=f"{' / '.join(ENCODER_METHODS)}: registry name or file (default: the one "
                        "made for --model)")
    parser.add_argument("--preset", choices=["paper", "fast"], default="fast",
                        help="PTI settings: fast (the CPU default) or the paper's (450 + 350 steps); their time, "
                        "reconstruction and editability: benchmarks/README.md, PTI presets")
    parser.add_argument("--locality", action=argparse.BooleanOptionalAction,
                        help="PTI locality regularisation (default: the preset's)")
    parser.add_argument("--pivot", default="w", help="PTI pivot: w, w+, mean, random, joint-mean, joint-random, A-F, "
                        f"or an encoder's code: {', '.join(ENCODER_METHODS)}")
    parser.add_argument("--steps", type=int, help="steps of the main phase: projection (w, w+) or tuning (pti)")
    parser.add_argument("--pivot-steps", type=int, help="PTI: projection steps for a w / w+ pivot (default: the "
                        "preset's, 450 for paper)")
    parser.add_argument("--model", default="default", help="registry name or generator checkpoint path")
    parser.add_argument("--device", default="cpu", help="cpu or cuda; under `torchrun --nproc-per-node N` each "
                        "process takes every N-th photo on GPU (local rank mod the GPU count): N above the GPU count "
                        "runs several processes per GPU (benchmarks/README.md, *PTI speed*)")
    parser.add_argument("--batch", type=int, default=1, help="PTI: photos tuned together in one batched run, each "
                        "with its own generator (results as one by one; faster on a GPU)")
    parser.add_argument("--cuda-graphs", action="store_true", help="PTI on a GPU: bf16, compiled kernels and each "
                        "whole step one CUDA graph, compiled once per process (timings: benchmarks/README.md, *PTI "
                        "speed*)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free, "
                        "at least 1: on a shared machine fewer threads run faster)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--aligned", action="store_true", help="photos are aligned crops already: only resize")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_invert)


def write_inversion(args: argparse.Namespace, photo: Path, folder: Path, crop, result) -> None:
    """A photo's reconstruction.png, result.safetensors and metrics.json, and its line on the console."""
    from core.faces import pil_to_tensor, tensor_to_pil

    tensor_to_pil(result.reconstruction[0]).save(folder / "reconstruction.png")
    result.measure(pil_to_tensor(crop))
    result.save(folder / "result.safetensors")
    report = {"photo": str(photo), "method": args.method, "model": args.model, "options": result.options,
              "timings": result.timings, "measures": {k: _finite(v[0]) for k, v in result.measures.items()}}
    (folder / "metrics.json").write_text(json.dumps(report, indent=1))
    same = "same person" if result.measures["same_person"][0] else "NOT the same person"
    print(f"{photo.name}: psnr {result.measures['psnr'][0]:.1f} dB, lpips {result.measures['lpips'][0]:.3f}, "
          f"{same} (identity {result.measures['identity'][0]:.2f}), {result.timings['total']:.1f} s -> {folder}")


def run_invert(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from core.inversion import ENCODER_METHODS, invert
    from core.pipeline import Playground
    from core.threads import use_threads

    if args.cuda_graphs and (args.method != "pti" or not args.device.startswith("cuda")):
        print("--cuda-graphs is for PTI on a CUDA device", file=sys.stderr)
        return 2
    use_threads(args.threads)
    photos = photos_in(args.photos)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:  # `torchrun --nproc-per-node N`: each process inverts every N-th photo
        photos = photos[rank::world]
        if args.device == "cuda":  # more processes than GPUs share them: batch-1 PTI leaves most of a GPU idle
            local = int(os.environ.get("LOCAL_RANK", rank))
            args.device = f"cuda:{local % max(torch.cuda.device_count(), 1)}"
    if not photos:
        print("no photos found in " + ", ".join(args.photos), file=sys.stderr)
        return 2
    try:
        playground = Playground.from_pretrained(args.model, args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"cannot load the generator {args.model!r}: {err}", file=sys.stderr)
        return 2
    G = playground.generator
    options: dict = {} if args.method in ENCODER_METHODS else {"seed": args.seed}
    encoder_method = args.method if args.method in ENCODER_METHODS else args.pivot
    if encoder_method in ENCODER_METHODS:
        try:
            options["encoder"] = playground.encoder(encoder_method, args.encoder)
        except (KeyError, FileNotFoundError, ValueError) as err:
            print(f"cannot load the {encoder_method} encoder: {err}", file=sys.stderr)
            return 2
    if args.method == "pti":
        options |= {"preset": args.preset, "pivot": args.pivot}
        options |= {"locality": args.locality} if args.locality is not None else {}
        if args.cuda_graphs:
            options |= {"autocast": torch.bfloat16, "channels_last": True, "compile": True, "cuda_graph": True}
        options |= {"steps": args.steps} if args.steps else {}
        options |= {"project_steps": args.pivot_steps} if args.pivot_steps else {}
    elif args.steps and args.method not in ENCODER_METHODS:
        options["steps"] = args.steps

    skipped, used_names, aligned = [], set(), []
    for photo in photos:
        try:
            crop = aligned_photo(photo, G.size, args.aligned)
        except PhotoError as err:
            print(f"{photo}: skipped: {err}", file=sys.stderr)
            skipped.append(str(photo))
            continue
        name = photo.stem if photo.stem not in used_names else photo.name.replace(".", "_")
        used_names.add(name)
        (args.out / name).mkdir(parents=True, exist_ok=True)
        crop.save(args.out / name / "aligned.png")
        aligned.append((photo, args.out / name, crop))
    batch = args.batch if args.method == "pti" else 1  # PTI's batched run: each photo still its own generator
    for start in range(0, len(aligned), batch):
        group = aligned[start : start + batch]
        label = group[0][0].name + (f" + {len(group) - 1} more" if len(group) > 1 else "")
        with tqdm(desc=f"{label} ({args.method})", unit="step", leave=True) as bar:

            def progress(step: int, total: int, values: dict, bar=bar) -> None:
                bar.total = total
                bar.update(step - bar.n)
                bar.set_postfix(phase=values["phase"], lpips=f"{values['lpips']:.3f}")

            crops = [crop for _, _, crop in group]
            results = (invert(G, crops, args.method, progress=progress, independent=True, **options) if batch > 1
                       else [invert(G, crops[0], args.method, progress=progress, **options)])
        for (photo, folder, crop), result in zip(group, results, strict=True):
            write_inversion(args, photo, folder, crop, result)
    done = len(photos) - len(skipped)
    print(f"{done} photo(s) inverted into {args.out}" + (f", {len(skipped)} skipped: {', '.join(skipped)}"
                                                          if skipped else ""))
    return 1 if skipped else 0


# ----------------------------------------------------------------------------------------------------
# edit


def add_edit_command(subparsers: argparse._SubParsersAction) -> None:
    from core.inversion import METHODS

    parser = subparsers.add_parser(
        "edit", help="edit a face photo along directions (InterFaceGAN, GANSpace, SeFa), put it back into the photo; "
        "or give it an attribute of a reference photo (--reference)",
        description="Align the photo's largest face (every face with --all-faces), invert it (--method), move its "
        "code along each --direction by its --strength (several make a sequence), and write <out>/face<k>/ "
        "aligned.png, reconstruction.png, edited.png (and strip.png, traverse.gif with --traverse), "
        "<out>/edited_photo.png and before_after.png with --paste-back, and <out>/metrics.json. The input may be "
        "a saved result (result.safetensors of `invert`); its photo is then --photo-of-result. With --reference: "
        "reference-based editing "
        "(Style Transformer), writing <out>/ source.png, reference.png, edited.png, strip.png, metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("photo", type=Path, nargs="?", help="the photo to edit, or a result.safetensors of `invert`")
    parser.add_argument("--direction", action="append", default=[], help="a direction: an attribute of --list "
                        "('Smiling', 'Young|Male'), or GANSpace:INDEX / SeFa:INDEX; repeat for a sequence")
    parser.add_argument("--strength", action="append", type=float, default=[],
                        help="each --direction's strength, in order (default 2 for those not given)")
    parser.add_argument("--traverse", nargs=2, type=float, metavar=("FROM", "TO"), help="also draw the last "
                        "direction from strength FROM to TO (after the others): strip.png and traverse.gif")
    parser.add_argument("--frames", type=int, default=7, help="--traverse: images along the way")
    parser.add_argument("--paste-back", action="store_true", help="put the edited faces back into the photo "
                        "(edited_photo.png, full size; every other pixel unchanged)")
    parser.add_argument("--all-faces", action="store_true", help="edit every face of the photo, each inverted "
                        "on its own")
    parser.add_argument("--list", action="store_true", help="print the attribute directions of --model and exit")
    parser.add_argument("--method", default="pti", choices=list(METHODS), help="the inversion (see invert)")
    parser.add_argument("--preset", choices=["paper", "fast"], default="fast", help="PTI settings (see invert)")
    parser.add_argument("--save-result", action="store_true", help="also write each face's result.safetensors "
                        "(edit it again later without inverting)")
    parser.add_argument("--photo-of-result", dest="source_photo", type=Path, metavar="PHOTO",
                        help="a result's original photo, for --paste-back (its largest face is the result's)")
    parser.add_argument("--reference", type=Path, help="reference-based editing: a face that has (or lacks) "
                        "--attribute")
    parser.add_argument("--attribute", default="Smiling", help="--reference: the CelebA attribute to take from it "
                        "(the editor's list is printed when another is asked for)")
    parser.add_argument("--editor", help="--reference: reference editor, registry name or file (default: the one "
                        "for --model)")
    parser.add_argument("--encoder", help="the encoder --method or --reference uses: registry name or file "
                        "(default: the one made for --model)")
    parser.add_argument("--model", default="default", help="registry name or generator checkpoint path")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--aligned", action="store_true", help="the photo is an aligned crop already: only resize")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="output folder (required unless --list)")
    parser.set_defaults(run=run_edit)


def save_strip(images, path: Path) -> None:
    """Images [N, 3, S, S] in [-1, 1] side by side as one PNG."""
    import numpy as np
    from PIL import Image

    from core.faces import to_uint8

    Image.fromarray(np.concatenate(list(to_uint8(images).numpy()), 1)).save(path)


def run_edit(args: argparse.Namespace) -> int:
    from core.artifacts import CheckpointError
    from core.faces import FaceTooSmall, ImageError, NoFaceFound
    from core.inversion import ENCODER_METHODS
    from core.pipeline import Playground
    from core.threads import use_threads

    use_threads(args.threads)
    try:
        playground = Playground.from_pretrained(args.model, args.device)
        if args.list:
            print("\n".join(d.name for d in playground.directions()))
            return 0
        if args.photo is None or args.out is None:
            raise ValueError("edit needs a PHOTO (or a result) and --out (or --list)")
        if args.reference is not None:
            return edit_by_reference(args, playground)
        edits = parse_edits(args, playground)
        if args.method in ENCODER_METHODS:
            playground.encoder(args.method, args.encoder)  # a model without one is refused before any work
        jobs = edit_jobs(args, playground)
    except (PhotoError, NoFaceFound, FaceTooSmall, ImageError, CheckpointError, KeyError, FileNotFoundError,
            ValueError) as err:
        print(f"cannot edit: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"photo": str(args.photo), "model": args.model, "method": args.method,
              "edits": [[d.name, s] for d, s in edits], "faces": []}
    pasted_photo, pasted = args.source_photo or args.photo, None
    for k, (crop, face, result) in enumerate(jobs):
        folder = args.out / f"face{k}"
        folder.mkdir(exist_ok=True)
        result = result if result is not None else invert_face(args, playground, crop, k, len(jobs))
        edited = playground.edit(result, edits)
        save_strip(result.reconstruction.clamp(-1, 1)[:1], folder / "reconstruction.png")
        save_strip(edited, folder / "edited.png")
        if crop is not None:
            crop.save(folder / "aligned.png")
        if args.save_result:
            result.save(folder / "result.safetensors")
        entry = {"folder": str(folder), "inversion": {k: _finite(v[0]) for k, v in result.measures.items()
                                                      if isinstance(v, list)}}
        if args.traverse:
            write_traverse(playground, result, edits, args.traverse, args.frames, folder)
        if args.paste_back and face is not None:
            pasted = playground.paste_back(pasted.image if pasted else pasted_photo, face, edited,
                                           unedited=result.reconstruction)
            entry["paste_back"] = pasted.measures
        report["faces"].append(entry)
        print(f"face {k}: {', '.join(f'{d.name} {s:+g}' for d, s in edits)} -> {folder}")
    if pasted is not None:
        pasted.image.save(args.out / "edited_photo.png")
        save_before_after(pasted_photo, pasted.image, args.out / "before_after.png")
        print(f"edited photo -> {args.out / 'edited_photo.png'} (beside the photo: before_after.png)")
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    return 0


def parse_edits(args: argparse.Namespace, playground) -> list:
    """The --direction / --strength pairs as (Direction, strength), in order (strength 2 where none is given)."""
    if not args.direction:
        raise ValueError("give at least one --direction (see `python -m core edit --list`)")
    if len(args.strength) > len(args.direction):
        raise ValueError(f"{len(args.strength)} --strength values for {len(args.direction)} --direction(s)")
    strengths = args.strength + [2.0] * (len(args.direction) - len(args.strength))
    return [(playground.direction(d), s) for d, s in zip(args.direction, strengths, strict=True)]


def save_before_after(photo: Path, edited, path: Path, width: int = 1600) -> None:
    """The photo and its edited version side by side, at most `width` pixels wide."""
    from PIL import Image

    from core.faces import load_image

    before = load_image(photo)
    pair = Image.new("RGB", (2 * before.width + 8, before.height), (255, 255, 255))
    pair.paste(before, (0, 0))
    pair.paste(edited, (before.width + 8, 0))
    pair.thumbnail((width, width))
    pair.save(path)


def edit_jobs(args: argparse.Namespace, playground) -> list[tuple]:
    """Per face to edit: (its aligned crop or None, where it sits in the photo (AlignedFace) or None, a saved result
    or None: then the crop is inverted); raises what the CLI reports."""
    from core.inversion import InversionResult

    if args.photo.suffix == ".safetensors":
        result = InversionResult.load(args.photo)
        face = None
        if args.paste_back:
            if args.source_photo is None:
                raise ValueError("--paste-back of a saved result needs its photo: --photo-of-result PHOTO")
            face = playground.faces(args.source_photo)[0]
        return [(None, face, result)]
    if args.aligned:
        return [(aligned_photo(args.photo, playground.size, aligned=True), None, None)]
    from core.faces import FaceTooSmall

    jobs = []
    for k, face in enumerate(playground.faces(args.photo, all_faces=args.all_faces)):
        try:
            warning = face.size_warning()
        except FaceTooSmall as err:
            if not args.all_faces:
                raise
            print(f"{args.photo}: face {k} skipped: {err}", file=sys.stderr)  # the others of a group go on
            continue
        if warning:
            print(f"{args.photo}: face {k}: warning: {warning}", file=sys.stderr)
        jobs.append((face.image, face, None))
    if not jobs:
        raise FaceTooSmall(f"every face in {args.photo} is too small to edit")
    return jobs


def invert_face(args: argparse.Namespace, playground, face, k: int, total: int):
    from tqdm.auto import tqdm

    settings = {"seed": args.seed} if args.method in ("w", "w+", "pti") else {}
    settings |= {"preset": args.preset} if args.method == "pti" else {}
    with tqdm(desc=f"face {k + 1}/{total} ({args.method})", unit="step", leave=False) as bar:

        def progress(step: int, steps: int, values: dict) -> None:
            bar.total = steps
            bar.update(step - bar.n)

        return playground.invert(face, args.method, encoder=args.encoder, progress=progress, **settings)


def write_traverse(playground, result, edits: list, span: list[float], frames: int, folder: Path) -> None:
    """strip.png and traverse.gif: the last edit's direction from span[0] to span[1], after the other edits."""
    import numpy as np
    from PIL import Image

    from core.faces import to_uint8

    strengths = np.linspace(span[0], span[1], max(frames, 2)).tolist()
    images = playground.traverse(result, edits[-1][0], strengths, before=edits[:-1])
    save_strip(images, folder / "strip.png")
    pictures = [Image.fromarray(p) for p in to_uint8(images).numpy()]
    loop = pictures + pictures[-2:0:-1]  # there and back
    loop[0].save(folder / "traverse.gif", save_all=True, append_images=loop[1:], duration=120, loop=0)


def edit_by_reference(args: argparse.Namespace, playground) -> int:
    """`edit --reference`: give the photo the reference's attribute (Style Transformer codes, the edit transformer)."""
    import torch

    from core.artifacts import CheckpointError

    try:
        playground.reference_editor(args.editor).index(args.attribute)
        crops = [aligned_photo(photo, playground.size, args.aligned) for photo in (args.photo, args.reference)]
    except (PhotoError, CheckpointError, KeyError, FileNotFoundError, ValueError) as err:
        print(f"cannot edit: {err}", file=sys.stderr)
        return 2
    result = playground.reference_edit(*crops, args.attribute, editor=args.editor, encoder=args.encoder)
    args.out.mkdir(parents=True, exist_ok=True)
    images = result.images
    for name, image in images.items():
        save_strip(image, args.out / f"{name}.png")
    save_strip(torch.cat(list(images.values())), args.out / "strip.png")
    report = {"photo": str(args.photo), "reference": str(args.reference), "attribute": args.attribute,
              "encoder": str(args.encoder or "default"), "editor": str(args.editor or "default"),
              "measures": result.measures}
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    m = result.measures
    print(f"{args.attribute}: {m['source_probability']:.2f} (photo) -> {m['edited_probability']:.2f} (edited), "
          f"reference {m['reference_probability']:.2f}; other attributes moved {m['others_logit_change']:.2f} logits; "
          f"identity {m['identity']:.2f} to the encoded photo, which is {m['encoding_identity']:.2f} to the photo "
          f"-> {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------------
# edit-video


def add_edit_video_command(subparsers: argparse._SubParsersAction) -> None:
    from core.video import KEYFRAMES, MAX_FRAMES

    parser = subparsers.add_parser(
        "edit-video", help="edit the face of a video along directions, STIT-style, keeping its frame rate and sound",
        description="Align the face in every frame (landmarks smoothed over time), encode each with e4e (codes "
        "smoothed), tune one generator on the clip (PTI), apply the --direction edits, paste each face back, and "
        "write <out>/edited.mp4, <out>/frames.png (input above, edited below, a few frames) and <out>/metrics.json "
        "(flicker against the input, FaceNet identity per frame, time). Frames without a face stay as they are.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("video", type=Path, help="the clip (MP4, MOV, WebM, ...)")
    parser.add_argument("--direction", action="append", default=[], help="as in `edit` (repeat for a sequence)")
    parser.add_argument("--strength", action="append", type=float, default=[], help="as in `edit` (default 2)")
    parser.add_argument("--steps", type=int, default=100, help="PTI tuning steps")
    parser.add_argument("--keyframes", type=int, default=KEYFRAMES, help="frames the generator is tuned on, spread "
                        "over the clip (0: every frame, STIT's choice; each step then draws every frame)")
    parser.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="longer clips are refused")
    parser.add_argument("--baseline", action="store_true", help="also edit the clip frame by frame (no smoothing) "
                        "and write baseline.mp4 and both in metrics.json")
    parser.add_argument("--model", default="default", help="registry name or generator checkpoint path")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_edit_video)


def run_edit_video(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    from core.artifacts import CheckpointError
    from core.pipeline import Playground
    from core.threads import use_threads
    from core.video import VideoError, edit_video, read_video, write_video

    use_threads(args.threads)
    try:
        clip = read_video(args.video, max_frames=args.max_frames)
        playground = Playground.from_pretrained(args.model, args.device)
        edits = parse_edits(args, playground)
        playground.encoder("e4e")
    except (VideoError, CheckpointError, KeyError, FileNotFoundError, ValueError) as err:
        print(f"cannot edit the video: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"video": str(args.video), "frames": len(clip.frames), "fps": clip.fps, "model": args.model,
              "edits": [[d.name, s] for d, s in edits], "steps": args.steps, "keyframes": args.keyframes or None}
    runs = {"smoothed": True} | ({"baseline": False} if args.baseline else {})
    for name, smooth in runs.items():
        bars: dict[str, tqdm] = {}

        def progress(phase: str, done: int, total: int, bars=bars, name=name) -> None:
            bar = bars.setdefault(phase, tqdm(total=total, desc=f"{name}: {phase}", leave=False))
            bar.update(done - bar.n)

        try:
            edit = edit_video(playground, clip, edits, smooth=smooth, steps=args.steps,
                              keyframes=args.keyframes or None, progress=progress)
        except VideoError as err:
            print(f"cannot edit the video: {err}", file=sys.stderr)
            return 2
        for bar in bars.values():
            bar.close()
        path = write_video(args.out / ("edited.mp4" if smooth else "baseline.mp4"), edit.frames, clip.fps,
                           audio_from=clip.path if clip.audio else None)
        report[name] = {"measures": edit.measures, "timings": edit.timings,
                        "seconds_per_frame": sum(edit.timings.values()) / len(clip.frames)}
        missing = len(clip.frames) - len(edit.with_face)
        print(f"{name}: flicker {edit.measures['flicker']:.2f} (1: as steady as the input), motion error "
              f"{edit.measures['motion_error']:.2f} (0: moves as the input), identity "
              f"{edit.measures['identity_mean']:.2f} (min {edit.measures['identity_min']:.2f}), "
              f"{report[name]['seconds_per_frame']:.1f} s a frame" + (f", {missing} frame(s) without a face left "
                                                                     "as they were" if missing else "") + f" -> {path}")
        if smooth:
            picks = np.linspace(0, len(clip.frames) - 1, 4).round().astype(int)
            rows = [np.concatenate([frames[i] for i in picks], 1) for frames in (clip.frames, edit.frames)]
            strip = Image.fromarray(np.concatenate(rows, 0))
            strip.thumbnail((2048, 2048))
            strip.save(args.out / "frames.png")
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    return 0


# ----------------------------------------------------------------------------------------------------
# stylize


def add_stylize_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stylize", help="exemplar-based style transfer (DualStyleGAN): restyle a face photo after an artistic exemplar",
        description="Align the photo, encode it into Z+, and render it with a shipped style's exemplar (an index, "
        "your own image, or a random draw of the style's exemplar sampler). Writes <out>/ photo.png, "
        "reconstruction.png (the face the result is based on), stylized.png, exemplar.png (the exemplar's "
        "destylised face, or your aligned exemplar), strip.png and metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("photo", type=Path, nargs="?", help="the face to restyle")
    parser.add_argument("--list", action="store_true", help="print the shipped styles for --model, one per line")
    parser.add_argument("--style", help="a shipped style's name (default: the first), or a style file")
    parser.add_argument("--exemplar", default="0", help="the style's exemplar index, or an image file of your own")
    parser.add_argument("--random-exemplar", type=int, metavar="SEED",
                        help="instead of --exemplar: a random exemplar from the style's sampler")
    parser.add_argument("--structure", type=float, help="structure weight (coarse layers; default: the style's "
                        "recommended one, 0.2 for the shipped face128 styles, else the official 0.6)")
    parser.add_argument("--color", type=float, default=1.0, help="colour weight (fine layers)")
    parser.add_argument("--structure-only", action="store_true", help="take no colour from the exemplar")
    parser.add_argument("--preserve-color", action="store_true", help="keep the photo's own colours")
    parser.add_argument("--keep-face", action="store_true",
                        help="the colour path on the last resolution only: the photo's person kept far more often, "
                             "less style (benchmarks/README.md, 'Which layers of the colour path lose the person')")
    parser.add_argument("--refine-steps", type=int,
                        help="steps fitting the encoder's code to the photo before the style (default: "
                             "core.style.REFINE_STEPS; 0: the encoder's code as it is; what they buy: "
                             "benchmarks/README.md, 'DualStyleGAN keeps the person')")
    parser.add_argument("--model", default="default", help="registry name or generator checkpoint path")
    parser.add_argument("--encoder", help="Z+ encoder: registry name or file (default: the one for --model)")
    parser.add_argument("--aligned", action="store_true", help="the photo is an aligned crop already: only resize")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free)")
    parser.add_argument("--out", type=Path, help="output folder (required unless --list)")
    parser.set_defaults(run=run_stylize)


def run_stylize(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from core.artifacts import CheckpointError
    from core.faces import ImageError, pil_to_tensor, to_uint8
    from core.pipeline import Playground
    from core.style import REFINE_STEPS, align_exemplar, encode_zplus, style_names
    from core.threads import use_threads

    names = style_names(args.model)
    if args.list:
        print("\n".join(names))
        return 0
    if args.photo is None or args.out is None:
        print("stylize needs a PHOTO and --out (or --list)", file=sys.stderr)
        return 2
    use_threads(args.threads)
    exemplar_image = None
    try:
        if not (args.style or names):
            raise KeyError(f"no style is shipped for the model {args.model!r}; pass a style file with --style")
        playground = Playground.from_pretrained(args.model)
        G = playground.generator
        style = playground.style(args.style or names[0])
        encoder = playground.encoder("dualstylegan_encoder", args.encoder)
        crop = aligned_photo(args.photo, G.size, args.aligned)
        if args.random_exemplar is not None:
            exemplar = style.sample_exemplars(1, seed=args.random_exemplar)
        elif args.exemplar.isdigit():
            exemplar = int(args.exemplar)
            style.exemplar_code(exemplar)  # the index is checked before any work
        else:
            exemplar_image, _ = align_exemplar(args.exemplar, G.size)
            exemplar = encode_zplus(encoder, exemplar_image)[1]
    except (PhotoError, CheckpointError, ImageError, KeyError, FileNotFoundError, ValueError) as err:
        print(f"cannot stylize: {err}", file=sys.stderr)
        return 2
    args.structure = style.structure if args.structure is None else args.structure  # what ran, in the report
    args.refine_steps = REFINE_STEPS if args.refine_steps is None else args.refine_steps
    result = playground.stylize(crop, style, exemplar, encoder=args.encoder, structure=args.structure,
                                color=args.color, structure_only=args.structure_only,
                                preserve_color=args.preserve_color, keep_face=args.keep_face,
                                refine_steps=args.refine_steps)
    images = dict(result.images)
    if exemplar_image is not None:
        images["exemplar"] = pil_to_tensor(exemplar_image)
    elif "destylized" in images:
        images["exemplar"] = images.pop("destylized")
    args.out.mkdir(parents=True, exist_ok=True)
    pictures = {name: to_uint8(image)[0].numpy() for name, image in images.items()}
    for name, picture in pictures.items():
        Image.fromarray(picture).save(args.out / f"{name}.png")
    Image.fromarray(np.concatenate(list(pictures.values()), 1)).save(args.out / "strip.png")
    report = {"photo": str(args.photo), "style": style.name, "exemplar": args.exemplar if args.random_exemplar is None
              else f"random:{args.random_exemplar}", "structure": args.structure, "color": args.color,
              "structure_only": args.structure_only, "preserve_color": args.preserve_color,
              "keep_face": args.keep_face, "refine_steps": args.refine_steps,
              "measures": result.measures}
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    m = result.measures
    print(f"{style.name} style, exemplar {report['exemplar']}, structure {args.structure}: FaceNet identity "
          f"{m['reconstruction_identity']:.2f} photo -> reconstruction "
          f"({'same' if m['reconstruction_same_person'] else 'NOT the same'} person), {m['identity']:.2f} "
          f"reconstruction -> stylised -> {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------------
# train, data: the training room's and the data preparation's own parsers, under one CLI


def add_delegated_command(name: str, module: str, summary: str) -> Callable[[argparse._SubParsersAction], None]:
    """A command whose arguments another module's `main(argv)` parses (`python -m core train encoder --help`)."""

    def add(subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(name, help=summary, add_help=False, description=summary)
        parser.add_argument("rest", nargs=argparse.REMAINDER)

        def run(args: argparse.Namespace) -> int:
            importlib.import_module(module).main(args.rest)
            return 0

        parser.set_defaults(run=run)

    return add


# ----------------------------------------------------------------------------------------------------
# space: the Hugging Face Space snapshot (core/space.py)


def add_space_command(subparsers: argparse._SubParsersAction) -> None:
    from core.space import add_space_command as add

    add(subparsers)


COMMANDS = [
    add_invert_command,
    add_edit_command,
    add_edit_video_command,
    add_stylize_command,
    add_space_command,
    add_delegated_command("train", "core.train", "train models: stylegan2, encoder (pSp / e4e / Style "
                          "Transformer / Z+), reference-edit, dualstylegan, attributes, directions; export, "
                          "export-encoder, export-style, samples"),
    add_delegated_command("data", "core.data", "prepare face photos into training shards (prepare, recompress)"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0],
                                     epilog="`python -m core COMMAND --help` shows a command's options and defaults.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
