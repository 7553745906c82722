"""Command line.

* ``lightning fit|validate|test|predict -c config.yaml``: a generic LightningCLI
  (model and data by class path), e.g. ``lightning fit -c configs/supersimplenet_synthetic.yaml``.
* ``anomalysynth fit|validate|test|predict ...``: the same.
* ``anomalysynth cache --data <SyntheticAnomalyDataModule config> [--trainer.devices N]``:
  build the synthesis bank through Lightning's predict loop.
* ``anomalysynth cache sdas --checkpoint CKPT --out DIR [--devices N]``: sample an SDAS
  texture bank from a diffusion checkpoint, through Lightning's predict loop.
* ``anomalysynth preview --synthesizer NAME``: a PNG grid to look at.
* ``anomalysynth sdas-grid --checkpoint CKPT --out grid.png``: SDAS samples, one row per strength.
* ``anomalysynth evaluate --data DIR --out DIR [--synthesizers NAME ...]``: the realism report
  (IS, IC-LPIPS, FID, KID per synthesizer; distances to the real defects when the folder has them).
* ``anomalysynth ablate -c configs/ablation/NAME.yaml [--workers N | --executor ray]``: run an
  ablation grid (finished runs are skipped, failed ones re-run); ``anomalysynth report DIR``:
  its table as markdown and plots (mean +- std over seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from anomalysynth.synth import available_synthesizers, create_synthesizer

__all__ = ["main"]


_LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightning`` console script: a generic LightningCLI.

    Beyond Lightning's own options it takes ``test_after_fit`` (default false): after
    ``fit``, test the trained module on the datamodule's test set, so one command
    trains and prints the test metrics. Testing the saved last checkpoint with
    ``lightning test --ckpt_path`` gives the same numbers (same weights, same data).
    """
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    import anomalysynth  # noqa: F401  (registers the offline backbones)

    class _CLI(LightningCLI):
        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=False,
                help="After fit, test the trained module on the test set and print its metrics.",
            )

        def after_fit(self) -> None:
            if self.config.get(str(self.subcommand), {}).get("test_after_fit", False):
                self.trainer.test(self.model, datamodule=self.datamodule)

    _CLI(
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
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _LIGHTNING_COMMANDS:
        # LightningCLI reads sys.argv itself (and warns when handed a copy of it)
        return lightning_main(None if from_command_line else argv)
    if argv[:2] == ["cache", "sdas"]:
        return _cache_sdas(argv[2:])
    if argv and argv[0] == "cache":
        return _cache(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "preview":
        return _preview(args)
    if args.command == "sdas-grid":
        return _sdas_grid(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "ablate":
        return _ablate(args)
    if args.command == "report":
        return _report(args)
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalysynth", description="Synthetic anomalies for anomaly detection.")
    sub = parser.add_subparsers(dest="command")
    for command in _LIGHTNING_COMMANDS:
        sub.add_parser(command, help=f"LightningCLI {command} (see `anomalysynth {command} --help`)")
    sub.add_parser(
        "cache",
        help="build a synthesis bank (`anomalysynth cache --help`) or an SDAS texture bank "
        "(`anomalysynth cache sdas --help`)",
    )
    grid = sub.add_parser("sdas-grid", help="write a PNG of SDAS samples, one row per strength s")
    grid.add_argument("--checkpoint", required=True, help="NormalImageDiffusion .ckpt or save_pretrained folder")
    grid.add_argument("--out", default="sdas_grid.png", help="output PNG path")
    grid.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4], help="one row per s")
    grid.add_argument("--num", type=int, default=8, help="columns (column i uses seed + i in every row)")
    grid.add_argument("--steps", type=int, default=20, help="respaced reverse steps")
    grid.add_argument("--method", choices=["ddpm", "ddim"], default="ddpm")
    grid.add_argument("--seed", type=int, default=0)
    grid.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling for viewing")
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
    _add_evaluate_parser(sub)
    _add_ablation_parsers(sub)
    return parser


def _add_ablation_parsers(sub: Any) -> None:
    ablate = sub.add_parser("ablate", help="run an ablation grid (configs/ablation/*.yaml); resumable")
    ablate.add_argument("-c", "--config", required=True, help="grid YAML (see anomalysynth.ablation.grid)")
    ablate.add_argument("--output", default=None, help="results folder (default: the grid's `output`)")
    ablate.add_argument("--executor", choices=["local", "ray"], default="local")
    ablate.add_argument("--workers", type=int, default=1, help="local executor: parallel processes")
    ablate.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local instance)")
    ablate.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    ablate.add_argument("--only", default=None, help="run only the runs whose id contains this text")
    ablate.add_argument("--dry-run", action="store_true", help="list the runs and whether they are finished")
    ablate.add_argument("--no-report", action="store_true", help="do not write report.md at the end")
    report = sub.add_parser("report", help="markdown and plots of an ablation's results table")
    report.add_argument("folder", help="the ablation's output folder (holds results.jsonl)")
    report.add_argument("--metrics", nargs="+", default=None, help="columns to show (default: all metrics)")


