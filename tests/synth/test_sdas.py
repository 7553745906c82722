"""The ``sdas`` synthesizer: texture sources and errors."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.synth import SDASBlend, create_synthesizer
from anomalysynth.synth.blended import BlendedSynthesizer
from anomalysynth.synth.blends import AlphaBlend
from anomalysynth.synth.masks import PerlinMask
from anomalysynth.synth.sources import GeneratedTextureSource, SDASSamplerSource, SourceMixture
from tests.conftest import photo_batch


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


def test_checkpoint_sampler_is_a_submodule_moved_by_to_and_saved_in_the_state_dict(tiny_checkpoint):
    synth = SDASBlend(checkpoint=tiny_checkpoint, num_steps=2)
    unet = synth.source.sampler.unet
    assert {id(p) for p in unet.parameters()} <= {id(p) for p in synth.parameters()}
    assert not any(p.requires_grad for p in synth.parameters())  # a frozen texture generator
    state = synth.state_dict()
    assert state and all(k.startswith("source.sampler.unet.") for k in state)
    images = photo_batch(2, 3, size=24)
    drawn = synth(images, generator=torch.Generator().manual_seed(0))
    expected, textures = drawn.image, synth.source.render(images, drawn.params)
    # another synthesizer with other weights becomes this one through its state_dict
    other = SDASBlend(checkpoint=tiny_checkpoint, num_steps=2)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    assert not torch.equal(other(images, generator=torch.Generator().manual_seed(0)).image, expected)
    other.load_state_dict(state)
    assert torch.equal(other(images, generator=torch.Generator().manual_seed(0)).image, expected)
    # .to reaches the network, and the chain then runs in float64 (its noise is drawn in float64)
    synth.to(torch.float64)
    assert unet.dtype == torch.float64 and synth.source.sampler.unet is unet
    textures64 = synth.source.render(images.double(), drawn.params)
    assert textures64.dtype == torch.float64 and textures64.shape == textures.shape
    assert textures64.min() >= 0 and textures64.max() <= 1 and textures64.std() > 0


def test_a_sampler_inside_a_source_mixture_is_moved_too(tiny_checkpoint):
    sampler_source = SDASSamplerSource(tiny_checkpoint, num_steps=2)
    synth = BlendedSynthesizer(PerlinMask(), SourceMixture([GeneratedTextureSource(), sampler_source]), AlphaBlend())
    synth.to(torch.float64)
    assert {p.dtype for p in sampler_source.sampler.parameters()} == {torch.float64}
    out = synth(photo_batch(4, 3, size=24).double(), generator=torch.Generator().manual_seed(0))
    assert out.image.dtype == torch.float64 and (out.params["source_choice"] == 1).any()


def test_weights_replaced_at_the_same_path_change_the_cache_key(tiny_checkpoint, tmp_path):
    import shutil

    from anomalysynth.datamodules.cache import SynthesisCache
    from anomalysynth.datamodules.synthetic import SyntheticAnomalyDataset
    from anomalysynth.files import path_sha256

    path = tmp_path / "sdas.ckpt"
    shutil.copy(tiny_checkpoint, path)
    images = photo_batch(2, 3, size=24)

    def key() -> str:
        synth = SDASBlend(checkpoint=path, num_steps=2)
        assert synth.config()["checkpoint_sha256"] == path_sha256(path)
        return SynthesisCache.key(SyntheticAnomalyDataset(images, synth, anomaly_ratio=1.0))

    before = key()
    assert key() == before  # the same weights: the same key
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] + 0.1  # retrained weights, same file name
    torch.save(checkpoint, path)
    assert key() != before
