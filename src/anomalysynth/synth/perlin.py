"""Batched 2-D Perlin noise and the DRAEM Perlin anomaly mask.

Every sample of a batch has its own lattice resolution (DRAEM draws the scale
``2**k``, ``k`` uniform in {0..5}, separately for y and x), its own gradient field
and its own rotation, and the whole batch is evaluated in one vectorised pass.

The gradient lattice is periodic (lattice point ``(i, j)`` uses gradient
``(i mod res_y, j mod res_x)``), so the noise is defined on the whole plane and a
rotated pattern has no empty corners (DRAEM's rotated noise image has).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MAX_LATTICE", "check_lattice", "perlin_mask", "perlin_noise", "perlin_noise_mask", "rotation_grid"]

MAX_LATTICE = 32  # 2**5, the largest DRAEM scale


def perlin_noise(
    size: tuple[int, int],
    res_y: Tensor,
    res_x: Tensor,
    angles: Tensor,
    rotation_deg: Tensor | None = None,
) -> Tensor:
    """Perlin noise for a batch, values roughly in [-1, 1] (DRAEM's sqrt(2) scaling).

    Perlin noise is a sum over the two lattice rows and two lattice columns around
    each pixel of ``fade_y * fade_x * (g_y (u - i) + g_x (v - j))``, so a whole
    image is two small matrix products per sample,
    ``P @ Gy @ Bx^T + A @ Gx @ Q^T``, with the fade weights in ``A``/``Bx`` (two
    non-zeros per row) and the gradients in ``Gy``/``Gx``. The periodic lattice
    makes the noise periodic with the image size, so a rotated pattern is the
    noise image resampled bilinearly at rotated, wrapped coordinates (DRAEM
    rotates its noise image with interpolation too).

    Args:
        size: (H, W) of the output.
        res_y: (B,) int, lattice cells along y (1..G).
        res_x: (B,) int, lattice cells along x.
        angles: (B, G, G) gradient angles in radians; only the top-left
            (res_y, res_x) block is used (the lattice is periodic).
        rotation_deg: (B,) rotation of the noise pattern about the image centre.

    Returns:
        (B, H, W) float32 noise.
    """
    h, w = size
    _b, grid = angles.shape[0], angles.shape[-1]
    device = angles.device
    res_y = res_y.to(device=device, dtype=torch.long)
    res_x = res_x.to(device=device, dtype=torch.long)
    check_lattice(res_y, res_x, grid)
    a, p = _fade_matrices(h, res_y, grid)
    bx, q = _fade_matrices(w, res_x, grid)
    gy, gx = _gradient_matrices(angles, res_y, res_x, a.shape[-1], bx.shape[-1], (h, w))
    # one product: [P | A] @ sqrt(2) [Gy Bx^T ; Gx Q^T]
    right = torch.cat([gy @ bx.transpose(1, 2), gx @ q.transpose(1, 2)], dim=1).mul_(math.sqrt(2))
    noise = torch.bmm(torch.cat([p, a], dim=2), right)
    if rotation_deg is None:
        return noise
    # The lattice repeats every res cells, i.e. the noise is periodic with the image's own
    # size: a rotated pattern is the same image sampled at rotated coordinates of its tiling.
    theta = rotation_deg.to(device=device, dtype=torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # circular padding that holds every rotated pixel centre (plus one pixel for bilinear)
    pad_y = math.ceil(float((sin.abs() * w + cos.abs() * h).max()) / 2 - h / 2) + 1
    pad_x = math.ceil(float((cos.abs() * w + sin.abs() * h).max()) / 2 - w / 2) + 1
    padded = _tile_pad(noise.unsqueeze(1), pad_y, pad_x)
    where = rotation_grid(rotation_deg.to(device), (h, w), (h + 2 * pad_y, w + 2 * pad_x))
    return F.grid_sample(padded, where, align_corners=False).squeeze(1)


def perlin_noise_mask(
    size: tuple[int, int],
    res_y: Tensor,
    res_x: Tensor,
    angles: Tensor,
    rotation_deg: Tensor | None = None,
    threshold: float = 0.5,
) -> Tensor:
    """``perlin_mask(perlin_noise(...), threshold)``: (B, 1, H, W) float32 binary mask."""
    return perlin_mask(perlin_noise(size, res_y, res_x, angles, rotation_deg), threshold)


def check_lattice(res_y: Tensor, res_x: Tensor, grid: int) -> None:
    """Lattice resolutions must lie in [1, grid] (the angle grid is indexed with them)."""
    if int(torch.maximum(res_y, res_x).max()) > grid or int(torch.minimum(res_y, res_x).min()) < 1:
        raise ValueError(f"Lattice resolution must lie in [1, {grid}]; got {res_y.tolist()} x {res_x.tolist()}.")


def _tile_pad(x: Tensor, pad_y: int, pad_x: int) -> Tensor:
    """``x`` (N, C, H, W) padded periodically by ``pad_y`` / ``pad_x`` on each side, any amount."""
    h, w = x.shape[-2:]
    if pad_y <= h and pad_x <= w:
        return F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="circular")
    ry, rx = 2 * math.ceil(pad_y / h) + 1, 2 * math.ceil(pad_x / w) + 1  # an elongated image
    oy, ox = (ry // 2) * h - pad_y, (rx // 2) * w - pad_x
    return x.repeat(1, 1, ry, rx)[..., oy : oy + h + 2 * pad_y, ox : ox + w + 2 * pad_x]


def _lattice_coords(n: int, res: Tensor) -> Tensor:
    """(B, n) lattice coordinate of each pixel centre."""
    pixels = torch.arange(n, device=res.device, dtype=torch.float32) + 0.5
    return pixels.view(1, -1) * (res.float().view(-1, 1) / n)


def _fade_matrices(n: int, res: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Fade weights A (B, N, K) and A * (u - i) for the K lattice lines N pixels span."""
    u = _lattice_coords(n, res)
    first = torch.floor(u[:, :1])
    k0 = (torch.floor(u) - first).long()
    t = _fade(u - torch.floor(u))
    # flush values that would be subnormal: they slow the matrix product down several-fold
    t = torch.where(t < 1e-12, torch.zeros_like(t), torch.where(t > 1 - 1e-7, torch.ones_like(t), t))
    lines = grid + 2
    weights = torch.zeros(u.shape[0], u.shape[1], lines, device=u.device)
    weights.scatter_(2, k0.unsqueeze(-1), (1 - t).unsqueeze(-1))
    weights.scatter_(2, (k0 + 1).unsqueeze(-1), t.unsqueeze(-1))
    index = first + torch.arange(lines, device=u.device, dtype=torch.float32).view(1, -1)
    return weights, weights * (u.unsqueeze(-1) - index.unsqueeze(1))


def _gradient_matrices(
    angles: Tensor, res_y: Tensor, res_x: Tensor, ky: int, kx: int, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Per-sample (B, ky, kx) gradient components of the lattice lines, wrapped periodically."""
    b, grid = angles.shape[0], angles.shape[-1]
    first_y = torch.floor(_lattice_coords(size[0], res_y)[:, :1]).long()
    first_x = torch.floor(_lattice_coords(size[1], res_x)[:, :1]).long()
    iy = torch.remainder(first_y + torch.arange(ky, device=angles.device).view(1, -1), res_y.view(-1, 1))
    ix = torch.remainder(first_x + torch.arange(kx, device=angles.device).view(1, -1), res_x.view(-1, 1))
    index = (iy.unsqueeze(-1) * grid + ix.unsqueeze(1)).view(b, -1)
    theta = torch.gather(angles.reshape(b, grid * grid).float(), 1, index).view(b, ky, kx)
    return torch.sin(theta), torch.cos(theta)


def rotation_grid(rotation_deg: Tensor, size: tuple[int, int], source_size: tuple[int, int] | torch.Size) -> Tensor:
    """(B, H, W, 2) ``grid_sample`` grid rotating about the centre (``affine_grid`` without its cost).

    Output pixel centres of an (H, W) image, rotated by ``rotation_deg``, in the
    normalised coordinates of a centred source of ``source_size``.
    """
    h, w = size
    sh, sw = int(source_size[0]), int(source_size[1])
    theta = rotation_deg.to(torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    dev = rotation_deg.device
    xs = ((torch.arange(w, device=dev, dtype=torch.float32) + 0.5) - w / 2).view(1, 1, w)
    ys = ((torch.arange(h, device=dev, dtype=torch.float32) + 0.5) - h / 2).view(1, h, 1)
    grid_x = (cos * xs - sin * ys) * (2 / sw)
    grid_y = (sin * xs + cos * ys) * (2 / sh)
    return torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)


def perlin_mask(noise: Tensor, threshold: float = 0.5) -> Tensor:
    """Binary (B, 1, H, W) mask ``noise > threshold``.

    As anomalib does, a sample whose noise never exceeds the threshold is first
    rescaled to [-1, 1], so a drawn anomaly is never silently empty.
    """
    flat = noise.flatten(1)
    weak = torch.nonzero(flat.amax(dim=1) <= threshold).flatten()
    if weak.numel():
        sub = flat[weak]
        low, peak = sub.amin(dim=1, keepdim=True), sub.amax(dim=1, keepdim=True)
        flat = flat.clone()
        flat[weak] = (sub - low) / (peak - low).clamp_min(1e-12) * 2 - 1
    return (flat > threshold).to(noise.dtype).view(noise.shape[0], 1, *noise.shape[-2:])


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)
