"""What a synthesizer reads from disk, as a digest: the content of its image folders.

A synthesizer's config names its texture folder (``texture_dir``, an SDAS texture
folder, NSA's source bank, a mask folder) but not what is in it, so a cache keyed by
the config alone would reuse a bank made from textures that have since changed.
:func:`folder_fingerprints` walks a synthesizer (its modules, parts and their
attributes) and digests every :class:`~anomalysynth.synth.textures.TextureFolder` it
finds: the files' names relative to the folder, their sizes and their contents.
Content, not modification times, so a folder copied to another machine (or seen by
another node of a DDP job) gives the same digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from anomalysynth.files import file_sha256
from anomalysynth.synth.textures import TextureFolder

__all__ = ["folder_fingerprint", "folder_fingerprints"]

_ATOMS = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, type, Path)


def folder_fingerprint(folder: TextureFolder) -> str:
    """SHA-256 over ``folder``'s files: relative name, size and content of each, in order."""
    digest = hashlib.sha256()
    for path in folder.files:
        path = Path(path)
        try:
            name = path.relative_to(folder.root).as_posix()
        except ValueError:
            name = path.name
        try:
            size = path.stat().st_size
            content = file_sha256(path)
        except OSError as err:
            raise ValueError(f"Cannot read texture file {str(path)!r} of folder {str(folder.root)!r}: {err}") from err
        digest.update(f"{name}\0{size}\0{content}\n".encode())
    return digest.hexdigest()


def folder_fingerprints(obj: object) -> list[str]:
    """The :func:`folder_fingerprint` of every texture folder ``obj`` holds, in the order found."""
    found: list[str] = []
    seen: set[int] = set()

    def visit(value: object) -> None:
        if isinstance(value, _ATOMS) or id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, TextureFolder):
            found.append(folder_fingerprint(value))
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list | tuple):  # sets have no stable order
            for item in value:
                visit(item)
        elif isinstance(value, torch.nn.Module) or type(value).__module__.startswith("anomalysynth."):
            for item in getattr(value, "__dict__", {}).values():
                visit(item)

    visit(obj)
    return found
