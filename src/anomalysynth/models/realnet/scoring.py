"""RealNet's scoring: from the discriminator's logits, and the normality terms mixed into
them, to the anomaly map and the image score.

A normality term is a map r >= 0 that sits near 1 on normal regions and grows with
how unlike the normal training data a place is: the reconstruction residual, the
nearest-neighbour distance and the per-position Gaussian distance, each over its level
on normal images. Terms enter the map as (1 - sum w_i) p + sum w_i r_i / (1 + r_i)
with p the discriminator's probability, so the map stays in [0, 1]. A new term is a
weight here plus one more entry in the model's list of terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.filters import gaussian_blur

__all__ = [
    "AnomalyScoring",
    "NormalityTerm",
    "anomaly_probability",
    "mix_normality",
    "mix_residual",
    "residual_map",
    "smoothed_map",
    "term_on",
    "track_residual_scale",
]


class NormalityTerm(NamedTuple):
    """One map mixed into the discriminator's probability."""

    weight: float  # w in [0, 1]
    map: Tensor  # (B, 1, H, W) r >= 0, near 1 on normal regions
    score_weight: float | None = None  # its weight in the map the image score reads (None: ``weight``)
    sigma: float | None = None  # its own smoothing in the returned map (None: the map's ``map_sigma``)


