"""Inception score (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over class logits.

It is 1 when every image gets the same class distribution and at most the number
of classes. ``splits`` follows the papers' protocol (mean and std over equal
splits, 10 in the papers); with small sets use 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["inception_score"]


def inception_score(logits: Tensor, splits: int = 1) -> tuple[float, float]:
    """(mean, std) of the score over ``splits`` consecutive equal parts of (N, K) logits."""
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"`logits`: expected (N, K) class logits; got {tuple(logits.shape)}.")
    if not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"`splits` must lie in [1, {logits.shape[0]}] (the number of images); got {splits}.")
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for part in log_p.chunk(splits, dim=0):
        log_marginal = torch.logsumexp(part, dim=0) - torch.log(torch.tensor(float(part.shape[0]), dtype=part.dtype))
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(torch.exp(kl))
    values = torch.stack(scores)
    return float(values.mean()), float(values.std()) if splits > 1 else 0.0  # unbiased, as torchmetrics