def _ablate(args: argparse.Namespace) -> int:
    from anomalysynth.ablation import ResultsTable, create_executor, load_grid, run_grid, write_ablation_report

    grid = load_grid(args.config, args.output)
    if args.dry_run:
        finished = ResultsTable(grid.output).finished()
        for spec in grid.runs():
            print(f"{'done' if spec.run_id in finished else 'todo'}  {spec.run_id}")
        return 0
    if args.executor == "ray":
        executor = create_executor(
            "ray",
            address=args.ray_address,
            num_cpus=args.ray_cpus,
            run_cpus=grid.resources["num_cpus"],
            run_gpus=grid.resources["num_gpus"],
        )
    else:
        executor = create_executor("local", workers=args.workers)
    table = run_grid(grid, executor, only=args.only)
    rows = table.rows()
    failed = sum(r.get("status") != "ok" for r in rows)
    if not args.no_report and len(rows) > failed:
        write_ablation_report(grid.output, grid.metrics or None, grid.name)
    print(f"{grid.output}: {len(rows) - failed} finished runs, {failed} failed (results.csv, report.md)")
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from anomalysynth.ablation import write_ablation_report

    try:
        path = write_ablation_report(args.folder, args.metrics)
    except ValueError as err:
        raise SystemExit(str(err)) from err
    print(f"wrote {path}")
    return 0


def _add_evaluate_parser(sub: Any) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="realism report: IS, IC-LPIPS, FID, KID of each synthesizer's anomalies (resumable)"
    )
    evaluate.add_argument("--data", required=True, help="MVTec-style tree (train/good, test, ground_truth) or a folder")
    evaluate.add_argument("--out", required=True, help="report folder (re-running skips finished synthesizers)")
    evaluate.add_argument("--synthesizers", nargs="+", default=None, help="default: every registered synthesizer")
    evaluate.add_argument("--num", type=int, default=64, help="normal images used")
    evaluate.add_argument("--num-defects", type=int, default=64, help="real defect images used")
    evaluate.add_argument("--size", type=int, default=128, help="images are resized to size x size")
    evaluate.add_argument("--repeats", type=int, default=2, help="anomalies drawn per normal image")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--grayscale", action="store_true", help="load images as one channel")
    evaluate.add_argument("--feature-size", type=int, default=224, help="input size of the EfficientNet features")
    evaluate.add_argument("--kid-subset-size", type=int, default=None, help="KID over random subsets of this size")
    evaluate.add_argument("--inception-weights", default=None, help="torch-fidelity Inception file: FID/KID/IS")
    evaluate.add_argument("--lpips-alexnet-weights", default=None, help="torchvision AlexNet file: IC-LPIPS")
    evaluate.add_argument(
        "--synth-args", default="{}", help='JSON {name: {constructor arguments}}, e.g. \'{"sdas": {"bank": "sia"}}\''
    )


def _evaluate(args: argparse.Namespace) -> int:
    from anomalysynth.metrics.realism_report import EvaluationSettings, evaluate_synthesizers

    try:
        synth_args = json.loads(args.synth_args)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--synth-args is not valid JSON: {err}") from err
    if not isinstance(synth_args, dict) or not all(isinstance(v, dict) for v in synth_args.values()):
        raise SystemExit(f"--synth-args: expected a JSON object of objects; got {args.synth_args!r}.")
    names = args.synthesizers or available_synthesizers()
    unknown = sorted(set(names) - set(available_synthesizers()))
    if unknown:
        raise SystemExit(f"Unknown synthesizers {unknown}; expected some of {available_synthesizers()}.")
    settings = EvaluationSettings(
        num_images=args.num,
        num_defects=args.num_defects,
        size=args.size,
        repeats=args.repeats,
        seed=args.seed,
        channels=1 if args.grayscale else 3,
        feature_network="inception" if args.inception_weights else "effnet",
        feature_weights=args.inception_weights,
        perceptual="lpips" if args.lpips_alexnet_weights else "effnet",
        perceptual_weights=args.lpips_alexnet_weights,
        kid_subset_size=args.kid_subset_size,
        feature_size=args.feature_size,
        synth_args=synth_args,
    )
    rows = evaluate_synthesizers(args.data, names, args.out, settings)
    print(f"wrote {args.out}/report.md ({len(rows)} rows: {', '.join(r['synthesizer'] for r in rows)})")
    return 0


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


