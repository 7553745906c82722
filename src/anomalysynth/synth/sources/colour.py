"""Texture colour for image sources: RGB, grey, or grey for grey images stored as RGB."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth import dispatch
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.base import slice_params
from anomalysynth.synth.textures import match_channels

__all__ = ["TEXTURE_COLOURS", "check_colour", "coloured_and_augmented", "grey_textures"]

TEXTURE_COLOURS = ("auto", "rgb", "grey")


def check_colour(colour: str) -> str:
    if colour not in TEXTURE_COLOURS:
        raise ValueError(f"`texture_colour` must be one of {TEXTURE_COLOURS}; got {colour!r}.")
    return colour


def grey_textures(colour: str, images: Tensor) -> Tensor:
    """(B,) bool: which samples get a grey texture (``"auto"``: images whose channels are all equal)."""
    if colour == "auto" and images.shape[1] == 3:
        return dispatch.channels_equal(images)
    return torch.full((images.shape[0],), colour != "rgb" or images.shape[1] == 1)


def coloured_and_augmented(
    textures: Tensor, images: Tensor, params: dict[str, Tensor], augment: TextureAugment | None
) -> Tensor:
    """(B, 3, H, W) textures matched to the images' channels (grey where
    ``params["texture_grey"]``, augmented as one channel and written to every channel),
    then augmented with the ``aug_*`` parameters."""
    channels = images.shape[1]
    grey = params.get("texture_grey")
    if channels == 1 or grey is None or not bool(grey.any()):
        textures = match_channels(textures, channels)
        return dispatch.augment_textures(augment, textures, params) if augment is not None else textures
    out = torch.empty_like(images)
    for is_grey in (True, False):
        idx = torch.nonzero(grey.to(images.device) == is_grey).flatten()
        if idx.numel():
            sub = match_channels(textures[idx], 1 if is_grey else channels)
            if augment is not None:
                sub = dispatch.augment_textures(augment, sub, slice_params(params, idx))
            out[idx] = sub.expand(-1, channels, -1, -1)
    return out
