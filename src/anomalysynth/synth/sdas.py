"""RealNet's SDAS anomalies (Zhang et al., CVPR 2024): diffusion-generated
textures blended into the image through Perlin x foreground masks.

``A = (1 - M) I + (1 - delta) M I + delta M P`` with ``P`` an SDAS sample (a
normal-looking image pushed off the normal manifold by the strength ``s``),
``M`` a Perlin mask (times the foreground) and ``delta ~ U[0.5, 1]``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.base import register_synthesizer
from anomalysynth.synth.perlin_texture import PerlinTextureBlend, _check_range
from anomalysynth.synth.textures import TextureFolder, match_channels

__all__ = ["SDASBlend"]


@register_synthesizer("sdas")
class SDASBlend(PerlinTextureBlend):
    """Perlin-mask blending of SDAS textures, opacity U[0.5, 1] (RealNet).

    Give exactly one texture source:

    * ``bank``: a bank built by ``anomalysynth cache sdas`` (the default path; the
      strength ``s`` of each texture is in ``params["sdas_strength"]``), or a folder
      of images such as RealNet's released SIA textures for one category (their
      strength is unknown: -1);
    * ``checkpoint``: a diffusion checkpoint sampled on the fly (slow: a full
      reverse chain per anomaly) with ``s ~ U[sdas_strength]``.

    Args:
        bank: SDAS bank folder or folder of texture images.
        checkpoint: :class:`~anomalysynth.diffusion.NormalImageDiffusion` ``.ckpt`` or ``save_pretrained`` folder.
        sdas_strength: range of ``s`` for on-the-fly sampling (paper: U[0.1, 0.2]).
        num_steps: respaced reverse steps for on-the-fly sampling.
        opacity: range of ``delta``.
        perlin_scale, threshold, rotation_deg: the Perlin mask, see :class:`PerlinTextureBlend`.
        anomaly_ratio, foreground, foreground_invert: see :class:`~anomalysynth.synth.Synthesizer`;
            RealNet restricts objects to a per-category foreground: pass ``"otsu"`` or
            ``"triangle"`` (``foreground_invert`` for dark objects) or a tensor to ``forward``.
    """

    _generated_fallback = False

    def __init__(
        self,
        bank: str | Path | None = None,
        checkpoint: str | Path | None = None,
        sdas_strength: tuple[float, float] = (0.1, 0.2),
        num_steps: int = 20,
        opacity: tuple[float, float] = (0.5, 1.0),
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        rotation_deg: tuple[float, float] = (-90.0, 90.0),
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        if (bank is None) == (checkpoint is None):
            raise ValueError(
                "SDAS needs exactly one texture source: `bank` (a folder built by `anomalysynth cache sdas`, "
                "or a folder of SDAS/SIA texture images) or `checkpoint` (a NormalImageDiffusion .ckpt or "
                "save_pretrained folder, sampled on the fly)."
            )
        super().__init__(
            None, opacity, perlin_scale, threshold, rotation_deg, False, anomaly_ratio, foreground, foreground_invert
        )
        _check_range("sdas_strength", sdas_strength, 0.0, float("inf"))
        self.bank = None if bank is None else str(bank)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.sdas_strength = (float(sdas_strength[0]), float(sdas_strength[1]))
        self.num_steps = int(num_steps)
        self.bank_strengths: Tensor | None = None
        self._bank_key: str | None = None
        self._sampler: Any = None
        if bank is not None:
            from anomalysynth.diffusion.bank import SDASBank

            if SDASBank.is_bank(bank):
                sdas_bank = SDASBank(bank)
                self.textures = TextureFolder(bank, files=sdas_bank.files)
                self.bank_strengths = sdas_bank.strengths.float()
                self._bank_key = json.dumps(sdas_bank.key, sort_keys=True)
            else:
                self.textures = TextureFolder(bank)
                self._bank_key = hashlib.sha256("\n".join(str(f) for f in self.textures.files).encode()).hexdigest()
        else:
            from anomalysynth.diffusion.sampler import SDASSampler, load_diffusion

            unet, scheduler = load_diffusion(checkpoint)  # type: ignore[arg-type]
            self._sampler = SDASSampler(unet, scheduler, num_steps=self.num_steps)

    def config(self) -> dict[str, object]:
        out = super().config()
        out["bank_key"] = self._bank_key
        return out

    def _sample_texture(self, generators: list[torch.Generator]) -> dict[str, Tensor]:
        if self.textures is not None:
            n = len(self.textures)
            index = draw(generators, lambda g: torch.randint(0, n, (), generator=g))
            strengths = (
                self.bank_strengths[index] if self.bank_strengths is not None else torch.full((len(index),), -1.0)
            )
            return {"texture_index": index, "sdas_strength": strengths}
        return {
            "texture_seed": draw(generators, lambda g: torch.randint(0, 2**62, (), generator=g)),
            "sdas_strength": uniform(generators, *self.sdas_strength),
        }

    def _texture(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        size = (images.shape[-2], images.shape[-1])
        if self.textures is not None:
            textures = self.textures.load(params["texture_index"].cpu(), size)
        else:
            generators = [torch.Generator().manual_seed(int(s)) for s in params["texture_seed"].tolist()]
            textures = self._sampler.sample(len(generators), params["sdas_strength"].float().cpu(), generators)
            if textures.shape[-2:] != size:
                textures = F.interpolate(textures, size=size, mode="bilinear", antialias=True, align_corners=False)
            textures = textures.clamp(0, 1)
            if textures.shape[1] == 1:
                textures = textures.expand(-1, 3, -1, -1)
        return match_channels(textures.to(images.device, images.dtype), images.shape[1])
