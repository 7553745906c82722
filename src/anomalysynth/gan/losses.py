"""The adversarial losses of AnomalyHybrid's training (pix2pixHD's choices).

* :func:`gan_loss`: least-squares GAN (pix2pixHD's default) or hinge, averaged over
  the discriminator's scales.
* :func:`feature_matching_loss`: L1 between the discriminator's intermediate features
  on real and generated images (pix2pixHD, weight 10), cheap because the features are
  computed anyway.

The perceptual loss is :class:`~anomalysynth.gan.perceptual.PerceptualLoss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GAN_MODES", "feature_matching_loss", "gan_loss"]

GAN_MODES = ("lsgan", "hinge")


def gan_loss(outputs: list[list[Tensor]], real: bool, mode: str = "lsgan", for_discriminator: bool = True) -> Tensor:
    """Mean over scales of the loss of each scale's logits (the last feature).

    Args:
        outputs: :class:`~anomalysynth.gan.discriminator.MultiscaleDiscriminator` output.
        real: whether the judged images should be called real.
        mode: ``"lsgan"`` ((D - 1)^2 for real, D^2 for fake) or ``"hinge"``.
        for_discriminator: hinge only: the discriminator's margin loss, else the
            generator's ``-D``.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"`mode` must be one of {GAN_MODES}; got {mode!r}.")
    losses = []
    for features in outputs:
        logits = features[-1]
        if mode == "lsgan":
            target = torch.ones_like(logits) if real else torch.zeros_like(logits)
            losses.append(F.mse_loss(logits, target))
        elif for_discriminator:
            losses.append(F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean())
        else:
            losses.append(-logits.mean())
    return torch.stack(losses).mean()


def feature_matching_loss(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    """Mean over scales of the summed L1 distances of the intermediate features (the logits excluded)."""
    losses = []
    for fake_features, real_features in zip(fake, real, strict=True):
        terms = [F.l1_loss(f, r.detach()) for f, r in zip(fake_features[:-1], real_features[:-1], strict=True)]
        losses.append(torch.stack(terms).sum())
    return torch.stack(losses).mean()
