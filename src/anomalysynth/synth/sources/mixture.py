"""Several anomaly sources, one chosen per sample (e.g. DTD and SDAS textures, or
MemSeg's texture and structure)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth.base import slice_params
from anomalysynth.synth.parts import AnomalySource

__all__ = ["SourceMixture"]


class SourceMixture(AnomalySource, torch.nn.Module):
    """Each sample's source is ``sources[k]`` with probability ``weights[k]``.

    Children that are ``torch.nn.Module`` s (an on-the-fly SDAS sampler) are registered
    submodules, so the synthesizer's ``.to(device)`` and ``state_dict`` reach them.

    Every child draws its parameters for every sample (cheap random numbers), prefixed
    ``"{k}."``, so parameters stay batch-first and replayable; each child then renders
    only the samples that chose it.

    Args:
        sources: the children.
        weights: relative weights (default: equal); zeros are allowed.

    Params: ``source_choice`` (the child index) and the children's, prefixed. Strength
    share: the chosen child's (1 where it has none).
    """

    def __init__(self, sources: Sequence[AnomalySource], weights: Sequence[float] | None = None) -> None:
        if not sources or not all(isinstance(s, AnomalySource) for s in sources):
            raise ValueError("`sources` must be a non-empty list of AnomalySource instances.")
        weights = [1.0] * len(sources) if weights is None else [float(w) for w in weights]
        if len(weights) != len(sources) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"`weights` must be {len(sources)} non-negative numbers with a positive sum; got {weights}."
            )
        torch.nn.Module.__init__(self)
        self.sources = list(sources)
        self.source_modules = torch.nn.ModuleList([s for s in self.sources if isinstance(s, torch.nn.Module)])
        self.weights = weights
        self._probabilities = torch.tensor(weights) / sum(weights)  # host side: drawn with CPU generators

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        probabilities = self._probabilities
        out = {"source_choice": draw(generators, lambda g: torch.multinomial(probabilities, 1, generator=g)[0])}
        for k, source in enumerate(self.sources):
            for key, value in source.sample(images, generators, params).items():
                out[f"{k}.{key}"] = value
        return out

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        out = torch.empty_like(images)
        for k, idx in self._groups(params):
            out[idx] = self.sources[k].render(images[idx], self._child(params, k, idx))
        return out

    def strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor | None:
        out = images.new_ones(images.shape[0])
        for k, idx in self._groups(params):
            share = self.sources[k].strength(images[idx], self._child(params, k, idx))
            if share is not None:
                out[idx] = share.to(out)
        return out

    def _groups(self, params: dict[str, Tensor]) -> list[tuple[int, Tensor]]:
        choice = params["source_choice"]
        groups = []
        for k in range(len(self.sources)):
            idx = torch.nonzero(choice == k).flatten()
            if idx.numel():
                groups.append((k, idx))
        return groups

    @staticmethod
    def _child(params: dict[str, Tensor], k: int, idx: Tensor) -> dict[str, Tensor]:
        prefix = f"{k}."
        own = {key[len(prefix) :]: v for key, v in params.items() if key.startswith(prefix)}
        shared = {key: v for key, v in params.items() if "." not in key}  # the mask's, for sources that read it
        return slice_params({**shared, **own}, idx)