def _sdas_grid(args: argparse.Namespace) -> int:
    from anomalysynth.diffusion import SDASSampler, load_diffusion
    from anomalysynth.diffusion.grid import strength_grid
    from anomalysynth.preview import save_png_atomic

    unet, scheduler = load_diffusion(args.checkpoint)
    sampler = SDASSampler(unet, scheduler, num_steps=args.steps, method=args.method)
    grid = strength_grid(sampler, args.strengths, args.num, args.seed, args.scale, progress=True)
    path = save_png_atomic(grid, args.out)
    print(f"wrote {path} (rows s = {', '.join(f'{s:g}' for s in args.strengths)}; {args.steps} {args.method} steps)")
    return 0


def _cache_sdas(argv: Sequence[str]) -> int:
    from anomalysynth.diffusion import build_sdas_bank

    parser = argparse.ArgumentParser(
        prog="anomalysynth cache sdas", description="Sample an SDAS texture bank from a diffusion checkpoint."
    )
    parser.add_argument("--checkpoint", required=True, help="NormalImageDiffusion .ckpt or save_pretrained folder")
    parser.add_argument("--out", required=True, help="bank folder (resumes an interrupted build of the same settings)")
    parser.add_argument("--num", type=int, default=1000, help="number of textures")
    parser.add_argument("--strength", type=float, nargs=2, default=[0.1, 0.2], metavar=("MIN", "MAX"))
    parser.add_argument("--steps", type=int, default=20, help="respaced reverse steps")
    parser.add_argument("--method", choices=["ddpm", "ddim"], default="ddpm")
    parser.add_argument("--size", type=int, default=None, help="resize textures to size x size (default: model size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fixed-variance", action="store_true", help="allow a model without learned variance")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu, ...")
    parser.add_argument("--devices", default="1", help="devices per node (a number, a list or 'auto')")
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp for several devices")
    parser.add_argument("--num-nodes", type=int, default=1)
    args = parser.parse_args(list(argv))
    devices: Any = args.devices if args.devices == "auto" or "," in args.devices else int(args.devices)
    trainer_kwargs = {
        "accelerator": args.accelerator,
        "devices": devices,
        "strategy": args.strategy,
        "num_nodes": args.num_nodes,
    }
    out = build_sdas_bank(
        args.checkpoint,
        args.out,
        num_textures=args.num,
        strength=(args.strength[0], args.strength[1]),
        num_steps=args.steps,
        method=args.method,
        size=args.size,
        seed=args.seed,
        batch_size=args.batch_size,
        fixed_variance=args.fixed_variance,
        trainer_kwargs=trainer_kwargs,
    )
    from lightning.pytorch.utilities import rank_zero_info

    rank_zero_info(f"SDAS bank: {out} ({args.num} textures, s in [{args.strength[0]:g}, {args.strength[1]:g}])")
    return 0


def _cache(argv: Sequence[str]) -> int:
    import lightning.pytorch as pl
    from jsonargparse import ActionConfigFile, ArgumentParser

    from anomalysynth.datamodules import SyntheticAnomalyDataModule, build_with_trainer

    parser = ArgumentParser(prog="anomalysynth cache", description="Build the synthesis bank of a training split.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML file with the arguments below")
    parser.add_subclass_arguments(SyntheticAnomalyDataModule, "data", help="the SyntheticAnomalyDataModule to cache")
    parser.add_argument("--batch_size", type=int, default=8, help="samples synthesized together on the device")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader workers reading the source images")
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
    bank = build_with_trainer(
        data.cache, source, trainer_kwargs, batch_size=cfg.batch_size, num_workers=cfg.num_workers
    )
    from lightning.pytorch.utilities import rank_zero_info

    rank_zero_info(f"synthesis bank: {bank} ({len(source)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
