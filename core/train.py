"""`python -m core.train stylegan2 --data DIR --out DIR [...]`: train a StyleGAN2 on prepared face shards;
`python -m core.train export COMPACT_DIR FILE`: ship its EMA generator; `python -m core.train samples FILE PNG`;
`python -m core.train attributes --data DIR --labels CSV`: the attribute classifier; `python -m core.train
directions`: InterFaceGAN directions for a generator, labelled by that classifier.

Every option has a keyword default (StyleGAN2-ADA's where it has one); there are no config files. For several
GPUs: `torchrun --nproc-per-node N -m core.train stylegan2 ...` (`--batch` is the total over all GPUs).
"""

from __future__ import annotations

import argparse

import torch

from core.checkpoints import load_generator_file
from core.training.attributes import accuracy_markdown, train_attribute_classifier
from core.training.directions import ATTRIBUTES, CONDITIONAL, measure_table, train_directions
from core.training.dualstylegan import DualStyleGANConfig, export_style
from core.training.dualstylegan import train as train_dualstylegan
from core.training.encoder import EncoderConfig, export_encoder
from core.training.encoder import train as train_encoder
from core.training.reference_edit import ReferenceEditConfig
from core.training.reference_edit import train as train_reference_edit
from core.training.scaffold import add_config_options
from core.training.stylegan2 import TrainConfig, export_generator, save_grid, train


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m core train", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    stylegan2 = commands.add_parser("stylegan2", help="train a StyleGAN2 generator + discriminator",
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(stylegan2, TrainConfig, required=("data",))
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
    attributes = commands.add_parser("attributes", help="train the CelebA attribute classifier's heads",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    attributes.add_argument("--data", required=True,
                            help="folder of train-*.npz and heldout-*.npz shards from `python -m core.data prepare`")
    attributes.add_argument("--labels", required=True, help="CelebA attributes.csv (file, identity, split, 40 x ±1)")
    attributes.add_argument("--out", default="models/face128/attributes.safetensors")
    attributes.add_argument("--cache", help="folder to keep the backbone features in (a rerun then takes seconds)")
    attributes.add_argument("--steps", type=int, default=150, help="L-BFGS iterations per fit")
    encoder = commands.add_parser("encoder", help="train a pSp, e4e or Style Transformer encoder for a generator",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(encoder, EncoderConfig)
    export_enc = commands.add_parser("export-encoder", help="write a compact encoder checkpoint as the shipped file")
    export_enc.add_argument("compact", help="a compact/ folder (encoder-*.safetensors + meta.json)")
    export_enc.add_argument("path", help="output .safetensors (float16, loads with core.registry.load_encoder)")
    reference = commands.add_parser("reference-edit", help="train the Style Transformer's latent attribute classifier "
                                    "and edit transformer (reference-based editing) on encoded faces",
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(reference, ReferenceEditConfig, required=("data", "labels"))
    dual = commands.add_parser("dualstylegan", help="train DualStyleGAN on a folder of style images (fine-tune, "
                               "destylise, progressive fine-tuning) and export the style",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_options(dual, DualStyleGANConfig)
    export_dual = commands.add_parser("export-style", help="write a finished DualStyleGAN run as the shipped style")
    export_dual.add_argument("run", help="the run's output folder (style/compact, codes.safetensors, styles.npz)")
    export_dual.add_argument("path", help="output .safetensors (loads with core.style.load_style)")
    directions = commands.add_parser("directions", help="fit InterFaceGAN directions for a generator",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    directions.add_argument("--out", default="models/face128/directions.safetensors")
    directions.add_argument("--generator", default="default", help="registry name or generator file")
    directions.add_argument("--classifier", default="face128-attributes", help="registry name or classifier file")
    directions.add_argument("--samples", type=int, default=4000, help="seeded latents to label and fit on")
    directions.add_argument("--seed", type=int, default=0)
    directions.add_argument("--psi", type=float, default=1.0, help="truncation of the fitting samples")
    directions.add_argument("--share", type=float, default=0.1, help="top / bottom share of scores fitted on")
    directions.add_argument("--attributes", default=",".join(ATTRIBUTES), help="classifier attributes (+ Yaw)")
    directions.add_argument("--conditional", default=",".join("|".join(pair) for pair in CONDITIONAL),
                            help="primary|condition pairs: primary with condition's normal projected out")
    directions.add_argument("--measure-samples", type=int, default=32, help="faces walked per direction (0: skip)")
    directions.add_argument("--cache", help="folder to keep the sampled faces in")
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
    elif command == "attributes":
        _, table = train_attribute_classifier(args["data"], args["labels"], args["out"], cache=args["cache"],
                                              steps=args["steps"])
        print(f"wrote {args['out']}; held-out accuracy:\n{accuracy_markdown(table)}")
    elif command == "directions":
        pairs = [tuple(pair.split("|")) for pair in args.pop("conditional").split(",") if pair]
        if any(len(pair) != 2 for pair in pairs):
            raise SystemExit(f"--conditional takes primary|condition pairs separated by commas, got {pairs}")
        names = [name for name in args.pop("attributes").split(",") if name]
        _, metadata = train_directions(conditional=pairs, attributes=names, **args)
        print(f"wrote {args['out']}; cosines between normals: {metadata['cosines']}")
        if metadata["measured"]:
            print(measure_table(metadata["measured"]))
    elif command == "encoder":
        train_encoder(EncoderConfig(**args))
    elif command == "reference-edit":
        print(train_reference_edit(ReferenceEditConfig(**args)))
    elif command == "dualstylegan":
        path = train_dualstylegan(DualStyleGANConfig(**args))
        print(path or "stopped before the last phase; run the same command again to continue")
    elif command == "export-style":
        print(export_style(args["run"], args["path"]))
    elif command == "export-encoder":
        print(export_encoder(args["compact"], args["path"]))
    else:
        train(TrainConfig(**args))


if __name__ == "__main__":
    main()
