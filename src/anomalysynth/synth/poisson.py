"""Poisson image editing (Pérez et al., SIGGRAPH 2003): seamless cloning, batched torch.

Inside a region Omega the output f solves the discrete Poisson equation with the
guidance field v and Dirichlet boundary values from the target t (4-neighbours):

    4 f_p - sum_{q in N_p and Omega} f_q = sum_{q in N_p, not Omega} t_q + sum_{q in N_p} v_pq

so the output's discrete Laplacian (sum_q f_q - 4 f_p) inside Omega equals
``-sum_q v_pq`` and outside Omega the output is the target. Guidance fields:

* normal cloning: v_pq = s_p - s_q (the source's gradients; the Laplacian equals the
  source's Laplacian);
* mixed gradients: per edge and channel, the target's difference t_p - t_q where it
  is larger in magnitude than the source's, else the source's.

Two solvers, both batched over (B, C) and running on any device:

* :func:`poisson_blend_rectangle`: a direct solve on an axis-aligned rectangle by the
  type-I discrete sine transform (computed with the FFT); exact up to rounding.
* :func:`poisson_blend`: any region, by conjugate gradients on the masked operator.

Pixels on the image border are never unknowns (every unknown has four neighbours).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["guidance_divergence", "laplacian", "poisson_blend", "poisson_blend_rectangle"]


def laplacian(images: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, H-2, W-2): sum of the 4 neighbours minus 4x the pixel (interior pixels)."""
    return (
        images[..., :-2, 1:-1] + images[..., 2:, 1:-1] + images[..., 1:-1, :-2] + images[..., 1:-1, 2:]
    ) - 4 * images[..., 1:-1, 1:-1]


def guidance_divergence(source: Tensor, target: Tensor, mixed: bool = False) -> Tensor:
    """``sum_q v_pq`` over the 4 neighbours of each interior pixel: (B, C, H-2, W-2).

    Args:
        source: (B, C, H, W) the image whose gradients are cloned.
        target: (B, C, H, W) the image cloned into (used by mixed gradients).
        mixed: take per edge the larger (in magnitude) of the target's and the source's difference.
    """
    total = torch.zeros_like(source[..., 1:-1, 1:-1])
    centre_s, centre_t = source[..., 1:-1, 1:-1], target[..., 1:-1, 1:-1]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ys, xs = slice(1 + dy, source.shape[-2] - 1 + dy), slice(1 + dx, source.shape[-1] - 1 + dx)
        v = centre_s - source[..., ys, xs]
        if mixed:
            vt = centre_t - target[..., ys, xs]
            v = torch.where(vt.abs() > v.abs(), vt, v)
        total = total + v
    return total


def poisson_blend_rectangle(
    target: Tensor, source: Tensor, top: int, left: int, height: int, width: int, mixed: bool = False
) -> Tensor:
    """Seamless cloning of ``source`` into ``target`` on one rectangle, solved directly (DST-I).

    Args:
        target: (B, C, H, W) the image cloned into.
        source: (B, C, H, W) the image whose gradients are cloned (aligned with ``target``).
        top, left, height, width: the rectangle of unknowns; it must keep one pixel
            away from the image border.
        mixed: mixed gradients instead of the source's.

    Returns:
        (B, C, H, W): the target with the rectangle solved.
    """
    _check_pair(target, source)
    h_img, w_img = target.shape[-2:]
    if height < 1 or width < 1 or top < 1 or left < 1 or top + height > h_img - 1 or left + width > w_img - 1:
        raise ValueError(
            f"Expected a rectangle inside the image's interior (1 px from the border of {h_img}x{w_img}); "
            f"got top={top}, left={left}, height={height}, width={width}."
        )
    # the rectangle with its one-pixel ring of boundary values
    window = (slice(None), slice(None), slice(top - 1, top + height + 1), slice(left - 1, left + width + 1))
    t, s = target[window], source[window]
    rhs = guidance_divergence(s, t, mixed)
    ring = t.clone()
    ring[..., 1:-1, 1:-1] = 0
    rhs = rhs + laplacian(ring) + 4 * ring[..., 1:-1, 1:-1]  # sum of the boundary neighbours
    solved = _solve_dirichlet(rhs)
    out = target.clone()
    out[..., top : top + height, left : left + width] = solved.to(target.dtype)
    return out


