"""Whether each image of a batch has all channels equal (a grey image stored as RGB)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from anomalysynth.synth.backends.jit import as_array, jit

__all__ = ["channels_equal_cpu"]


def channels_equal_cpu(images: Tensor) -> Tensor:
    """(B,) bool: whether each (C, H, W) image has all channels equal; stops at the first
    pixel that differs (a colour image costs next to nothing)."""
    b = images.shape[0]
    out = np.zeros(b, np.bool_)
    _channels_equal(as_array(images), out)
    return torch.from_numpy(out)


@jit
def _channels_equal(images: np.ndarray, out: np.ndarray) -> None:
    b, c, h, w = images.shape
    n = h * w
    for i in range(b):
        first = images[i, 0].reshape(n)
        equal = True
        for ch in range(1, c):
            other = images[i, ch].reshape(n)
            for k in range(n):
                if first[k] != other[k]:
                    equal = False
                    break
            if not equal:
                break
        out[i] = equal
