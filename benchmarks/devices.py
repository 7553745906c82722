"""On-device synthesis and bank building, per device, against the CPU path in the same run.

For each composed synthesizer (``perlin_texture`` and ``cutpaste`` by default) it
measures images/s of keyed synthesis (:func:`anomalysynth.synth.keyed.synthesize_keyed`,
what the dataset, the ``SynthesizeOnDevice`` callback and the cache all call):

* ``cpu, 1 image per call``: the DataLoader-worker path, one image at a time (the anchor);
* ``cpu, batched``: whole batches on the CPU (compiled kernels where they apply);
* ``cpu, batched, torch code``: the same with ``ANOMALYSYNTH_KERNELS=0``, the torch code
  that runs on an accelerator;
* ``cuda, batched`` and ``mps, batched``: the torch code on the accelerator;

and the synthesis cache's bank building (:meth:`SynthesisCache.build`, entries written
to a temporary folder with their checksums), with blocks of one image on the CPU (the
anchor) and blocks of ``--batch`` images on each device. Ratios are against the anchor
of the same section, measured in the same run. Devices that are absent print
"not available". Timings are medians of ``--repeats`` runs after one warm-up; run it
alone on a quiet machine (on a loaded one the compiled kernels' threads contend with
the other work; ``--threads 1`` then shows the batched CPU path more fairly).

On this CPU-only machine, with small defaults (seconds):

    python benchmarks/devices.py

On a machine with a GPU (the ``cuda`` rows fill in; pick the card with
``CUDA_VISIBLE_DEVICES``), at training sizes:

    CUDA_VISIBLE_DEVICES=0 python benchmarks/devices.py --images 1024 --size 256 --batch 128 --repeats 5

Model-backed synthesizers take their weights through ``--synth-args`` (e.g. ``--synthesizers
sdas --synth-args '{"sdas": {"checkpoint": "results/sdas/last.ckpt"}}'``).

Several GPUs build a bank together through ``anomalysynth cache --trainer.devices N
--trainer.strategy ddp`` (each rank synthesizes its own blocks); this script measures
one device at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from skimage import data as skdata
from skimage.transform import resize

from anomalysynth.datamodules import SynthesisCache, SyntheticAnomalyDataset
from anomalysynth.synth import create_synthesizer
from anomalysynth.synth.keyed import synthesize_keyed

ACCELERATORS = ("cuda", "mps")


def photos(count: int, size: int) -> torch.Tensor:
    """(count, 3, size, size) crops of real photographs, deterministic."""
    sources = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.immunohistochemistry()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        img = sources[i % len(sources)]
        side = min(img.shape[:2]) // 2
        y, x = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        crop = resize(img[y : y + side, x : x + side], (size, size), anti_aliasing=True)
        out.append(torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1))
    return torch.stack(out).clamp(0, 1).contiguous()


def available(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return device == "cpu"


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def images_per_second(run: Callable[[], object], images: int, repeats: int, device: str = "cpu") -> float:
    """Median throughput of ``repeats`` timed calls after one warm-up."""
    run()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return images / statistics.median(times)


@contextmanager
def torch_code_only() -> Iterator[None]:
    """The compiled CPU kernels switched off: the code an accelerator runs."""
    previous = os.environ.get("ANOMALYSYNTH_KERNELS")
    os.environ["ANOMALYSYNTH_KERNELS"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["ANOMALYSYNTH_KERNELS"]
        else:
            os.environ["ANOMALYSYNTH_KERNELS"] = previous


def synthesis_rows(
    name: str, images: torch.Tensor, batch: int, repeats: int, kwargs: dict | None = None
) -> list[tuple[str, float | None]]:
    synth = create_synthesizer(name, **(kwargs or {}))
    keys = list(range(images.shape[0]))
    calls = iter(range(10**9))

    def batched(device: str) -> Callable[[], None]:
        x = images.to(device)

        def run() -> None:
            seed = next(calls)
            for start in range(0, len(keys), batch):
                synthesize_keyed(synth, x[start : start + batch], keys[start : start + batch], seed, 1.0)

        return run

    def one_at_a_time() -> None:
        seed = next(calls)
        for i in keys:
            synthesize_keyed(synth, images[i : i + 1], [i], seed, 1.0)

    n = images.shape[0]
    rows: list[tuple[str, float | None]] = [("cpu, 1 image per call", images_per_second(one_at_a_time, n, repeats))]
    rows.append((f"cpu, batches of {batch}", images_per_second(batched("cpu"), n, repeats)))
    with torch_code_only():
        rows.append((f"cpu, batches of {batch}, torch code", images_per_second(batched("cpu"), n, repeats)))
    for device in ACCELERATORS:  # the compiled kernels are CPU-only: an accelerator runs the torch code
        label = f"{device}, batches of {batch}"
        if not available(device):
            rows.append((label, None))
            continue
        synth.to(device)
        rows.append((label, images_per_second(batched(device), n, repeats, device)))
        synth.to("cpu")
    return rows


def bank_rows(
    name: str, images: torch.Tensor, batch: int, repeats: int, kwargs: dict | None = None
) -> list[tuple[str, float | None]]:
    source = SyntheticAnomalyDataset(images, create_synthesizer(name, **(kwargs or {})), anomaly_ratio=1.0)
    key = SynthesisCache.key(source)
    n = images.shape[0]

    def build(device: str, block: int) -> Callable[[], None]:
        def run() -> None:
            with tempfile.TemporaryDirectory() as root:
                SynthesisCache(Path(root)).build(source, progress=False, key=key, batch_size=block, device=device)

        return run

    rows: list[tuple[str, float | None]] = [("bank, cpu, blocks of 1", images_per_second(build("cpu", 1), n, repeats))]
    rows.append((f"bank, cpu, blocks of {batch}", images_per_second(build("cpu", batch), n, repeats)))
    for device in ACCELERATORS:
        label = f"bank, {device}, blocks of {batch}"
        if not available(device):
            rows.append((label, None))
            continue
        rows.append((label, images_per_second(build(device, batch), n, repeats, device)))
    return rows


def print_section(title: str, rows: list[tuple[str, float | None]]) -> None:
    anchor = rows[0][1]
    print(f"\n{title}")
    print(f"  {'path':40s} {'images/s':>10s} {'x anchor':>9s}")
    for label, rate in rows:
        if rate is None or anchor is None:
            print(f"  {label:40s} {'not available':>20s}")
        else:
            print(f"  {label:40s} {rate:10.1f} {rate / anchor:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images per measurement")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="images per batch / per bank block")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--synthesizers", nargs="+", default=["perlin_texture", "cutpaste"])
    parser.add_argument(
        "--synth-args",
        type=json.loads,
        default={},
        help="constructor arguments per synthesizer, e.g. "
        '\'{"sdas": {"checkpoint": "sdas.ckpt"}, "anomalyany": {"pipeline_path": "sd/", "clip_path": "clip/"}}\'',
    )
    args = parser.parse_args()
    for name, value in (("images", args.images), ("size", args.size), ("batch", args.batch), ("repeats", args.repeats)):
        if value < 1:
            parser.error(f"--{name} must be >= 1; got {value}")
    if args.size < 8:
        parser.error(f"--size must be >= 8; got {args.size}")
    torch.set_num_threads(args.threads)
    images = photos(args.images, args.size)
    found = [d for d in ACCELERATORS if available(d)]
    print(
        f"{args.images} images {args.size}x{args.size}, batch {args.batch}, {args.threads} CPU threads, "
        f"median of {args.repeats}; accelerators: {', '.join(found) or 'none'}"
    )
    for name in args.synthesizers:
        print_section(
            f"{name}: keyed synthesis (anchor: cpu, 1 image per call)",
            synthesis_rows(name, images, args.batch, args.repeats, args.synth_args.get(name)),
        )
        print_section(
            f"{name}: bank building (anchor: cpu, blocks of 1)",
            bank_rows(name, images, args.batch, args.repeats, args.synth_args.get(name)),
        )


if __name__ == "__main__":
    main()
