"""Mixing several synthesizers: each sample is made by one of them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth.base import Synthesizer, slice_params

__all__ = ["OneOf"]


class OneOf(Synthesizer):
    """Each sample is synthesized by one child, chosen with probability ``weights``.

    The children's parameters are drawn for every sample (they are cheap random
    numbers), so parameters stay batch-first and replayable; each child then runs
    once on the samples that chose it. ``params["choice"]`` is the child index.

    Args:
        synthesizers: the children.
        weights: relative weight of each child (default: equal).
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.

    Example:
        >>> from anomalysynth.synth import CutPaste, PerlinTextureBlend
        >>> mix = OneOf([CutPaste(), PerlinTextureBlend()], weights=[1, 3])
        >>> mix(torch.rand(2, 3, 32, 32), generator=torch.Generator().manual_seed(0)).params["choice"].shape
        torch.Size([2])
    """

    def __init__(
        self,
        synthesizers: Sequence[Synthesizer],
        weights: Sequence[float] | None = None,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if not synthesizers or not all(isinstance(s, Synthesizer) for s in synthesizers):
            raise ValueError("`synthesizers` must be a non-empty list of Synthesizer instances.")
        weights = [1.0] * len(synthesizers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(synthesizers) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"`weights` must be {len(synthesizers)} non-negative numbers with a positive sum; got {weights}."
            )
        self.synthesizers = torch.nn.ModuleList(synthesizers)
        self.register_buffer("weights", torch.tensor(weights) / sum(weights), persistent=False)

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        weights = self.weights.cpu() if isinstance(self.weights, Tensor) else torch.as_tensor(self.weights)
        params = {"choice": draw(generators, lambda g: torch.multinomial(weights, 1, generator=g)[0])}
        for k, child in enumerate(self._children()):
            for key, value in child._sample_params(images, generators).items():
                params[f"{k}.{key}"] = value.cpu()
        return params

    def _children(self) -> list[Synthesizer]:
        return [child for child in self.synthesizers if isinstance(child, Synthesizer)]

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        b, _, h, w = images.shape
        image = images.clone()
        mask = images.new_zeros(b, 1, h, w)
        strength = images.new_zeros(b)
        for k, child in enumerate(self._children()):
            idx = torch.nonzero(params["choice"] == k).flatten()
            if idx.numel() == 0:
                continue
            prefix = f"{k}."
            child_params = {key[len(prefix) :]: v for key, v in params.items() if key.startswith(prefix)}
            out = child._run(images[idx], slice_params(child_params, idx), None)
            image[idx], mask[idx], strength[idx] = out.image, out.mask, out.strength
        return image, mask, strength
