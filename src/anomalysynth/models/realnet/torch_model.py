"""RealNet's torch model: the state of every layer, and the forward pass through them in order.

features (extract, select, standardise) -> reconstruction (U-Nets, residuals) ->
discriminator (RRS, optional features) -> scoring (probability, normality terms, map,
image score). Each layer is its own module; this one owns the parameters and buffers
(so the state dict keeps its keys) and validates the arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalysynth.models.realnet.checkpoint import upgrade_state_dict
from anomalysynth.models.realnet.discriminator import discriminator_input, discriminator_network, rrs_kept_channels
from anomalysynth.models.realnet.features import (
    checked_selection,
    checked_statistics,
    default_dims,
    extract_features,
    standardise,
)
from anomalysynth.models.realnet.gaussian import GaussianNormality
from anomalysynth.models.realnet.nearest_neighbour import NearestNeighbourNormality
from anomalysynth.models.realnet.reconstruction import ReconstructionUNet, reconstruction_residuals
from anomalysynth.models.realnet.scoring import (
    AnomalyScoring,
    NormalityTerm,
    mix_residual,
    residual_map,
    term_on,
    track_residual_scale,
)

__all__ = [
    "RealNetModel",
    "RealNetOutput",
    "ReconstructionUNet",
    "default_dims",
    "mix_residual",
    "reconstruction_residuals",
]


def _scoring_setting(name: str) -> Any:
    """A model attribute that reads and writes ``model.scoring.<name>``."""
    return property(lambda self: getattr(self.scoring, name), lambda self, value: setattr(self.scoring, name, value))


class RealNetOutput(NamedTuple):
    logits: Tensor  # (B, 2, H, W) discriminator logits at image size
    # (B, 1, H, W) softmax channel 1 (mixed with the residual by residual_weight; smoothed with map_sigma > 0)
    anomaly_map: Tensor
    pred_score: Tensor  # (B,) score_topk mean (or max of the score_pool box mean) of the score's map
    reconstructions: list[Tensor]
    features: list[Tensor]


class RealNetModel(nn.Module):
    """RealNet (Zhang et al., CVPR 2024) on any feature extractor.

    Args:
        extractor: module returning a list (or dict) of per-level features, finest first.
        channels: channels of each reconstructed level.
        extra_channels: channels of further levels the extractor returns that only the
            normality terms read (e.g. a finer stride for the Gaussian); nothing
            reconstructs or selects them. :meth:`extract` returns the reconstructed levels
            first, then these, in ``extractor_order``.
        extractor_order: the extractor's output index of each level of
            ``channels + extra_channels`` (``None``: the extractor's own order, when there
            are no extra levels).
        dims: channels kept per level (AFS); default :func:`default_dims` by ``strides``.
        rrs_ratio: fraction of residual channels kept by RRS.
        fold_batchnorms: run the frozen extractor as a copy with its BatchNorms folded
            into the convolutions (same features to float rounding, about a fifth
            less backbone time); the state dict keeps the unfolded extractor.
        score_pool: side of the box averaged before the image score takes the map's
            max (RealNet: 16). Defects much smaller than the box are diluted by it.
        discriminator_features: also hand the discriminator the selected (standardised)
            features themselves, upsampled to the finest level, beside the RRS residuals
            (RealNet: residuals only).
        discriminator_feature_dims: with ``discriminator_features``, first project the
            features to this many channels with a learned 1x1 convolution (``None``: hand
            over all of them). The discriminator's first convolution dominates the
            model's cost when it sees every feature channel; this keeps it small.
        map_sigma: standard deviation in pixels of a Gaussian that smooths the returned
            anomaly map (RealNet: 0, none; anomalib's PatchCore and PaDiM smooth with 4).
            The image score is taken from the unsmoothed map.
        residual_weight: w in [0, 1]: the anomaly map becomes (1 - w) p + w r / (1 + r),
            with p the discriminator's probability and r the reconstruction residual
            (RealNet: 0, p alone). r is each level's channel mean of (F - G(F))^2,
            divided by its mean on the normal training samples (``residual_scale``,
            tracked during training) and averaged over the levels, so normal regions
            sit near r = 1. The map stays in [0, 1]; a small w (0.05) lifts defects the
            discriminator scores at 0 above the normal floor without reordering the
            pixels it does detect.
        score_topk: the image score is the mean of the ``score_topk`` largest values of
            the (unsmoothed) map instead of the ``score_pool`` box mean's max (0: off).
            Unlike a box it needs no contiguous region, so one small defect counts in
            full and several far apart add up.
        strides: the levels' strides, for the default ``dims``.
        neighbour_weight: w in [0, 1] of the nearest-neighbour normality term: the map
            becomes (1 - w) p + w n / (1 + n), with n the distance of a place's backbone
            features to the nearest normal training patch over its normal level (see
            :class:`NearestNeighbourNormality`); RealNet: 0. Needs ``neighbour_levels``.
        score_neighbour_weight: the term's weight in the map the image score reads
            (``None``: ``neighbour_weight``); ignored while ``neighbour_weight`` is 0 (the
            term is off).
        neighbour_levels: indices of the levels (of ``channels + extra_channels``) whose
            features (all channels) the nearest-neighbour term compares (``None``: no such term).
        neighbour_bank_size: patches in the term's memory bank.
        gaussian_weight: w in [0, 1] of the per-position Gaussian normality term: the
            Mahalanobis distance of a place's features to the normal images' Gaussian at
            that place (PaDiM's model, see :class:`GaussianNormality`) over its normal
            level, mixed in as w g / (1 + g); RealNet: 0. Needs ``gaussian_levels``.
        gaussian_levels: indices of the levels (of ``channels + extra_channels``) the
            Gaussian term models (``None``: no such term).
        gaussian_features: channels it keeps (a seeded random subset of those levels').
        score_gaussian_weight: its weight in the map the image score reads (``None``:
            ``gaussian_weight``); the term is on while either weight is > 0.
        score_sigma: smooth the map the image score reads with a Gaussian of this
            standard deviation in pixels before its top k or box mean (0: none).
        gaussian_map_sigma: the Gaussian term's own smoothing in the returned map
            (``None``: ``map_sigma``).
    """

    residual_scale: Tensor
    residual_scale_done: Tensor
    feature_stats_done: Tensor

    def __init__(
        self,
        extractor: nn.Module,
        channels: Sequence[int],
        dims: Sequence[int] | None = None,
        rrs_ratio: float = 1 / 3,
        fold_batchnorms: bool = True,
        score_pool: int = 16,
        discriminator_features: bool = False,
        discriminator_feature_dims: int | None = None,
        map_sigma: float = 0.0,
        residual_weight: float = 0.0,
        score_topk: int = 0,
        strides: Sequence[int] | None = None,
        neighbour_weight: float = 0.0,
        neighbour_levels: Sequence[int] | None = None,
        neighbour_bank_size: int = 4096,
        score_neighbour_weight: float | None = None,
        gaussian_weight: float = 0.0,
        gaussian_levels: Sequence[int] | None = None,
        gaussian_features: int = 64,
        score_gaussian_weight: float | None = None,
        score_sigma: float = 0.0,
        extra_channels: Sequence[int] = (),
        extractor_order: Sequence[int] | None = None,
        gaussian_map_sigma: float | None = None,
    ) -> None:
        super().__init__()
        every = [*channels, *extra_channels]
        if extractor_order is not None:
            extractor_order = [int(i) for i in extractor_order]
            if sorted(extractor_order) != list(range(len(every))):
                raise ValueError(
                    f"`extractor_order` must order the extractor's {len(every)} levels (a permutation of "
                    f"0..{len(every) - 1}); got {extractor_order}."
                )
        elif extra_channels:
            raise ValueError("`extra_channels` needs `extractor_order` (where each level comes out of the extractor).")
        self.extractor_order = extractor_order
        if dims is None:
            if strides is None:
                raise ValueError(
                    "RealNetModel needs `dims`, or the levels' `strides` to derive them from; got neither."
                )
            dims = default_dims(channels, strides)
        dims = list(dims)
        if len(dims) != len(channels):
            raise ValueError(f"`dims` needs one entry per level ({len(channels)}); got {dims}.")
        for k, (d, c) in enumerate(zip(dims, channels, strict=True)):
            if not 0 < d <= c:
                raise ValueError(f"`dims[{k}]` = {d} must lie in [1, {c}] (the layer's channels).")
        if not 0 < rrs_ratio <= 1:
            raise ValueError(f"`rrs_ratio` must lie in (0, 1]; got {rrs_ratio}.")
        self.scoring = AnomalyScoring(
            score_pool,
            score_topk,
            map_sigma,
            residual_weight,
            neighbour_weight,
            score_neighbour_weight,
            gaussian_weight,
            score_gaussian_weight,
            score_sigma,
            gaussian_map_sigma,
        )
        self.nearest_neighbour: NearestNeighbourNormality | None = None
        if neighbour_levels is not None:
            if any(not 0 <= k < len(every) for k in neighbour_levels):
                raise ValueError(f"`neighbour_levels` must index the {len(every)} levels; got {neighbour_levels}.")
            self.nearest_neighbour = NearestNeighbourNormality(
                neighbour_levels, [every[k] for k in neighbour_levels], neighbour_bank_size
            )
        elif neighbour_weight > 0:
            raise ValueError("`neighbour_weight` > 0 needs `neighbour_levels` (the levels the term compares).")
        self.gaussian: GaussianNormality | None = None
        if gaussian_levels is not None:
            if any(not 0 <= k < len(every) for k in gaussian_levels):
                raise ValueError(f"`gaussian_levels` must index the {len(every)} levels; got {gaussian_levels}.")
            self.gaussian = GaussianNormality(gaussian_levels, [every[k] for k in gaussian_levels], gaussian_features)
        elif term_on(gaussian_weight, score_gaussian_weight):
            raise ValueError("A Gaussian normality weight > 0 needs `gaussian_levels` (the levels the term models).")
        self.channels, self.dims, self.rrs_ratio = list(channels), dims, float(rrs_ratio)
        self.extra_channels = [int(c) for c in extra_channels]

        # features: the frozen extractor; the folded copy lives in a plain dict, out of the state dict
        self.extractor = extractor.eval().requires_grad_(False)
        self.fold_batchnorms = bool(fold_batchnorms)
        self._folded: dict[tuple[torch.device, torch.dtype], nn.Module] = {}
        self.register_load_state_dict_post_hook(_clear_folded)
        for k, c in enumerate(channels):
            # the selected channel indices (set by AFS) and the training images' per-channel statistics
            self.register_buffer(f"selection_{k}", torch.arange(dims[k]))
            self.register_buffer(f"feature_mean_{k}", torch.zeros(c))
            self.register_buffer(f"feature_std_{k}", torch.ones(c))
        self.register_buffer("feature_stats_done", torch.tensor(False))

        # reconstruction, and the residual's level on normal training samples (the residual term's unit)
        self.reconstruction = nn.ModuleList([ReconstructionUNet(d) for d in dims])
        self.register_buffer("residual_scale", torch.ones(len(dims)))
        self.register_buffer("residual_scale_done", torch.tensor(False))

        # discriminator: RRS-selected residuals, optionally beside the (projected) features
        total = sum(dims)
        self.rrs_norm = nn.BatchNorm2d(total, affine=False)
        self.discriminator_features = bool(discriminator_features)
        extra = total if self.discriminator_features else 0
        self.feature_projection: nn.Conv2d | None = None
        if discriminator_feature_dims is not None:
            if not self.discriminator_features:
                raise ValueError(
                    "`discriminator_feature_dims` projects the discriminator's features: it needs "
                    "`discriminator_features=True`."
                )
            if discriminator_feature_dims < 1:
                raise ValueError(f"`discriminator_feature_dims` must be >= 1; got {discriminator_feature_dims}.")
            if discriminator_feature_dims < total:  # at least as many: the features go in unprojected
                extra = int(discriminator_feature_dims)
                self.feature_projection = nn.Conv2d(total, extra, 1)
        self.discriminator = discriminator_network(rrs_kept_channels(total, rrs_ratio) + extra)

    def forward(
        self,
        images: Tensor,
        features: list[Tensor] | None = None,
        perturb: Callable[[list[Tensor]], list[Tensor]] | None = None,
    ) -> RealNetOutput:
        """``features``: the extractor's output for ``images`` (all channels), if already computed;
        ``perturb``: applied to the selected features before they are reconstructed and judged
        (training-time feature-space anomalies)."""
        raw = self.extract(images) if features is None else features
        features = self.select(raw)
        if perturb is not None:
            features = perturb(features)
        reconstructions = [g(f) for g, f in zip(self.reconstruction, features, strict=True)]
        residuals = reconstruction_residuals(features, reconstructions)
        inputs = discriminator_input(
            residuals, features, self.rrs_ratio, self.rrs_norm, self.discriminator_features, self.feature_projection
        )
        size = images.shape[-2:]
        logits = F.interpolate(self.discriminator(inputs), size=size, mode="bilinear", align_corners=False)
        anomaly_map, score = self.scoring(logits, self.normality_terms(residuals, size, raw))
        return RealNetOutput(logits, anomaly_map, score, reconstructions, features)

    # ------------------------------------------------------------------ features
    def extract(self, images: Tensor) -> list[Tensor]:
        """All channels of every level (no gradient): the reconstructed levels, then the extra ones."""
        features = extract_features(self.extractor, images, self._folded, self.fold_batchnorms)
        return features if self.extractor_order is None else [features[i] for i in self.extractor_order]

    def reconstructed(self, features: Sequence[Tensor]) -> list[Tensor]:
        """The reconstructed levels of :meth:`extract`'s output (the extra levels dropped)."""
        return list(features[: len(self.channels)])

    def select(self, features: list[Tensor]) -> list[Tensor]:
        """The selected channels of every reconstructed level, standardised by the training statistics."""
        features = self.reconstructed(features)
        levels = range(len(self.dims))
        means = [getattr(self, f"feature_mean_{k}") for k in levels]
        stds = [getattr(self, f"feature_std_{k}") for k in levels]
        return standardise(features, self.selections, means, stds)

    @property
    def selections(self) -> list[Tensor]:
        return [getattr(self, f"selection_{k}") for k in range(len(self.dims))]

    def set_feature_selection(self, indices: Sequence[Tensor]) -> None:
        """Install per-level channel indices (from AFS)."""
        for k, index in enumerate(checked_selection(indices, self.dims, self.channels)):
            buffer = getattr(self, f"selection_{k}")
            buffer.copy_(index.to(buffer.device))

    def set_feature_statistics(self, means: Sequence[Tensor], stds: Sequence[Tensor]) -> None:
        """Install per-level, per-channel feature means and standard deviations (all channels)."""
        means, stds = checked_statistics(means, stds, self.channels)
        for k, (mean, std) in enumerate(zip(means, stds, strict=True)):
            getattr(self, f"feature_mean_{k}").copy_(mean)
            getattr(self, f"feature_std_{k}").copy_(std)
        self.feature_stats_done.fill_(True)

    # ------------------------------------------------------------------ scoring
    def normality_terms(
        self, residuals: Sequence[Tensor], size: Sequence[int], raw: Sequence[Tensor] | None = None
    ) -> list[NormalityTerm]:
        """The maps mixed into the discriminator's probability (each with its weight from ``scoring``).

        ``raw``: the extractor's features (all channels), for the nearest-neighbour term. A
        term whose bank was never built (a checkpoint from before it existed) is left out.
        """
        terms = []
        if self.scoring.residual_weight > 0:
            terms.append(NormalityTerm(self.scoring.residual_weight, self.residual_map(residuals, size)))
        # the training loss never reads the map: the bank search is left out of training steps
        if self.scoring.neighbour_weight > 0 and self.neighbour_ready and raw is not None and not self.training:
            assert self.nearest_neighbour is not None
            distance = self.nearest_neighbour(raw)
            distance = F.interpolate(distance, size=tuple(size), mode="bilinear", align_corners=False)
            terms.append(NormalityTerm(self.scoring.neighbour_weight, distance, self.scoring.score_neighbour_weight))
        if self.gaussian_active and self.gaussian_ready and raw is not None and not self.training:
            assert self.gaussian is not None
            distance = F.interpolate(self.gaussian(raw), size=tuple(size), mode="bilinear", align_corners=False)
            terms.append(
                NormalityTerm(
                    self.scoring.gaussian_weight,
                    distance,
                    self.scoring.score_gaussian_weight,
                    self.scoring.gaussian_map_sigma,
                )
            )
        return terms

    @property
    def gaussian_active(self) -> bool:
        """Whether the per-position Gaussian term enters the map or the image score."""
        return term_on(self.scoring.gaussian_weight, self.scoring.score_gaussian_weight)

    @property
    def gaussian_ready(self) -> bool:
        """Whether the per-position Gaussian term is fitted."""
        return self.gaussian is not None and bool(self.gaussian.fitted)

    @property
    def neighbour_ready(self) -> bool:
        """Whether the nearest-neighbour term has its bank."""
        return self.nearest_neighbour is not None and bool(self.nearest_neighbour.fitted)

    def residual_map(self, residuals: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """(B, 1, *size): each level's channel-mean residual over its normal mean, averaged over levels."""
        return residual_map(residuals, self.residual_scale, size)

    def track_residual_scale(self, residuals: Sequence[Tensor], normal: Tensor, momentum: float = 0.95) -> None:
        """Update ``residual_scale`` from the residuals of a training batch's ``normal`` samples (bool (B,))."""
        track_residual_scale(self.residual_scale, self.residual_scale_done, residuals, normal, momentum)

    # the scoring settings, readable and settable on the model as before (a saved model can be re-scored)
    score_pool = _scoring_setting("score_pool")
    score_topk = _scoring_setting("score_topk")
    map_sigma = _scoring_setting("map_sigma")
    score_sigma = _scoring_setting("score_sigma")
    gaussian_map_sigma = _scoring_setting("gaussian_map_sigma")
    residual_weight = _scoring_setting("residual_weight")
    neighbour_weight = _scoring_setting("neighbour_weight")
    score_neighbour_weight = _scoring_setting("score_neighbour_weight")
    gaussian_weight = _scoring_setting("gaussian_weight")
    score_gaussian_weight = _scoring_setting("score_gaussian_weight")

    # ------------------------------------------------------------------ module state
    def train(self, mode: bool = True) -> RealNetModel:
        super().train(mode)
        self.extractor.eval()  # the backbone stays frozen
        return self

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        upgrade_state_dict(state_dict, prefix, self.channels)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_folded"] = {}  # pickles (torch export) and deep copies rebuild it on use
        return state

    def _apply(self, fn: Any, recurse: bool = True) -> RealNetModel:
        self._folded.clear()  # .to(), .half(), ...: fold again from the moved extractor
        return super()._apply(fn, recurse)


def _clear_folded(module: RealNetModel, incompatible_keys: Any) -> None:
    del incompatible_keys
    module._folded.clear()  # new extractor weights: fold again on next use
