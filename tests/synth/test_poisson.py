"""The Poisson solvers against a direct sparse solve (scipy) built pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from anomalysynth.synth.poisson import poisson_blend, poisson_blend_rectangle
from tests.conftest import photo_batch, torch_threads

NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def direct_solve(target: np.ndarray, source: np.ndarray, region: np.ndarray, mixed: bool) -> np.ndarray:
    """Pérez et al.'s discrete equation, assembled with loops and solved by scipy (one channel)."""
    h, w = target.shape
    region = region.copy()
    region[0, :] = region[-1, :] = region[:, 0] = region[:, -1] = False
    index = -np.ones((h, w), dtype=int)
    ys, xs = np.nonzero(region)
    index[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [], [], []
    rhs = np.zeros(len(ys))
    for n, (y, x) in enumerate(zip(ys, xs, strict=True)):
        rows.append(n)
        cols.append(n)
        vals.append(4.0)
        for dy, dx in NEIGHBOURS:
            qy, qx = y + dy, x + dx
            v = source[y, x] - source[qy, qx]
            if mixed and abs(target[y, x] - target[qy, qx]) > abs(v):
                v = target[y, x] - target[qy, qx]
            rhs[n] += v
            if region[qy, qx]:
                rows.append(n)
                cols.append(index[qy, qx])
                vals.append(-1.0)
            else:
                rhs[n] += target[qy, qx]
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(ys), len(ys)))
    out = target.copy()
    out[ys, xs] = spla.spsolve(matrix, rhs)
    return out


def pair(size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    images = photo_batch(2, 3, size=size).double()
    return images[:1], images[1:]


def reference(target, source, region, mixed):
    return np.stack(
        [direct_solve(target[0, c].numpy(), source[0, c].numpy(), region[0, 0].numpy(), mixed) for c in range(3)]
    )


@pytest.mark.parametrize("mixed", [False, True])
def test_rectangle_solver_matches_the_direct_solve(mixed):
    target, source = pair()
    region = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
    region[..., 5:17, 3:20] = True
    out = poisson_blend_rectangle(target, source, top=5, left=3, height=12, width=17, mixed=mixed)
    expected = reference(target, source, region, mixed)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("mixed", [False, True])
def test_conjugate_gradients_match_the_direct_solve_on_any_region(mixed):
    target, source = pair()
    yy, xx = np.mgrid[:24, :24]
    disk = ((yy - 11) ** 2 + (xx - 13) ** 2 < 60) | ((yy > 15) & (xx < 8))  # irregular, touches no border
    region = torch.from_numpy(disk).view(1, 1, 24, 24)
    out = poisson_blend(target, source, region, mixed=mixed, tolerance=1e-12)
    expected = reference(target, source, region, mixed)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-8)


def test_laplacian_inside_equals_the_guidance_and_boundary_equals_the_target():
    target, source = pair(32)
    out = poisson_blend_rectangle(target, source, top=6, left=9, height=15, width=12)[0].numpy()
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float)
    inside = np.zeros((32, 32), dtype=bool)
    inside[6:21, 9:21] = True
    for c in range(3):
        lap_out = ndi.convolve(out[c], kernel, mode="nearest")
        lap_src = ndi.convolve(source[0, c].numpy(), kernel, mode="nearest")
        np.testing.assert_allclose(lap_out[inside], lap_src[inside], atol=1e-9)
        np.testing.assert_array_equal(out[c][~inside], target[0, c].numpy()[~inside])


def test_float32_solvers_stay_close_and_batch_entries_are_independent():
    images = photo_batch(4, 3, size=32)
    target, source = images[:2], images[2:]
    out = poisson_blend_rectangle(target, source, 4, 4, 20, 22)
    assert out.dtype == torch.float32
    one = poisson_blend_rectangle(target[1:], source[1:], 4, 4, 20, 22)
    assert torch.equal(out[1:], one)
    region = torch.zeros(2, 1, 32, 32)
    region[..., 4:24, 4:26] = 1
    cg = poisson_blend(target, source, region, tolerance=1e-10)
    assert (cg - out).abs().max() < 1e-4


def test_bad_inputs_are_rejected():
    target, source = pair()
    with pytest.raises(ValueError, match="interior"):
        poisson_blend_rectangle(target, source, 0, 3, 5, 5)
    with pytest.raises(ValueError, match="same shape"):
        poisson_blend_rectangle(target, source[..., :20], 2, 2, 5, 5)
    with pytest.raises(ValueError, match="region"):
        poisson_blend(target, source, torch.ones(1, 1, 5, 5))


def test_rectangle_solver_does_not_depend_on_the_number_of_threads():
    """A DataLoader worker runs one torch thread, the main process several: the same
    sample must come out bit for bit the same in both (the CPU FFT's float32 rounding
    depends on the thread count)."""
    cases = []
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        h, w = (int(v) for v in torch.randint(3, 30, (2,), generator=g))
        target, source = torch.rand(2, 1, 3, h + 2, w + 2, generator=g)
        cases.append((target, source, h, w, seed % 2 == 1))
    results = {}
    for count in (1, 2):
        with torch_threads(count):
            results[count] = [poisson_blend_rectangle(t, s, 1, 1, h, w, mixed=m) for t, s, h, w, m in cases]
    for (_, _, h, w, _), one, two in zip(cases, results[1], results[2], strict=True):
        assert torch.equal(one, two), f"a {h}x{w} rectangle differs between one and two threads"