class AnomalyScoring:
    """How the anomaly map and the image score are made.

    Args:
        score_pool: side of the box averaged before the image score takes the map's
            max (RealNet: 16; 1: the plain max).
        score_topk: the image score is the mean of the map's ``score_topk`` largest
            values instead (0: off).
        map_sigma: standard deviation in pixels of a Gaussian that smooths the returned
            map (0: none); a term with its own ``sigma`` is smoothed by that instead (the
            map is linear in its parts, so each part is smoothed before they are added).
            The image score is taken from the unsmoothed map.
        residual_weight: the weight of the reconstruction residual's normality term
            (RealNet: 0, the discriminator's probability alone).
        neighbour_weight: the weight of the nearest-neighbour normality term (the
            distance to the nearest normal training patch; RealNet: 0).
        score_neighbour_weight: its weight in the map the image score is taken from
            (``None``: ``neighbour_weight``; unused while ``neighbour_weight`` is 0, which
            turns the term off). The image decision and the localisation can then weigh
            the two terms differently.
        gaussian_weight: the weight of the per-position Gaussian normality term (the
            Mahalanobis distance to the normal images at that place; RealNet: 0).
        score_gaussian_weight: its weight in the map the image score is taken from
            (``None``: ``gaussian_weight``).
        score_sigma: standard deviation in pixels of a Gaussian that smooths the map the
            image score is taken from, before its top k or box mean (0: none, RealNet).
            A score then rests on a neighbourhood rather than on single pixels, as
            PaDiM's and PatchCore's max of a smoothed map does.
        gaussian_map_sigma: the Gaussian normality term's own smoothing in the returned
            map (``None``: ``map_sigma``). The term is a fine map (stride 2) that needs
            little smoothing where the discriminator's coarser map needs more.

    The weights of the map (residual, neighbour, Gaussian) sum to at most 1, and so do
    the image score's.
    """

    def __init__(
        self,
        score_pool: int = 16,
        score_topk: int = 0,
        map_sigma: float = 0.0,
        residual_weight: float = 0.0,
        neighbour_weight: float = 0.0,
        score_neighbour_weight: float | None = None,
        gaussian_weight: float = 0.0,
        score_gaussian_weight: float | None = None,
        score_sigma: float = 0.0,
        gaussian_map_sigma: float | None = None,
    ) -> None:
        if score_pool < 1:
            raise ValueError(f"`score_pool` must be >= 1 (1: the map's plain max); got {score_pool}.")
        if not (isinstance(score_topk, int) and score_topk >= 0):
            raise ValueError(f"`score_topk` must be an int >= 0 (0: use score_pool); got {score_topk!r}.")
        if not map_sigma >= 0:
            raise ValueError(f"`map_sigma` must be >= 0 (0: no smoothing); got {map_sigma}.")
        if gaussian_map_sigma is not None and not gaussian_map_sigma >= 0:
            raise ValueError(
                f"`gaussian_map_sigma` must be >= 0 (0: no smoothing) or None (the map's `map_sigma`); "
                f"got {gaussian_map_sigma}."
            )
        if not score_sigma >= 0:
            raise ValueError(f"`score_sigma` must be >= 0 (0: the image score reads the raw map); got {score_sigma}.")
        if not 0 <= residual_weight <= 1:
            raise ValueError(
                f"`residual_weight` must lie in [0, 1] (0: the discriminator's map alone); got {residual_weight}."
            )
        for name, value in (
            ("neighbour_weight", neighbour_weight),
            ("score_neighbour_weight", score_neighbour_weight),
            ("gaussian_weight", gaussian_weight),
            ("score_gaussian_weight", score_gaussian_weight),
        ):
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"`{name}` must lie in [0, 1]; got {value}.")
        # the nearest-neighbour term is off while its map weight is 0; then its image-score weight is unused
        score_neighbour = neighbour_weight if score_neighbour_weight is None else score_neighbour_weight
        if neighbour_weight == 0:
            score_neighbour = 0.0
        score_gaussian = gaussian_weight if score_gaussian_weight is None else score_gaussian_weight
        if residual_weight + neighbour_weight + gaussian_weight > 1 + 1e-9:
            raise ValueError(
                "The map's normality weights must sum to at most 1; got residual_weight "
                f"{residual_weight} + neighbour_weight {neighbour_weight} + gaussian_weight {gaussian_weight}."
            )
        if residual_weight + score_neighbour + score_gaussian > 1 + 1e-9:
            raise ValueError(
                "The image score's normality weights must sum to at most 1; got residual_weight "
                f"{residual_weight} + score_neighbour_weight {score_neighbour} "
                f"+ score_gaussian_weight {score_gaussian}."
            )
        self.neighbour_weight = float(neighbour_weight)
        self.score_neighbour_weight = None if score_neighbour_weight is None else float(score_neighbour_weight)
        self.gaussian_weight = float(gaussian_weight)
        self.score_gaussian_weight = None if score_gaussian_weight is None else float(score_gaussian_weight)
        self.score_pool = int(score_pool)
        self.score_topk = score_topk
        self.map_sigma = float(map_sigma)
        self.gaussian_map_sigma = None if gaussian_map_sigma is None else float(gaussian_map_sigma)
        self.score_sigma = float(score_sigma)
        self.residual_weight = float(residual_weight)

    def __call__(self, logits: Tensor, terms: Sequence[NormalityTerm] = ()) -> tuple[Tensor, Tensor]:
        """(B, 2, H, W) logits at image size and the normality terms -> (B, 1, H, W) map and (B,) scores.

        The image score reads the map mixed with each term's ``score_weight`` (the map's
        own mix when no term has a different one), smoothed by ``score_sigma`` only.
        """
        probability = anomaly_probability(logits)
        anomaly_map = mix_normality(probability, terms)
        if any(t.score_weight is not None and t.score_weight != t.weight for t in terms):
            scored = [NormalityTerm(t.weight if t.score_weight is None else t.score_weight, t.map) for t in terms]
            score = self.image_score(mix_normality(probability, scored))
        else:
            score = self.image_score(anomaly_map)
        return smoothed_map(probability, terms, self.map_sigma, anomaly_map), score

    def image_score(self, anomaly_map: Tensor) -> Tensor:
        """(B,) the ``score_topk`` mean, else the max of the ``score_pool`` box mean, of a (B, 1, H, W) map
        (first smoothed by ``score_sigma``)."""
        if self.score_sigma > 0:
            anomaly_map = gaussian_blur(anomaly_map, self.score_sigma)
        if self.score_topk > 0:
            k = min(self.score_topk, anomaly_map[0].numel())
            return anomaly_map.flatten(1).topk(k, dim=1).values.mean(dim=1)
        pool = max(1, min(self.score_pool, *anomaly_map.shape[-2:]))
        # the 16x16 box mean as two 1-D passes: 32 instead of 256 reads per pixel
        pooled = F.avg_pool2d(F.avg_pool2d(anomaly_map, (pool, 1), stride=1), (1, pool), stride=1)
        return pooled.flatten(1).amax(dim=1)


