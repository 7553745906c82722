"""Texture folders found anywhere in a synthesizer, digested by content."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from anomalysynth.synth import OneOf, create_synthesizer
from anomalysynth.synth.fingerprint import folder_fingerprint, folder_fingerprints
from anomalysynth.synth.textures import TextureFolder


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "textures"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(np.asarray(skdata.brick())[:24, :24]).save(root / "a.png")
    Image.fromarray(np.asarray(skdata.grass())[:24, :24]).save(root / "sub" / "b.png")
    return root


def test_folders_are_found_in_nested_synthesizers(folder):
    assert folder_fingerprints(create_synthesizer("perlin_texture")) == []  # generated textures: nothing on disk
    textured = create_synthesizer("perlin_texture", texture_dir=str(folder))
    (digest,) = folder_fingerprints(textured)
    assert digest == folder_fingerprint(TextureFolder(folder))
    mixed = OneOf([create_synthesizer("cutpaste"), textured, create_synthesizer("memseg", texture_dir=str(folder))])
    assert folder_fingerprints(mixed) == [digest, digest]


def test_the_digest_follows_content_not_modification_times(folder):
    before = folder_fingerprint(TextureFolder(folder))
    os.utime(folder / "a.png", (0, 0))
    assert folder_fingerprint(TextureFolder(folder)) == before
    (folder / "sub" / "b.png").rename(folder / "sub" / "c.png")  # same bytes, another name
    renamed = folder_fingerprint(TextureFolder(folder))
    assert renamed != before
    data = bytearray((folder / "a.png").read_bytes())
    data[-20] ^= 0xFF
    (folder / "a.png").write_bytes(bytes(data))
    assert folder_fingerprint(TextureFolder(folder)) not in (before, renamed)
