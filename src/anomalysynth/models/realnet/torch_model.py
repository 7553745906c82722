"""RealNet's torch model: frozen backbone, selected features, reconstruction, RRS, discriminator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalysynth.backbones import fold_batchnorms
from anomalysynth.filters import gaussian_blur
from anomalysynth.models.realnet.rrs import residual_selection, upsample_to

__all__ = [
    "RealNetModel",
    "RealNetOutput",
    "ReconstructionUNet",
    "default_dims",
    "mix_residual",
    "reconstruction_residuals",
]

# RealNet's dims for WideResNet50 (channels 256, 512, 1024, 2048)
_REFERENCE_CHANNELS = (256, 512, 1024, 2048)
_REFERENCE_DIMS = (256, 512, 512, 256)


def default_dims(channels: Sequence[int]) -> list[int]:
    """RealNet's {256, 512, 512, 256} for WideResNet50, scaled to the backbone's channels."""
    dims = []
    for k, c in enumerate(channels):
        ref = k if k < len(_REFERENCE_CHANNELS) else -1
        dims.append(max(8, min(c, round(c * _REFERENCE_DIMS[ref] / _REFERENCE_CHANNELS[ref]))))
    return dims


class RealNetOutput(NamedTuple):
    logits: Tensor  # (B, 2, H, W) discriminator logits at image size
    # (B, 1, H, W) softmax channel 1 (mixed with the residual by residual_weight; smoothed with map_sigma > 0)
    anomaly_map: Tensor
    pred_score: Tensor  # (B,) max of the score_pool-box-averaged (or score_topk mean of the) unsmoothed map
    reconstructions: list[Tensor]
    features: list[Tensor]


class RealNetModel(nn.Module):
    """RealNet (Zhang et al., CVPR 2024) on any feature extractor.

    Args:
        extractor: module returning a list (or dict) of per-level features, finest first.
        channels: channels of each level.
        dims: channels kept per level (AFS); default scaled from RealNet's.
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
    """

    residual_scale: Tensor
    residual_scale_done: Tensor

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
    ) -> None:
        super().__init__()
        dims = list(dims) if dims is not None else default_dims(channels)
        if len(dims) != len(channels):
            raise ValueError(f"`dims` needs one entry per level ({len(channels)}); got {dims}.")
        for k, (d, c) in enumerate(zip(dims, channels, strict=True)):
            if not 0 < d <= c:
                raise ValueError(f"`dims[{k}]` = {d} must lie in [1, {c}] (the layer's channels).")
        if score_pool < 1:
            raise ValueError(f"`score_pool` must be >= 1 (1: the map's plain max); got {score_pool}.")
        self.score_pool = int(score_pool)
        if not map_sigma >= 0:
            raise ValueError(f"`map_sigma` must be >= 0 (0: no smoothing); got {map_sigma}.")
        self.map_sigma = float(map_sigma)
        if not 0 <= residual_weight <= 1:
            raise ValueError(
                f"`residual_weight` must lie in [0, 1] (0: the discriminator's map alone); got {residual_weight}."
            )
        self.residual_weight = float(residual_weight)
        if not (isinstance(score_topk, int) and score_topk >= 0):
            raise ValueError(f"`score_topk` must be an int >= 0 (0: use score_pool); got {score_topk!r}.")
        self.score_topk = score_topk
        if not 0 < rrs_ratio <= 1:
            raise ValueError(f"`rrs_ratio` must lie in (0, 1]; got {rrs_ratio}.")
        self.extractor = extractor.eval().requires_grad_(False)
        self.fold_batchnorms = bool(fold_batchnorms)
        # the folded copy, built on first use; a plain dict keeps it out of the state dict
        self._folded: dict[tuple[torch.device, torch.dtype], nn.Module] = {}
        self.register_load_state_dict_post_hook(_clear_folded)
        self.channels, self.dims, self.rrs_ratio = list(channels), dims, float(rrs_ratio)
        for k, (d, c) in enumerate(zip(dims, channels, strict=True)):
            # the selected channel indices; set by AFS and saved with the model
            self.register_buffer(f"selection_{k}", torch.arange(d))
            # per-channel mean and std of the training images' features (identity until measured)
            self.register_buffer(f"feature_mean_{k}", torch.zeros(c))
            self.register_buffer(f"feature_std_{k}", torch.ones(c))
        self.register_buffer("feature_stats_done", torch.tensor(False))
        # per-level mean reconstruction residual on normal training samples (residual_weight's unit)
        self.register_buffer("residual_scale", torch.ones(len(dims)))
        self.register_buffer("residual_scale_done", torch.tensor(False))
        self.reconstruction = nn.ModuleList([ReconstructionUNet(d) for d in dims])
        total = sum(dims)
        kept = 2 * max(1, int(total * rrs_ratio) // 2)
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
            if not 0 < discriminator_feature_dims <= total:
                raise ValueError(
                    f"`discriminator_feature_dims` must lie in [1, {total}] (the selected channels); "
                    f"got {discriminator_feature_dims}."
                )
            extra = int(discriminator_feature_dims)
            self.feature_projection = nn.Conv2d(total, extra, 1)
        self.discriminator = _discriminator(kept + extra)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_folded"] = {}  # pickles (torch export) and deep copies rebuild it on use
        return state

    def _apply(self, fn: Any, recurse: bool = True) -> RealNetModel:
        self._folded.clear()  # .to(), .half(), ...: fold again from the moved extractor
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> RealNetModel:
        super().train(mode)
        self.extractor.eval()  # the backbone stays frozen
        return self

    @property
    def selections(self) -> list[Tensor]:
        return [getattr(self, f"selection_{k}") for k in range(len(self.dims))]

    def set_feature_selection(self, indices: Sequence[Tensor]) -> None:
        """Install per-level channel indices (from AFS)."""
        if len(indices) != len(self.dims):
            raise ValueError(f"Expected {len(self.dims)} index tensors; got {len(indices)}.")
        for k, (index, d, c) in enumerate(zip(indices, self.dims, self.channels, strict=True)):
            index = torch.as_tensor(index, dtype=torch.long)
            if index.shape != (d,) or int(index.min()) < 0 or int(index.max()) >= c:
                raise ValueError(f"Level {k}: expected {d} channel indices in [0, {c}); got {tuple(index.shape)}.")
            getattr(self, f"selection_{k}").copy_(index.to(getattr(self, f"selection_{k}").device))

    def set_feature_statistics(self, means: Sequence[Tensor], stds: Sequence[Tensor]) -> None:
        """Install per-level, per-channel feature means and standard deviations (all channels)."""
        if len(means) != len(self.channels) or len(stds) != len(self.channels):
            raise ValueError(f"Expected {len(self.channels)} mean and std tensors; got {len(means)} and {len(stds)}.")
        for k, (mean, std, c) in enumerate(zip(means, stds, self.channels, strict=True)):
            mean, std = torch.as_tensor(mean).flatten(), torch.as_tensor(std).flatten()
            if mean.shape != (c,) or std.shape != (c,) or not bool((std > 0).all()):
                raise ValueError(f"Level {k}: expected {c} means and {c} positive stds; got {mean.shape}, {std.shape}.")
            getattr(self, f"feature_mean_{k}").copy_(mean)
            getattr(self, f"feature_std_{k}").copy_(std)
        self.feature_stats_done.fill_(True)  # type: ignore[operator]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints saved before features were standardised: identity statistics, never re-measured
        if prefix + "selection_0" in state_dict and prefix + "feature_stats_done" not in state_dict:
            state_dict[prefix + "feature_stats_done"] = torch.tensor(True)
            for k in range(len(self.dims)):
                state_dict.setdefault(f"{prefix}feature_mean_{k}", torch.zeros_like(getattr(self, f"feature_mean_{k}")))
                state_dict.setdefault(f"{prefix}feature_std_{k}", torch.ones_like(getattr(self, f"feature_std_{k}")))
        # checkpoints saved before the residual was tracked: unit scale, marked as not measured
        if prefix + "selection_0" in state_dict and prefix + "residual_scale" not in state_dict:
            state_dict[prefix + "residual_scale"] = torch.ones_like(self.residual_scale)
            state_dict[prefix + "residual_scale_done"] = torch.tensor(False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extract(self, images: Tensor) -> list[Tensor]:
        """All channels of every level (no gradient)."""
        extractor = self.extractor
        key = (images.device, images.dtype)
        if self.fold_batchnorms and (key in self._folded or not _tracing()):
            if key not in self._folded:
                self._folded.clear()
                self._folded[key] = fold_batchnorms(self.extractor)
            extractor = self._folded[key]
        with torch.no_grad():
            features = extractor(images)
        return list(features.values()) if isinstance(features, dict) else list(features)

    def select(self, features: list[Tensor]) -> list[Tensor]:
        """The selected channels of every level, standardised by the training statistics."""
        selected = []
        for k, (f, s) in enumerate(zip(features, self.selections, strict=True)):
            mean = getattr(self, f"feature_mean_{k}").index_select(0, s).view(1, -1, 1, 1)
            std = getattr(self, f"feature_std_{k}").index_select(0, s).view(1, -1, 1, 1)
            selected.append((f.index_select(1, s) - mean) / std)
        return selected

    def forward(self, images: Tensor, features: list[Tensor] | None = None) -> RealNetOutput:
        """``features``: the extractor's output for ``images`` (all channels), if already computed."""
        features = self.select(self.extract(images) if features is None else features)
        reconstructions = [g(f) for g, f in zip(self.reconstruction, features, strict=True)]
        residuals = reconstruction_residuals(features, reconstructions)
        selected = residual_selection(residuals, self.rrs_ratio, norm=self.rrs_norm)
        if self.discriminator_features:
            upsampled = torch.cat(upsample_to(features, selected.shape[-2:]), dim=1)
            if self.feature_projection is not None:
                upsampled = self.feature_projection(upsampled)
            selected = torch.cat([selected, upsampled], dim=1)
        logits = F.interpolate(
            self.discriminator(selected), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        anomaly_map = logits.softmax(dim=1)[:, 1:2]
        if self.residual_weight > 0:
            anomaly_map = mix_residual(
                anomaly_map, self.residual_map(residuals, images.shape[-2:]), self.residual_weight
            )
        if self.score_topk > 0:
            k = min(self.score_topk, anomaly_map[0].numel())
            score = anomaly_map.flatten(1).topk(k, dim=1).values.mean(dim=1)
        else:
            pool = max(1, min(self.score_pool, *images.shape[-2:]))
            # the 16x16 box mean as two 1-D passes: 32 instead of 256 reads per pixel
            pooled = F.avg_pool2d(F.avg_pool2d(anomaly_map, (pool, 1), stride=1), (1, pool), stride=1)
            score = pooled.flatten(1).amax(dim=1)
        if self.map_sigma > 0:
            anomaly_map = gaussian_blur(anomaly_map, self.map_sigma)
        return RealNetOutput(logits, anomaly_map, score, reconstructions, features)

    def residual_map(self, residuals: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """(B, 1, *size): each level's channel-mean residual over its normal mean, averaged over levels."""
        scale = self.residual_scale.clamp_min(1e-12)
        maps = [
            F.interpolate(
                r.mean(dim=1, keepdim=True) / scale[k], size=tuple(size), mode="bilinear", align_corners=False
            )
            for k, r in enumerate(residuals)
        ]
        return torch.stack(maps).mean(dim=0)

    @torch.no_grad()
    def track_residual_scale(self, residuals: Sequence[Tensor], normal: Tensor, momentum: float = 0.95) -> None:
        """Update ``residual_scale`` from the residuals of a training batch's ``normal`` samples (bool (B,)).

        An exponential moving average of each level's mean residual (the first batch
        sets it), so it follows the reconstruction networks as they train.
        """
        if not bool(normal.any()):
            return
        means = torch.stack([r[normal].detach().float().mean() for r in residuals])
        if bool(self.residual_scale_done):
            self.residual_scale.mul_(momentum).add_(means, alpha=1 - momentum)
        else:
            self.residual_scale.copy_(means)
            self.residual_scale_done.fill_(True)


def reconstruction_residuals(features: Sequence[Tensor], reconstructions: Sequence[Tensor]) -> list[Tensor]:
    """Per level, the squared reconstruction error (F - G(F))^2, all channels."""
    return [(f - r).pow(2) for f, r in zip(features, reconstructions, strict=True)]


def mix_residual(probability: Tensor, residual: Tensor, weight: float) -> Tensor:
    """(1 - w) p + w r / (1 + r): the discriminator's probability mixed with the scaled residual, in [0, 1]."""
    return (1 - weight) * probability + weight * (residual / (1 + residual))


def _tracing() -> bool:
    """True while torch.jit / torch.onnx / torch.compile trace the model: build no copies then."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _clear_folded(module: RealNetModel, incompatible_keys: Any) -> None:
    del incompatible_keys
    module._folded.clear()  # new extractor weights: fold again on next use


class ReconstructionUNet(nn.Module):
    """Small U-Net: in = out = ``channels``, base width channels/2, mult (1, 2, 4),
    2 residual blocks per scale, GroupNorm + SiLU, zero-initialised output conv."""

    def __init__(self, channels: int, mult: Sequence[int] = (1, 2, 4), res_blocks: int = 2) -> None:
        super().__init__()
        base = max(4, channels // 2)
        widths = [base * m for m in mult]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.down.append(nn.Sequential(*[_ResBlock(prev if j == 0 else w, w) for j in range(res_blocks)]))
            prev = w
            if i < len(widths) - 1:
                self.pools.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths) - 1)):
            self.up.append(nn.Sequential(_ResBlock(prev + widths[i], widths[i]), _ResBlock(widths[i], widths[i])))
            prev = widths[i]
        out_conv = nn.Conv2d(prev, channels, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)  # type: ignore[arg-type]
        self.out = nn.Sequential(_norm(prev), nn.SiLU(), out_conv)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h)
            if i < len(self.pools):
                skips.append(h)
                h = self.pools[i](h)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
        return self.out(h)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(cin),
            nn.SiLU(),
            nn.Conv2d(cin, cout, 3, padding=1),
            _norm(cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def _norm(channels: int) -> nn.GroupNorm:
    # at most 8 groups of at least 2 channels, so even 1x1 maps normalise
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0 and (channels // g >= 2 or g == 1))
    return nn.GroupNorm(groups, channels)


def _discriminator(channels: int) -> nn.Sequential:
    width = max(16, min(128, channels))
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width // 2, 3, padding=1),
        nn.BatchNorm2d(width // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, 2, 1),
    )
