"""GLASS's local branch: mask modes, beta's distribution, the contract's promises."""

from __future__ import annotations

import pytest
import scipy.stats as stats
import torch

from anomalysynth.features import GlassLocalAnomalies
from tests.conftest import photo_batch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_outside_the_mask_unchanged_labels_honest_and_replay():
    images = photo_batch(8, 3)
    synth = GlassLocalAnomalies()
    out = synth(images, generator=gen(0))
    outside = (out.mask == 0).expand_as(images)
    assert torch.equal(out.image[outside], images[outside])
    assert out.label.tolist() == [1] * 8
    assert torch.equal(synth(images, params=out.params).image, out.image)
    single = synth(images[2:3], generator=gen(12))
    batched = synth(images, generator=[gen(10 + i) for i in range(8)])
    assert torch.equal(single.image[0], batched.image[2])


def test_intersection_within_single_within_union():
    images = photo_batch(8, 1)
    synth = GlassLocalAnomalies()
    params = synth.sample_params(images, gen(1))
    masks = [synth(images, params={**params, "mask_mode": torch.full((8,), m)}).mask for m in range(3)]
    union, inter, single = masks
    assert (inter <= single).all() and (single <= union).all() and (inter.flatten(1).amax(1) > 0).all()


def test_beta_is_a_clipped_normal_and_modes_are_thirds():
    params = GlassLocalAnomalies().sample_params(torch.rand(600, 1, 8, 8), gen(2))
    beta = params["beta"].double().numpy()
    assert beta.min() >= 0.2 and beta.max() <= 0.8
    assert stats.kstest((beta - 0.5) / 0.1, "norm").pvalue > 0.01  # clipping at 3 sigma is negligible
    counts = torch.bincount(params["mask_mode"], minlength=3).float() / 600
    assert (counts - 1 / 3).abs().max() < 0.06


def test_texture_folder_and_bad_arguments(sdas_texture_folder):
    out = GlassLocalAnomalies(texture_dir=sdas_texture_folder)(photo_batch(2, 3), generator=gen(3))
    assert out.params["texture_index"].max() < 3
    with pytest.raises(ValueError, match="beta_bounds"):
        GlassLocalAnomalies(beta_bounds=(0.5, 1.2))