def term_on(weight: float, score_weight: float | None) -> bool:
    """Whether a normality term enters the map (``weight``) or the image score (``score_weight``)."""
    return weight > 0 or (score_weight is not None and score_weight > 0)


def anomaly_probability(logits: Tensor) -> Tensor:
    """(B, 1, H, W) the discriminator's probability of "anomalous" (softmax channel 1)."""
    return logits.softmax(dim=1)[:, 1:2]


def mix_normality(probability: Tensor, terms: Sequence[NormalityTerm]) -> Tensor:
    """(1 - sum w_i) p + sum w_i r_i / (1 + r_i): in [0, 1] while the weights sum to at most 1
    (each term's ``weight``; its ``score_weight`` is for :class:`AnomalyScoring`)."""
    active, total = _active_terms(terms)
    if not active:
        return probability
    mixed = (1 - total) * probability
    for term in active:
        mixed = mixed + term.weight * _squashed(term)
    return mixed


def smoothed_map(
    probability: Tensor, terms: Sequence[NormalityTerm], sigma: float, mixed: Tensor | None = None
) -> Tensor:
    """:func:`mix_normality`'s map smoothed by ``sigma`` (0: none), each term that has its own
    ``sigma`` smoothed by that one instead. ``mixed``: the unsmoothed mix, when already made."""
    active, total = _active_terms(terms)
    own = [t.sigma is not None and t.sigma != sigma for t in active]
    if not any(own):
        return _blurred(mix_normality(probability, terms) if mixed is None else mixed, sigma)
    # the mix is linear in its parts: smooth the shared part once, each term with its own sigma apart
    shared = (1 - total) * probability
    for term, separate in zip(active, own, strict=True):
        if not separate:
            shared = shared + term.weight * _squashed(term)
    out = _blurred(shared, sigma)
    for term, separate in zip(active, own, strict=True):
        if separate:
            assert term.sigma is not None
            out = out + term.weight * _blurred(_squashed(term), term.sigma)
    return out


def _active_terms(terms: Sequence[NormalityTerm]) -> tuple[list[NormalityTerm], float]:
    """The terms with a weight > 0 and their summed weight, checked to be at most 1."""
    active = [t for t in terms if t.weight > 0]
    total = sum(t.weight for t in active)
    if total > 1 + 1e-9:
        raise ValueError(f"The normality terms' weights must sum to at most 1; got {total}.")
    return active, total


def _squashed(term: NormalityTerm) -> Tensor:
    """r / (1 + r): a term's map as it enters the mix, in [0, 1)."""
    return term.map / (1 + term.map)


def _blurred(image: Tensor, sigma: float) -> Tensor:
    """``image`` smoothed by a Gaussian of ``sigma`` pixels (0: as it is)."""
    return gaussian_blur(image, sigma) if sigma > 0 else image


def mix_residual(probability: Tensor, residual: Tensor, weight: float) -> Tensor:
    """(1 - w) p + w r / (1 + r): the discriminator's probability mixed with the scaled residual, in [0, 1]."""
    return mix_normality(probability, [NormalityTerm(weight, residual)])


def residual_map(residuals: Sequence[Tensor], scale: Tensor, size: Sequence[int]) -> Tensor:
    """(B, 1, *size): each level's channel-mean residual over its normal mean ``scale[k]``, averaged over levels."""
    scale = scale.clamp_min(1e-12)
    maps = [
        F.interpolate(r.mean(dim=1, keepdim=True) / scale[k], size=tuple(size), mode="bilinear", align_corners=False)
        for k, r in enumerate(residuals)
    ]
    return torch.stack(maps).mean(dim=0)


@torch.no_grad()
def track_residual_scale(
    scale: Tensor, done: Tensor, residuals: Sequence[Tensor], normal: Tensor, momentum: float = 0.95
) -> None:
    """Update the per-level ``scale`` (and the bool ``done``) in place from the residuals of a batch's
    ``normal`` samples (bool (B,)).

    An exponential moving average of each level's mean residual (the first batch sets
    it), so it follows the reconstruction networks as they train.
    """
    if not bool(normal.any()):
        return
    means = torch.stack([r[normal].detach().float().mean() for r in residuals])
    if bool(done):
        scale.mul_(momentum).add_(means, alpha=1 - momentum)
    else:
        scale.copy_(means)
        done.fill_(True)
