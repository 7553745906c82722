"""``SynthesizeOnDevice``: synthetic anomalies made on the accelerator, whole batches at once."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torchvision.tv_tensors import Image, Mask
from typing_extensions import override

from anomalysynth.synth import Synthesizer
from anomalysynth.synth.keyed import resolve_anomaly_ratio, synthesize_keyed

__all__ = ["SynthesizeOnDevice"]


class SynthesizeOnDevice(Callback):
    """Replace a fraction of each training batch with synthetic anomalies, on the model's device.

    Runs in ``on_train_batch_start``, before anomalib's ``PreProcessor`` normalises
    the batch (Lightning calls the Trainer's callbacks before the model's own), so the
    synthesizer sees images in [0, 1]; the pre-processor then transforms ``image`` and
    ``gt_mask`` together. Sample ``i`` is keyed by its ``image_path`` (or its position in
    the epoch when the batch has none) exactly as
    :class:`~anomalysynth.datamodules.SyntheticAnomalyDataset` keys it, so both paths
    make the same anomalies for the same seed. The clean images are kept in
    ``batch.source_image``; ``gt_label`` is ``bool``.
    :class:`~anomalysynth.callbacks.AnomalyAwareFeatureSelection` in the same Trainer
    makes its anomalous triplets with this callback's synthesizer and seed.

    Args:
        synthesizer: the anomaly synthesizer.
        anomaly_ratio: probability that a sample is made anomalous (the one coin; ``None``
            takes the synthesizer's own ratio).
        seed: base seed.
        reseed_every_epoch: fresh anomalies each epoch (default), deterministic per
            ``(seed, epoch, key)``; ``False`` makes the same anomalies every epoch.
    """

    def __init__(
        self,
        synthesizer: Synthesizer,
        anomaly_ratio: float | None = 0.5,
        seed: int = 0,
        reseed_every_epoch: bool = True,
    ) -> None:
        if not isinstance(synthesizer, Synthesizer):
            raise ValueError(
                f"`SynthesizeOnDevice` needs an anomalysynth Synthesizer; got {type(synthesizer).__name__}."
            )
        self.synthesizer = synthesizer
        self.anomaly_ratio = resolve_anomaly_ratio(synthesizer, anomaly_ratio, "SynthesizeOnDevice")
        self.seed = int(seed)
        self.reseed_every_epoch = bool(reseed_every_epoch)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Move the synthesizer to the model's device."""
        self.synthesizer.to(pl_module.device)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Synthesize anomalies into the batch in place."""
        images = batch.image
        if images is None or images.ndim != 4:
            raise ValueError("`SynthesizeOnDevice` expects batches with an `image` tensor of shape (B, C, H, W).")
        paths = getattr(batch, "image_path", None)
        keys = list(paths) if paths else [batch_idx * images.shape[0] + i for i in range(images.shape[0])]
        epoch = trainer.current_epoch if self.reseed_every_epoch else 0
        out = synthesize_keyed(self.synthesizer, images, keys, self.seed, self.anomaly_ratio, epoch)
        batch.source_image = images
        batch.image = Image(out.image)
        batch.gt_mask = Mask(out.mask[:, 0] > 0)
        batch.gt_label = out.label.bool()
        batch.anomaly_strength = out.strength
        batch.synthesis_params = out.params  # replays the batch: synthesizer.apply(source_image, params)
