"""All generation-quality metrics of one set of synthetic anomalies, under honest names.

Names are ``<metric><variant><reference><suffix>``, e.g. ``kid_mask_to_defects_effnet``:

* metric: ``is`` (Inception score), ``ic_lpips`` (intra-cluster perceptual
  diversity), ``fid`` / ``kid`` (distribution distances);
* variant: ``_mask`` when only the anomalous regions are compared (crops around the
  masks, or the mask-restricted perceptual distance);
* reference: ``_to_normal`` (the real normal images) or ``_to_defects`` (the real
  defect images, when the data has them);
* suffix: the network the numbers live in (``_effnet`` for the offline
  EfficientNet-Lite0; none for the papers' Inception and LPIPS from user files).

KID values come with their std over subsets as ``<name>_std`` when
``kid_subset_size`` is set. Sets smaller than two images give NaN, never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from anomalysynth.metrics.feature_networks import FeatureNetwork, ImageFeatures, create_feature_network
from anomalysynth.metrics.frechet import frechet_distance
from anomalysynth.metrics.ic_lpips import ic_lpips
from anomalysynth.metrics.inception_score import inception_score
from anomalysynth.metrics.kernel import kernel_distance
from anomalysynth.metrics.perceptual import PerceptualDistance, create_perceptual_distance
from anomalysynth.metrics.regions import mask_crops

__all__ = ["GenerationQuality", "ImageSet"]


@dataclass
class ImageSet:
    """Images (N, C, H, W) in [0, 1] with optional masks (N, 1, H, W)."""

    images: Tensor
    masks: Tensor | None = None
    _features: dict[str, ImageFeatures] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])


class GenerationQuality:
    """Computes IS, IC-LPIPS, FID and KID (and their mask variants) of synthetic anomalies.

    Args:
        feature_network: ``"effnet"`` (offline default), ``"inception"`` (with
            ``feature_weights``) or a :class:`FeatureNetwork` instance.
        feature_weights: weights file of the feature network.
        feature_size: input size of the EfficientNet feature network (images are resized to it).
        perceptual: ``"effnet"`` (offline default), ``"lpips"`` (with
            ``perceptual_weights``, an AlexNet state dict) or a :class:`PerceptualDistance`.
        perceptual_weights: weights file of the perceptual distance.
        kid_subset_size: KID over random subsets of this size (``None``: the whole sets).
        kid_subsets: number of KID subsets.
        is_splits: Inception-score splits.
        crop_size: side of the anomalous-region crops of the mask variants.
        max_per_cluster: IC-LPIPS members compared per cluster.
        batch_size: images per network pass.
    """

    def __init__(
        self,
        feature_network: str | FeatureNetwork = "effnet",
        feature_weights: str | None = None,
        perceptual: str | PerceptualDistance = "effnet",
        perceptual_weights: str | None = None,
        kid_subset_size: int | None = None,
        kid_subsets: int = 100,
        is_splits: int = 1,
        crop_size: int = 128,
        max_per_cluster: int = 50,
        batch_size: int = 32,
        feature_size: int = 224,
    ) -> None:
        options = {"input_size": feature_size} if feature_network == "effnet" else {}
        self.features = (
            feature_network
            if isinstance(feature_network, FeatureNetwork)
            else create_feature_network(feature_network, feature_weights, **options)
        )
        self.perceptual = (
            perceptual
            if isinstance(perceptual, PerceptualDistance)
            else create_perceptual_distance(perceptual, perceptual_weights)
        )
        self.kid_subset_size = kid_subset_size
        self.kid_subsets = kid_subsets
        self.is_splits = is_splits
        self.crop_size = crop_size
        self.max_per_cluster = max_per_cluster
        self.batch_size = batch_size

    @torch.no_grad()
    def evaluate(
        self,
        synthetic: ImageSet,
        normal: ImageSet | None = None,
        defects: ImageSet | None = None,
        centres: Tensor | None = None,
    ) -> dict[str, float]:
        """Every metric that the given sets allow.

        Args:
            synthetic: the anomalous synthetic images and their masks.
            normal: real normal images (``*_to_normal``).
            defects: real defect images with their ground-truth masks (``*_to_defects``).
            centres: IC-LPIPS cluster centres; default the real defects when given, else
                the normal images.
        """
        f, p = self.features.metric_suffix, self.perceptual.metric_suffix
        out: dict[str, float] = {}
        syn = self._features(synthetic, "full")
        out[f"is{f}"] = inception_score(syn.logits, min(self.is_splits, len(syn)))[0] if len(syn) else math.nan
        syn_masks = synthetic.masks
        if syn_masks is not None:
            crops = self._features(synthetic, "mask")
            out[f"is_mask{f}"] = (
                inception_score(crops.logits, min(self.is_splits, len(crops)))[0] if len(crops) else math.nan
            )
        if centres is None:
            centres = defects.images if defects is not None else (normal.images if normal is not None else None)
        if centres is not None and len(synthetic) >= 2:
            centres = _resized(centres, synthetic.images.shape[-2:])
            per, batch = self.max_per_cluster, self.batch_size
            out[f"ic_lpips{p}"] = ic_lpips(self.perceptual, synthetic.images, centres, None, per, batch)
            if syn_masks is not None:
                out[f"ic_lpips_mask{p}"] = ic_lpips(self.perceptual, synthetic.images, centres, syn_masks, per, batch)
        for reference, name in ((normal, "normal"), (defects, "defects")):
            if reference is None:
                continue
            ref = self._features(reference, "full")
            out.update(self._distances(syn, ref, f"_to_{name}{f}"))
            if name == "defects" and syn_masks is not None and reference.masks is not None:
                out.update(
                    self._distances(
                        self._features(synthetic, "mask"), self._features(reference, "mask"), f"_mask_to_{name}{f}"
                    )
                )
        return out

    def _distances(self, a: ImageFeatures, b: ImageFeatures, tail: str) -> dict[str, float]:
        if len(a) < 2 or len(b) < 2:
            return {f"fid{tail}": math.nan, f"kid{tail}": math.nan}
        out = {f"fid{tail}": frechet_distance(a.features, b.features)}
        subset = self.kid_subset_size
        if subset is not None:
            subset = min(subset, len(a), len(b))
        kid, kid_std = kernel_distance(a.features, b.features, subset, self.kid_subsets)
        out[f"kid{tail}"] = kid
        if subset is not None:
            out[f"kid{tail}_std"] = kid_std
        return out

    def _features(self, images: ImageSet, kind: str) -> ImageFeatures:
        key = f"{self.features.name}:{kind}"
        if key not in images._features:
            batch = images.images
            if kind == "mask":
                if images.masks is None:
                    raise ValueError("Mask-restricted metrics need masks.")
                batch = mask_crops(batch, images.masks, self.crop_size)
            if batch.shape[0] == 0:
                empty = torch.empty(0, 1, dtype=torch.float64)
                images._features[key] = ImageFeatures(empty, empty)
            else:
                images._features[key] = self.features.extract(batch, self.batch_size)
        return images._features[key]


def _resized(images: Tensor, size: torch.Size) -> Tensor:
    if images.shape[-2:] == size:
        return images
    return torch.nn.functional.interpolate(images, size=tuple(size), mode="bilinear", antialias=True).clamp(0, 1)
