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
                        "runs several processes per GPU (on one H200 two shared it at half speed each)")
    parser.add_argument("--batch", type=int, default=1, help="PTI: photos tuned together in one batched run, each "
                        "with its own generator (results as one by one; faster on a GPU)")
    parser.add_argument("--cuda-graphs", action="store_true", help="PTI on a GPU: bf16, compiled kernels and each "
                        "whole step one CUDA graph (1024 px on an H200: 9.5 s a photo, 14 s with --locality, 7.2 s a "
                        "photo at --batch 8, after ~60 s of compilation once per process; benchmarks/README.md)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free, "
                        "at least 1: on a shared machine fewer threads run faster)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--aligned", action="store_true", help="photos are aligned crops already: only resize")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_invert)


def write_inversion(args: argparse.Namespace, photo: Path, folder: Path, crop, result) -> None:
    """A photo's reconstruction.png, result.safetensors and metrics.json, and its line on the console."""
    from core.faces import pil_to_tensor, tensor_to_pil
    from core.measures import score_each

    tensor_to_pil(result.reconstruction[0]).save(folder / "reconstruction.png")
    result.metrics |= score_each(result.reconstruction, pil_to_tensor(crop))  # per image, like its own
    result.save(folder / "result.safetensors")
    report = {"photo": str(photo), "method": args.method, "model": args.model, "options": result.options,
              "timings": result.timings, "metrics": {k: _finite(v[0]) for k, v in result.metrics.items()}}
    (folder / "metrics.json").write_text(json.dumps(report, indent=1))
    same = "same person" if result.metrics["same_person"][0] else "NOT the same person"
    print(f"{photo.name}: psnr {result.metrics['psnr'][0]:.1f} dB, lpips {result.metrics['lpips'][0]:.3f}, "
          f"{same} (identity {result.metrics['identity'][0]:.2f}), {result.timings['total']:.1f} s -> {folder}")


def run_invert(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from core.inversion import ENCODER_METHODS, invert
    from core.registry import encoder_for, load_encoder, load_generator
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
        G = load_generator(args.model, args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"cannot load the generator {args.model!r}: {err}", file=sys.stderr)
        return 2
    options: dict = {} if args.method in ENCODER_METHODS else {"seed": args.seed}
    encoder_method = args.method if args.method in ENCODER_METHODS else args.pivot
    if encoder_method in ENCODER_METHODS:
        try:
            options["encoder"] = load_encoder(args.encoder or encoder_for(encoder_method, args.model), args.device,
                                              generator=args.model, decoder=G)
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
    parser = subparsers.add_parser(
        "edit", help="reference-based editing: give a photo one attribute of a reference photo (Style Transformer)",
        description="Align both photos, encode them with the Style Transformer, move the photo's code towards the "
        "reference's ATTRIBUTE with the edit transformer, and write <out>/ source.png, reference.png, edited.png "
        "(each rendered by the generator), strip.png (the three side by side) and metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("photo", type=Path, help="the face to edit")
    parser.add_argument("--reference", type=Path, required=True, help="a face that has (or lacks) the attribute")
    parser.add_argument("--attribute", default="Smiling", help="CelebA attribute to take from the reference "
                        "(the editor's list is printed when another is asked for)")
    parser.add_argument("--model", default="default", help="registry name or generator checkpoint path")
    parser.add_argument("--encoder", help="Style Transformer: registry name or file (default: the one for --model)")
    parser.add_argument("--editor", default="face128-reference-edit", help="reference editor: registry name or file")
    parser.add_argument("--aligned", action="store_true", help="photos are aligned crops already: only resize")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run_edit)


def run_edit(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from core.checkpoints import CheckpointError
    from core.faces import to_uint8
    from core.reference_edit import edit_by_reference, load_reference_editor
    from core.registry import encoder_for, load_encoder, load_generator
    from core.threads import use_threads

    use_threads(args.threads)
    try:
        G = load_generator(args.model)
        encoder = args.encoder or encoder_for("style_transformer", args.model)
        model = load_encoder(encoder, generator=args.model, decoder=G)
        editor = load_reference_editor(args.editor, encoder=encoder)
        editor.index(args.attribute)
        crops = [aligned_photo(photo, G.size, args.aligned) for photo in (args.photo, args.reference)]
    except (PhotoError, CheckpointError, KeyError, FileNotFoundError, ValueError) as err:
        print(f"cannot edit: {err}", file=sys.stderr)
        return 2
    result = edit_by_reference(model, editor, *crops, args.attribute)
    args.out.mkdir(parents=True, exist_ok=True)
    pictures = {name: to_uint8(image)[0].numpy() for name, image in result.images.items()}
    for name, picture in pictures.items():
        Image.fromarray(picture).save(args.out / f"{name}.png")
    Image.fromarray(np.concatenate(list(pictures.values()), 1)).save(args.out / "strip.png")
    report = {"photo": str(args.photo), "reference": str(args.reference), "attribute": args.attribute,
              "encoder": str(encoder), "editor": args.editor, "measures": result.measures}
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1))
    m = result.measures
    print(f"{args.attribute}: {m['source_probability']:.2f} (photo) -> {m['edited_probability']:.2f} (edited), "
          f"reference {m['reference_probability']:.2f}; other attributes moved {m['others_logit_change']:.2f} logits; "
          f"identity {m['identity']:.2f} -> {args.out}")
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
    parser.add_argument("--model", default="default", help="registry name or generator checkpoint path")
    parser.add_argument("--encoder", help="Z+ encoder: registry name or file (default: the one for --model)")
    parser.add_argument("--aligned", action="store_true", help="the photo is an aligned crop already: only resize")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores other jobs leave free)")
    parser.add_argument("--out", type=Path, help="output folder (required unless --list)")
    parser.set_defaults(run=run_stylize)


def run_stylize(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from core.checkpoints import CheckpointError
    from core.faces import ImageError, pil_to_tensor, to_uint8
    from core.registry import load_encoder, load_generator, made_for
    from core.style import align_exemplar, encode_zplus, load_style, style_names, stylize
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
        G = load_generator(args.model)
        style = load_style(args.style or names[0], generator=args.model, decoder=G)
        encoder = load_encoder(args.encoder or made_for("dualstylegan_encoder", args.model), generator=args.model,
                               decoder=G)
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
    result = stylize(crop, style, encoder, exemplar, structure=args.structure, color=args.color,
                     structure_only=args.structure_only, preserve_color=args.preserve_color)
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


COMMANDS = [
    add_invert_command,
    add_edit_command,
    add_stylize_command,
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
