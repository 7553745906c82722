"""The SDAS texture bank: samples of a normal-image diffusion model at random
strengths, written once (``anomalysynth cache sdas``) and read by the ``sdas``
synthesizer.

Layout: ``<out>/textures/000000.png ...`` and ``<out>/manifest.json`` with the
build key (checkpoint digest, seed, steps, method, strength range, size, batch
size) and per texture its file, strength ``s`` and SHA-256. Every PNG is written
atomically and the manifest last, so an interrupted build leaves no half-written
file; running the same command again resumes it.

Textures are made by :class:`SDASBankPredictor`, a LightningModule that owns the
sampler's network (so it runs on the accelerator), in fixed blocks of ``batch_size``
textures dealt to the ranks in turn (:mod:`anomalysynth.sharding`): with
``trainer_kwargs`` the build runs through ``Trainer.predict`` over several devices
or nodes, each rank sampling and writing its own textures, and the bank is identical
file for file whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from anomalysynth.files import atomic_write_bytes, file_sha256
from anomalysynth.sharding import BlockPredictor, predict_blocks

__all__ = ["SDASBank", "SDASBankPredictor", "build_sdas_bank", "texture_generator"]

MANIFEST = "manifest.json"
_BUILD = "build.json"


def texture_generator(seed: int, index: int) -> torch.Generator:
    """The generator of bank texture ``index``: independent of batching."""
    digest = hashlib.sha256(f"sdas-bank:{seed}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _png_bytes(image: Tensor) -> bytes:
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    array = array[0] if array.shape[0] == 1 else array.permute(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array.contiguous().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def texture_strength(generator: torch.Generator, strength: tuple[float, float]) -> Tensor:
    """The first draw of a texture's generator: its ``s ~ U[strength]`` (float64)."""
    lo, hi = strength
    return lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64)


class SDASBankPredictor(BlockPredictor):
    """Samples a bank's textures block by block on the module's device and writes them as PNGs.

    The sampler (and its network) is a submodule, so ``Trainer.predict`` or ``.to(device)``
    moves it. Texture ``i`` draws its ``s`` and its whole chain from
    :func:`texture_generator` ``(seed, i)``.

    Args:
        sampler: the :class:`~anomalysynth.diffusion.SDASSampler`.
        out: the bank folder.
        num_textures: bank size.
        strength: range of ``s``.
        seed: bank seed.
        size: resize textures to ``size x size`` (``None``: the model's size).
        batch_size: textures sampled together (one block).
    """

    def __init__(
        self,
        sampler: Any,
        out: str | Path,
        num_textures: int,
        strength: tuple[float, float],
        seed: int = 0,
        size: int | None = None,
        batch_size: int = 16,
    ) -> None:
        super().__init__(num_textures, batch_size=batch_size)
        self.sampler = sampler
        if not isinstance(sampler, torch.nn.Module):
            self.unet = sampler.unet  # the network must sit in the module tree to follow the device
        self.out = Path(out)
        self.strength = (float(strength[0]), float(strength[1]))
        self.seed = int(seed)
        self.size = size

    def path(self, index: int) -> Path:
        return self.out / "textures" / f"{index:06d}.png"

    def is_written(self, index: int) -> bool:
        return self.path(index).is_file()

    def predict_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> list[tuple[int, Tensor]]:
        indices = [int(i) for i in batch["indices"]]
        generators = [texture_generator(self.seed, i) for i in indices]
        strengths = torch.stack([texture_strength(g, self.strength) for g in generators])
        images = self.sampler.sample(len(indices), strengths.float(), generators)
        if self.size is not None and images.shape[-2:] != (self.size, self.size):
            size = (self.size, self.size)
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
        return list(zip(indices, images.cpu(), strict=True))

    def write_block(self, prediction: list[tuple[int, Tensor]]) -> None:
        for index, image in prediction:
            if not self.is_written(index):
                atomic_write_bytes(self.path(index), _png_bytes(image))

    def write_manifest(self, key: dict[str, Any]) -> None:
        """``manifest.json`` once every texture is on disk (one process writes it)."""
        entries = []
        for i in range(self.count):
            if not self.is_written(i):
                raise RuntimeError(
                    f"Cannot finish the SDAS bank {str(self.out)!r}: texture {self.path(i).name} is missing."
                )
            s = float(texture_strength(texture_generator(self.seed, i), self.strength))
            entries.append(
                {
                    "index": i,
                    "file": f"textures/{self.path(i).name}",
                    "strength": s,
                    "sha256": file_sha256(self.path(i)),
                }
            )
        atomic_write_bytes(self.out / MANIFEST, json.dumps({"key": key, "textures": entries}, indent=1).encode())


