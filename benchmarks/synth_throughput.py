"""Synthesizer throughput at 256x256, batch 32, 2 threads, against anomalib's generator.

Prints images/s for every registered synthesizer, for anomalib's
``PerlinAnomalyGenerator`` (the anchor, measured in the same run) and for the
floor of just reading the batch and writing an image and a mask of the same size,
and ``perlin_texture`` once more on the torch code alone (``ANOMALYSYNTH_KERNELS=0``).
Ratios are against the anchor. Run it alone on a quiet machine:

    python benchmarks/synth_throughput.py [--batch 32] [--size 256] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from skimage import data as skdata
from skimage.transform import resize

from anomalysynth.synth import available_synthesizers, create_synthesizer


def photo_batch(batch: int, size: int) -> torch.Tensor:
    """Crops of real photographs (RGB), deterministic."""
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.immunohistochemistry()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(batch):
        img = photos[i % len(photos)]
        side = min(img.shape[:2])
        y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        crop = resize(img[y : y + side, x : x + side], (size, size), anti_aliasing=True)
        out.append(torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1))
    return torch.stack(out).clamp(0, 1).contiguous()


def images_per_second(run: Callable[[], object], batch: int, repeats: int) -> float:
    """Median throughput over ``repeats`` timed calls after two warm-up calls."""
    run()
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = photo_batch(args.batch, args.size)

    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    anomalib_gen = PerlinAnomalyGenerator(probability=1.0)
    torch.manual_seed(0)
    anchor = images_per_second(lambda: anomalib_gen(images), args.batch, args.repeats)

    def io_floor() -> None:
        out = images.clone()
        mask = torch.zeros(args.batch, 1, args.size, args.size)
        out.add_(mask)

    floor = images_per_second(io_floor, args.batch, args.repeats)
    rows = [("anomalib PerlinAnomalyGenerator (anchor)", anchor), ("read + write floor (clone + mask)", floor)]
    # sdas (a texture bank), anomalyany (Stable Diffusion) and anomalyhybrid (a trained generator) need local
    # models: see benchmarks/sdas.py and benchmarks/anomalyhybrid.py
    for name in [n for n in available_synthesizers() if n not in ("sdas", "anomalyany", "anomalyhybrid")]:
        synth = create_synthesizer(name)
        seeds = iter(range(10**6))
        rate = images_per_second(
            lambda s=synth, it=seeds: s(images, generator=torch.Generator().manual_seed(next(it))),
            args.batch,
            args.repeats,
        )
        rows.append((name, rate))
    # the same perlin_texture on the torch reference code (the compiled kernels switched off)
    previous = os.environ.get("ANOMALYSYNTH_KERNELS")
    os.environ["ANOMALYSYNTH_KERNELS"] = "0"
    try:
        synth = create_synthesizer("perlin_texture")
        seeds = iter(range(10**6))
        rate = images_per_second(
            lambda: synth(images, generator=torch.Generator().manual_seed(next(seeds))), args.batch, args.repeats
        )
        rows.append(("perlin_texture, torch code (no kernels)", rate))
    finally:
        if previous is None:
            del os.environ["ANOMALYSYNTH_KERNELS"]
        else:
            os.environ["ANOMALYSYNTH_KERNELS"] = previous

    print(f"images {args.size}x{args.size}, batch {args.batch}, {args.threads} threads, median of {args.repeats}")
    print(f"{'method':44s} {'images/s':>10s} {'x anomalib':>11s} {'% of floor':>11s}")
    for name, rate in rows:
        print(f"{name:44s} {rate:10.0f} {rate / anchor:11.1f} {100 * rate / floor:10.1f}%")


if __name__ == "__main__":
    main()
