"""NSA throughput against perlin_texture, and the Poisson solvers' error against a direct solve.

Throughput: images/s of ``nsa`` (normal and mixed gradients) and of ``perlin_texture``
(the anchor) on crops of real photographs, same batch, same run, 2 threads; the ratio
is NSA over the anchor. Error: the DST-I rectangle solver (float32 and float64) and the
conjugate-gradient solver (float32, any region) against scipy's sparse direct solve of
the same discrete equation, on a ``--patch`` square inside a photograph. Run it alone:

    python benchmarks/nsa.py [--batch 32] [--size 256] [--repeats 5] [--patch 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from skimage import data as skdata
from skimage.transform import resize

from anomalysynth.synth import create_synthesizer
from anomalysynth.synth.poisson import poisson_blend, poisson_blend_rectangle


def photo_batch(batch: int, size: int) -> torch.Tensor:
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.immunohistochemistry()]
    out = []
    for i in range(batch):
        img = photos[i % len(photos)]
        side = min(img.shape[:2])
        crop = resize(img[:side, :side], (size, size), anti_aliasing=True)
        out.append(torch.from_numpy(crop.astype(np.float32)).permute(2, 0, 1))
    return torch.stack(out).clamp(0, 1).contiguous()


def images_per_second(synth: torch.nn.Module, images: torch.Tensor, repeats: int) -> float:
    synth(images, generator=torch.Generator().manual_seed(0))
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        synth(images, generator=torch.Generator().manual_seed(r + 1))
        times.append(time.perf_counter() - start)
    return images.shape[0] / statistics.median(times)


def direct_solve(target: np.ndarray, source: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Pérez et al.'s equation with normal gradients, assembled with scipy and solved directly (one channel)."""
    h, w = target.shape
    index = -np.ones((h, w), dtype=int)
    ys, xs = np.nonzero(inside)
    index[ys, xs] = np.arange(len(ys))
    rows, cols, vals, rhs = [], [], [], np.zeros(len(ys))
    for n, (y, x) in enumerate(zip(ys, xs, strict=True)):
        rows.append(n)
        cols.append(n)
        vals.append(4.0)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            qy, qx = y + dy, x + dx
            rhs[n] += source[y, x] - source[qy, qx]
            if inside[qy, qx]:
                rows.append(n)
                cols.append(index[qy, qx])
                vals.append(-1.0)
            else:
                rhs[n] += target[qy, qx]
    out = target.copy()
    out[ys, xs] = spla.spsolve(sp.csr_matrix((vals, (rows, cols)), shape=(len(ys), len(ys))), rhs)
    return out


def solver_errors(patch: int) -> dict[str, float]:
    images = photo_batch(2, patch + 16)
    target, source = images[:1], images[1:]
    top = left = 8
    inside = np.zeros((patch + 16, patch + 16), dtype=bool)
    inside[top : top + patch, left : left + patch] = True
    reference = np.stack(
        [direct_solve(target[0, c].double().numpy(), source[0, c].double().numpy(), inside) for c in range(3)]
    )
    region = torch.from_numpy(inside).view(1, 1, *inside.shape)
    results = {
        "dst float32": poisson_blend_rectangle(target, source, top, left, patch, patch),
        "dst float64": poisson_blend_rectangle(target.double(), source.double(), top, left, patch, patch),
        "cg float32": poisson_blend(target, source, region, tolerance=1e-6),
    }
    return {name: float(np.abs(out[0].double().numpy() - reference).max()) for name, out in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--patch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(2)
    images = photo_batch(args.batch, args.size)
    anchor = images_per_second(create_synthesizer("perlin_texture"), images, args.repeats)
    print(f"batch {args.batch}, {args.size} px, 2 threads; ratio = images/s over perlin_texture's")
    print(f"{'perlin_texture':<22}{anchor:10.1f} img/s   1.00")
    for name, kwargs in (("nsa", {}), ("nsa (mixed)", {"clone_mode": "mixed"})):
        ips = images_per_second(create_synthesizer("nsa", **kwargs), images, args.repeats)
        print(f"{name:<22}{ips:10.1f} img/s   {ips / anchor:.2f}")
    print(f"\nPoisson solvers on a {args.patch}x{args.patch} region: max |error| against scipy's direct solve")
    for name, err in solver_errors(args.patch).items():
        print(f"{name:<22}{err:.2e}")


if __name__ == "__main__":
    main()
