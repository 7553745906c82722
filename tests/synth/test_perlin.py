"""Perlin noise and masks: exactness against a direct evaluation, and properties."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalysynth.synth.perlin import MAX_LATTICE, perlin_mask, perlin_noise


def reference_perlin(h: int, w: int, res_y: int, res_x: int, angles: torch.Tensor) -> torch.Tensor:
    """Pixel-by-pixel textbook Perlin noise on a periodic gradient lattice (DRAEM's formula)."""
    u = ((torch.arange(h, dtype=torch.float64) + 0.5) * res_y / h).view(h, 1).expand(h, w)
    v = ((torch.arange(w, dtype=torch.float64) + 0.5) * res_x / w).view(1, w).expand(h, w)
    i0, j0 = torch.floor(u), torch.floor(v)
    fu, fv = u - i0, v - j0
    ang = angles.double()

    def dot(di: int, dj: int) -> torch.Tensor:
        a = ang[(i0.long() + di) % res_y, (j0.long() + dj) % res_x]
        return torch.sin(a) * (fu - di) + torch.cos(a) * (fv - dj)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    top = torch.lerp(dot(0, 0), dot(0, 1), fade(fv))
    bottom = torch.lerp(dot(1, 0), dot(1, 1), fade(fv))
    return math.sqrt(2) * torch.lerp(top, bottom, fade(fu))


@settings(max_examples=25, deadline=None)
@given(
    k_y=st.integers(0, 5),
    k_x=st.integers(0, 5),
    h=st.integers(8, 80),
    w=st.integers(8, 80),
    seed=st.integers(0, 2**31 - 1),
)
def test_noise_equals_direct_evaluation(k_y, k_x, h, w, seed):
    angles = torch.rand(1, MAX_LATTICE, MAX_LATTICE, generator=torch.Generator().manual_seed(seed)) * 2 * math.pi
    noise = perlin_noise((h, w), torch.tensor([2**k_y]), torch.tensor([2**k_x]), angles)
    expected = reference_perlin(h, w, 2**k_y, 2**k_x, angles[0])
    assert torch.allclose(noise[0].double(), expected, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(0, 5),
    rotation=st.floats(-90, 90),
    seed=st.integers(0, 2**31 - 1),
    threshold=st.floats(-0.5, 0.9),
)
def test_mask_is_binary_bounded_and_never_silently_empty(k, rotation, seed, threshold):
    g = torch.Generator().manual_seed(seed)
    angles = torch.rand(2, MAX_LATTICE, MAX_LATTICE, generator=g) * 2 * math.pi
    res = torch.tensor([2**k, 2 ** max(0, k - 1)])
    noise = perlin_noise((48, 40), res, res.flip(0), angles, torch.tensor([rotation, -rotation]))
    assert noise.shape == (2, 48, 40)
    assert noise.abs().max() <= 1.0 + 1e-4  # |2-D Perlin| <= sqrt(2) * sqrt(1/2)
    mask = perlin_mask(noise, threshold)
    assert mask.shape == (2, 1, 48, 40)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.flatten(1).amax(1) == 1).all()
    # where the noise already exceeds the threshold the mask is exactly the threshold set
    for i in range(2):
        if noise[i].max() > threshold:
            assert torch.equal(mask[i, 0], (noise[i] > threshold).float())


def test_rotation_zero_matches_unrotated_and_rotation_moves_the_pattern():
    angles = torch.rand(1, MAX_LATTICE, MAX_LATTICE, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    res = torch.tensor([4])
    plain = perlin_noise((64, 64), res, res, angles)
    zero = perlin_noise((64, 64), res, res, angles, torch.tensor([0.0]))
    turned = perlin_noise((64, 64), res, res, angles, torch.tensor([90.0]))
    assert torch.allclose(plain, zero, atol=1e-4)
    # a quarter turn of the pattern is the array rotated by 90 degrees (up to interpolation)
    assert torch.allclose(turned[0], torch.rot90(plain[0], 1, (0, 1)), atol=2e-3) or torch.allclose(
        turned[0], torch.rot90(plain[0], -1, (0, 1)), atol=2e-3
    )


def test_bad_lattice_is_rejected():
    angles = torch.zeros(1, 4, 4)
    try:
        perlin_noise((16, 16), torch.tensor([8]), torch.tensor([2]), angles)
    except ValueError as err:
        assert "Lattice resolution" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_quarter_turn_reads_the_periodic_noise_at_rotated_pixel_centres():
    # with h + w even, a 90-degree turn maps pixel centres onto pixel centres of the tiled
    # noise: output (r, c) is noise[(c - (w - h) / 2) mod h, ((h + w) / 2 - 1 - r) mod w]
    gen = torch.Generator().manual_seed(3)
    for h, w in [(32, 32), (16, 64), (64, 16)]:  # square: circular padding; elongated: tiling
        angles = torch.rand(1, MAX_LATTICE, MAX_LATTICE, generator=gen) * 2 * math.pi
        res = (torch.tensor([4]), torch.tensor([8]))
        flat = perlin_noise((h, w), *res, angles)[0]
        turned = perlin_noise((h, w), *res, angles, torch.tensor([90.0]))[0]
        rows = (torch.arange(w).view(1, w) - (w - h) // 2) % h
        cols = ((h + w) // 2 - 1 - torch.arange(h).view(h, 1)) % w
        torch.testing.assert_close(turned, flat[rows.expand(h, w), cols.expand(h, w)], atol=1e-4, rtol=0)
