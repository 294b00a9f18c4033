"""Does PTI keep W's editability? The PTI paper's central claim, measured on held-out faces of the embedded model.

    python -m benchmarks.pti_curves prepare                # once: 40 aligned held-out faces (8 per set)
    python -m benchmarks.pti_editability --generator face128 --per-set 5 --json benchmarks/pti_editability.json \
        --plot benchmarks/pti_editability.png      # v1's table; the default generator's: pti_editability_v2.*

Every face gets one W pivot (the projector: `--project-steps`, AlexNet LPIPS, lr 0.03, what the fast preset
projects) and one e4e pivot (the embedded e4e's W+ code); every tuning setting of `SETTINGS` starts from one of them,
shared, so a row differs from its pivot's untuned row (`w`, `e4e`) only by its tuning. Per face and setting:
- reconstruction: PSNR, LPIPS, FaceNet identity and same person against the photo, CPU seconds (pivot + tuning);
- edit strength: the attribute classifier's logit change towards the edit, pivot moved +-`strength` along each
  direction of `EDITS` and drawn by the setting's generator, mean of + and -; `ratio` divides by the `w` row's
  change on the same face and direction (1: the tuned generator edits as W does);
- what else moves: the mean |logit change| of the other attributes of `EDITS`;
- identity kept: FaceNet cosine between the edited and the unedited drawing;
- leak: mean |pixel change| outside the face (the aligned crop's central ellipse), against inside it;
- GANSpace: LPIPS between the unedited drawing and the pivot moved +-2 sigma along components 0-2 (no classifier
  for them: how much the image moves, as a ratio to W's).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine
from core import identity
from core.attributes import load_attribute_classifier
from core.editing import apply, ganspace, load_directions
from core.faces import from_uint8
from core.inversion import fit_latents, pivotal_tuning
from core.inversion.pti import encoder_pivot, make_pivot
from core.measures import lpips_distance, score_each
from core.registry import load_encoder, load_generator, made_for
from core.threads import use_threads

FACES = Path(".carry/pti_curves/faces.npz")
# direction name -> the attribute it should move (conditional directions move it with another one held)
EDITS = {"Smiling": "Smiling", "Young": "Young", "Male": "Male", "Eyeglasses": "Eyeglasses",
         "Young|Male": "Young", "Male|Young": "Male", "Eyeglasses|Male": "Eyeglasses"}
ATTRIBUTES = ("Smiling", "Young", "Male", "Eyeglasses")
# name -> (pivot, pivotal_tuning keywords from that shared pivot); None: the pivot drawn by the original generator.
SETTINGS: dict[str, tuple[str, dict | None]] = {
    "w": ("w", None),
    "paper": ("w", dict(steps=350, lr=3e-4)),
    "paper+locality": ("w", dict(steps=350, lr=3e-4, locality=True)),
    "lr3e-3": ("w", dict(steps=100, lr=3e-3)),  # the fast preset's tuning until session 14
    "lr3e-3+locality": ("w", dict(steps=100, lr=3e-3, locality=True)),
    "lr1e-3": ("w", dict(steps=100, lr=1e-3)),
    "lr1e-3+locality": ("w", dict(steps=100, lr=1e-3, locality=True)),  # the fast preset's tuning now
    "lr1e-3x150+locality": ("w", dict(steps=150, lr=1e-3, locality=True)),
    "e4e": ("e4e", None),
    "e4e+lr1e-3+locality": ("e4e", dict(steps=100, lr=1e-3, locality=True)),
    "e4e+lr1e-3x150+locality": ("e4e", dict(steps=150, lr=1e-3, locality=True)),
    "e4e+paper+locality": ("e4e", dict(steps=350, lr=3e-4, locality=True)),
}
SPEED = dict(autocast=torch.bfloat16, channels_last=True)  # what the fast preset runs with on the CPU


def face_mask(size: int) -> torch.Tensor:
    """[1, 1, size, size] True inside the face: the central ellipse of an FFHQ-aligned crop."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    return ((x / 0.62) ** 2 + ((y - 0.08) / 0.8) ** 2 <= 1)[None, None]


@torch.no_grad()
def edit_measures(draw, pivot: torch.Tensor, G, classifier, directions: dict, components: list, strength: float,
                  mask: torch.Tensor) -> dict:
    """draw(ws) -> images: the setting's generator. Every measure of the module docstring but the reconstruction."""
    base = draw(pivot)
    base_logits = classifier.logits(base)[0]
    base_identity = identity.embed(base)
    index = {a: classifier.index(a) for a in ATTRIBUTES}
    out = {}
    for name, attribute in EDITS.items():
        change, others, kept, outside, inside = [], [], [], [], []
        for sign in (1, -1):
            edited = draw(apply(pivot, directions[name], sign * strength, G.n_latent))
            delta = classifier.logits(edited)[0] - base_logits
            change.append(sign * float(delta[index[attribute]]))
            others.append(np.mean([abs(float(delta[index[a]])) for a in ATTRIBUTES if a != attribute]))
            kept.append(float(identity.similarity(identity.embed(edited), base_identity)[0]))
            moved = (edited - base).abs().mean(1, keepdim=True)
            outside.append(float(moved[~mask.expand_as(moved)].mean()))
            inside.append(float(moved[mask.expand_as(moved)].mean()))
        out[name] = {"logit_change": float(np.mean(change)), "others": float(np.mean(others)),
                     "identity": float(np.mean(kept)), "outside": float(np.mean(outside)),
                     "inside": float(np.mean(inside))}
    for c in components:
        moved = [float(lpips_distance(draw(apply(pivot, c, sign * 2.0, G.n_latent)), base)[0]) for sign in (1, -1)]
        out[c.name] = {"lpips_change": float(np.mean(moved))}
    return out


