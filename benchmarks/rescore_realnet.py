"""Evaluate saved RealNet checkpoints again with other scoring settings, without training.

Scoring settings (``score_pool``, ``score_topk``, ``map_sigma``, ``residual_weight``,
``score_sigma``)
change only how a trained model turns its outputs into the anomaly map and the image
score, so a saved model can be re-scored in seconds. Prints image AUROC (the given
score, the plain max and the 16x16 box mean), pixel AUROC and AUPRO on the test split
that ``detection_quality.py`` uses. A checkpoint saved before the residual scale was
tracked gets it measured on the clean training images first. ``--realnet-args`` must
rebuild the saved model's architecture (RealNet's defaults are the shipped recipe; a
model saved without the normality terms needs their weights set to 0). Run it alone:

    VARIANT='{"residual_weight": 0.05, "neighbour_weight": 0, "gaussian_weight": 0, "score_gaussian_weight": 0}'
    python benchmarks/rescore_realnet.py --root ../shared/datasets/deeppcb --realnet-args "$VARIANT" \\
        results/bench/RealNet/deeppcb/v0/weights/lightning/model.ckpt
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from detection_quality import evaluator, folder, rescore


def checkpoint_parser(description: str | None, realnet_help: str) -> argparse.ArgumentParser:
    """The arguments shared by the scripts that evaluate saved RealNet checkpoints on a folder."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="RealNet .ckpt files")
    parser.add_argument("--root", type=Path, default=Path("../shared/datasets/deeppcb"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--realnet-args", type=json.loads, default={}, help=realnet_help)
    return parser


def check_paths(args: argparse.Namespace) -> None:
    """Exit with a message when the folder or a checkpoint is missing."""
    if not (args.root / "train" / "good").is_dir():
        raise SystemExit(f"{args.root} is not an MVTec-style folder (no train/good).")
    missing = [str(p) for p in args.checkpoints if not p.is_file()]
    if missing:
        raise SystemExit(f"No checkpoint at {missing}.")


def main() -> None:
    parser = checkpoint_parser(
        __doc__,
        "JSON keyword arguments of RealNet: the architecture the checkpoints were trained with plus the "
        "scoring settings to evaluate",
    )
    args = parser.parse_args()
    check_paths(args)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    from anomalib.engine import Engine
    from anomalib.post_processing import PostProcessor

    from anomalysynth.models import RealNet

    datamodule = folder(args.root, args.image_size, args.batch)
    datamodule.setup()
    print(f"{'checkpoint':60s} {'img AUROC':>9s} {'plain max':>9s} {'box 16':>9s} {'px AUROC':>9s} {'AUPRO':>7s}")
    for path in args.checkpoints:
        model = RealNet(
            evaluator=evaluator(), post_processor=PostProcessor(enable_normalization=False), **args.realnet_args
        )
        model.load_weights(path)
        if model.model.residual_weight > 0 and not bool(model.model.residual_scale_done):
            model.measure_residual_scale(datamodule.train_dataloader())
        engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir="results/rescore")
        (given,) = engine.test(model=model, datamodule=datamodule, verbose=False)
        plain = rescore(engine, model, datamodule, score_pool=1, score_topk=0)
        box = rescore(engine, model, datamodule, score_pool=16, score_topk=0)
        print(
            f"{str(path)[-60:]:60s} {given['image_AUROC']:9.3f} {plain:9.3f} {box:9.3f} "
            f"{given['pixel_AUROC']:9.3f} {given['pixel_AUPRO']:7.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
