"""The ``sdas`` synthesizer: texture sources and errors."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.synth import SDASBlend, create_synthesizer


def test_needs_exactly_one_source(tmp_path):
    with pytest.raises(ValueError, match=r"exactly one texture source.*anomalysynth cache sdas"):
        SDASBlend()
    with pytest.raises(ValueError, match="exactly one"):
        SDASBlend(bank=tmp_path, checkpoint=tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="does not exist"):
        SDASBlend(bank=tmp_path / "missing")
    with pytest.raises(ValueError, match="does not exist"):
        SDASBlend(checkpoint=tmp_path / "missing.ckpt")


def test_image_folder_source_has_unknown_strength(sdas_texture_folder):
    synth = create_synthesizer("sdas", bank=sdas_texture_folder)
    out = synth(torch.rand(3, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    assert (out.params["sdas_strength"] == -1).all()


def test_on_the_fly_sampling_replays_and_is_batch_independent(tiny_checkpoint):
    synth = SDASBlend(checkpoint=tiny_checkpoint, num_steps=3, sdas_strength=(0.1, 0.2))
    images = torch.rand(3, 3, 24, 24)
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    out = synth(images, generator=generators)
    assert out.label.tolist() == [1, 1, 1]
    assert ((out.params["sdas_strength"] >= 0.1) & (out.params["sdas_strength"] <= 0.2)).all()
    replay = synth(images, params=out.params)
    assert torch.equal(replay.image, out.image)
    single = synth(images[1:2], generator=[torch.Generator().manual_seed(1)])
    torch.testing.assert_close(single.image, out.image[1:2], atol=1e-5, rtol=0)
    assert torch.equal(single.mask, out.mask[1:2])
