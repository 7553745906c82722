"""RealNet as an anomalib module: Engine, CLI, metrics, visualizer and export work with it."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import Tensor
from tqdm.auto import tqdm

from anomalysynth.backbones import create_timm_model
from anomalysynth.models.preprocess import pre_process
from anomalysynth.models.realnet.checkpoint import upgrade_state_dict
from anomalysynth.models.realnet.feature_anomalies import FeatureNoiseAnomalies, FeatureNoiseDraw
from anomalysynth.models.realnet.features import FeatureStatistics, default_dims
from anomalysynth.models.realnet.reconstruction import reconstruction_residuals
from anomalysynth.models.realnet.scoring import term_on
from anomalysynth.models.realnet.torch_model import RealNetModel
from anomalysynth.seeding import keyed_generators
from anomalysynth.selection import AFSPlan, save_indices, train_loader

__all__ = ["RealNet"]

_LEVEL_REDUCTIONS = (4, 8, 16, 32)


def cosine_learning_rate(lr: float, step: int, steps: float | None) -> float:
    """``lr`` annealed to 0 by a half cosine at optimizer step ``step`` of ``steps`` (``lr`` while
    ``steps`` is unknown or infinite, e.g. ``max_epochs=-1``)."""
    if steps is None or not math.isfinite(steps) or steps <= 0:
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


class RealNet(AnomalibModule):
    """RealNet (Zhang et al., CVPR 2024): feature reconstruction with anomaly-aware
    feature selection, reconstruction residual selection and a discriminator.

    Trains on synthetic anomalies: batches need ``source_image`` (wrap the
    datamodule in :class:`~anomalysynth.datamodules.SyntheticAnomalyDataModule` or
    add :class:`~anomalysynth.callbacks.SynthesizeOnDevice` to a plain anomalib
    datamodule). Add :class:`~anomalysynth.callbacks.AnomalyAwareFeatureSelection` to
    choose the channels by AFS on either route (with ``SynthesizeOnDevice`` it makes its
    anomalous triplets with that callback's synthesizer); without it the first
    ``dims[k]`` channels are used.

    Before fit, :meth:`warm_up` passes over the training data in a fixed order: AFS
    (when requested and not yet done), then the feature statistics (when
    ``standardize_features`` and not yet measured), then the nearest-neighbour bank
    and the per-position Gaussian in one pass over the clean images (each when its
    term is on and not yet fitted).

    Args:
        backbone: timm name; the default has offline weights.
        weights: a weights file for backbones without offline weights.
        dims: channels kept per level (default: RealNet's {256, 512, 512, 256} for
            WideResNet50 scaled by stride, :func:`~anomalysynth.models.realnet.default_dims`).
        rrs_ratio: fraction of residual channels kept by RRS.
        lr: Adam learning rate (the first step's, under ``lr_schedule="cosine"``).
        lr_schedule: ``"cosine"`` anneals the learning rate from ``lr`` to 0 over the
            run's optimizer steps (``max_steps``, else ``max_epochs`` as
            :class:`~anomalysynth.callbacks.EpochsForMinSteps` leaves them), step by step
            as ``torch.optim.lr_scheduler.CosineAnnealingLR`` would with ``T_max`` the
            run's steps: the last weights are taken after small steps rather than from
            the middle of full-size ones. ``"constant"``: ``lr`` throughout (RealNet,
            and the shipped choice: cosine lost DeepPCB's validation image AUROC by 11
            points, 0.870 to 0.760, and traded BSData's by 1.1 for 0.2 of pixel AUROC;
            README, "The shipped recipe on real data"). A run that ``max_time`` ends
            early stops part-way down the curve.
        standardize_features: before training, measure each backbone channel's mean and
            std on the clean training images (``feature_stats_batches`` batches) and
            reconstruct standardised features. RealNet's WideResNet features are
            post-ReLU and of order 1; EfficientNet's block outputs are linear with stds
            of 2-10, which without this makes the feature MSE (about 200 at the start)
            swamp the segmentation loss. Saved with the model, measured once.
        feature_stats_batches: training batches used to measure the statistics.
        score_pool: the image score is the max of the anomaly map averaged over
            ``score_pool`` x ``score_pool`` boxes (RealNet: 16; 1 is the plain max).
        levels: backbone strides whose features are reconstructed (RealNet: 4, 8, 16,
            32); adding 2 gives a finer anomaly map at about four times the
            discriminator's cost. Default dims of a stride-2 level keep all its channels.
        discriminator_features: hand the discriminator the selected features as well as
            the RRS residuals (RealNet: residuals only), so it can also judge what the
            features look like, not only how well they were reconstructed.
        discriminator_feature_dims: with ``discriminator_features``, project the
            features to this many channels (a learned 1x1 convolution) before the
            discriminator; ``None`` (or at least as many as are selected) hands over
            all of them; ignored without ``discriminator_features``. The discriminator's first
            convolution then costs a fraction of what it costs on every channel.
        map_sigma: smooth the anomaly map with a Gaussian of this standard deviation in
            pixels (RealNet: 0, none; anomalib's PatchCore and PaDiM use 4). RealNet's
            map comes from the stride-4 level; smoothing spreads it over defects a few
            pixels wide. The Gaussian term is smoothed by ``gaussian_map_sigma`` instead.
            The shipped 4 with the Gaussian unsmoothed ranked first on the validation
            halves of both real sets (README, "The shipped recipe on real data", choice 9).
            The image score is taken from the unsmoothed map.
        residual_weight: w in [0, 1]: the anomaly map becomes (1 - w) p + w r / (1 + r),
            p the discriminator's probability, r the reconstruction residual (each
            level's channel mean of (F - G(F))^2 over its mean on normal training
            samples, averaged over the levels; RealNet: w = 0). The discriminator
            scores defects unlike any synthetic anomaly at 0, tied with the normal
            floor; the residual still ranks them above it. The map stays in [0, 1].
        score_topk: the image score is the mean of the map's ``score_topk`` largest
            values (0: the ``score_pool`` box mean's max, RealNet's score). The shipped
            1 is the plain max of the map the image score reads, which scored higher
            than the top 10 or 50 on the validation halves once that map carries the
            Gaussian term (README, "The shipped recipe on real data").
        neighbour_weight: w in [0, 1] of the nearest-neighbour normality term: the map
            becomes (1 - w - residual_weight - gaussian_weight) p + w n / (1 + n) (+ the
            other terms),
            where n is the distance of a place's backbone features (all channels of
            ``neighbour_levels``, averaged over 3x3 neighbourhoods, PatchCore's zero
            padding counted at the border) to the nearest
            patch of a coreset of the normal training images, over its mean on held-out
            normal images (RealNet: 0). It needs no anomaly to have been seen, so it
            ranks defects unlike every synthetic anomaly.
        score_neighbour_weight: the nearest-neighbour term's weight in the map the
            image score is taken from (``None``: ``neighbour_weight``; ignored while
            ``neighbour_weight`` is 0, which turns the term off). The shipped 0.35
            against the map's 0.15: on the validation halves the image decision gained
            from more of the distance (BSData's pits are new patches), the localisation
            did not (see the README, "The shipped recipe on real data").
        neighbour_levels: backbone strides the nearest-neighbour term compares (strides
            outside ``levels`` are extracted for it alone).
        neighbour_bank_size: patches in its memory bank (a greedy k-center coreset
            built in the warm-up and saved with the model).
        gaussian_weight: w in [0, 1] of the per-position Gaussian normality term: the
            Mahalanobis distance of a place's features (``gaussian_features`` seeded
            random channels of ``gaussian_levels``) to the Gaussian of the normal
            training images at that place (PaDiM's model, fitted in the warm-up and saved
            with the model), over its mean on held-out normal images, mixed in as
            w g / (1 + g) (RealNet: 0). Where the objects are aligned it compares a place
            with what is normal there.
        score_gaussian_weight: its weight in the map the image score is taken from
            (``None``: ``gaussian_weight``); the term is on while either is > 0. The
            shipped 0.55 with the distance's 0.35 leaves the discriminator 0.1 of the
            image score; at 0 DeepPCB's validation image AUROC fell to chance.
        gaussian_levels: backbone strides the Gaussian term models; strides outside
            ``levels`` are extracted for it alone (nothing reconstructs them). The shipped
            stride 2 alone (a 128x128 grid at 256 px; not PaDiM's three layers, nor stride
            4, strides 4 and 8, or strides 2 and 4) ranked first on the validation halves of both real sets,
            for the image score and the map.
        gaussian_features: channels it keeps (the shipped 16: every channel of stride 2).
        gaussian_map_sigma: the Gaussian term's own smoothing in the anomaly map, a
            standard deviation in pixels (``None``: ``map_sigma``). Its stride-2 map is
            fine already: the shipped 0 leaves it as it is while the discriminator's and
            the nearest-neighbour term's coarser maps are smoothed by ``map_sigma``.
        score_sigma: smooth the map the image score is taken from with a Gaussian of
            this standard deviation in pixels before the top k (0: none, RealNet), so a
            score rests on a neighbourhood rather than on single pixels.
        feature_anomalies: probability that a normal training sample (one without a
            synthetic anomaly) also becomes an anomaly in feature space: SimpleNet's
            Gaussian noise (:class:`~anomalysynth.features.GaussianFeatureNoise`) on its
            selected, standardised features before they are reconstructed and judged, so
            the residuals and the discriminator's features carry it alike; the
            segmentation label is 1 where the noise went. 0 (the default): off, training
            unchanged. Draws are keyed by the Lightning seed (``seed_everything``), rank,
            epoch, batch index and sample, so runs repeat.
        feature_noise_std: the noise's standard deviation (SimpleNet: 0.015). With
            ``standardize_features`` it is added to features of unit std per channel (on
            the clean training images).
        feature_anomaly_mask: where the noise goes: ``"perlin"``, under a DRAEM Perlin
            mask drawn at image size (SuperSimpleNet; coarser levels are noised wherever
            a cell covers the mask); ``"whole"``, the whole map (SimpleNet).
        init_weights: a RealNet checkpoint (Lightning ``.ckpt``) to start from, for
            fine-tuning (e.g. few-shot); its AFS indices come with it, so AFS is not
            recomputed. Unlike ``--ckpt_path`` this resets the optimizer and epoch count.
        pre_processor, post_processor, evaluator, visualizer: as anomalib's modules.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0.offline_in1k",
        weights: str | None = None,
        dims: Sequence[int] | None = None,
        rrs_ratio: float = 1 / 3,
        lr: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        init_weights: str | Path | None = None,
        standardize_features: bool = True,
        feature_stats_batches: int = 8,
        score_pool: int = 16,
        levels: Sequence[int] = _LEVEL_REDUCTIONS,
        discriminator_features: bool = True,
        discriminator_feature_dims: int | None = 64,
        map_sigma: float = 4.0,
        residual_weight: float = 0.0,
        score_topk: int = 1,
        neighbour_weight: float = 0.15,
        score_neighbour_weight: float | None = 0.35,
        neighbour_levels: Sequence[int] = (8, 16),
        neighbour_bank_size: int = 8192,
        gaussian_weight: float = 0.2,
        score_gaussian_weight: float | None = 0.55,
        gaussian_levels: Sequence[int] = (2,),
        gaussian_features: int = 16,
        gaussian_map_sigma: float | None = 0.0,
        score_sigma: float = 0.0,
        feature_anomalies: float = 0.0,
        feature_noise_std: float = 0.015,
        feature_anomaly_mask: Literal["perlin", "whole"] = "perlin",
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        self.feature_noise = FeatureNoiseAnomalies(feature_anomalies, feature_noise_std, feature_anomaly_mask)
        probe: Any = create_timm_model(backbone, weights=weights, features_only=True, pretrained_strict=False)
        reductions = probe.feature_info.reduction()
        levels = sorted({int(r) for r in levels})
        if not levels or not set(levels) <= set(reductions):
            raise ValueError(
                f"{backbone} has feature reductions {reductions}; `levels` {levels} must name one level each."
            )
        neighbour = sorted({int(r) for r in neighbour_levels})
        if neighbour_weight <= 0:  # off: built (as before) on the reconstructed levels only, never extracted for it
            neighbour = [r for r in neighbour if r in levels]
        gaussian_on = term_on(gaussian_weight, score_gaussian_weight)
        gaussian = sorted({int(r) for r in gaussian_levels}) if gaussian_on else []
        for name, strides in (("neighbour_levels", neighbour), ("gaussian_levels", gaussian)):
            if not set(strides) <= set(reductions):
                raise ValueError(
                    f"{backbone} has feature reductions {reductions}; `{name}` {strides} must be among them."
                )
        # the extractor also returns the strides only a normality term reads (e.g. the Gaussian's stride 2)
        extra = sorted(set(neighbour + gaussian) - set(levels))
        extracted = sorted(set(levels) | set(extra))
        out_indices = [reductions.index(r) for r in extracted]
        extractor: Any = create_timm_model(backbone, weights=weights, features_only=True, out_indices=out_indices)
        every_channels = extractor.feature_info.channels()
        order = [extracted.index(r) for r in levels + extra]  # reconstructed levels first, then the extra ones
        channels = [every_channels[i] for i in order[: len(levels)]]
        strides = levels + extra  # the levels of RealNetModel.extract's output
        self.model: RealNetModel = RealNetModel(
            extractor,
            channels,
            dims if dims is not None else default_dims(channels, levels),
            rrs_ratio,
            score_pool=score_pool,
            discriminator_features=discriminator_features,
            discriminator_feature_dims=discriminator_feature_dims if discriminator_features else None,
            map_sigma=map_sigma,
            residual_weight=residual_weight,
            score_topk=score_topk,
            neighbour_weight=neighbour_weight,
            neighbour_levels=[strides.index(r) for r in neighbour] or None,
            neighbour_bank_size=neighbour_bank_size,
            score_neighbour_weight=score_neighbour_weight,
            gaussian_weight=gaussian_weight,
            gaussian_levels=[strides.index(r) for r in gaussian] or None,
            gaussian_features=gaussian_features,
            score_gaussian_weight=score_gaussian_weight,
            score_sigma=score_sigma,
            extra_channels=[every_channels[i] for i in order[len(levels) :]],
            extractor_order=order if extra else None,
            gaussian_map_sigma=gaussian_map_sigma,
        )
        self.lr = float(lr)
        if lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"`lr_schedule` must be 'cosine' or 'constant'; got {lr_schedule!r}.")
        self.lr_schedule = lr_schedule
        self._scheduled_steps: float | None = None
        if feature_stats_batches < 1:
            raise ValueError(f"`feature_stats_batches` must be >= 1; got {feature_stats_batches}.")
        self.standardize_features = bool(standardize_features)
        self.feature_stats_batches = int(feature_stats_batches)
        self.register_buffer("afs_done", torch.tensor(False))
        self._feature_selection_plan: AFSPlan | None = None
        if init_weights is not None:
            self.load_weights(init_weights)

    def load_weights(self, path: str | Path) -> None:
        """Load the model weights and AFS indices of a RealNet checkpoint (``weights_only``)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"`init_weights`: no checkpoint at {str(path)!r}; pass a RealNet .ckpt file.")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"`init_weights`: {str(path)!r} holds no state dict.")
        wanted = {k: v for k, v in state.items() if k.startswith("model.") or k == "afs_done"}
        upgrade_state_dict(wanted, "model.", self.model.channels)
        # the normality terms size themselves to the saved ones, and older checkpoints have none
        own = {
            k
            for k in self.state_dict()
            if (k.startswith("model.") or k == "afs_done")
            and not k.startswith(("model.nearest_neighbour.", "model.gaussian."))
        }
        missing = sorted(own - wanted.keys())
        mismatched = sorted(k for k in own & wanted.keys() if self.state_dict()[k].shape != wanted[k].shape)
        if missing or mismatched:
            raise ValueError(
                f"`init_weights`: {str(path)!r} does not fit this RealNet (backbone/dims differ): "
                f"missing {missing[:3]}, shape mismatch {mismatched[:3]}."
            )
        self.load_state_dict(wanted, strict=False)

    # ------------------------------------------------------------------ AFS protocol
    @property
    def afs_dims(self) -> list[int]:
        return list(self.model.dims)

    def afs_features(self, images: Tensor) -> list[Tensor]:
        """All channels of every reconstructed level for raw (B, C, H, W) images in [0, 1]."""
        return self.model.reconstructed(self.model.extract(self._pre(images)))

    def set_feature_selection(self, indices: Sequence[Tensor]) -> None:
        self.model.set_feature_selection(indices)
        self.afs_done.fill_(True)  # type: ignore[operator]

    @property
    def feature_selection_done(self) -> bool:
        return bool(self.afs_done)

    def request_feature_selection(self, plan: AFSPlan) -> None:
        """Run ``plan`` as the first step of the next :meth:`warm_up` (the AFS callback calls this in ``setup``)."""
        self._feature_selection_plan = plan

    # ------------------------------------------------------------------ warm-up and training
    def on_fit_start(self) -> None:
        trainer = self.trainer
        try:
            self.warm_up(
                train_loader(trainer),
                self._feature_selection_plan,
                write_cache=trainer.is_global_zero,
                progress=trainer.is_global_zero,
            )
        finally:
            self._feature_selection_plan = None

    def warm_up(
        self, loader: Any, feature_selection: AFSPlan | None = None, write_cache: bool = True, progress: bool = True
    ) -> None:
        """The passes over the training data before fit, in this order:

        1. AFS with ``feature_selection`` (see :class:`~anomalysynth.selection.AFSPlan`), unless
           the channels are already selected (a checkpoint, ``init_weights``);
        2. the feature statistics (:meth:`measure_feature_statistics`), when
           ``standardize_features`` and not yet measured. They cover every channel, so
           they do not depend on step 1; the order is fixed all the same.

        3. the nearest-neighbour term's memory bank (:meth:`fit_nearest_neighbour`), when
           ``neighbour_weight`` > 0 and not yet built, and the per-position Gaussian
           (:meth:`fit_gaussian`), when on and not yet fitted, in one pass.

        ``loader`` yields raw training batches; each step iterates it afresh.
        """
        if feature_selection is not None and not self.feature_selection_done:
            feature_selection.apply(self, loader, self.device, write_cache=write_cache, progress=progress)
        if self.standardize_features and not bool(self.model.feature_stats_done):
            self.measure_feature_statistics(loader)
        terms: list[Any] = []
        if self.model.neighbour_weight > 0 and not self.model.neighbour_ready:
            terms.append(self.model.nearest_neighbour)
        if self.model.gaussian_active and not self.model.gaussian_ready:
            terms.append(self.model.gaussian)
        if terms:
            self._fit_normality_terms(loader, terms, progress)

    def fit_nearest_neighbour(self, loader: Any, progress: bool = True) -> None:
        """Build the nearest-neighbour term's bank from the clean images of every batch of ``loader``.

        ``loader`` yields raw batches as in :meth:`measure_feature_statistics`; also for
        models trained before the term existed (their checkpoints carry no bank).
        """
        if self.model.nearest_neighbour is None:
            raise ValueError("RealNet: this model has no nearest-neighbour term (`neighbour_levels` is empty).")
        self._fit_normality_terms(loader, [self.model.nearest_neighbour], progress)

    def fit_gaussian(self, loader: Any, progress: bool = True) -> None:
        """Fit the per-position Gaussian term on the clean images of every batch of ``loader``
        (raw batches as in :meth:`measure_feature_statistics`)."""
        if self.model.gaussian is None:
            raise ValueError(
                "RealNet: this model has no Gaussian normality term (set `gaussian_weight` or `score_gaussian_weight`)."
            )
        self._fit_normality_terms(loader, [self.model.gaussian], progress)

    @torch.no_grad()
    def _fit_normality_terms(self, loader: Any, terms: list[Any], progress: bool) -> None:
        """One pass over the clean images of ``loader`` that fits every term in ``terms``."""
        embeddings: list[list[Tensor]] = [[] for _ in terms]
        names = " and ".join(
            "nearest-neighbour bank" if t is self.model.nearest_neighbour else "Gaussian" for t in terms
        )
        for batch in tqdm(loader, desc=names[0].upper() + names[1:], leave=False, disable=not progress):
            images = getattr(batch, "source_image", None)
            images = batch.image if images is None else images
            raw = self.model.extract(self._pre(images.to(self.device)))
            for term, store in zip(terms, embeddings, strict=True):
                store.append(term.embed(raw).cpu())
        if not embeddings[0]:
            raise ValueError(f"RealNet: the training data loader gave no batches to build the {names}.")
        for term, store in zip(terms, embeddings, strict=True):
            term.fit(torch.cat(store))
            term.to(self.device)

    @torch.no_grad()
    def measure_feature_statistics(self, loader: Any) -> None:
        """Per-channel mean and std of the backbone features of clean training images.

        ``loader`` yields raw batches (before the pre-processor); ``source_image`` is
        used when the batches have it (synthetic training data), else ``image``; up to
        ``feature_stats_batches`` batches, accumulated in float64.
        """
        statistics = FeatureStatistics()
        for images in self._clean_images(loader, "Feature statistics"):
            statistics.update(self.model.reconstructed(self.model.extract(images)))
        if not statistics.counts:
            raise ValueError("RealNet: the training data loader gave no batches to measure feature statistics on.")
        self.model.set_feature_statistics(*statistics.result())

    def _clean_images(self, loader: Any, desc: str) -> Iterator[Tensor]:
        """Pre-processed clean images of up to ``feature_stats_batches`` raw batches, on the module's device:
        ``source_image`` when the batches have it (synthetic training data), else ``image``."""
        batches = tqdm(loader, total=self.feature_stats_batches, desc=desc, leave=False)
        for i, batch in enumerate(batches):
            if i >= self.feature_stats_batches:
                break
            images = getattr(batch, "source_image", None)
            images = batch.image if images is None else images
            yield self._pre(images.to(self.device))

    @torch.no_grad()
    def measure_residual_scale(self, loader: Any) -> None:
        """Measure ``residual_scale`` on clean images: for models trained before it was tracked.

        ``loader`` yields raw batches as in :meth:`measure_feature_statistics` (up to
        ``feature_stats_batches`` of them); each level's mean residual of the model in
        eval mode replaces the scale.
        """
        was_training = self.model.training
        self.model.eval()
        sums: Tensor | None = None
        count = 0
        try:
            for images in self._clean_images(loader, "Residual scale"):
                out = self.model(images)
                means = torch.stack(
                    [r.double().mean() for r in reconstruction_residuals(out.features, out.reconstructions)]
                )
                sums = means * len(images) if sums is None else sums + means * len(images)
                count += len(images)
        finally:
            self.model.train(was_training)
        if sums is None:
            raise ValueError("RealNet: the data loader gave no batches to measure the residual scale on.")
        self.model.residual_scale.copy_((sums / count).float())
        self.model.residual_scale_done.fill_(True)

    def on_validation_start(self) -> None:
        self._warn_unmeasured_residual()

    def on_test_start(self) -> None:
        self._warn_unmeasured_residual()

    def on_predict_start(self) -> None:
        self._warn_unmeasured_residual()

    def _warn_unmeasured_residual(self) -> None:
        if self.model.neighbour_weight > 0 and not self.model.neighbour_ready:
            warnings.warn(
                "RealNet: `neighbour_weight` > 0 but this model has no nearest-neighbour bank (the checkpoint "
                "predates it), so the term is left out of the map. Call "
                "`fit_nearest_neighbour(datamodule.train_dataloader())` first.",
                stacklevel=2,
            )
        if self.model.gaussian_active and not self.model.gaussian_ready:
            warnings.warn(
                "RealNet: the Gaussian normality term is on but was never fitted (the checkpoint predates it), so "
                "it is left out of the map. Call `fit_gaussian(datamodule.train_dataloader())` first.",
                stacklevel=2,
            )
        if self.model.residual_weight > 0 and not bool(self.model.residual_scale_done):
            warnings.warn(
                "RealNet: `residual_weight` > 0 but this model's normal residual level was never measured (it is "
                "tracked while training; the checkpoint predates it), so the residual enters the map unscaled. "
                "Call `measure_residual_scale(datamodule.train_dataloader())` first, or use residual_weight=0.",
                stacklevel=2,
            )

    def on_train_epoch_start(self) -> None:
        # the run's optimizer steps, read once callbacks such as EpochsForMinSteps have set max_epochs
        if self.lr_schedule == "cosine":
            self._scheduled_steps = float(self.trainer.estimated_stepping_batches)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.lr_schedule == "constant":
            return
        lr = cosine_learning_rate(self.lr, self.trainer.global_step, self._scheduled_steps)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        batch_idx = int(args[0]) if args else int(kwargs.get("batch_idx", 0))
        source = getattr(batch, "source_image", None)
        if source is None:
            raise ValueError(
                "RealNet trains on synthetic anomalies: its batches need `source_image`. Wrap the datamodule in "
                "anomalysynth.datamodules.SyntheticAnomalyDataModule or add the SynthesizeOnDevice callback."
            )
        image: Any = batch.image
        mask = batch.gt_mask
        if mask is None:
            raise ValueError("RealNet needs `gt_mask` in training batches (the synthetic anomaly masks).")
        mask = mask.float().view(mask.shape[0], 1, *mask.shape[-2:])
        # the logits' size: the model returns them at image size
        mask = F.interpolate(mask, size=image.shape[-2:], mode="nearest")[:, 0].long()
        source_features, image_features = self._source_and_image_features(
            self._pre(source, size=image.shape[-2:]), image
        )
        noise = self._draw_feature_noise(mask, batch_idx) if self.feature_noise.probability > 0 else None
        out = self.model(image, features=image_features, perturb=noise)
        if noise is not None:  # the noised normal samples are anomalous where the noise went
            mask = torch.maximum(mask, noise.mask[:, 0].long())
        target = self.model.select(source_features)
        reconstruction = sum(F.mse_loss(r, t) for r, t in zip(out.reconstructions, target, strict=True))
        segmentation = F.cross_entropy(out.logits, mask)
        # the residual's normal level, the unit of `residual_weight` (tracked whatever its value)
        residuals = reconstruction_residuals(out.features, out.reconstructions)
        self.model.track_residual_scale(residuals, mask.flatten(1).amax(dim=1) == 0)
        loss = reconstruction + segmentation
        self.log("train_loss", loss.detach(), on_epoch=True, prog_bar=True, batch_size=image.shape[0])
        return {"loss": loss}

    def _draw_feature_noise(self, mask: Tensor, batch_idx: int) -> FeatureNoiseDraw:
        """The batch's feature anomalies: for samples whose (B, H, W) ``mask`` is empty, drawn from one
        generator per sample keyed by the Lightning seed, rank, epoch, batch index and position."""
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything, read so by Lightning's workers
        keys = [f"realnet-feature-noise:{self.global_rank}:{batch_idx}:{i}" for i in range(mask.shape[0])]
        generators = keyed_generators(seed, keys, epoch=self.current_epoch)
        return self.feature_noise.draw(mask.flatten(1).amax(dim=1) == 0, mask.shape[-2:], generators)

    def _source_and_image_features(self, source: Tensor, image: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Backbone features of the clean sources and of the training images, in one pass.

        A normal sample's image is its source (the synthesizers return it unchanged),
        so only the images that differ from their source go through the backbone again:
        at an anomaly ratio of 0.5 that is 3 instead of 4 backbone passes per pair.
        """
        batch = image.shape[0]
        changed = torch.nonzero((source != image).flatten(1).any(dim=1)).flatten()
        features = self.model.extract(torch.cat([source, image.index_select(0, changed)]))
        source_features = [f[:batch] for f in features]
        image_features = [s.index_copy(0, changed, f[batch:]) for s, f in zip(source_features, features, strict=True)]
        return source_features, image_features

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        del args, kwargs
        out = self.model(batch.image)
        return batch.update(pred_score=out.pred_score, anomaly_map=out.anomaly_map[:, 0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [*self.model.reconstruction.parameters(), *self.model.discriminator.parameters()]
        if self.model.feature_projection is not None:
            params += list(self.model.feature_projection.parameters())
        return torch.optim.Adam(params, lr=self.lr)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS

    # ------------------------------------------------------------------ helpers
    def _pre(self, images: Tensor, size: Any = None) -> Tensor:
        return pre_process(self, images, size)

    def save_feature_selection(self, path: str | Path) -> None:
        """Write the selected channel indices as the AFS callback's ``cache_path`` reads them."""
        save_indices(path, self.model.selections)
