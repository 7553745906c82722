"""Make anomalib's self-supervised models draw their training anomalies from any synthesizer.

anomalib 2.7's DRAEM, DSR, GLASS and SuperSimpleNet synthesize their training
anomalies inside the model with anomalib's one Perlin generator (SuperSimpleNet
with Gaussian noise on its features). :func:`use_synthesizer` swaps that generator
for any registered synthesizer (or a ``OneOf`` mix), in the output format the
model's ``training_step`` expects, on the model's device:

=============== ===================================== =========================================
model           replaced                              anomaly_ratio default (the model's own)
=============== ===================================== =========================================
Draem           ``augmenter``                          0.5
Dsr             ``perlin_generator`` (phase 3) and     0.5
                ``quantized_anomaly_generator``
                (phase 2: the synthesizer's masks
                place DSR's latent anomalies)
Glass           ``model.augmentor`` (local branch;     1.0
                the global feature branch stays)
Supersimplenet  image anomalies before the backbone,   0.5
                fed to its supervised path; the
                feature noise is off unless
                ``feature_noise=True``
=============== ===================================== =========================================

DRAEM downloads DTD in its constructor when ``dtd_dir`` does not exist; build it
with any existing folder (an empty one is fine), e.g. ``Draem(dtd_dir=tmp_dir)``,
then call :func:`use_synthesizer`. From YAML, add the :class:`UseSynthesizer`
callback (``configs/anomalib/draem_cutpaste.yaml``).

Example:
    >>> from anomalib.models import Draem
    >>> from anomalysynth.integrations.anomalib import use_synthesizer
    >>> model = use_synthesizer(Draem(dtd_dir=empty_dir), "cutpaste")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from anomalysynth.integrations.anomalib_generators import (
    FeatureNoiseOff,
    ImageAnomalyGenerator,
    ImageAnomalyHook,
    MaskAnomalyGenerator,
    SynthesizerDraw,
)
from anomalysynth.synth.base import Synthesizer, as_synthesizer

__all__ = ["SUPPORTED_MODELS", "UseSynthesizer", "use_synthesizer"]

logger = logging.getLogger(__name__)

#: anomalib model class name -> the model's own anomaly ratio
SUPPORTED_MODELS = {"Draem": 0.5, "Dsr": 0.5, "Glass": 1.0, "Supersimplenet": 0.5}

_HOOK_ATTRIBUTE = "_anomalysynth_hook"


def use_synthesizer(
    model: pl.LightningModule,
    synthesizer: Synthesizer | str,
    anomaly_ratio: float | None = None,
    seed: int | None = None,
    mask_threshold: float = 0.5,
    feature_noise: bool = False,
) -> pl.LightningModule:
    """Replace the in-model anomaly generator of an anomalib model (in place).

    Args:
        model: an anomalib ``Draem``, ``Dsr``, ``Glass`` or ``Supersimplenet``.
        synthesizer: a synthesizer instance or a registered name (``"cutpaste"``).
        anomaly_ratio: share of anomalous samples; ``None`` keeps the model's own
            (see :data:`SUPPORTED_MODELS`).
        seed: ``None`` draws from torch's global generator (``seed_everything``
            makes a run reproducible); an int gives the draws their own generator.
        mask_threshold: the synthesizer's masks are binarised at this value.
        feature_noise: SuperSimpleNet only: keep its Gaussian feature noise as well
            (added outside the synthetic masks, its supervised mode).

    Returns:
        The same model, now drawing its training anomalies from ``synthesizer``.

    Raises:
        ValueError: for a model without a supported generator (the message lists
            the supported ones) or a bad argument.
    """
    kind = _model_kind(model)
    synthesizer = as_synthesizer(synthesizer, "`use_synthesizer`")
    ratio = SUPPORTED_MODELS[kind] if anomaly_ratio is None else anomaly_ratio
    draw = SynthesizerDraw(synthesizer, ratio, seed=seed, mask_threshold=mask_threshold)
    _INSTALLERS[kind](model, draw, feature_noise)
    logger.info("%s draws its training anomalies from %s (anomaly_ratio=%s)", kind, synthesizer.name, ratio)
    return model


class UseSynthesizer(Callback):
    """:func:`use_synthesizer` as a callback, for ``anomalib fit -c`` / ``lightning fit -c`` YAML.

    Args:
        synthesizer: a synthesizer (``class_path`` in YAML) or a registered name.
        anomaly_ratio, seed, mask_threshold, feature_noise: see :func:`use_synthesizer`.
    """

    def __init__(
        self,
        synthesizer: Synthesizer | str,
        anomaly_ratio: float | None = None,
        seed: int | None = None,
        mask_threshold: float = 0.5,
        feature_noise: bool = False,
    ) -> None:
        synthesizer = as_synthesizer(synthesizer, "`UseSynthesizer`")
        if anomaly_ratio is not None and not 0.0 <= anomaly_ratio <= 1.0:
            raise ValueError(f"`UseSynthesizer` expected `anomaly_ratio` in [0, 1] or None; got {anomaly_ratio}.")
        self.synthesizer = synthesizer
        self.anomaly_ratio = anomaly_ratio
        self.seed = seed
        self.mask_threshold = mask_threshold
        self.feature_noise = feature_noise

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Install the synthesizer before training starts."""
        if stage == "fit":
            use_synthesizer(
                pl_module, self.synthesizer, self.anomaly_ratio, self.seed, self.mask_threshold, self.feature_noise
            )


