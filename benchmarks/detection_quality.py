"""Detection quality: RealNet vs anomalib's PatchCore and PaDiM, same backbone, same data.

Every model uses the offline EfficientNet-Lite0, the same image size and the CPU.
Prints image AUROC, pixel AUROC, AUPRO, training time and inference images/s for
each (``engine.test`` over the test set, and the model alone on preloaded batches),
with ratios against PatchCore, AFSPadim against PaDiM's random and all channels, and
few-shot rows (RealNet trained from k seeded normal images, each repeated with fresh
anomalies). RealNet's feature-selection ablation (AFS vs random vs all channels) is an
ablation grid, ``anomalysynth ablate -c configs/ablation/afs.yaml``. Run it alone:

    python benchmarks/detection_quality.py --root ../shared/datasets/deeppcb [--epochs 20] [--shots 4,16]

``--root`` is any MVTec-style folder (train/good, test/good, test/<defect>,
ground_truth/<defect>/<name>_mask.png). The synthetic anomalies are the data
module's default (the shipped ``DefaultMix`` over the training images) unless
``--synthesizer`` / ``--synthesizer-args`` choose one or ``--mix`` mixes several
with ``OneOf``. ``--models`` also takes ``padim_all`` (PaDiM on every channel of its
three layers) and ``afspadim`` (PaDiM on AFS-chosen channels, AFS run on the
synthetic anomalies): with ``padim`` (a random subset) they compare the three
channel choices at the same size. ``supersimplenet`` and ``draem`` train anomalib's
models with their own anomaly generators (DRAEM's offline: Perlin-noise textures, no
DTD), ``supersimplenet_mix`` and ``draem_mix`` the same models drawing from the
shipped ``DefaultMix`` over the training images (``use_synthesizer``), each for
``--minutes`` of training:

    python benchmarks/detection_quality.py --root results/splits/bsdata/test \
        --models supersimplenet,supersimplenet_mix --minutes 8

``--seed`` (default 0) seeds every model's construction and fit: PaDiM's random
channels, the synthetic anomalies, PatchCore's first coreset point. Two seeds show a
row's spread:

    python benchmarks/detection_quality.py --root results/splits/bsdata/test --models padim --seed 1
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


def folder(root: Path, image_size: int, batch: int) -> Any:
    from anomalib.data import Folder
    from torchvision.transforms.v2 import Resize

    defects = sorted(p.name for p in (root / "test").iterdir() if p.is_dir() and p.name != "good")
    return Folder(
        name=root.name,
        root=root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{d}" for d in defects],
        mask_dir=[f"ground_truth/{d}" for d in defects],
        train_batch_size=batch,
        eval_batch_size=batch,
        num_workers=2,
        augmentations=Resize((image_size, image_size)),
        seed=0,
    )


def evaluator() -> Any:
    from anomalib.metrics import AUPRO, AUROC, Evaluator

    return Evaluator(
        test_metrics=[
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_"),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_"),
        ]
    )


def run(
    name: str,
    model: Any,
    datamodule: Any,
    epochs: int,
    callbacks: list | None = None,
    minutes: float | None = None,
    rescore_realnet: bool = True,
    seed: int = 0,
    rate_batches: int = 8,
) -> dict[str, Any]:
    from anomalib.engine import Engine

    pl.seed_everything(seed, verbose=False)
    budget = {} if minutes is None else {"max_time": {"seconds": round(60 * minutes)}}
    engine = Engine(
        max_epochs=epochs,
        **budget,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=callbacks or [],
        default_root_dir="results/bench",
    )
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    train_time = time.perf_counter() - start
    start = time.perf_counter()
    (metrics,) = engine.test(model=model, datamodule=datamodule, verbose=False)
    test_time = time.perf_counter() - start
    n_test = len(datamodule.test_data)
    net = getattr(model, "model", None)
    image_auroc_max = image_auroc_box = float("nan")
    if rescore_realnet and getattr(net, "score_pool", None) is not None:
        # the same trained RealNet scored by the map's plain max, and by RealNet's 16x16 box mean
        # when configured otherwise
        if net.score_pool != 1 or net.score_topk:
            image_auroc_max = rescore(engine, model, datamodule, score_pool=1, score_topk=0)
        if net.score_pool != 16 or net.score_topk:
            image_auroc_box = rescore(engine, model, datamodule, score_pool=16, score_topk=0)
    model_rate = model_images_per_second(model, datamodule, rate_batches)
    row = {
        "name": name,
        "epochs": engine.trainer.current_epoch,
        "steps": engine.trainer.global_step,
        "image_AUROC": metrics.get("image_AUROC", float("nan")),
        "image_AUROC_plain_max": image_auroc_max,
        "image_AUROC_box16": image_auroc_box,
        "pixel_AUROC": metrics.get("pixel_AUROC", float("nan")),
        "AUPRO": metrics.get("pixel_AUPRO", float("nan")),
        "train_s": train_time,
        "images_per_s": n_test / test_time,
        "model_images_per_s": model_rate,
    }
    print(row, flush=True)
    return row


def rescore(engine: Any, model: Any, datamodule: Any, **attributes: Any) -> float:
    """Image AUROC of the trained RealNet with other scoring attributes, restored afterwards.

    Without the post-processor's min-max normalisation: its range was measured on the
    configured scores and would clamp most others to 1 (ties that wreck the AUROC).
    """
    net = model.model
    saved = {name: getattr(net, name) for name in attributes}
    post = getattr(model, "post_processor", None)
    normalise = getattr(post, "enable_normalization", None)
    for name, value in attributes.items():
        setattr(net, name, value)
    if normalise is not None:
        post.enable_normalization = False
    try:
        (metrics,) = engine.test(model=model, datamodule=datamodule, verbose=False)
    finally:
        for name, value in saved.items():
            setattr(net, name, value)
        if normalise is not None:
            post.enable_normalization = normalise
    return float(metrics.get("image_AUROC", float("nan")))


def model_images_per_second(model: Any, datamodule: Any, batches: int = 8) -> float:
    """Images/s of the torch model alone (eval mode, no grad) on preloaded test batches.

    ``engine.test`` times also include data loading, metrics (AUPRO) and visualisation,
    which are the same for every model; this isolates what the model itself costs.
    """
    loader = datamodule.test_dataloader()
    images = [batch.image for _, batch in zip(range(batches + 1), loader, strict=False)]
    net = model.model.eval()
    with torch.inference_mode():
        net(images[0])  # warm-up
        start = time.perf_counter()
        for batch in images[1:]:
            net(batch)
        elapsed = time.perf_counter() - start
    return sum(len(b) for b in images[1:]) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/datasets/deeppcb"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20, help="RealNet epochs")
    parser.add_argument("--synthesizer", default=None, help="a registered name (default: the data module's mix)")
    parser.add_argument(
        "--synthesizer-args", type=json.loads, default={}, help="JSON keyword arguments, e.g. '{\"threshold\": 0.6}'"
    )
    parser.add_argument(
        "--mix",
        type=json.loads,
        default=None,
        help="JSON list of [name, kwargs] pairs mixed with equal weights by OneOf (replaces --synthesizer), e.g. "
        '\'[["perlin_texture", {}], ["perlin_texture", {"texture_dir": "train/good"}]]\'',
    )
    parser.add_argument(
        "--realnet-args", type=json.loads, default={}, help="JSON keyword arguments of RealNet, e.g. '{\"lr\": 1e-3}'"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds every model's construction (PaDiM's random channels) and its fit (anomalies, coreset start)",
    )
    parser.add_argument("--coreset", type=float, default=0.01, help="PatchCore coreset sampling ratio")
    parser.add_argument(
        "--models", default="patchcore,padim,realnet", help="comma-separated subset of the main rows ('' with --shots)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=8.0,
        help="training budget of the supersimplenet* and draem* rows",
    )
    parser.add_argument(
        "--anomalib-epochs", type=int, default=-1, help="epoch limit of those rows as well (-1: the budget alone)"
    )
    parser.add_argument(
        "--rate-batches",
        type=int,
        default=8,
        help="test batches timed for the model's images/s (DRAEM at 256 px takes about 3 s per image on 2 cores)",
    )
    parser.add_argument(
        "--rescore",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also test the trained RealNet by the plain max and the 16x16 box score",
    )
    parser.add_argument("--shots", default="", help="few-shot RealNet rows, e.g. 4,16 (empty: none)")
    parser.add_argument(
        "--shot-items", type=int, default=128, help="few-shot training items per epoch (the k images repeated)"
    )
    args = parser.parse_args()
    if args.mix is not None and not (
        isinstance(args.mix, list)
        and args.mix
        and all(
            isinstance(m, list) and len(m) == 2 and isinstance(m[0], str) and isinstance(m[1], dict) for m in args.mix
        )
    ):
        raise SystemExit(f"--mix: expected a JSON list of [name, kwargs] pairs; got {args.mix!r}.")
    if not (args.root / "train" / "good").is_dir():
        raise SystemExit(f"{args.root} is not an MVTec-style folder (no train/good).")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    from anomalib.models import Padim, Patchcore

    import anomalysynth  # noqa: F401
    from anomalysynth.callbacks import AnomalyAwareFeatureSelection
    from anomalysynth.datamodules import SyntheticAnomalyDataModule
    from anomalysynth.models import AFSPadim, RealNet
    from anomalysynth.synth import OneOf, create_synthesizer

    backbone = "efficientnet_lite0.offline_in1k"

    def data() -> Any:
        return folder(args.root, args.image_size, args.batch)

    def synthetic(**kwargs: Any) -> Any:
        if args.mix:
            synthesizer = OneOf([create_synthesizer(name, **kw) for name, kw in args.mix])
        elif args.synthesizer:
            synthesizer = create_synthesizer(args.synthesizer, **args.synthesizer_args)
        else:
            synthesizer = None  # the shipped mix over the training folder
        return SyntheticAnomalyDataModule(data(), synthesizer, anomaly_ratio=0.5, reseed_every_epoch=True, **kwargs)

    def realnet(**kwargs: Any) -> Any:
        return RealNet(backbone=backbone, evaluator=evaluator(), **{"lr": 5e-4, **args.realnet_args, **kwargs})

    def fit_test(*positional: Any, **keywords: Any) -> dict[str, Any]:
        return run(*positional, seed=args.seed, rate_batches=args.rate_batches, **keywords)

    wanted = set(args.models.split(","))
    rows = []
    if "patchcore" in wanted:
        patchcore = Patchcore(
            backbone=backbone,
            layers=["blocks.2", "blocks.4"],
            coreset_sampling_ratio=args.coreset,
            evaluator=evaluator(),
        )
        rows.append(fit_test("PatchCore", patchcore, data(), 1))
    if "padim" in wanted:
        pl.seed_everything(args.seed, verbose=False)  # PaDiM draws its random channels when it is built
        padim = Padim(
            backbone=backbone, layers=["blocks.1", "blocks.2", "blocks.4"], n_features=53, evaluator=evaluator()
        )
        rows.append(fit_test("PaDiM", padim, data(), 1))
    if "padim_all" in wanted:
        every = Padim(
            backbone=backbone, layers=["blocks.1", "blocks.2", "blocks.4"], n_features=176, evaluator=evaluator()
        )
        # one thread: anomalib inverts 176x176 covariances with torch.linalg.inv, whose batched LU
        # races in oneMKL with more threads (pytorch#142815; wrong inverses or an error)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            rows.append(fit_test("PaDiM (all 176 channels, 1 thread)", every, data(), 1))
        finally:
            torch.set_num_threads(threads)
    if "afspadim" in wanted:
        rows.append(
            fit_test(
                "AFSPadim",
                AFSPadim(backbone=backbone, n_features=53, evaluator=evaluator()),
                synthetic(),
                1,
                [AnomalyAwareFeatureSelection()],
            )
        )
    # anomalib's models that synthesize their own training anomalies, with their own generator
    # and with the library's shipped mix over the same training images, at the same budget
    for kind in ("supersimplenet", "draem"):
        for source in ("", "_mix"):
            if kind + source not in wanted:
                continue
            if kind == "supersimplenet":
                from anomalib.models import Supersimplenet

                model = Supersimplenet(backbone=backbone, layers=["blocks.2", "blocks.4"], evaluator=evaluator())
                label = "SuperSimpleNet"
            else:
                from anomalib.models import Draem

                empty = Path("results/bench/no_textures")  # an existing empty folder: no DTD download
                empty.mkdir(parents=True, exist_ok=True)
                model = Draem(dtd_dir=str(empty), evaluator=evaluator())
                label = "DRAEM"
            if source:
                from anomalysynth.integrations.anomalib import use_synthesizer
                from anomalysynth.synth import DefaultMix

                use_synthesizer(model, DefaultMix(normal_dir=args.root / "train" / "good"))
                label += ", shipped mix"
            else:
                label += ", own generator"
            rows.append(fit_test(label, model, data(), args.anomalib_epochs, minutes=args.minutes))
    if "realnet" in wanted:
        afs = [AnomalyAwareFeatureSelection()]
        rows.append(fit_test("RealNet (AFS)", realnet(), synthetic(), args.epochs, afs, rescore_realnet=args.rescore))
    shots = [int(v) for v in args.shots.split(",") if v.strip()]
    if not rows and not shots:
        raise SystemExit(
            "--models: expected names from patchcore,padim,padim_all,afspadim,supersimplenet,supersimplenet_mix,"
            f"draem,draem_mix,realnet; got {args.models!r}."
        )
    for k in shots:
        few = synthetic(num_shots=k, repeats=max(1, args.shot_items // k))
        afs = [AnomalyAwareFeatureSelection()]
        rows.append(fit_test(f"RealNet {k}-shot", realnet(), few, args.epochs, afs))
    anchor = rows[0]
    print(f"\n{args.root.name}, {args.image_size}px, CPU (2 threads); speed ratios against {anchor['name']}")
    print(
        f"{'model':32s} {'steps':>6s} {'img AUROC':>9s} {'px AUROC':>9s} {'AUPRO':>7s} {'train s':>8s} "
        f"{'test img/s':>10s} {'x speed':>8s} {'model img/s':>11s} {'x speed':>8s}"
    )
    for r in rows:
        print(
            f"{r['name']:32s} {r['steps']:6d} {r['image_AUROC']:9.4f} {r['pixel_AUROC']:9.4f} {r['AUPRO']:7.4f} "
            f"{r['train_s']:8.1f} "
            f"{r['images_per_s']:10.1f} {r['images_per_s'] / anchor['images_per_s']:8.2f} "
            f"{r['model_images_per_s']:11.1f} {r['model_images_per_s'] / anchor['model_images_per_s']:8.2f}"
        )
    other = [r for r in rows if r["image_AUROC_plain_max"] == r["image_AUROC_plain_max"]]
    other += [r for r in rows if r not in other and r["image_AUROC_box16"] == r["image_AUROC_box16"]]
    if other:
        print("\nRealNet image AUROC of the same trained models scored otherwise (nan: the configured score):")
        print(f"{'model':32s} {'plain max':>9s} {'box 16':>9s}")
        for r in other:
            print(f"{r['name']:32s} {r['image_AUROC_plain_max']:9.4f} {r['image_AUROC_box16']:9.4f}")


if __name__ == "__main__":
    main()
