"""files: the weights digest a cache key uses."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from anomalysynth.files import path_sha256


def test_path_sha256_of_a_file_is_its_bytes_digest_and_a_folder_follows_its_content(tmp_path):
    weights = tmp_path / "model.ckpt"
    weights.write_bytes(b"weights v1")
    assert path_sha256(weights) == hashlib.sha256(b"weights v1").hexdigest()
    folder = tmp_path / "pipeline"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "model.safetensors").write_bytes(b"a")
    (folder / "config.json").write_text("{}")
    first = path_sha256(folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert path_sha256(copy) == first  # content and relative names, not the folder's location
    (folder / "unet" / "model.safetensors").write_bytes(b"b")  # same size, other weights
    assert path_sha256(folder) != first
    (copy / "unet" / "model.safetensors").rename(copy / "unet" / "other.safetensors")
    assert path_sha256(copy) != first
    with pytest.raises(ValueError, match="weights file or folder"):
        path_sha256(tmp_path / "missing")