def run_face(G, target: torch.Tensor, settings: list[str], classifier, directions, components, args, mask,
             encoder) -> dict:
    pivots, pivot_seconds = {}, {}
    for source in dict.fromkeys(SETTINGS[name][0] for name in settings):
        started = time.perf_counter()
        if source == "w":
            pivots[source] = fit_latents(G, target, space="w", steps=args.project_steps, lr=0.03, lpips_net="alex",
                                         seed=0, **SPEED)[0]
        else:
            pivots[source] = make_pivot(G, target, encoder)[0]
        pivot_seconds[source] = time.perf_counter() - started
    rows = {}
    for name in settings:
        source, options = SETTINGS[name]
        pivot = pivots[source]
        begin = time.perf_counter()
        if options is None:
            draw = lambda ws: G.synthesis(ws, noise_mode="const")  # noqa: E731
            steps_run = 0
        else:
            result = pivotal_tuning(G, target, pivot=pivot, seed=0, **options, **SPEED)
            draw = lambda ws, result=result: result.render(G, ws)  # noqa: E731
            steps_run = len(result.losses["tune"].get("lpips", []))
        seconds = time.perf_counter() - begin + pivot_seconds[source]
        with torch.no_grad():
            reconstruction = draw(pivot)
        scores = {k: v[0] for k, v in score_each(reconstruction, target).items()}
        rows[name] = {"seconds": seconds, "tune_steps": steps_run, **scores,
                      "edits": edit_measures(draw, pivot, G, classifier, directions, components, args.strength, mask)}
    return rows


def summarise(faces: list[dict], settings: list[str], components: list[str]) -> dict:
    """Per setting, over the faces it ran on: means; edit ratios divide by the w row's mean change on those faces."""
    table = {}
    for name in settings:
        mine = [f for f in faces if name in f["settings"]]
        rows = [f["settings"][name] for f in mine]
        entry = {"faces": len(mine)} | {k: float(np.nanmean([r[k] for r in rows])) for k in (
            "psnr", "lpips", "identity", "same_person", "seconds", "tune_steps")}
        w = [f["settings"]["w"]["edits"] for f in mine] if all("w" in f["settings"] for f in mine) else None
        for edit in EDITS:
            entry[f"{edit}_logit"] = float(np.mean([r["edits"][edit]["logit_change"] for r in rows]))
            if w:
                entry[f"{edit}_ratio"] = entry[f"{edit}_logit"] / float(np.mean([e[edit]["logit_change"] for e in w]))
            for k in ("others", "identity", "outside", "inside"):
                entry[f"{edit}_{k}"] = float(np.mean([r["edits"][edit][k] for r in rows]))
        for c in components:
            entry[f"{c}_lpips"] = float(np.mean([r["edits"][c]["lpips_change"] for r in rows]))
            if w:
                entry[f"{c}_ratio"] = entry[f"{c}_lpips"] / float(np.mean([e[c]["lpips_change"] for e in w]))
        entry["min_ratio_attributes"] = min((entry.get(f"{a}_ratio", math.nan) for a in ATTRIBUTES), default=math.nan)
        table[name] = entry
    return table


