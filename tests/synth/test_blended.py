"""Composition: mask x source x blend, built in Python or from YAML alone."""

from __future__ import annotations

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from PIL import Image

from anomalysynth.synth import BlendedSynthesizer, Synthesizer, from_config
from anomalysynth.synth.blends import AlphaBlend, PasteBlend
from anomalysynth.synth.masks import MaskFolder, PerlinMask
from anomalysynth.synth.sources import (
    GeneratedTextureSource,
    NegativeSource,
    SDASBankSource,
    SourceMixture,
    TextureFolderSource,
)
from tests.conftest import photo_batch


@pytest.fixture
def texture_folder(tmp_path):
    for i in range(3):
        Image.new("RGB", (40, 30), (80 * i, 255 - 80 * i, 128)).save(tmp_path / f"t{i}.png")
    return tmp_path


def test_a_mix_of_sources_is_expressible_in_yaml_alone(texture_folder, sdas_texture_folder):
    text = f"""
    synthesizer:
      class_path: anomalysynth.synth.BlendedSynthesizer
      init_args:
        mask:
          class_path: anomalysynth.synth.masks.PerlinMask
          init_args: {{perlin_scale: [1, 4]}}
        source:
          class_path: anomalysynth.synth.sources.SourceMixture
          init_args:
            sources:
              - class_path: anomalysynth.synth.sources.TextureFolderSource
                init_args: {{root: {texture_folder}}}
              - class_path: anomalysynth.synth.sources.SDASBankSource
                init_args: {{bank: {sdas_texture_folder}}}
              - class_path: anomalysynth.synth.sources.NegativeSource
            weights: [1, 1, 2]
        blend:
          class_path: anomalysynth.synth.blends.AlphaBlend
          init_args: {{opacity: [0.5, 1.0]}}
        anomaly_ratio: 0.9
    """
    parser = ArgumentParser()
    parser.add_argument("--synthesizer", type=Synthesizer)
    cfg = parser.parse_object(yaml.safe_load(text))
    synth = parser.instantiate_classes(cfg).synthesizer
    assert isinstance(synth, BlendedSynthesizer) and isinstance(synth.source, SourceMixture)
    assert synth.mask.perlin_scale == (1, 4) and synth.blend.opacity == (0.5, 1.0)
    images = photo_batch(8, 3).repeat(3, 1, 1, 1)
    out = synth(images, generator=torch.Generator().manual_seed(0))
    assert set(out.params["source_choice"].tolist()) == {0, 1, 2}
    assert torch.equal(synth(images, params=out.params).image, out.image)
    # the same synthesizer again from its config
    again = from_config(synth.config())
    assert torch.equal(again(images, generator=torch.Generator().manual_seed(0)).image, out.image)


def test_each_sample_takes_its_chosen_source(texture_folder):
    source = SourceMixture([TextureFolderSource(texture_folder, augment=False), NegativeSource(augment=False)])
    synth = BlendedSynthesizer(PerlinMask(), source, AlphaBlend(opacity=(1.0, 1.0)))
    images = photo_batch(8, 3).repeat(2, 1, 1, 1)
    out = synth(images, generator=torch.Generator().manual_seed(3))
    inside = (out.mask > 0).expand_as(images)
    for i in range(16):
        where = inside[i]
        if int(out.params["source_choice"][i]) == 1:
            assert torch.equal(out.image[i][where], 1 - images[i][where])
        else:
            k = int(out.params["0.texture_index"][i])
            colour = torch.tensor([80 * k, 255 - 80 * k, 128]).view(3, 1) / 255
            assert torch.allclose(out.image[i][:, where[0]], colour.expand(3, int(where[0].sum())), atol=2e-2)


def test_strength_is_the_product_of_the_parts_shares(sdas_texture_folder):
    images = photo_batch(6, 3)
    alpha = BlendedSynthesizer(PerlinMask(), GeneratedTextureSource(), AlphaBlend())
    out = alpha(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.strength, out.params["opacity"])
    paste = BlendedSynthesizer(PerlinMask(), NegativeSource(), PasteBlend())
    assert paste(images, generator=torch.Generator().manual_seed(0)).strength.tolist() == [1.0] * 6
    # an SDAS source contributes s where it is known
    bank = SDASBankSource(sdas_texture_folder)
    bank.strengths = torch.tensor([0.1, 0.2, 0.15])
    sdas = BlendedSynthesizer(PerlinMask(), bank, AlphaBlend(opacity=(0.5, 1.0)))
    out = sdas(images, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.strength, out.params["opacity"] * out.params["sdas_strength"])


def test_user_masks_from_a_folder(tmp_path):
    square = torch.zeros(32, 32, dtype=torch.uint8)
    square[4:12, 20:30] = 255
    Image.fromarray(square.numpy()).save(tmp_path / "square.png")
    synth = BlendedSynthesizer(MaskFolder(tmp_path, flip=False), NegativeSource(augment=False), PasteBlend())
    images = photo_batch(3, 3)  # 64 x 64: the mask is resized
    out = synth(images, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(64, 64)
    expected[8:24, 40:60] = 1
    assert torch.equal(out.mask[:, 0], expected.expand(3, 64, 64))
    assert torch.equal(out.image[:, :, 8:24, 40:60], 1 - images[:, :, 8:24, 40:60])


def test_parts_are_checked():
    with pytest.raises(ValueError, match="`source` must be an instance of AnomalySource"):
        BlendedSynthesizer(PerlinMask(), AlphaBlend(), AlphaBlend())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opacity"):
        AlphaBlend(opacity=(0.5, 1.5))
    with pytest.raises(ValueError, match="weights"):
        SourceMixture([NegativeSource()], weights=[1, 1])
