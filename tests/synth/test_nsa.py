"""NSA: patch statistics, placement on the object, the logistic label and the bank."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image
from skimage import data

from anomalysynth.synth import NSA, create_synthesizer
from tests.conftest import photo_batch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_as_nsa():
    assert isinstance(create_synthesizer("nsa"), NSA)


def test_patch_count_size_and_resize_follow_the_paper():
    images = torch.rand(400, 1, 8, 8)
    params = NSA(max_patches=3).sample_params(images, gen(0))
    counts = torch.bincount(params["num_patches"], minlength=4)[1:].float() / 400
    # one patch, each further one with p = 0.5: P(1) = 0.5, P(2) = 0.25, P(3) = 0.25
    assert abs(counts[0] - 0.5) < 0.08 and abs(counts[1] - 0.25) < 0.07 and abs(counts[2] - 0.25) < 0.07
    assert params["half_h"].min() >= 0.05 and params["half_w"].max() <= 0.2
    resize = params["resize"]
    assert resize.min() >= 0.7 and resize.max() <= 1.3
    # N(1, 0.5) clipped: about 55 % of the draws land on a bound
    assert 0.4 < ((resize == 0.7) | (resize == 1.3)).float().mean() < 0.7
    assert NSA(max_patches=1).sample_params(images, gen(0))["num_patches"].max() == 1


def test_patches_are_centred_on_the_foreground():
    images = photo_batch(8, 3)
    fg = torch.zeros(8, 1, 64, 64)
    fg[..., 40:56, 6:22] = 1
    synth = NSA(hard_mask=True, max_patches=1)
    out = synth(images, generator=gen(1), foreground=torch.ones_like(fg))  # footprint unrestricted
    params = {k: v for k, v in out.params.items() if k != "foreground"}
    placed = synth(images, params=params, foreground=fg)  # same draw, object in the corner
    for i in range(8):
        ys, xs = torch.nonzero(placed.mask[i, 0] > 0, as_tuple=True)
        assert len(ys) > 0
    # the unrestricted footprint of the object-restricted draw contains the object's pixels near its centre
    synth_free = NSA(hard_mask=True, max_patches=1)
    free = synth_free._synthesize(images, {**params, "_foreground": fg})[1]
    for i in range(8):
        ys, xs = torch.nonzero(free[i, 0] > 0, as_tuple=True)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        assert 39 <= cy <= 56 and 5 <= cx <= 22, f"sample {i} centred at {(float(cy), float(cx))}"


def test_logistic_label_matches_scipy_median_and_the_papers_formula():
    images = photo_batch(4, 3)
    soft = NSA()(images, generator=gen(2))
    hard = NSA(hard_mask=True)(images, params=soft.params)
    assert torch.equal(hard.image, soft.image)
    assert set(torch.unique(hard.mask).tolist()) <= {0.0, 1.0}
    for i in range(4):
        change = np.abs(soft.image[i].numpy() - images[i].numpy()).mean(axis=0)
        d = ndi.median_filter(change, size=5, mode="nearest")
        expected = hard.mask[i, 0].numpy() / (1 + np.exp(-20 * (d - 1 / 6)))
        np.testing.assert_allclose(soft.mask[i, 0].numpy(), expected, atol=1e-5)


def test_strength_is_the_footprint_share():
    images = photo_batch(4, 1)
    out = NSA(hard_mask=True)(images, generator=gen(3))
    torch.testing.assert_close(out.strength, out.mask.flatten(1).mean(1))


def test_clone_modes_differ_and_random_mixes_them():
    images = photo_batch(4, 3)
    params = NSA().sample_params(images, gen(4))
    normal = NSA()(images, params=params).image
    mixed = NSA(clone_mode="mixed")(images, params={**params, "mixed": torch.ones_like(params["mixed"])}).image
    assert not torch.equal(normal, mixed)
    flags = NSA(clone_mode="random").sample_params(torch.rand(200, 1, 8, 8), gen(0))["mixed"].float().mean()
    assert 0.4 < flags < 0.6


def test_patches_come_from_the_bank(tmp_path):
    for i, img in enumerate([data.brick(), data.grass()]):
        Image.fromarray(np.asarray(img)[:64, :64]).save(tmp_path / f"{i}.png")
    images = photo_batch(4, 3)
    with_bank = NSA(bank=tmp_path)(images, generator=gen(5))
    assert with_bank.params["source_index"].max() < 2
    alone = NSA()(images, generator=gen(5))
    assert not torch.equal(with_bank.image, alone.image)
    assert with_bank.label.tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"half_width": (0.3, 0.1)}, "half_width"),
        ({"resize_bounds": (1.1, 1.3)}, "resize_bounds"),
        ({"max_patches": 0}, "max_patches"),
        ({"clone_mode": "swap"}, "clone_mode"),
        ({"median_size": 4}, "median_size"),
        ({"bank": "/no/such/folder"}, "does not exist"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NSA(**kwargs)
