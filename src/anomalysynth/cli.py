"""Command line.

* ``lightning fit|validate|test|predict -c config.yaml``: a generic LightningCLI
  (model and data by class path), e.g. ``lightning fit -c configs/supersimplenet_synthetic.yaml``.
* ``anomalysynth fit|validate|test|predict ...``: the same.
* ``anomalysynth cache --data <SyntheticAnomalyDataModule config> [--trainer.devices N]``:
  build the synthesis bank through Lightning's predict loop.
* ``anomalysynth preview --synthesizer NAME``: a PNG grid to look at.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from anomalysynth.synth import available_synthesizers, create_synthesizer

__all__ = ["main"]


_LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning`` console script: a generic LightningCLI."""
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    import anomalysynth  # noqa: F401  (registers the offline backbones)

    LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if argv is None else list(argv),
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anomalysynth`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _LIGHTNING_COMMANDS:
        return lightning_main(argv)
    if argv and argv[0] == "cache":
        return _cache(argv[1:])
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
    for command in _LIGHTNING_COMMANDS:
        sub.add_parser(command, help=f"LightningCLI {command} (see `anomalysynth {command} --help`)")
    sub.add_parser("cache", help="build a synthesis bank (see `anomalysynth cache --help`)")
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


def _cache(argv: Sequence[str]) -> int:
    import lightning.pytorch as pl
    from jsonargparse import ActionConfigFile, ArgumentParser

    from anomalysynth.datamodules import SyntheticAnomalyDataModule, build_with_trainer

    parser = ArgumentParser(prog="anomalysynth cache", description="Build the synthesis bank of a training split.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML file with the arguments below")
    parser.add_subclass_arguments(SyntheticAnomalyDataModule, "data", help="the SyntheticAnomalyDataModule to cache")
    parser.add_argument("--batch_size", type=int, default=8, help="samples per predict step")
    parser.add_class_arguments(
        pl.Trainer, "trainer", fail_untyped=False, skip={"callbacks", "logger", "enable_checkpointing"}
    )
    cfg = parser.parse_args(list(argv))
    init = parser.instantiate_classes(cfg)
    data: SyntheticAnomalyDataModule = init.data
    trainer_kwargs = dict(cfg.trainer.as_dict())
    trainer_kwargs.setdefault("accelerator", "cpu")
    data.datamodule.prepare_data()
    data.datamodule.setup("fit")
    source = data.synthetic_training_source()
    bank = build_with_trainer(data.cache, source, trainer_kwargs, batch_size=cfg.batch_size)
    from lightning.pytorch.utilities import rank_zero_info

    rank_zero_info(f"synthesis bank: {bank} ({len(source)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