def build_sdas_bank(
    checkpoint: str | Path,
    out: str | Path,
    num_textures: int = 1000,
    strength: tuple[float, float] = (0.1, 0.2),
    num_steps: int = 20,
    method: str = "ddpm",
    size: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    fixed_variance: bool = False,
    progress: bool = True,
    device: torch.device | str | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Sample ``num_textures`` SDAS textures from a diffusion checkpoint into ``out``.

    Texture ``i`` draws ``s_i ~ U[strength]`` and its whole chain from
    :func:`texture_generator` ``(seed, i)``; batches are fixed blocks of
    ``batch_size`` textures, so the same arguments give the identical bank, whatever
    the number of processes.

    Args:
        checkpoint: a :class:`NormalImageDiffusion` ``.ckpt`` or a ``save_pretrained`` folder.
        out: the bank folder (created; an existing bank with a different key is refused).
        num_textures: bank size (the paper released 10,000 per category).
        strength: range of ``s`` (the paper: U[0.1, 0.2]).
        num_steps, method, fixed_variance: see :class:`SDASSampler`.
        size: resize textures to ``size x size`` before saving (default: the model's size).
        seed: bank seed.
        batch_size: textures sampled together.
        progress: show progress.
        device: without ``trainer_kwargs``: sample in this process on this device
            (default: the CPU), e.g. ``"cuda"``.
        trainer_kwargs: build through ``Trainer.predict`` with these ``pl.Trainer``
            arguments instead (e.g. ``{"accelerator": "gpu", "devices": 4, "strategy":
            "ddp"}``): every rank samples and writes its own blocks; rank 0 writes
            the manifest.
    """
    from anomalysynth.diffusion.sampler import SDASSampler, load_diffusion

    if num_textures < 1 or batch_size < 1:
        raise ValueError(f"`num_textures` and `batch_size` must be >= 1; got {num_textures}, {batch_size}.")
    lo, hi = float(strength[0]), float(strength[1])
    if not (0 <= lo <= hi and math.isfinite(hi)):
        raise ValueError(f"`strength` must be a (min, max) pair with 0 <= min <= max; got {strength}.")
    checkpoint = Path(checkpoint)
    unet, scheduler = load_diffusion(checkpoint)
    sampler = SDASSampler(unet, scheduler, num_steps=num_steps, method=method, fixed_variance=fixed_variance)
    key = {
        "checkpoint_sha256": _checkpoint_digest(checkpoint),
        "seed": seed,
        "num_textures": num_textures,
        "strength": [lo, hi],
        "num_steps": num_steps,
        "method": method,
        "fixed_variance": fixed_variance,
        "size": size,
        "batch_size": batch_size,
    }
    out = Path(out)
    _claim(out, key)
    (out / "textures").mkdir(parents=True, exist_ok=True)
    predictor = SDASBankPredictor(sampler, out, num_textures, (lo, hi), seed=seed, size=size, batch_size=batch_size)
    if trainer_kwargs is None:
        predictor.run(device=device, progress=progress, desc="SDAS bank")
        predictor.write_manifest(key)
        return out
    trainer = predict_blocks(predictor, {"enable_progress_bar": progress, **trainer_kwargs})
    if trainer.is_global_zero:
        predictor.write_manifest(key)
    trainer.strategy.barrier("anomalysynth-sdas-bank-finalized")
    return out


def _checkpoint_digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def _claim(out: Path, key: dict[str, Any]) -> None:
    """Refuse to mix two builds in one folder; record the key of this one."""
    for name in (MANIFEST, _BUILD):
        path = out / name
        if path.is_file():
            existing = json.loads(path.read_text())
            existing = existing.get("key", existing)
            if existing != key:
                raise ValueError(
                    f"{str(out)!r} holds an SDAS bank built with different settings ({path.name}); "
                    "pass another output folder or delete it."
                )
    atomic_write_bytes(out / _BUILD, json.dumps(key, indent=1).encode())


class SDASBank:
    """A built SDAS bank: texture files with their strengths, checksums verified on open.

    Args:
        root: the bank folder (with ``manifest.json``).
        verify: check every texture's SHA-256 against the manifest.
    """

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise ValueError(
                f"{str(self.root)!r} is not an SDAS bank (no {MANIFEST}); build one with `anomalysynth cache sdas` "
                "or pass a folder of texture images."
            )
        data = json.loads(manifest.read_text())
        self.key: dict[str, Any] = data["key"]
        self.entries: list[dict[str, Any]] = data["textures"]
        self.files = [self.root / e["file"] for e in self.entries]
        self.strengths = torch.tensor([e["strength"] for e in self.entries], dtype=torch.float64)
        if verify:
            for f, e in zip(self.files, self.entries, strict=True):
                if not f.is_file() or file_sha256(f) != e["sha256"]:
                    raise ValueError(f"SDAS bank texture {str(f)!r} is missing or corrupt; rebuild the bank.")

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def is_bank(root: str | Path) -> bool:
        return (Path(root) / MANIFEST).is_file()
