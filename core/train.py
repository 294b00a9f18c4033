"""`python -m core.train stylegan2 --data DIR --out DIR [...]`: train a StyleGAN2 on prepared face shards;
`python -m core.train export COMPACT_DIR FILE`: ship its EMA generator; `python -m core.train samples FILE PNG`.

Every option has a keyword default (StyleGAN2-ADA's where it has one); there are no config files. For several
GPUs: `torchrun --nproc-per-node N -m core.train stylegan2 ...` (`--batch` is the total over all GPUs).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from core.checkpoints import load_generator_file
from core.training.loop import TrainConfig, export_generator, save_grid, train

HELP = {
    "data": "folder of train-*.npz shards from `python -m core.data prepare` (or one shard file)",
    "out": "output folder: log.jsonl, samples-*.png, state.pt (exact resume), compact/ (float16 resume)",
    "resume": "state.pt or a compact/ folder to continue from (its network widths are used)",
    "channel_base": "widths: channels(res) = min(channel_base // res, channel_max)",
    "batch": "images per step over all processes",
    "r1_gamma": "R1 weight (default: StyleGAN2-ADA's 0.0002 * size^2 / batch)",
    "ema_kimg": "half-life of the EMA generator in kimg (default: batch * 10 / 32)",
    "augment": "'ada': DiffAugment ops with ADA's adaptive p; 'fixed': p = --aug-p; 'none'",
    "kimg": "stop when this many thousand images were seen in total",
    "minutes": "wall-clock budget of this run; it saves and stops before it runs out (0: none)",
    "compile": "torch.compile the main phases (measured in benchmarks/train_speed.py)",
}


def _option_type(annotation: str) -> type:
    for name, kind in (("bool", bool), ("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    stylegan2 = commands.add_parser("stylegan2", help="train a StyleGAN2 generator + discriminator",
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        kind, flag = _option_type(str(field.type)), "--" + field.name.replace("_", "-")
        if kind is bool:
            stylegan2.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                                   help=HELP.get(field.name, " "))
        else:
            stylegan2.add_argument(flag, type=kind, default=field.default, help=HELP.get(field.name, " "),
                                   required=field.name == "data")
    export = commands.add_parser("export", help="write a compact checkpoint's G_ema as the shipped generator file")
    export.add_argument("compact", help="a compact/ folder (G_ema-*.safetensors + meta.json)")
    export.add_argument("path", help="output .safetensors (float16, loads with core.checkpoints)")
    samples = commands.add_parser("samples", help="a PNG grid of a generator file's images for seeded latents")
    samples.add_argument("model", help="generator file (core.checkpoints format)")
    samples.add_argument("png", help="output image")
    samples.add_argument("-n", type=int, default=32, help="number of images (a multiple of --columns)")
    samples.add_argument("--columns", type=int, default=8)
    samples.add_argument("--psi", type=float, default=0.7, help="truncation")
    samples.add_argument("--seed", type=int, default=0)
    return root


def main(argv: list[str] | None = None) -> None:
    args = vars(parser().parse_args(argv))
    command = args.pop("command")
    if command == "export":
        print(export_generator(args["compact"], args["path"]))
    elif command == "samples":
        generator = load_generator_file(args["model"])
        z = torch.randn(args["n"], generator.style_dim, generator=torch.Generator().manual_seed(args["seed"]))
        print(save_grid(generator, z, args["png"], args["psi"], args["columns"]))
    else:
        train(TrainConfig(**args))


if __name__ == "__main__":
    main()