# ---------------------------------------------------------------------- per model
def _model_kind(model: object) -> str:
    """The supported anomalib class ``model`` is an instance of, or ValueError."""
    from anomalib.models import Draem, Dsr, Glass, Supersimplenet

    for cls in (Draem, Dsr, Glass, Supersimplenet):
        if isinstance(model, cls):
            return cls.__name__
    raise ValueError(
        f"use_synthesizer supports anomalib's {', '.join(SUPPORTED_MODELS)} (the models that synthesize their "
        f"own training anomalies); got {type(model).__name__}. For other models wrap the data instead "
        "(anomalysynth.datamodules.SyntheticAnomalyDataModule)."
    )


def _install_draem(model: Any, draw: SynthesizerDraw, feature_noise: bool) -> None:
    model.augmenter = ImageAnomalyGenerator(draw)


def _install_dsr(model: Any, draw: SynthesizerDraw, feature_noise: bool) -> None:
    model.perlin_generator = ImageAnomalyGenerator(draw)
    model.quantized_anomaly_generator = MaskAnomalyGenerator(draw)


def _install_glass(model: Any, draw: SynthesizerDraw, feature_noise: bool) -> None:
    model.model.augmentor = ImageAnomalyGenerator(draw)


def _install_supersimplenet(model: Any, draw: SynthesizerDraw, feature_noise: bool) -> None:
    torch_model = model.model
    previous = getattr(torch_model, _HOOK_ATTRIBUTE, None)
    if previous is not None:
        previous.remove()
    mean, std = _normalization(model)
    hook = ImageAnomalyHook(draw, mean, std)
    handle = torch_model.register_forward_pre_hook(hook, with_kwargs=True)
    object.__setattr__(torch_model, _HOOK_ATTRIBUTE, handle)
    if not feature_noise:
        torch_model.anomaly_generator = FeatureNoiseOff()
    else:
        from anomalib.models.image.supersimplenet.anomaly_generator import AnomalyGenerator

        if not isinstance(torch_model.anomaly_generator, AnomalyGenerator):
            torch_model.anomaly_generator = AnomalyGenerator(noise_mean=0, noise_std=0.015, threshold=0.2)


def _normalization(model: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The mean and std of the pre-processor's ``Normalize``, if it has one."""
    from anomalib.data.transforms.utils import extract_transforms_by_type
    from torchvision.transforms.v2 import Normalize

    pre = getattr(model, "pre_processor", None)
    transform = getattr(pre, "transform", None) if pre else None
    if transform is None:
        return None, None
    found = extract_transforms_by_type(transform, Normalize)
    if not found:
        return None, None
    return torch.tensor(found[0].mean, dtype=torch.float32), torch.tensor(found[0].std, dtype=torch.float32)


_INSTALLERS: dict[str, Callable[[Any, SynthesizerDraw, bool], None]] = {
    "Draem": _install_draem,
    "Dsr": _install_dsr,
    "Glass": _install_glass,
    "Supersimplenet": _install_supersimplenet,
}
