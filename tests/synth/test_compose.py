"""Weighted mixing and MemSeg's structure source."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.synth import CutPaste, MemSegBlend, OneOf, PerlinTextureBlend, dispatch
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.sources import grid_shuffle
from tests.conftest import photo_batch


def test_oneof_follows_its_weights_and_replays():
    mix = OneOf([CutPaste(), PerlinTextureBlend()], weights=[1, 3])
    images = photo_batch(8, 3, size=32).repeat(25, 1, 1, 1)
    out = mix(images, generator=torch.Generator().manual_seed(0))
    share = (out.params["choice"] == 1).float().mean()
    assert 0.6 < share < 0.9
    assert torch.equal(mix(images, params=out.params).image, out.image)
    cutpaste_only = out.params["choice"] == 0
    assert torch.equal(
        out.params["0.cutpaste_class"][cutpaste_only], torch.ones(int(cutpaste_only.sum()), dtype=torch.long)
    )


def test_oneof_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-empty"):
        OneOf([])
    with pytest.raises(ValueError, match="weights"):
        OneOf([CutPaste()], weights=[1, 2])


def test_grid_shuffle_permutes_blocks():
    img = torch.arange(64.0).view(1, 1, 8, 8)
    perm = torch.arange(16).flip(0).view(1, 16)
    out = grid_shuffle(img, perm, 4)
    assert torch.equal(out[0, 0, :2, :2], img[0, 0, 6:, 6:])
    assert torch.equal(torch.sort(out.flatten()).values, img.flatten())


def test_memseg_uses_both_sources_and_its_opacity():
    images = photo_batch(8, 3).repeat(4, 1, 1, 1)
    out = MemSegBlend()(images, generator=torch.Generator().manual_seed(0))
    assert 0 < int(out.params["source_choice"].sum()) < 32  # 1: structure, 0: texture
    assert (out.params["opacity"] >= 0.15).all()


@pytest.mark.parametrize("kernels", ["1", "0"])
def test_memseg_structure_is_the_augmented_image_with_its_grid_cells_permuted(monkeypatch, kernels):
    monkeypatch.setenv("ANOMALYSYNTH_KERNELS", kernels)
    images = photo_batch(4, 3)  # 64 x 64: 8 x 8 cells of 8 x 8 pixels
    synth = MemSegBlend(structure_ratio=1.0, opacity=(1.0, 1.0))
    out = synth(images, generator=torch.Generator().manual_seed(2))
    aug_params = {k[2:]: v for k, v in out.params.items() if k.startswith("1.aug_")}
    augmented = dispatch.augment_textures(TextureAugment(), images, aug_params)
    cells = augmented.unfold(2, 8, 8).unfold(3, 8, 8).reshape(4, 3, 64, 8, 8)  # (B, C, cell, 8, 8)
    for i in range(4):
        inside = out.mask[i, 0].unfold(0, 8, 8).unfold(1, 8, 8).reshape(64, 8, 8) > 0
        got = out.image[i].unfold(1, 8, 8).unfold(2, 8, 8).reshape(3, 64, 8, 8)
        used = []
        for k in range(64):
            if not bool(inside[k].any()):
                continue
            where = inside[k].expand(3, 8, 8)
            # the output cell, where the mask is, is one cell of the augmented image, found by search
            matches = [j for j in range(64) if torch.equal(got[:, k][where], cells[i, :, j][where])]
            assert matches, f"sample {i}: cell {k} is no cell of the augmented image"
            used.append((k, matches))
        assert len(used) > 4
        # a permutation: the cells fully inside the mask come from distinct source cells ...
        full = [m[0] for k, m in used if bool(inside[k].all()) and len(m) == 1]
        assert len(full) == len(set(full))
        # ... and the cells moved
        assert any(k not in m for k, m in used)


def test_texture_folder_is_used(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 30), (80 * i, 255 - 80 * i, 128)).save(tmp_path / f"t{i}.png")
    synth = PerlinTextureBlend(texture_dir=tmp_path, augment=False, opacity=(1.0, 1.0), texture_colour="rgb")
    images = torch.zeros(3, 3, 32, 32)
    out = synth(images, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        idx = int(out.params["texture_index"][i])
        inside = out.mask[i, 0] > 0
        colour = torch.tensor([80 * idx, 255 - 80 * idx, 128]) / 255
        assert torch.allclose(out.image[i][:, inside].mean(1), colour, atol=2e-2)


def test_missing_texture_folder_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        PerlinTextureBlend(texture_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="No images"):
        PerlinTextureBlend(texture_dir=tmp_path)


@pytest.mark.parametrize("texture_dir", [False, True])
def test_grey_images_get_grey_textures(tmp_path, texture_dir):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 30), (80 * i, 255 - 80 * i, 128)).save(tmp_path / f"t{i}.png")
    folder = tmp_path if texture_dir else None
    grey = photo_batch(6, 3).mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    colour = photo_batch(6, 3)
    auto = PerlinTextureBlend(texture_dir=folder, texture_colour="auto")
    out = auto(grey, generator=torch.Generator().manual_seed(0))
    assert bool(out.params["texture_grey"].all())
    assert torch.equal(out.image[:, 0], out.image[:, 1]) and torch.equal(out.image[:, 1], out.image[:, 2])
    out = auto(colour, generator=torch.Generator().manual_seed(0))
    assert not bool(out.params["texture_grey"].any())
    rgb = PerlinTextureBlend(texture_dir=folder)(grey, generator=torch.Generator().manual_seed(0))  # the default
    assert not torch.equal(rgb.image[:, 0], rgb.image[:, 1])  # DRAEM: coloured anomalies on grey images
    forced = PerlinTextureBlend(texture_dir=folder, texture_colour="grey", opacity=(1.0, 1.0))
    out = forced(colour, generator=torch.Generator().manual_seed(1))
    assert bool(out.params["texture_grey"].all())
    inside = out.mask[:, 0] > 0
    assert torch.equal(out.image[:, 0][inside], out.image[:, 1][inside])
    assert torch.equal(out.image[:, 1][inside], out.image[:, 2][inside])


def test_texture_colour_is_checked():
    with pytest.raises(ValueError, match="texture_colour"):
        PerlinTextureBlend(texture_colour="gray")
