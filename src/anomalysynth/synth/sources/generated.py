"""Generated coloured Perlin textures: anomalib's source when no texture folder is given."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth import dispatch
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.parts import AnomalySource
from anomalysynth.synth.sources.colour import check_colour, coloured_and_augmented, grey_textures
from anomalysynth.synth.textures import colour_noise, sample_generated_textures

__all__ = ["GeneratedTextureSource"]


class GeneratedTextureSource(AnomalySource):
    """Per sample, Perlin noise (lattice 2..16) mapped to colour as ``base_c + amplitude_c * noise``,
    then augmented like a texture image.

    Args:
        augment: DRAEM's augmentation (3 of 10 operations).
        texture_colour: ``"rgb"``, ``"grey"`` or ``"auto"``, as :class:`TextureFolderSource`.

    Params: ``tex_scale``, ``tex_angles``, ``tex_base``, ``tex_amplitude``, ``texture_grey``, ``aug_*``.
    """

    def __init__(self, augment: bool = True, texture_colour: str = "rgb") -> None:
        self.augment = bool(augment)
        self.texture_colour = check_colour(texture_colour)
        self._augment = TextureAugment() if augment else None

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        out = sample_generated_textures(generators)
        if self._augment is not None:
            out.update(self._augment.sample(generators))
        out["texture_grey"] = grey_textures(self.texture_colour, images)
        return out

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        scale = params["tex_scale"]
        noise = dispatch.perlin_noise((images.shape[-2], images.shape[-1]), scale, scale, params["tex_angles"])
        textures = colour_noise(noise, params).to(images.device, images.dtype)
        return coloured_and_augmented(textures, images, params, self._augment)
