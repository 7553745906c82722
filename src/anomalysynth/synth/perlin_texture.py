"""DRAEM-style Perlin-mask texture blending (Zavrtanik et al., ICCV 2021)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.base import Synthesizer, register_synthesizer, slice_params
from anomalysynth.synth.blend import blend
from anomalysynth.synth.kernels import channels_equal_cpu, kernels_enabled, perlin_texture_cpu
from anomalysynth.synth.perlin import MAX_LATTICE, perlin_noise_mask
from anomalysynth.synth.textures import (
    TextureAugment,
    TextureFolder,
    generated_textures,
    match_channels,
    sample_generated_textures,
)

__all__ = ["PerlinTextureBlend", "sample_perlin_params", "render_perlin_mask"]

logger = logging.getLogger(__name__)
_TEXTURE_COLOURS = ("auto", "rgb", "grey")
_TEXTURE_SOURCES = ("auto", "negative")
_warned_generated = False


@register_synthesizer("perlin_texture")
class PerlinTextureBlend(Synthesizer):
    """Perlin-noise masks filled with an augmented texture (DRAEM, RealNet).

    ``A = (1 - M) I + (1 - opacity) M I + opacity M P`` with ``M`` a thresholded
    Perlin mask (scale ``2**k``, ``k`` uniform in ``perlin_scale`` per axis, rotated
    by ``rotation_deg``) and ``P`` a texture augmented by 3 of DRAEM's 10 operations.
    Strength is the opacity.

    Args:
        texture_dir: folder of texture images (e.g. DTD). Without one, coloured
            Perlin textures are generated (anomalib does the same) and a log line says so.
        opacity: range of the texture weight inside the mask. DRAEM keeps U[0, 0.8)
            of the original, i.e. opacity in (0.2, 1]; RealNet uses [0.2, 1] for DTD.
        perlin_scale: inclusive range of the exponent k of the lattice scale 2**k.
        threshold: Perlin noise threshold of the mask.
        rotation_deg: range of the mask rotation in degrees.
        augment: apply the 3-of-10 texture augmentation.
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
        texture_colour: ``"rgb"`` (DRAEM: coloured textures on any image), ``"grey"``
            (grey textures), or ``"auto"``: grey for images whose channels are all equal
            (a grey data set loaded as RGB, e.g. DeepPCB or MVTec's grid and screw), so
            the anomalies do not differ from the normal images by colour alone. A grey
            texture is augmented as one channel and written to every channel.
        texture_source: ``"auto"`` (the default): the images of ``texture_dir``, or
            generated textures without one; ``"negative"``: the image's own negative
            ``1 - I``, so on near-binary images (circuit boards, print, masks) the
            anomaly flips foreground and background inside the mask (copper added or
            removed). ``"negative"`` takes no ``texture_dir``.
        min_change: drop mask pixels whose value changed by less than this (largest
            absolute change over the channels, images in [0, 1]) and keep the input
            there; a sample left with an empty mask gets label 0. ``0`` (the default,
            DRAEM) keeps the whole Perlin mask. With textures that often match the
            image (e.g. other images of the same objects as ``texture_dir``), most of
            the mask is otherwise labelled anomalous where nothing changed.

    Example:
        >>> synth = PerlinTextureBlend()
        >>> out = synth(torch.rand(4, 3, 64, 64), generator=torch.Generator().manual_seed(0))
        >>> out.label.tolist()
        [1, 1, 1, 1]
    """

    _generated_fallback = True  # without texture_dir, generated textures are the source
    exact_outside_mask = True  # the blend's weight is 0 outside the mask (lerp is exact there)

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        opacity: tuple[float, float] = (0.2, 1.0),
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        rotation_deg: tuple[float, float] = (-90.0, 90.0),
        augment: bool = True,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
        texture_colour: str = "rgb",
        min_change: float = 0.0,
        texture_source: str = "auto",
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if texture_colour not in _TEXTURE_COLOURS:
            raise ValueError(f"`texture_colour` must be one of {_TEXTURE_COLOURS}; got {texture_colour!r}.")
        self.texture_colour = texture_colour
        if not 0.0 <= float(min_change) <= 1.0:
            raise ValueError(f"`min_change` must lie in [0, 1]; got {min_change}.")
        self.min_change = float(min_change)
        if texture_source not in _TEXTURE_SOURCES:
            raise ValueError(f"`texture_source` must be one of {_TEXTURE_SOURCES}; got {texture_source!r}.")
        if texture_source == "negative" and texture_dir is not None:
            raise ValueError("`texture_source='negative'` uses the image's own negative: pass no `texture_dir`.")
        self.texture_source = texture_source
        _check_range("opacity", opacity, 0.0, 1.0)
        _check_range("perlin_scale", perlin_scale, 0, int(math.log2(MAX_LATTICE)))
        self.texture_dir = None if texture_dir is None else str(texture_dir)
        self.textures = TextureFolder(texture_dir) if texture_dir is not None else None
        self.opacity = (float(opacity[0]), float(opacity[1]))
        self.perlin_scale = (int(perlin_scale[0]), int(perlin_scale[1]))
        self.threshold = float(threshold)
        self.rotation_deg = (float(rotation_deg[0]), float(rotation_deg[1]))
        self.augment = TextureAugment() if augment else None
        if self.textures is None and self._generated_fallback and texture_source == "auto":
            _log_generated_once()

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        params = sample_perlin_params(generators, self.perlin_scale, self.rotation_deg)
        params["opacity"] = uniform(generators, *self.opacity)
        params.update(self._sample_texture(generators))
        params["texture_grey"] = self._grey_textures(images)
        return params

    def _grey_textures(self, images: Tensor) -> Tensor:
        """(B,) bool: which samples get a grey texture."""
        if self.texture_colour == "auto" and images.shape[1] == 3:
            if kernels_enabled(images):
                return channels_equal_cpu(images)
            return (images[:, 1:] == images[:, :1]).flatten(1).all(dim=1).cpu()
        return torch.full((images.shape[0],), self.texture_colour != "rgb" or images.shape[1] == 1)

    def _sample_texture(self, generators: list[torch.Generator]) -> dict[str, Tensor]:
        params: dict[str, Tensor] = {}
        if self.texture_source == "negative":
            pass  # the texture is the image itself: nothing to draw
        elif self.textures is not None:
            n = len(self.textures)
            params["texture_index"] = draw(generators, lambda g: torch.randint(0, n, (), generator=g))
        else:
            params.update(sample_generated_textures(generators))
        if self.augment is not None:
            params.update(self.augment.sample(generators))
        return params

    def _texture(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        if self.texture_source == "negative":
            negative = 1.0 - images
            return self.augment(negative, params) if self.augment is not None else negative
        size = (images.shape[-2], images.shape[-1])
        if self.textures is not None:
            textures = self.textures.load(params["texture_index"].cpu(), size).to(images.device, images.dtype)
        else:
            textures = generated_textures(params, size).to(images.dtype)
        channels = images.shape[1]
        grey = params.get("texture_grey")
        if channels == 1 or grey is None or not bool(grey.any()):
            textures = match_channels(textures, channels)
            return self.augment(textures, params) if self.augment is not None else textures
        # grey textures are augmented as one channel and written to every channel
        out = torch.empty_like(images)
        for is_grey in (True, False):
            idx = torch.nonzero(grey.to(images.device) == is_grey).flatten()
            if idx.numel():
                sub = match_channels(textures[idx], 1 if is_grey else channels)
                if self.augment is not None:
                    sub = self.augment(sub, slice_params(params, idx))
                out[idx] = sub.expand(-1, channels, -1, -1)
        return out

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if kernels_enabled(images):
            image, mask = torch.empty_like(images), images.new_empty(images.shape[0], 1, *images.shape[-2:])
            return image, mask, self._synthesize_into(images, params, image, mask)
        mask = render_perlin_mask(params, images.shape[-2:], self.threshold).to(images.dtype)
        texture = self._texture(images, params)
        image = blend(images, texture, mask, params["opacity"])
        self._drop_unchanged(images, image, mask)
        return image, mask, params["opacity"]

    def _drop_unchanged(self, images: Tensor, image: Tensor, mask: Tensor) -> None:
        """With ``min_change``: clear the mask and restore the input where the change is smaller, in place."""
        if self.min_change <= 0.0:
            return
        unchanged = (image - images).abs().amax(dim=1, keepdim=True) < self.min_change
        mask.masked_fill_(unchanged, 0.0)
        torch.where(unchanged, images, image, out=image)

    def _chunk_size(self, images: Tensor) -> int:
        # the kernel schedules single samples over the threads: the whole batch at once
        return images.shape[0] if kernels_enabled(images) else self.chunk_size

    def _synthesize_into(
        self, images: Tensor, params: dict[str, Tensor], image_out: Tensor, mask_out: Tensor
    ) -> Tensor:
        if not kernels_enabled(images, image_out, mask_out):
            return super()._synthesize_into(images, params, image_out, mask_out)
        # compiled, one pass per sample, the same arithmetic as the torch code; generated
        # textures are made and augmented inside it, other sources come from _texture
        textures = None
        augment = self.augment is not None
        if (
            self.textures is not None
            or self.texture_source != "auto"
            or type(self)._texture is not PerlinTextureBlend._texture
        ):
            textures, augment = self._texture(images, params).to(images.dtype), False
        perlin_texture_cpu(images, params, self.threshold, textures, augment, image_out, mask_out)
        self._drop_unchanged(images, image_out, mask_out)
        return params["opacity"]


def sample_perlin_params(
    generators: list[torch.Generator], perlin_scale: tuple[int, int], rotation_deg: tuple[float, float]
) -> dict[str, Tensor]:
    """Per-sample Perlin mask parameters: lattice scales, gradient angles, rotation.

    The two scale exponents (uniform integers in ``perlin_scale``) and the rotation come
    from one draw of three uniforms per sample.
    """
    lo, hi = perlin_scale
    u = draw(generators, lambda g: torch.rand(3, generator=g))
    exponents = (lo + u[:, :2] * (hi - lo + 1)).floor_().clamp_(max=hi).long()
    return {
        "perlin_scale_y": 2 ** exponents[:, 0],
        "perlin_scale_x": 2 ** exponents[:, 1],
        "perlin_angles": draw(generators, lambda g: torch.rand(MAX_LATTICE, MAX_LATTICE, generator=g) * (2 * math.pi)),
        "perlin_rotation": u[:, 2] * (rotation_deg[1] - rotation_deg[0]) + rotation_deg[0],
    }


def render_perlin_mask(params: dict[str, Tensor], size: torch.Size | tuple[int, int], threshold: float) -> Tensor:
    """(B, 1, H, W) binary mask from :func:`sample_perlin_params` parameters."""
    return perlin_noise_mask(
        (int(size[0]), int(size[1])),
        params["perlin_scale_y"],
        params["perlin_scale_x"],
        params["perlin_angles"],
        params["perlin_rotation"],
        threshold,
    )


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"`{name}` must be a (min, max) pair within [{low}, {high}]; got {value}.")


def _log_generated_once() -> None:
    global _warned_generated
    if not _warned_generated:
        logger.info("No texture_dir given: using generated Perlin textures as the anomaly source (as anomalib does).")
        _warned_generated = True
