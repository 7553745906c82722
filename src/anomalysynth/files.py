"""Where anomalysynth keeps files, and how it writes them (atomically)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch
from PIL import Image

__all__ = ["atomic_write_bytes", "fsync_dir", "home_dir", "save_png_atomic", "torch_bytes"]


def home_dir() -> Path:
    """``$ANOMALYSYNTH_HOME`` (default ``~/.cache/anomalysynth``): demo data, weights, banks."""
    return Path(os.environ.get("ANOMALYSYNTH_HOME", Path.home() / ".cache" / "anomalysynth"))


def atomic_write_bytes(path: str | Path, payload: bytes) -> Path:
    """Write ``payload`` to a temporary file beside ``path``, flush it to disk, rename it into place
    and sync the folder, so the rename itself survives a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename stands, unsynced
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a weights file, or of a folder's files (relative name, size and content of
    each, sorted): what a cache key needs to notice weights replaced at the same path."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise ValueError(f"Expected a weights file or folder at {str(path)!r}; nothing is there.")
    h = hashlib.sha256()
    for file in sorted(f for f in path.rglob("*") if f.is_file()):
        h.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\0{file_sha256(file)}\n".encode())
    return h.hexdigest()


def torch_bytes(obj: object) -> bytes:
    """``torch.save`` output as bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_png_atomic(image: Image.Image, path: str | Path) -> Path:
    """Write a PNG through a temporary file in the same folder and rename it into place."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())
