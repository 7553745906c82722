"""The training augmentation: identity at zero, TPS correspondence, flips and resize-translate-pad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalysynth.gan import TripletAugmentation
from anomalysynth.gan.augment import augmentation_grid, control_lattice, tps_grid


def identity_params(b: int) -> dict[str, torch.Tensor]:
    return {
        "hflip": torch.zeros(b, dtype=torch.bool),
        "vflip": torch.zeros(b, dtype=torch.bool),
        "scale": torch.ones(b),
        "translate": torch.zeros(b, 2),
        "tps_shift": torch.zeros(b, 9, 2),
    }


def pixel_centres(n: int) -> np.ndarray:
    return (np.arange(n) * 2 + 1) / n - 1


def test_tps_with_zero_shift_is_the_identity():
    grid = tps_grid(torch.zeros(2, 9, 2), 20, 24)
    ys, xs = np.meshgrid(pixel_centres(20), pixel_centres(24), indexing="ij")
    np.testing.assert_allclose(grid[0, ..., 0].numpy(), xs, atol=1e-5)
    np.testing.assert_allclose(grid[1, ..., 1].numpy(), ys, atol=1e-5)
    image = torch.rand(2, 5, 20, 24)
    out = F.grid_sample(image, grid, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, image, atol=1e-4, rtol=0)
    # and the composed augmentation with identity parameters returns the stack
    torch.testing.assert_close(TripletAugmentation().apply(image, identity_params(2)), image, atol=1e-6, rtol=0)


def test_tps_moves_the_content_of_a_control_point_to_its_shifted_place():
    # on a 45-pixel side the 3x3 lattice (-2/3, 0, 2/3) lies on pixel centres 7, 22, 37
    size, point = 45, 4  # the centre of the lattice
    shift_px = np.array([3, -2])  # (x, y) in pixels
    shifts = torch.zeros(1, 9, 2)
    shifts[0, point] = torch.tensor(shift_px * 2 / size, dtype=torch.float32)
    grid = tps_grid(shifts, size, size)
    src = control_lattice()[point].numpy()
    y, x = 22 + shift_px[1], 22 + shift_px[0]
    # the output pixel at the shifted point samples the input at the original point
    np.testing.assert_allclose(grid[0, y, x].numpy(), src, atol=1e-5)
    # the other control points stay where they are
    for k, (row, col) in enumerate([(7, 7), (7, 22), (7, 37), (22, 7)]):
        np.testing.assert_allclose(grid[0, row, col].numpy(), control_lattice()[k].numpy(), atol=1e-5)
    # an image with a bright pixel at the control point has it moved there
    image = torch.zeros(1, 1, size, size)
    image[..., 22, 22] = 1
    out = F.grid_sample(image, grid, mode="bilinear", align_corners=False)
    assert out[0, 0, y, x] > 0.99 and out[0, 0, 22, 22] < 0.5


def test_flips_and_resize_translate_pad_match_a_numpy_reference():
    h, w = 16, 20
    params = identity_params(1)
    params["hflip"][0] = True
    params["scale"][0] = 0.75
    params["translate"][0] = torch.tensor([0.1, -0.2])
    grid = augmentation_grid(params, h, w)[0].numpy()
    ys, xs = np.meshgrid(pixel_centres(h), pixel_centres(w), indexing="ij")
    expected_x = (-xs - 0.1) / 0.75
    expected_y = (ys + 0.2) / 0.75
    np.testing.assert_allclose(grid[..., 0], expected_x, atol=1e-6)
    np.testing.assert_allclose(grid[..., 1], expected_y, atol=1e-6)
    # pixels that sample outside the frame are padded with zeros
    image = torch.ones(1, 1, h, w)
    out = TripletAugmentation().apply(image, params)[0, 0].numpy()
    outside = (np.abs(expected_x) > 1) | (np.abs(expected_y) > 1)
    assert outside.any() and np.all(out[outside & ((np.abs(expected_x) > 1.2) | (np.abs(expected_y) > 1.2))] == 0)
    assert np.allclose(out[~outside & (np.abs(expected_x) < 0.9) & (np.abs(expected_y) < 0.9)], 1)


def test_one_draw_moves_all_channels_of_the_triplet_together():
    aug = TripletAugmentation(tps_shift=0.3)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    params = aug.sample(gens)
    rgb = torch.rand(4, 3, 32, 32)
    stack = torch.cat([rgb, rgb[:, :1], rgb[:, 1:2]], dim=1)  # depth and edge copies of R and G
    out = aug.apply(stack, params)
    assert torch.equal(out[:, 3], out[:, 0]) and torch.equal(out[:, 4], out[:, 1])
    assert not torch.allclose(out[:, :3], rgb)


def test_draws_are_per_sample_and_replayable():
    aug = TripletAugmentation()
    a = aug.sample([torch.Generator().manual_seed(i) for i in range(3)])
    b = aug.sample([torch.Generator().manual_seed(i) for i in range(3)])
    single = aug.sample([torch.Generator().manual_seed(2)])
    for k in a:
        assert torch.equal(a[k], b[k])
        assert torch.equal(a[k][2:], single[k])
    # one control point is shifted, by at most tps_shift
    moved = (a["tps_shift"].abs().sum(-1) > 0).sum(-1)
    assert moved.tolist() == [1, 1, 1]
    assert a["tps_shift"].norm(dim=-1).max() <= 0.15 + 1e-6
    assert (a["scale"] >= 0.8).all() and (a["translate"].abs() <= (1 - a["scale"])[:, None] + 1e-6).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"scale": (0.0, 1.0)}, "scale"), ({"tps_shift": 0.9}, "tps_shift"), ({"flip_probability": 2.0}, "probabilities")],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TripletAugmentation(**kwargs)
