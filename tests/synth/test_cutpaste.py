"""CutPaste specifics: patch sizes, exact copies, the 3-way class."""

from __future__ import annotations

import torch

from anomalysynth.synth import CutPaste, CutPasteScar, CutPasteUnion
from tests.conftest import photo_batch


def test_patch_area_and_aspect_follow_the_paper():
    images = photo_batch(8, 3, size=128).repeat(8, 1, 1, 1)
    out = CutPaste()(images, generator=torch.Generator().manual_seed(0))
    area = out.mask.flatten(1).sum(1) / (128 * 128)
    assert (area >= 0.015).all() and (area <= 0.16).all()
    ratio = out.params["patch_w"].float() / out.params["patch_h"].float()
    assert (ratio > 0.25).all() and (ratio < 4.0).all()
    # the mask is exactly the h x w rectangle
    assert torch.equal(out.mask.flatten(1).sum(1).long(), out.params["patch_h"] * out.params["patch_w"])


def test_without_jitter_the_pasted_pixels_are_a_copy_of_the_source_patch():
    images = photo_batch(4, 3)
    out = CutPaste(color_jitter=0.0)(images, generator=torch.Generator().manual_seed(1))
    for i in range(4):
        h, w = int(out.params["patch_h"][i]), int(out.params["patch_w"][i])
        sy, sx = int(out.params["source_y"][i]), int(out.params["source_x"][i])
        ys, xs = torch.nonzero(out.mask[i, 0], as_tuple=True)
        ty, tx = int(ys.min()), int(xs.min())
        assert torch.equal(out.image[i, :, ty : ty + h, tx : tx + w], images[i, :, sy : sy + h, sx : sx + w])


def test_scar_is_thin_and_rotated():
    images = photo_batch(8, 3, size=256)
    out = CutPasteScar()(images, generator=torch.Generator().manual_seed(2))
    assert ((out.params["patch_w"] >= 2) & (out.params["patch_w"] <= 16)).all()
    assert ((out.params["patch_h"] >= 10) & (out.params["patch_h"] <= 25)).all()
    assert (out.params["patch_angle"].abs() <= 45).all()
    area = out.mask.flatten(1).sum(1)
    expected = (out.params["patch_h"] * out.params["patch_w"]).float()
    assert ((area - expected).abs() <= 0.25 * expected + 4).all()


def test_union_mixes_both_and_reports_the_three_way_class():
    images = photo_batch(8, 3).repeat(4, 1, 1, 1)
    out = CutPasteUnion(anomaly_ratio=2 / 3)(images, generator=torch.Generator().manual_seed(3))
    cls = out.params["cutpaste_class"] * out.label
    assert set(cls.tolist()) == {0, 1, 2}
    assert torch.equal(out.params["choice"] + 1, out.params["cutpaste_class"])
