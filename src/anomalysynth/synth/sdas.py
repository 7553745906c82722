"""``sdas``: RealNet's SDAS anomalies (Zhang et al., CVPR 2024), a preset: diffusion
textures blended into the image through Perlin x foreground masks.

``A = (1 - M) I + (1 - delta) M I + delta M P`` with ``P`` an SDAS sample (a
normal-looking image pushed off the normal manifold by the strength ``s``),
``M`` a Perlin mask (times the foreground) and ``delta ~ U[0.5, 1]``.
"""

from __future__ import annotations

from pathlib import Path

from anomalysynth.files import path_sha256
from anomalysynth.synth.blended import BlendedSynthesizer
from anomalysynth.synth.blends import AlphaBlend
from anomalysynth.synth.masks import PerlinMask
from anomalysynth.synth.parts import AnomalySource
from anomalysynth.synth.registry import register_synthesizer
from anomalysynth.synth.sources import SDASBankSource, SDASSamplerSource

__all__ = ["SDASBlend"]


@register_synthesizer("sdas")
class SDASBlend(BlendedSynthesizer):
    """Perlin-mask blending of SDAS textures, opacity U[0.5, 1] (RealNet).

    Give exactly one texture source:

    * ``bank``: a bank built by ``anomalysynth cache sdas`` (the default path; the
      strength ``s`` of each texture is in ``params["sdas_strength"]``), or a folder
      of images such as RealNet's released SIA textures for one category (their
      strength is unknown: -1);
    * ``checkpoint``: a diffusion checkpoint sampled on the fly (slow: a full
      reverse chain per anomaly) with ``s ~ U[sdas_strength]``. The sampler's UNet is a
      registered submodule (``source.sampler.unet``, frozen): ``.to(device)`` moves it
      and ``state_dict()`` holds its weights.

    Strength is ``delta * s`` (``delta`` alone where ``s`` is unknown).

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
        source: AnomalySource = (
            SDASBankSource(bank) if bank is not None else SDASSamplerSource(checkpoint, sdas_strength, num_steps)  # type: ignore[arg-type]
        )
        super().__init__(
            PerlinMask(perlin_scale, threshold, rotation_deg),
            source,
            AlphaBlend(opacity),
            anomaly_ratio,
            foreground,
            foreground_invert,
        )
        self.bank = None if bank is None else str(bank)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        # digested when loaded, so a cache key tells weights replaced at the same path apart
        self._checkpoint_sha256 = None if checkpoint is None else path_sha256(checkpoint)
        self.sdas_strength, self.num_steps = sdas_strength, int(num_steps)
        self.opacity = self.blend.opacity  # type: ignore[attr-defined]
        self.perlin_scale, self.threshold, self.rotation_deg = perlin_scale, float(threshold), rotation_deg

    def config(self) -> dict[str, object]:
        out = {**super().config(), "bank_key": getattr(self.source, "bank_key", None)}
        if self._checkpoint_sha256 is not None:  # the loaded weights' content, not only their path
            out["checkpoint_sha256"] = self._checkpoint_sha256
        return out
