"""Where a trained RealNet spends its inference time, part by part, at batch 16 and 256 px.

Loads a checkpoint written by ``recipe_sweep.py --save`` (or any RealNet checkpoint),
times each part of the network's forward pass on the same random batch (minimum of
``--repeats`` calls after a warm-up, 2 threads, inference mode) and prints ms per batch
and the whole network's images/s. Run it alone:

    python benchmarks/realnet_inference.py results/ckpt/recipe/deeppcb_s0.ckpt [--batch 16] [--size 256]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from anomalysynth.models import RealNet
from anomalysynth.models.realnet.discriminator import discriminator_input
from anomalysynth.models.realnet.reconstruction import reconstruction_residuals


def load(path: Path) -> Any:
    """The checkpoint's network in eval mode: RealNet built from its saved arguments, its
    weights read by RealNet's own ``init_weights`` loader (``weights_only``, shapes checked)."""
    arguments = torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"]
    return RealNet(**{**arguments, "init_weights": str(path)}).model.eval()


def best_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = load(args.checkpoint)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    size = (args.size, args.size)
    rows = []
    with torch.inference_mode():
        total, _ = best_ms(lambda: net(images), args.repeats)
        ms, raw = best_ms(lambda: net.extract(images), args.repeats)
        rows.append(("backbone (every level)", ms))
        ms, features = best_ms(lambda: net.select(raw), args.repeats)
        rows.append(("channel selection", ms))
        ms, recs = best_ms(lambda: [g(f) for g, f in zip(net.reconstruction, features, strict=True)], args.repeats)
        rows.append(("reconstruction U-Nets", ms))
        residuals = reconstruction_residuals(features, recs)
        inputs_fn = lambda: discriminator_input(  # noqa: E731
            residuals, features, net.rrs_ratio, net.rrs_norm, net.discriminator_features, net.feature_projection
        )
        ms, inputs = best_ms(inputs_fn, args.repeats)
        rows.append(("RRS + projected features", ms))
        ms, logits = best_ms(lambda: net.discriminator(inputs), args.repeats)
        rows.append(("discriminator", ms))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if net.neighbour_ready:
            rows.append(("nearest-neighbour distance", best_ms(lambda: net.nearest_neighbour(raw), args.repeats)[0]))
        if net.gaussian_ready:
            rows.append(("per-position Gaussian", best_ms(lambda: net.gaussian(raw), args.repeats)[0]))
        terms = net.normality_terms(residuals, size, raw)
        scoring_ms = best_ms(lambda: net.scoring(logits, terms), args.repeats)[0]
        rows.append(("scoring (mix, smoothing, image score)", scoring_ms))
    print(f"{args.checkpoint.name}: batch {args.batch}, {args.size} px, 2 threads, best of {args.repeats}")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.1f} ms  {100 * ms / total:5.1f} %")
    print(f"{'whole network':40s} {total:8.1f} ms  {1000 * args.batch / total:.1f} images/s")


if __name__ == "__main__":
    main()
