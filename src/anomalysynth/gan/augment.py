"""The geometric augmentations that make AnomalyHybrid's training pairs.

Training needs no annotations: the input and the target are the same normal image
(stacked with its depth and edge maps) under two independent draws of

* a local thin-plate-spline warp: a 3x3 lattice of control points, one of them
  shifted (a local deformation), solved with kornia's TPS;
* resize-translate-pad: scale ``s`` in ``scale``, a translation that keeps the
  shrunk image inside the frame, zeros outside;
* horizontal and vertical flips.

All three are composed into one sampling grid (one interpolation). Parameters are
drawn per sample from explicit generators (:meth:`TripletAugmentation.sample`) and
applied deterministically (:meth:`TripletAugmentation.apply`), so the RGB, depth
and edge channels of one draw move together and a draw can be replayed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.seeding import draw, uniform

__all__ = ["TripletAugmentation", "augmentation_grid", "control_lattice", "tps_grid"]


def control_lattice(device: torch.device | None = None) -> Tensor:
    """(9, 2) control points (x, y) of the 3x3 lattice at -2/3, 0, 2/3 in grid_sample's [-1, 1] frame."""
    ticks = torch.tensor([-2 / 3, 0.0, 2 / 3], device=device)
    ys, xs = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def tps_grid(shifts: Tensor, height: int, width: int) -> Tensor:
    """(B, H, W, 2) sampling grid of the TPS that moves the image content at lattice point ``k`` to
    ``lattice[k] + shifts[:, k]`` (shifts (B, 9, 2) in [-1, 1] units; zeros give the identity grid)."""
    base = _base_grid(shifts.shape[0], height, width, shifts.device, shifts.dtype)
    return _tps_points(base.flatten(1, 2), shifts).view(shifts.shape[0], height, width, 2)


def augmentation_grid(params: dict[str, Tensor], height: int, width: int) -> Tensor:
    """(B, H, W, 2) grid of ``flip(resize_translate(tps(x)))``: for each output point, where to sample the input."""
    grid = _base_grid(params["scale"].shape[0], height, width, params["scale"].device, params["scale"].dtype)
    # 1. flips act on the output coordinates
    sign_x = 1 - 2 * params["hflip"].to(grid.dtype).view(-1, 1, 1)
    sign_y = 1 - 2 * params["vflip"].to(grid.dtype).view(-1, 1, 1)
    x, y = grid[..., 0] * sign_x, grid[..., 1] * sign_y
    # 2. the shrunk, translated image occupies s * u + t: invert it
    s = params["scale"].to(grid.dtype).view(-1, 1, 1)
    t = params["translate"].to(grid.dtype)
    x, y = (x - t[:, 0].view(-1, 1, 1)) / s, (y - t[:, 1].view(-1, 1, 1)) / s
    inner = torch.stack([x, y], dim=-1)
    # 3. the local TPS, evaluated at the resulting points
    shifts = params["tps_shift"].to(grid.dtype)
    if not bool(shifts.abs().amax() > 0):
        return inner
    return _tps_points(inner.flatten(1, 2), shifts).view(inner.shape)


def _tps_points(points: Tensor, shifts: Tensor) -> Tensor:
    """Map output points (B, N, 2) to input points through the TPS with lattice shifts (B, 9, 2)."""
    from kornia.geometry.transform import get_tps_transform, warp_points_tps

    src = control_lattice(points.device).to(points.dtype).expand(shifts.shape[0], 9, 2)
    dst = src + shifts.to(points.dtype)
    # content at src lands at dst, so output points are mapped back: f(dst_k) = src_k exactly
    # (kornia's convention: solve with (dst, src); the kernel centres are then src)
    kernel_weights, affine_weights = get_tps_transform(dst, src)
    return warp_points_tps(points, src, kernel_weights, affine_weights)


class TripletAugmentation:
    """Random flips, resize-translate-pad and a local TPS warp, drawn per sample.

    Args:
        flip_probability: probability of each of the horizontal and vertical flips
            (set 0 for objects with a fixed orientation).
        scale: range of the resize factor ``s`` (1 = no resize).
        tps_shift: largest displacement of the shifted control point, in [-1, 1] units
            (0 disables the TPS).
        tps_probability: probability that a draw has a TPS warp.

    Example:
        >>> aug = TripletAugmentation()
        >>> gens = [torch.Generator().manual_seed(i) for i in range(2)]
        >>> stack = torch.rand(2, 5, 32, 32)  # RGB, depth, edge
        >>> aug.apply(stack, aug.sample(gens)).shape
        torch.Size([2, 5, 32, 32])
    """

    def __init__(
        self,
        flip_probability: float = 0.5,
        scale: tuple[float, float] = (0.8, 1.0),
        tps_shift: float = 0.15,
        tps_probability: float = 1.0,
    ) -> None:
        if not 0.0 <= flip_probability <= 1.0 or not 0.0 <= tps_probability <= 1.0:
            raise ValueError(f"Expected probabilities in [0, 1]; got flip {flip_probability}, tps {tps_probability}.")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"Expected 0 < scale[0] <= scale[1] <= 1; got {tuple(scale)}.")
        if not 0.0 <= tps_shift <= 0.5:
            raise ValueError(f"Expected `tps_shift` in [0, 0.5]; got {tps_shift}.")
        self.flip_probability = float(flip_probability)
        self.scale = (float(scale[0]), float(scale[1]))
        self.tps_shift = float(tps_shift)
        self.tps_probability = float(tps_probability)

    def sample(self, generators: list[torch.Generator]) -> dict[str, Tensor]:
        """Batch-first parameters: hflip, vflip (B,) bool; scale (B,); translate (B, 2); tps_shift (B, 9, 2)."""
        p = self.flip_probability
        hflip = draw(generators, lambda g: torch.rand((), generator=g) < p)
        vflip = draw(generators, lambda g: torch.rand((), generator=g) < p)
        scale = (
            uniform(generators, *self.scale)
            if self.scale[0] < self.scale[1]
            else torch.full((len(generators),), self.scale[0])
        )
        room = 1 - scale
        translate = (torch.stack([uniform(generators, -1.0, 1.0), uniform(generators, -1.0, 1.0)], dim=1)) * room[
            :, None
        ]
        return {
            "hflip": hflip,
            "vflip": vflip,
            "scale": scale,
            "translate": translate,
            "tps_shift": draw(generators, self._tps_shift),
        }

    def apply(self, stack: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Warp (B, C, H, W) with the drawn parameters (bilinear, zeros outside)."""
        _, _, h, w = stack.shape
        grid = augmentation_grid({k: v.to(stack.device) for k, v in params.items()}, h, w).to(stack.dtype)
        return F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _tps_shift(self, g: torch.Generator) -> Tensor:
        shifts = torch.zeros(9, 2)
        use = torch.rand((), generator=g) < self.tps_probability
        point = int(torch.randint(0, 9, (), generator=g))
        angle = float(torch.rand((), generator=g)) * 2 * math.pi
        radius = float(torch.rand((), generator=g)) * self.tps_shift
        if bool(use) and self.tps_shift > 0:
            shifts[point] = torch.tensor([math.cos(angle), math.sin(angle)]) * radius
        return shifts


def _base_grid(b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(B, H, W, 2) pixel centres in grid_sample's ``align_corners=False`` frame."""
    ys = (torch.arange(h, device=device, dtype=dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=device, dtype=dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).expand(b, h, w, 2)