def markdown(table: dict, faces: int) -> str:
    """The settings table, then per direction what it moves: its attribute's logit change / the others' mean."""
    head = ("| setting | faces | PSNR dB | LPIPS | same person | CPU s | tune steps | "
            + " | ".join(f"{a} (× W)" for a in ATTRIBUTES) + " | edit identity | others move | outside / inside |")
    lines = [f"{faces} held-out faces (each setting's ratios against W on the faces it ran on)", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for name, e in table.items():
        ratios = " | ".join(f"{e[f'{a}_logit']:.2f} ({e.get(f'{a}_ratio', math.nan):.2f})" for a in ATTRIBUTES)
        identity_kept = np.mean([e[f"{a}_identity"] for a in ATTRIBUTES])
        others = np.mean([e[f"{a}_others"] for a in ATTRIBUTES])
        leak = np.mean([e[f"{a}_outside"] / max(e[f"{a}_inside"], 1e-9) for a in ATTRIBUTES])
        lines.append(f"| {name} | {e['faces']} | {e['psnr']:.2f} | {e['lpips']:.4f} | {e['same_person']:.0%} | "
                     f"{e['seconds']:.1f} | {e['tune_steps']:.0f} | {ratios} | {identity_kept:.3f} | {others:.2f} | "
                     f"{leak:.2f} |")
    head = "| direction (moves) | " + " | ".join(table) + " |"
    lines += ["", "Per direction, the logit change of its attribute / the mean absolute change of the other three:", "",
              head, "|" + "---|" * (head.count("|") - 1)]
    for edit, attribute in EDITS.items():
        cells = " | ".join(f"{e[f'{edit}_logit']:.2f} / {e[f'{edit}_others']:.2f}" for e in table.values())
        lines.append(f"| {edit} ({attribute}) | {cells} |")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, e in table.items():
        strength = np.mean([e.get(f"{a}_ratio", 1.0) for a in ATTRIBUTES])
        ax.scatter(e["psnr"], strength, s=40)
        ax.annotate(f"{name} ({e['faces']} faces)", (e["psnr"], strength), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.axvline(26, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("reconstruction PSNR (dB)")
    ax.set_ylabel("edit strength, × W's (mean of 4 attributes)")
    ax.set_title("PTI: reconstruction against editability")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--per-set", type=int, default=5, help="faces of each held-out set (at most 8)")
    parser.add_argument("--project-steps", type=int, default=100, help="W pivot projection steps")
    parser.add_argument("--strength", type=float, default=3.0, help="edit strength along each unit direction")
    parser.add_argument("--limit", type=int, help="only the first this many faces")
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th face from the i-th (parallel processes)")
    parser.add_argument("--table", nargs="+", type=Path,
                        help="no runs: the table (and --plot) of these JSON files, merging a face's settings")
    parser.add_argument("--generator", default="default", help="registry name (its directions and e4e come with it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--json", type=Path, help="per-face rows and the table (rerunning appends faces not yet in it)")
    parser.add_argument("--plot", type=Path, help="strength against reconstruction per setting")
    args = parser.parse_args(argv)
    if args.table:
        runs = [json.loads(path.read_text()) for path in args.table]
        merged: dict[str, dict] = {}  # a face run in several files (other settings) is one face with all of them
        for face in (face for run in runs for face in run["faces"]):
            merged.setdefault(face["face"], {**face, "settings": {}})["settings"].update(face["settings"])
        faces = list(merged.values())
        settings = list(dict.fromkeys(s for face in faces for s in face["settings"]))
        table = summarise(faces, settings, ["pc0", "pc1", "pc2"])
        print(markdown(table, len(faces)))
        if args.plot:
            plot(table, args.plot)
        if args.json:
            args.json.write_text(json.dumps({**{k: runs[0][k] for k in ("machine", "strength", "project_steps")},
                                             "table": table, "faces": faces}, indent=1) + "\n")
        return
    use_threads(args.threads)
    data = np.load(args.faces)
    sets = [str(s) for s in data["sets"]]
    picked = [i for i, s in enumerate(sets) if sets[:i].count(s) < args.per_set]
    picked.sort(key=lambda i: (sets[:i].count(sets[i]), i))  # one face of every set first, then the next of each
    shard, shards = map(int, args.shard.split("/"))
    picked = picked[:args.limit][shard::shards]
    G = load_generator(args.generator)
    classifier = load_attribute_classifier()
    directions = {d.name: d for d in load_directions(made_for("directions", args.generator))}
    components = [ganspace(G).direction(k) for k in range(3)]  # named pc0, pc1, pc2
    mask = face_mask(G.size)
    uses_e4e = any(SETTINGS[s][0] == "e4e" for s in args.settings)
    e4e = load_encoder(made_for("e4e", args.generator), decoder=G) if uses_e4e else None
    encoder = e4e and encoder_pivot(e4e, size=e4e.encoder.input_size)
    targets = from_uint8(torch.from_numpy(data["images"]))
    done = json.loads(args.json.read_text())["faces"] if args.json and args.json.is_file() else []
    faces = [f for f in done if all(s in f["settings"] for s in args.settings)]
    for i in picked:
        if any(f["face"] == str(data["names"][i]) for f in faces):
            continue
        rows = run_face(G, targets[i:i + 1], args.settings, classifier, directions, components, args, mask, encoder)
        faces.append({"set": sets[i], "face": str(data["names"][i]), "settings": rows})
        print(json.dumps({"face": faces[-1]["face"], **{n: {k: round(r[k], 3) for k in ("psnr", "identity", "seconds")}
                                                       for n, r in rows.items()}}), flush=True)
        table = summarise(faces, args.settings, [c.name for c in components])
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "strength": args.strength,
                                             "project_steps": args.project_steps, "table": table,
                                             "faces": faces}, indent=1) + "\n")
    table = summarise(faces, args.settings, [c.name for c in components])
    print(markdown(table, len(faces)))
    if args.plot:
        plot(table, args.plot)


if __name__ == "__main__":
    main()
