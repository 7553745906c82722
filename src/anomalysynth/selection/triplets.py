"""The anomalous triplets (A, I, M) that AFS learns from, gathered from a training loader.

A training loader yields one of two kinds of batch:

* synthetic batches (``SyntheticAnomalyDataModule``): ``image``, ``source_image``,
  ``gt_mask`` and ``gt_label``. Their anomalous samples (label 1) are triplets as they are;
* plain batches of normal images (an anomalib datamodule whose anomalies the
  ``SynthesizeOnDevice`` callback makes on the device during training): only ``image``.

With a ``synthesizer``, every normal image drawn (a plain batch's images, a synthetic
batch's normal samples' ``source_image``) is made anomalous as well, on the model's
device, sample ``i`` drawn from ``sample_generator(seed, key_i, pass)`` with its key
keyed as the ``SynthesizeOnDevice`` callback keys it (``image_path``, else its position
in the pass). The loader is cycled until ``num_samples`` triplets are gathered; pass
``p`` sets the loader's sampler to epoch ``p`` when it has ``set_epoch``, so a loader
that draws fresh anomalies per epoch gives new ones on every pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from anomalysynth.synth import Synthesizer
from anomalysynth.synth.keyed import synthesize_keyed

__all__ = ["Triplets", "gather_triplets"]


@dataclass
class Triplets:
    """A chunk of anomalous triplets on the model's device.

    Attributes:
        anomalous: (n, C, H, W) A, raw images in [0, 1].
        normal: (n, C, H, W) I, the clean images A was made from.
        mask: (n, 1, H, W) or (n, H, W) M, where A differs.
    """

    anomalous: Tensor
    normal: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.anomalous.shape[0])

    def head(self, n: int) -> Triplets:
        return Triplets(self.anomalous[:n], self.normal[:n], self.mask[:n])


def gather_triplets(
    loader: Iterable[Any],
    num_samples: int,
    device: torch.device | str = "cpu",
    synthesizer: Synthesizer | None = None,
    seed: int = 0,
    num_batches: int | None = None,
) -> Iterator[Triplets]:
    """Yield chunks of anomalous triplets until ``num_samples`` are gathered.

    The loader is iterated again (a new pass) when it runs out. It stops early after
    ``num_batches`` batches (over all passes) or when a whole pass gives no triplet
    (a one-shot iterable, or normal images and no synthesizer).
    """
    if synthesizer is not None:
        synthesizer.to(device)
    samplers = _epoch_samplers(loader)
    found_at = [getattr(s, "epoch", None) for s in samplers]
    gathered = drawn = 0
    try:
        for epoch in itertools.count():  # every pass gives a triplet, or the loop ends
            for sampler in samplers:
                sampler.set_epoch(epoch)
            found_in_pass = position = 0
            for batch in loader:
                if num_batches is not None and drawn >= num_batches:
                    return
                drawn += 1
                chunks, position = _batch_triplets(batch, device, synthesizer, seed, epoch, position)
                for chunk in chunks:
                    chunk = chunk.head(num_samples - gathered)
                    if len(chunk):
                        gathered += len(chunk)
                        found_in_pass += len(chunk)
                        yield chunk
                if gathered >= num_samples:
                    return
            if not found_in_pass:
                return
    finally:
        for sampler, initial in zip(samplers, found_at, strict=True):
            if initial is not None:
                sampler.set_epoch(initial)


def _batch_triplets(
    batch: Any, device: torch.device | str, synthesizer: Synthesizer | None, seed: int, epoch: int, position: int
) -> tuple[list[Triplets], int]:
    """The triplets of one batch and the pass position after it."""
    image = batch.image
    size = int(image.shape[0])
    source = getattr(batch, "source_image", None)
    label = getattr(batch, "gt_label", None)
    chunks: list[Triplets] = []
    if source is not None and label is not None:
        anomalous = torch.as_tensor(label).bool().cpu().view(-1)
        if anomalous.any():
            idx = torch.nonzero(anomalous).flatten()
            chunks.append(Triplets(*(_plain(t[idx], device) for t in (image, source, batch.gt_mask))))
        normal, clean = torch.nonzero(~anomalous).flatten(), source
    elif synthesizer is None:
        raise ValueError(
            "AFS needs anomalous triplets: batches with `source_image` and `gt_label` (SyntheticAnomalyDataModule), "
            "or a synthesizer to make them from plain normal images (add the SynthesizeOnDevice callback to the "
            f"Trainer, or pass `synthesizer=` to AnomalyAwareFeatureSelection); got a {type(batch).__name__} without "
            "`source_image`."
        )
    else:
        normal, clean = torch.arange(size), image
    if synthesizer is not None and normal.numel():
        paths = getattr(batch, "image_path", None)
        keys = [paths[int(i)] if paths else position + int(i) for i in normal]
        images = _plain(clean[normal], device)
        out = synthesize_keyed(synthesizer, images, keys, seed, anomaly_ratio=1.0, epoch=epoch)
        made = out.label.bool()  # an empty mask (e.g. no foreground) makes no triplet
        if made.any():
            chunks.append(Triplets(out.image[made], images[made], out.mask[made]))
    return chunks, position + size


def _plain(tensor: Tensor, device: torch.device | str) -> Tensor:
    """``tensor`` as a plain Tensor (not a tv_tensor) on ``device``."""
    return torch.as_tensor(tensor).as_subclass(Tensor).to(device)


def _epoch_samplers(loader: Any) -> list[Any]:
    """The loader's samplers that take ``set_epoch`` (each once)."""
    found: list[Any] = []
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if callable(getattr(sampler, "set_epoch", None)) and all(sampler is not s for s in found):
            found.append(sampler)
    return found
