"""The one owner of randomness: keyed generators and per-sample generators.

Every random draw of the library comes from a ``torch.Generator`` made here:

* :func:`sample_generator` gives the generator of one training sample as a function
  of ``(seed, epoch, key)`` only (the key is the sample's image path or index), so a
  sample's anomaly does not depend on batch composition, worker count or order.
  The dataset, the on-device callback, the synthesis cache and the preview all use it.
* :func:`per_sample_generators` splits whatever a caller hands a synthesizer (one
  generator, one per sample, or ``None``) into one fresh generator per sample.
* :func:`uniform`, :func:`log_uniform`, :func:`randint` and :func:`draw` stack
  per-sample draws into batch-first tensors.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "GeneratorLike",
    "draw",
    "keyed_generators",
    "log_uniform",
    "per_sample_generators",
    "randint",
    "sample_generator",
    "uniform",
]

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None

_SEED_HIGH = 2**62


def sample_generator(seed: int, key: str | int, epoch: int = 0) -> torch.Generator:
    """The generator of one sample: a function of ``(seed, epoch, key)`` only."""
    digest = hashlib.blake2b(f"{int(seed)}|{int(epoch)}|{key}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def keyed_generators(seed: int, keys: Sequence[str | int], epoch: int = 0) -> list[torch.Generator]:
    """``[sample_generator(seed, key, epoch) for key in keys]``."""
    return [sample_generator(seed, key, epoch) for key in keys]


def per_sample_generators(generator: GeneratorLike, batch: int) -> list[torch.Generator]:
    """One fresh CPU generator per sample, seeded from ``generator``.

    Each per-sample generator is seeded by one draw from its parent: one parent
    per sample when a list is given, else ``batch`` draws from a single parent.
    A single-image call with parent ``g`` therefore equals sample ``i`` of a batch
    called with a list whose entry ``i`` is ``g``.
    """
    if generator is None:
        seeds = torch.randint(0, _SEED_HIGH, (batch,)).tolist()
    elif isinstance(generator, torch.Generator):
        seeds = torch.randint(0, _SEED_HIGH, (batch,), generator=generator, device=generator.device).tolist()
    else:
        gens = list(generator)
        if len(gens) != batch or not all(isinstance(g, torch.Generator) for g in gens):
            raise ValueError(f"Expected one torch.Generator per sample ({batch}); got {len(gens)} items.")
        seeds = [int(torch.randint(0, _SEED_HIGH, (1,), generator=g, device=g.device)) for g in gens]
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def draw(generators: list[torch.Generator], fn: Callable[[torch.Generator], Tensor]) -> Tensor:
    """Stack ``fn(g)`` over per-sample generators into a batch-first tensor."""
    return torch.stack([fn(g) for g in generators])


def uniform(generators: list[torch.Generator], low: float, high: float) -> Tensor:
    """(B,) float32 uniform in [low, high)."""
    return draw(generators, lambda g: torch.rand((), generator=g)) * (high - low) + low


def log_uniform(generators: list[torch.Generator], low: float, high: float) -> Tensor:
    """(B,) float32 log-uniform in [low, high)."""
    return torch.exp(uniform(generators, math.log(low), math.log(high)))


def randint(generators: list[torch.Generator], low: int, high: int) -> Tensor:
    """(B,) int64 uniform in [low, high] (both inclusive)."""
    return draw(generators, lambda g: torch.randint(low, high + 1, (), generator=g))
