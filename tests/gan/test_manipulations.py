"""Each manipulation edits the conditions inside its region only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from anomalysynth.gan import MANIPULATIONS, manipulate
from anomalysynth.gan.manipulations import outline
from anomalysynth.gan.regions import ellipse_region, region_centre


def maps(seed: int, size: int = 32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(1, 1, size, size, generator=g) * 0.5 + 0.4
    edge = (torch.rand(1, 1, size, size, generator=g) > 0.8).float()
    return depth, edge


def region(size: int = 32) -> torch.Tensor:
    centre = torch.tensor([[14.0, 17.0]])
    return ellipse_region(centre, torch.tensor([0.08]), torch.tensor([2.0]), torch.tensor([0.5]), size, size)


@pytest.mark.parametrize("kind", MANIPULATIONS)
def test_manipulation_changes_only_its_region(kind):
    depth, edge = maps(0)
    ref_depth, ref_edge = maps(1)
    r = region()
    new_depth, new_edge = manipulate(
        kind, depth, edge, ref_depth, ref_edge, r, tps_shift=torch.tensor([1.0]), tps_angle=torch.tensor([0.3])
    )
    outside = r == 0
    assert torch.equal(new_depth[outside], depth[outside]) and torch.equal(new_edge[outside], edge[outside])
    inside = r > 0
    assert not torch.equal(new_depth[inside], depth[inside])


def test_what_each_manipulation_puts_inside():
    depth, edge = maps(0)
    ref_depth, ref_edge = maps(1)
    r = region()
    inside = r > 0
    d, e = manipulate("remove", depth, edge, ref_depth, ref_edge, r)
    assert d[inside].max() == 0 and torch.equal(e, torch.where(inside, outline(r), edge))
    d, e = manipulate("replace", depth, edge, ref_depth, ref_edge, r)
    assert torch.equal(d[inside], ref_depth[inside]) and torch.equal(e[inside], ref_edge[inside])
    d, e = manipulate("merge", depth, edge, ref_depth, ref_edge, r)
    np.testing.assert_array_equal(d[inside].numpy(), np.maximum(depth[inside].numpy(), ref_depth[inside].numpy()))
    with pytest.raises(ValueError, match="Manipulation must be one of"):
        manipulate("smudge", depth, edge, ref_depth, ref_edge, r)


def test_outline_is_the_region_minus_its_erosion():
    r = region()
    expected = r[0, 0].numpy().astype(bool) & ~ndimage.binary_erosion(
        r[0, 0].numpy().astype(bool), np.ones((3, 3)), border_value=1
    )
    np.testing.assert_array_equal(outline(r)[0, 0].numpy().astype(bool), expected)


def test_ellipse_area_and_centre_in_the_foreground():
    r = ellipse_region(
        torch.tensor([[32.0, 32.0]]), torch.tensor([0.05]), torch.tensor([3.0]), torch.tensor([1.0]), 64, 64
    )
    assert float(r.mean()) == pytest.approx(0.05, rel=0.1)
    fg = torch.zeros(2, 1, 16, 16)
    fg[0, 0, 4:8, 10:12] = 1
    centre = region_centre(fg, torch.tensor([0.0, 0.5]))
    assert centre[0].tolist() == [4.0, 10.0]
    assert centre[1].tolist() == [7.5, 7.5]  # no foreground: the image centre
