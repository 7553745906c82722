"""Command line: ``anomalysynth preview``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from anomalysynth.synth import available_synthesizers, create_synthesizer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anomalysynth`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "preview":
        return _preview(args)
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalysynth", description="Synthetic anomalies for anomaly detection.")
    sub = parser.add_subparsers(dest="command")
    preview = sub.add_parser("preview", help="write a PNG grid: source, synthetic image, mask overlay")
    preview.add_argument("--synthesizer", required=True, choices=available_synthesizers())
    preview.add_argument(
        "--data", default=None, help="folder of normal images (an MVTec-style tree uses train/good); default: demo data"
    )
    preview.add_argument("--out", default="grid.png", help="output PNG path")
    preview.add_argument("--num", type=int, default=8, help="number of images")
    preview.add_argument("--size", type=int, default=256, help="images are resized to size x size")
    preview.add_argument("--seed", type=int, default=0, help="image i uses generator seed + i")
    preview.add_argument("--grayscale", action="store_true", help="load images as one channel")
    preview.add_argument(
        "--synth-args", default="{}", help='JSON constructor arguments, e.g. \'{"texture_dir": "dtd/images"}\''
    )
    return parser


def _preview(args: argparse.Namespace) -> int:
    from anomalysynth.datamodules.demo import build_demo_dataset
    from anomalysynth.preview import find_images, load_images, preview_grid, save_png_atomic, synthesize_preview

    if args.num < 1:
        raise SystemExit("--num must be >= 1")
    try:
        kwargs = json.loads(args.synth_args)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--synth-args is not valid JSON: {err}") from err
    synthesizer = create_synthesizer(args.synthesizer, **kwargs)
    folder = args.data if args.data is not None else build_demo_dataset()
    paths = find_images(folder)[: args.num]
    images = load_images(paths, args.size, channels=1 if args.grayscale else 3)
    out = synthesize_preview(synthesizer, images, seed=args.seed)
    path = save_png_atomic(preview_grid(images, out), args.out)
    print(f"wrote {path} ({len(paths)} images, synthesizer {args.synthesizer}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