def poisson_blend(
    target: Tensor,
    source: Tensor,
    region: Tensor,
    mixed: bool = False,
    max_iterations: int = 2000,
    tolerance: float = 1e-6,
) -> Tensor:
    """Seamless cloning on any region, by conjugate gradients (batched, any device).

    Args:
        target: (B, C, H, W) the image cloned into.
        source: (B, C, H, W) the image whose gradients are cloned (aligned with ``target``).
        region: (B, 1, H, W) bool or 0/1: the unknowns (the image border is dropped).
        mixed: mixed gradients instead of the source's.
        max_iterations: iteration cap.
        tolerance: stop when every residual norm is below ``tolerance`` times its
            right-hand side's norm.

    Returns:
        (B, C, H, W): the target with the region solved.
    """
    _check_pair(target, source)
    b, c, h, w = target.shape
    if region.shape != (b, 1, h, w):
        raise ValueError(f"Expected `region` of shape ({b}, 1, {h}, {w}); got {tuple(region.shape)}.")
    inside = torch.zeros(b, 1, h, w, dtype=torch.bool, device=target.device)
    inside[..., 1:-1, 1:-1] = region[..., 1:-1, 1:-1].bool()
    inside = inside.expand(b, c, h, w)
    dtype = torch.float64 if target.device.type == "cpu" else torch.float32
    t, s = target.to(dtype), source.to(dtype)
    known = torch.where(inside, torch.zeros_like(t), t)
    rhs = torch.zeros_like(t)
    rhs[..., 1:-1, 1:-1] = guidance_divergence(s, t, mixed) + laplacian(known) + 4 * known[..., 1:-1, 1:-1]
    rhs = torch.where(inside, rhs, torch.zeros_like(rhs))
    x = torch.where(inside, t, torch.zeros_like(t))  # warm start: the target

    def operator(u: Tensor) -> Tensor:  # (4 I - adjacency) restricted to the region: SPD
        out = torch.zeros_like(u)
        out[..., 1:-1, 1:-1] = -laplacian(u)
        return torch.where(inside, out, torch.zeros_like(out))

    r = rhs - operator(x)
    p = r.clone()
    rs = (r * r).flatten(2).sum(-1)
    bound = (tolerance**2) * (rhs * rhs).flatten(2).sum(-1).clamp_min(1e-30)
    for _ in range(max_iterations):
        if bool((rs <= bound).all()):
            break
        ap = operator(p)
        pap = (p * ap).flatten(2).sum(-1)
        active = (rs > bound) & (pap > 0)
        alpha = torch.where(active, rs / pap.clamp_min(1e-30), torch.zeros_like(rs))[..., None, None]
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).flatten(2).sum(-1)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))[..., None, None]
        p = r + beta * p
        rs = torch.where(active, rs_new, rs)
    return torch.where(inside, x.to(target.dtype), target)


# ---------------------------------------------------------------------- DST-I
def _solve_dirichlet(rhs: Tensor) -> Tensor:
    """Solve (4 I - adjacency) u = rhs on a (h, w) grid with zero Dirichlet boundary.

    Solved in float64 where the device has it: the CPU FFT's rounding depends on the
    number of torch threads (a DataLoader worker runs one, the main process several),
    and float32 results rounded from float64 agree across thread counts.
    """
    h, w = rhs.shape[-2:]
    dtype = torch.float32 if rhs.device.type == "mps" else torch.float64
    x = rhs.to(dtype)
    coeff = _dst1(_dst1(x).transpose(-1, -2)).transpose(-1, -2)  # DST along W, then along H
    j = torch.arange(1, h + 1, device=rhs.device, dtype=dtype).view(h, 1)
    k = torch.arange(1, w + 1, device=rhs.device, dtype=dtype).view(1, w)
    eigen = 4 - 2 * torch.cos(math.pi * j / (h + 1)) - 2 * torch.cos(math.pi * k / (w + 1))
    coeff = coeff / eigen
    u = _dst1(_dst1(coeff).transpose(-1, -2)).transpose(-1, -2)
    return u * (4.0 / ((h + 1) * (w + 1)))


def _dst1(x: Tensor) -> Tensor:
    """Type-I DST along the last dimension: y_k = sum_j x_j sin(pi (j+1)(k+1) / (n+1))."""
    n = x.shape[-1]
    odd = torch.cat([torch.zeros_like(x[..., :1]), x, torch.zeros_like(x[..., :1]), -x.flip(-1)], dim=-1)
    return -torch.fft.rfft(odd, dim=-1).imag[..., 1 : n + 1] / 2


def _check_pair(target: Tensor, source: Tensor) -> None:
    if target.ndim != 4 or source.shape != target.shape or not target.is_floating_point():
        raise ValueError(
            f"Expected float target and source of the same shape (B, C, H, W); got {tuple(target.shape)} "
            f"and {tuple(source.shape)}."
        )
    if target.shape[-2] < 3 or target.shape[-1] < 3:
        raise ValueError(f"Expected images of at least 3x3 pixels; got {tuple(target.shape)}.")
