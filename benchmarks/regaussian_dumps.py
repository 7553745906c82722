"""Add the current RealNet's Gaussian term (or its nearest-neighbour distance) to maps ``recipe_sweep.py --dump``
saved, without training again.

The Gaussian normality term reads the frozen backbone only: it is fitted on the clean
training images after training and plays no part in a training step, so a change of
its settings (strides, channels) leaves the discriminator's map p and the
nearest-neighbour distance n of a training as they were (RealNet's parameters are
initialised identically: the term draws its channels from its own generator). This
script builds ``RealNet(**--realnet-args)`` (the shipped defaults when none are given),
fits its Gaussian on the training images of the folder the dump came from, as the
warm-up does, and adds its map of both halves to the dump under ``--key``;
``score_dumps.py`` then scores it beside the dump's own terms. Run it alone:

    python benchmarks/regaussian_dumps.py --root ../shared/datasets/bsdata \
        results/dumps/bsdata_s0.pt results/dumps/bsdata_s1.pt --key g3

``--key n`` rebuilds the nearest-neighbour term instead (it too reads the frozen
backbone alone and is built after training) and replaces the dump's distance n; give
each dump its training's ``--seed`` (the seed orders the training loader, which picks
the images held out for the term's scale).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from detection_quality import folder
from splits import make_halves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dumps", nargs="+", type=Path, help="files written by recipe_sweep.py --dump for --root")
    parser.add_argument("--root", type=Path, required=True, help="the MVTec-style folder the dumps came from")
    parser.add_argument("--splits", type=Path, default=Path("results/splits"), help="as recipe_sweep.py")
    parser.add_argument("--key", default="g3", help="the new term's name in the dumps (g<number>; n: the distance)")
    parser.add_argument("--realnet-args", type=json.loads, default={}, help="RealNet arguments (JSON)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="order of the training loader (the held-out images)")
    args = parser.parse_args()
    if not (args.key == "n" or (args.key.startswith("g") and args.key[1:].isdigit())):
        parser.error(f"--key must be g<number> or n (score_dumps.py reads those); got {args.key!r}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    import lightning.pytorch as pl
    import torch.nn.functional as F

    from anomalysynth.files import atomic_write_bytes, torch_bytes
    from anomalysynth.models import RealNet

    halves = make_halves(args.root, args.splits / args.root.name)
    pl.seed_everything(args.seed, verbose=False)
    model = RealNet(**args.realnet_args).eval()
    term = model.model.nearest_neighbour if args.key == "n" else model.model.gaussian
    if term is None:
        kind = "nearest-neighbour" if args.key == "n" else "Gaussian"
        raise SystemExit(f"These RealNet arguments have no {kind} term.")
    train = folder(halves["val"], args.image_size, args.batch)
    train.setup()
    start = time.perf_counter()
    with torch.inference_mode():
        model._fit_normality_terms(train.train_dataloader(), [term], progress=False)
    kept = f"a bank of {len(term.bank)}" if args.key == "n" else f"{len(term.index)} kept"
    print(
        f"{type(term).__name__} (levels {term.levels} of {model.model.channels + model.model.extra_channels} "
        f"channels, {kept}) fitted in {time.perf_counter() - start:.0f} s"
    )
    maps: dict[str, dict[str, torch.Tensor]] = {}
    for name, root in halves.items():
        dm = folder(root, args.image_size, args.batch)
        dm.setup()
        parts: dict[str, list[torch.Tensor]] = {}
        with torch.inference_mode():
            for batch in dm.test_dataloader():
                raw = model.model.extract(model._pre(batch.image))
                size = tuple(batch.image.shape[-2:])
                distance = F.interpolate(term(raw), size=size, mode="bilinear", align_corners=False)
                parts.setdefault("g", []).append(distance)
                parts.setdefault("label", []).append(batch.gt_label.long())
                parts.setdefault("mask", []).append(batch.gt_mask.view(len(batch.image), *size).long())
        maps[name] = {k: torch.cat(v) for k, v in parts.items()}
    for path in args.dumps:
        dump = torch.load(path, weights_only=False)
        for name, data in maps.items():
            # the same images in the same order as the training's own halves
            if not (torch.equal(dump[name]["label"], data["label"]) and torch.equal(dump[name]["mask"], data["mask"])):
                raise SystemExit(f"{path}: its {name} half holds other images than {args.root}'s; wrong --root?")
            dump[name][args.key] = data["g"]
        atomic_write_bytes(path, torch_bytes(dump))
        print(f"{path}: added {args.key} to both halves")


if __name__ == "__main__":
    main()
