"""The shipped mix: its families, its folder, and the data module's default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalysynth.datamodules import SyntheticAnomalyDataModule
from anomalysynth.synth import NSA, CutPasteUnion, DefaultMix, PerlinTextureBlend, create_synthesizer
from tests.conftest import photo_batch


def test_the_mix_draws_every_family_from_the_given_folder(sdas_texture_folder):
    mix = DefaultMix(normal_dir=sdas_texture_folder)
    kinds = [type(s) for s in mix.synthesizers]
    assert kinds == [PerlinTextureBlend, PerlinTextureBlend, PerlinTextureBlend, CutPasteUnion, NSA]
    assert mix.synthesizers[0].texture_dir == str(sdas_texture_folder) and mix.synthesizers[0].augment
    assert mix.synthesizers[1].texture_dir == str(sdas_texture_folder) and not mix.synthesizers[1].augment
    assert mix.synthesizers[2].texture_dir is None  # generated textures
    assert mix.synthesizers[4].bank == str(sdas_texture_folder)
    out = mix(photo_batch(64, 3, size=48), generator=torch.Generator().manual_seed(0))
    # with 64 samples every one of the five families is chosen at least once
    assert set(out.params["choice"].tolist()) == {0, 1, 2, 3, 4}
    assert bool(out.label.all())


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="normal_dir"):
        DefaultMix(normal_dir=tmp_path / "absent")


def test_registered_and_rebuilt_from_its_config(sdas_texture_folder):
    from anomalysynth.synth import from_config

    mix = create_synthesizer("default_mix", normal_dir=sdas_texture_folder, min_change=0.2)
    again = from_config(mix.config())
    images = photo_batch(4, 3)
    a = mix(images, generator=torch.Generator().manual_seed(1))
    b = again(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.image, b.image) and again.min_change == 0.2


def test_the_data_module_defaults_to_the_mix_over_its_training_images(tiny_folder, tiny_tree):
    dm = SyntheticAnomalyDataModule(tiny_folder)
    assert dm.synthesizer is None and dm.anomaly_ratio == 0.5
    dm.setup()
    assert isinstance(dm.synthesizer, DefaultMix)
    assert Path(dm.synthesizer.normal_dir) == Path(tiny_tree) / "train" / "good"
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == batch.source_image.shape
