"""Keyed synthesis: sample ``i`` of a batch is drawn from ``sample_generator(seed, keys[i], epoch)``.

The dataset, the ``SynthesizeOnDevice`` callback, the synthesis cache and the preview
all synthesize through :func:`synthesize_keyed`, so the same ``(seed, epoch, key)``
gives the same anomaly on every path, whatever the batch composition, device or
number of DataLoader workers. The plug-in point's ``anomaly_ratio`` is the one coin
(the first draw of each sample's generator, kept as ``params["anomalous"]``); the
returned ``params`` replay the whole draw through ``Synthesizer.apply``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from anomalysynth.seeding import keyed_generators
from anomalysynth.synth.base import Synthesizer, SynthOutput, check_ratio

__all__ = ["resolve_anomaly_ratio", "synthesize_keyed"]


def resolve_anomaly_ratio(synthesizer: Synthesizer, anomaly_ratio: float | None, owner: str) -> float:
    """The one anomaly ratio of a plug-in point.

    ``None`` takes the synthesizer's own ``anomaly_ratio``. A number replaces it; giving
    both a plug-in ratio and a synthesizer ratio other than 1 is refused, because the
    effective ratio would otherwise be ambiguous (it used to be their product).
    """
    own = float(getattr(synthesizer, "anomaly_ratio", 1.0))
    if anomaly_ratio is None:
        return own
    ratio = check_ratio(anomaly_ratio)
    if own != 1.0 and own != ratio:
        raise ValueError(
            f"{owner} got anomaly_ratio={ratio} and a synthesizer with anomaly_ratio={own}: give the ratio in one "
            "place (the synthesizer's stays 1.0 by default), or pass anomaly_ratio=None to use the synthesizer's."
        )
    return ratio


def synthesize_keyed(
    synthesizer: Synthesizer,
    images: Tensor,
    keys: Sequence[str | int],
    seed: int,
    anomaly_ratio: float,
    epoch: int = 0,
) -> SynthOutput:
    """Synthesize a batch where sample ``i`` is decided and drawn from ``sample_generator(seed, keys[i], epoch)``.

    A sample is made anomalous with probability ``anomaly_ratio``; the others are
    returned unchanged with an empty mask and label 0. ``out.params`` replays the batch.
    """
    if len(keys) != images.shape[0]:
        raise ValueError(f"Expected one key per image ({images.shape[0]}); got {len(keys)}.")
    params = synthesizer.sample_params(images, keyed_generators(seed, keys, epoch), anomaly_ratio=anomaly_ratio)
    return synthesizer.apply(images, params)
