"""Edit directions measured: walk seeded faces along each direction and see what moved.

    python -m benchmarks.direction_quality                                     # the shipped face128 directions
    python -m benchmarks.direction_quality --grid models/face128/directions.png  # + the model card's grid

Per direction (`core.training.directions.measure_directions`): the attribute classifier's score change of the
direction's own attribute per strength (in standard deviations of that score over the unedited faces), the dlib
identity cosine to the unedited face, the share still the same person by dlib's rule, and how much the other
attributes moved (entanglement). Also the cosines between the directions' normals, and a traversal grid.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import machine
from core.attributes import load_attribute_classifier
from core.editing import load_directions
from core.registry import load_generator
from core.training.directions import cosines, measure_directions, measure_table
from playground.figures import traversal_grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--directions", default="face128-directions", help="registry name or directions file")
    parser.add_argument("--generator", default="default", help="the generator they were fitted on")
    parser.add_argument("--classifier", default="face128-attributes", help="attribute classifier (name or file)")
    parser.add_argument("--samples", type=int, default=32, help="faces walked along each direction (0: none)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the faces (the fit used seed 0)")
    parser.add_argument("--psi", type=float, default=0.7)
    parser.add_argument("--strengths", default="-3,-1.5,1.5,3")
    parser.add_argument("--grid", help="also write a traversal grid PNG here")
    parser.add_argument("--grid-faces", type=int, default=2, help="faces (column blocks) in the grid")
    parser.add_argument("--grid-strengths", default="-5,-2.5,0,2.5,5", help="the grid's columns per face")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator, classifier = load_generator(args.generator), load_attribute_classifier(args.classifier)
    directions = load_directions(args.directions)
    strengths = [float(s) for s in args.strengths.split(",")]
    print(f"{machine()}; {args.samples} faces (seed {args.seed}, ψ = {args.psi}), {len(directions)} directions")
    if args.grid:
        z = torch.randn(args.grid_faces, generator.style_dim, generator=torch.Generator().manual_seed(args.seed))
        ws = generator.mapping(z, truncation_psi=args.psi).detach()
        grid = traversal_grid(generator, directions, ws, [float(s) for s in args.grid_strengths.split(",")])
        grid.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(args.grid, optimize=True)  # < 1 MB
        print(f"wrote {args.grid} ({Path(args.grid).stat().st_size / 1024:.0f} KB)")
    print("cosines between normals:", ", ".join(f"{k} {v:+.2f}" for k, v in cosines(directions).items()))
    if not args.samples:
        return
    start = time.time()
    rows = measure_directions(generator, classifier, directions, samples=args.samples, seed=args.seed,
                              psi=args.psi, strengths=strengths)
    print(f"\n{measure_table(rows)}\n\nmeasured in {time.time() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
