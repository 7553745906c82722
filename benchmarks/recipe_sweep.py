"""Choose RealNet's recipe on validation halves: train once, then sweep the scoring.

Trains one RealNet (any constructor arguments, any synthesizer mix) on the training
split of an MVTec-style folder, then keeps, per pixel of the **validation** and
**test** halves (``benchmarks/splits.py``), the discriminator's probability p, the
scaled reconstruction residual r and the nearest-neighbour distance n. Every
``neighbour_weight`` and image score (plain max, top k, 16x16 box) is then scored on
both halves without training again (a row's image columns are the image score at
that ``score_neighbour_weight``, its pixel columns the map at that ``neighbour_weight``;
the rows mix p with n only). ``--gaussians`` adds per-position Gaussian terms (g0,
g1, ...) fitted on the clean training images, and rows mixing each at every
``--gaussian-weights``; ``--dump`` saves p, n, g*, labels and masks of both halves for
further sweeps. ``--channels random|first|all`` replaces AFS for the AFS ablation.
``--synthetic-val`` adds halves made of held-out normal training images and synthetic
anomalies of them (``score_dumps.py --select-on`` chooses the scoring on one).
Choose on the validation half; the test half reports. The line above each table is
``engine.test`` of the model as configured (every normality term of its defaults).
Run it alone:

    python benchmarks/recipe_sweep.py --root ../shared/datasets/deeppcb --epochs 8 \\
        --realnet-args '{"neighbour_weight": 0.5, "score_neighbour_weight": 0.5}' \\
        --mix '[["perlin_texture", {}], ["cutpaste_union", {}]]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from detection_quality import evaluator, folder, model_images_per_second
from splits import make_halves


def fit_gaussians(model: Any, loader: Any, variants: list[dict[str, Any]]) -> list[Any]:
    """One :class:`GaussianNormality` per variant (``levels``: indices of the extracted levels, the
    reconstructed ones first, then those only a normality term reads; ``features``), fitted on the
    clean images of ``loader``."""
    from anomalysynth.models.realnet.gaussian import GaussianNormality

    net = model.model.eval()
    every = net.channels + net.extra_channels  # the levels of net.extract's output
    terms = [GaussianNormality(v["levels"], [every[k] for k in v["levels"]], v.get("features", 64)) for v in variants]
    model._fit_normality_terms(loader, terms, progress=False)  # the warm-up's one pass, for extra terms
    return terms


def maps(model: Any, images: torch.Tensor, gaussians: list[Any] = ()) -> dict[str, torch.Tensor]:
    """p, n, g0, g1, ... at image size for one batch of raw images."""
    import torch.nn.functional as F

    from anomalysynth.models.realnet.scoring import anomaly_probability

    net = model.model.eval()
    size = tuple(images.shape[-2:])
    weight, net.neighbour_weight = net.neighbour_weight, 0.0  # the distance is taken once, below
    try:
        with torch.inference_mode():
            pre = model._pre(images)
            raw = net.extract(pre)
            out = {"p": anomaly_probability(net(pre, raw).logits)}
            up = lambda m: F.interpolate(m, size=size, mode="bilinear", align_corners=False)  # noqa: E731
            out["n"] = up(net.nearest_neighbour(raw))
            for i, term in enumerate(gaussians):
                out[f"g{i}"] = up(term(raw))
    finally:
        net.neighbour_weight = weight
    return out


def collect(model: Any, loader: Any, gaussians: list[Any] = ()) -> dict[str, torch.Tensor]:
    """p, n, g0, g1, ... (image size), labels and masks of every batch of ``loader``."""
    out: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        parts = maps(model, batch.image, gaussians)
        parts["label"] = batch.gt_label.long()
        parts["mask"] = batch.gt_mask.view(len(batch.image), *batch.image.shape[-2:]).long()
        for k, v in parts.items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def synthetic_half(
    model: Any, images: torch.Tensor, synthesizer: Any, batch: int, gaussians: list[Any] = ()
) -> dict[str, torch.Tensor]:
    """A validation half made of held-out normal training images (label 0) and one synthetic
    anomaly of each (label 1, the synthesizer's mask over 0.5 as the pixel truth), as
    :func:`collect` returns it: what a user without real defects can choose on."""
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch):
        clean = images[start : start + batch]
        gens = [torch.Generator().manual_seed(100_000 + start + i) for i in range(len(clean))]
        made = synthesizer(clean, generator=gens)
        keep = made.label.bool()  # a draw that changed nothing is not an anomaly
        size = clean.shape[-2:]
        for imgs, labels, masks in (
            (clean, torch.zeros(len(clean), dtype=torch.long), torch.zeros(len(clean), *size, dtype=torch.long)),
            (made.image[keep], made.label[keep].long(), (made.mask[keep, 0] > 0.5).long()),
        ):
            if len(imgs) == 0:
                continue
            parts = maps(model, imgs, gaussians)
            parts["label"], parts["mask"] = labels, masks
            for k, v in parts.items():
                out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def score(
    data: dict[str, torch.Tensor], weight: float, sigma: float, modes: list[str], extra: tuple[str, float] | None = None
) -> dict[str, float]:
    import torch.nn.functional as F
    from anomalib.metrics.aupro import _AUPRO
    from torchmetrics.functional.classification import binary_auroc

    from anomalysynth.filters import gaussian_blur
    from anomalysynth.models.realnet.scoring import NormalityTerm, mix_normality

    terms = [NormalityTerm(weight, data["n"])]
    if extra is not None:
        terms.append(NormalityTerm(extra[1], data[extra[0]]))
    amap = mix_normality(data["p"], terms)
    flat = amap.flatten(1)
    row: dict[str, float] = {}
    for mode in modes:
        if mode == "max":
            s = flat.amax(dim=1)
        elif mode.startswith("top"):
            s = flat.topk(int(mode[3:]), dim=1).values.mean(dim=1)
        else:  # box16
            pooled = F.avg_pool2d(amap, 16, stride=1)
            s = pooled.flatten(1).amax(dim=1)
        row[f"image_{mode}"] = float(binary_auroc(s, data["label"]))
    smooth = gaussian_blur(amap, sigma) if sigma > 0 else amap
    row["pixel"] = float(binary_auroc(smooth.flatten(), data["mask"].flatten()))
    aupro = _AUPRO(fpr_limit=0.3)
    aupro.update(smooth[:, 0], data["mask"])
    row["aupro"] = float(aupro.compute())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--splits", type=Path, default=Path("results/splits"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--min-steps",
        type=int,
        default=250,
        help="train whole epochs until at least this many steps as well (the shipped recipe: 250; 0: --epochs alone)",
    )
    parser.add_argument("--mix", type=json.loads, default=None, help="default: the data module's DefaultMix")
    parser.add_argument("--realnet-args", type=json.loads, default={})
    parser.add_argument("--weights", default="0,0.25,0.5,0.75,0.9,1")
    parser.add_argument("--modes", default="max,top10,top50,box16")
    parser.add_argument("--sigma", type=float, default=4.0)
    parser.add_argument(
        "--channels",
        default="afs",
        choices=["afs", "random", "first", "all"],
        help="the channels kept per level: AFS (the recipe), a seeded random subset of the same size, "
        "the first ones, or every channel",
    )
    parser.add_argument("--max-time", default=None, help="Lightning's training budget, e.g. 00:00:20:00")
    parser.add_argument("--save", type=Path, default=None, help="write the trained model's checkpoint here")
    parser.add_argument(
        "--gaussians",
        type=json.loads,
        default=[],
        help='per-position Gaussian terms to sweep as well, e.g. \'[{"levels": [0, 1, 2], "features": 64}]\' '
        "(levels index the extracted levels); each is fitted on the clean training images",
    )
    parser.add_argument("--gaussian-weights", default="0.2,0.4", help="weights of each Gaussian term in the sweep")
    parser.add_argument("--dump", type=Path, default=None, help="save the collected maps of both halves here")
    parser.add_argument("--seed", type=int, default=0, help="Lightning's seed (a second run shows the spread)")
    parser.add_argument(
        "--synthetic-val",
        type=json.loads,
        default=None,
        help='synthesizers as --mix, e.g. \'[["memseg", {"perlin_scale": [3, 5]}]]\': also dump a half "synth0", '
        "... per synthesizer, the held-out normal training images and one of its anomalies of each "
        "(the model's normality terms are refitted on the training images in a fixed order, so that the "
        "held-out ones are known)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    import lightning.pytorch as pl
    from anomalib.engine import Engine

    import anomalysynth  # noqa: F401
    from anomalysynth.callbacks import AnomalyAwareFeatureSelection, EpochsForMinSteps
    from anomalysynth.datamodules import SyntheticAnomalyDataModule
    from anomalysynth.models import RealNet
    from anomalysynth.synth import OneOf, create_synthesizer

    halves = make_halves(args.root, args.splits / args.root.name)
    # no --mix: the data module's shipped mix over the training folder
    synthesizer = OneOf([create_synthesizer(name, **kw) for name, kw in args.mix]) if args.mix else None
    realnet_args = dict(args.realnet_args)  # on top of RealNet's defaults (the shipped recipe)
    pl.seed_everything(args.seed, verbose=False)
    if args.channels == "all":
        realnet_args.setdefault("dims", list(RealNet(**realnet_args).model.channels))
    model = RealNet(evaluator=evaluator(), **realnet_args)
    if args.channels in ("random", "first"):
        generator = torch.Generator().manual_seed(args.seed)
        model.set_feature_selection(
            [
                (
                    torch.randperm(c, generator=generator)[:d].sort().values
                    if args.channels == "random"
                    else torch.arange(d)
                )
                for c, d in zip(model.model.channels, model.model.dims, strict=True)
            ]
        )
    datamodule = SyntheticAnomalyDataModule(folder(halves["val"], args.image_size, args.batch), synthesizer)
    engine = Engine(
        max_epochs=args.epochs,
        min_steps=args.min_steps,
        max_time=args.max_time,
        check_val_every_n_epoch=10,  # as configs/realnet.yaml
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir="results/bench",
        callbacks=[EpochsForMinSteps()] + ([AnomalyAwareFeatureSelection()] if args.channels == "afs" else []),
    )
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    print(
        f"fit: {time.perf_counter() - start:.0f} s; {args.root.name}; seed {args.seed}; "
        f"mix {args.mix}; realnet {realnet_args}; channels {args.channels}"
    )
    if args.save:
        engine.trainer.save_checkpoint(args.save)
    weights = [float(v) for v in args.weights.split(",")]
    gaussian_weights = [float(v) for v in args.gaussian_weights.split(",")]
    modes = args.modes.split(",")
    gaussians = []
    if args.gaussians or args.synthetic_val:
        train = folder(halves["val"], args.image_size, args.batch)
        train.setup()
        train_loader = train.train_dataloader()
    if args.synthetic_val:
        from torch.utils.data import DataLoader

        from anomalysynth.models.realnet.nearest_neighbour import held_out

        # one fixed order, so that every term holds out the same images (every 8th)
        train_loader = DataLoader(
            train.train_data, batch_size=args.batch, shuffle=False, collate_fn=train.train_data.collate_fn
        )
        net = model.model
        model._fit_normality_terms(
            train_loader, [t for t in (net.nearest_neighbour, net.gaussian) if t is not None], progress=False
        )
    if args.gaussians:
        start = time.perf_counter()
        gaussians = fit_gaussians(model, train_loader, args.gaussians)
        print(f"Gaussian terms {args.gaussians} fitted in {time.perf_counter() - start:.0f} s")
    dumped = {}
    if args.synthetic_val:
        # the held-out images alone, by their index in the fixed order
        images = torch.stack([train.train_data[int(i)].image for i in held_out(len(train.train_data)).nonzero()])
        for i, (name, kw) in enumerate(args.synthetic_val):
            dumped[f"synth{i}"] = synthetic_half(model, images, create_synthesizer(name, **kw), args.batch, gaussians)
            labels = dumped[f"synth{i}"]["label"]
            normal, anomalous = int((labels == 0).sum()), int(labels.sum())
            print(f"synth{i} half ({name}): {normal} held-out normal images, {anomalous} anomalies")
    for name, root in halves.items():
        dm = folder(root, args.image_size, args.batch)
        dm.setup()
        data = collect(model, dm.test_dataloader(), gaussians)
        dumped[name] = data
        rate = model_images_per_second(model, dm)
        (metrics,) = engine.test(model=model, datamodule=dm, verbose=False)
        net = model.model
        print(
            f"\n{name} half: {len(data['label'])} images; model {rate:.1f} img/s; as configured (map weight "
            f"{net.neighbour_weight}, image-score weight {net.score_neighbour_weight}, top {net.score_topk}): "
            f"image AUROC {metrics['image_AUROC']:.4f}, pixel AUROC {metrics['pixel_AUROC']:.4f}, "
            f"AUPRO {metrics['pixel_AUPRO']:.4f}"
        )
        print(f"{'weight':>7s} {'gauss':>9s} " + " ".join(f"{m:>8s}" for m in modes) + f" {'pixel':>8s} {'AUPRO':>8s}")
        rows: list[tuple[float, tuple[str, float] | None]] = [(w, None) for w in weights]
        rows += [
            (w, (f"g{i}", gw)) for i in range(len(gaussians)) for w in weights for gw in gaussian_weights if w + gw <= 1
        ]
        for w, extra in rows:
            row = score(data, w, args.sigma, modes, extra)
            label = "-" if extra is None else f"{extra[0]}:{extra[1]:.2f}"
            print(
                f"{w:7.2f} {label:>9s} "
                + " ".join(f"{row['image_' + m]:8.4f}" for m in modes)
                + f" {row['pixel']:8.4f} {row['aupro']:8.4f}",
                flush=True,
            )
    if args.dump:
        from anomalysynth.files import atomic_write_bytes, torch_bytes

        atomic_write_bytes(args.dump, torch_bytes(dumped))  # makes the folder; never a half-written dump


if __name__ == "__main__":
    main()
