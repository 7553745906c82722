"""Compiled CPU kernels (numba) for the Perlin noise, the texture augmentation and the
Perlin-mask alpha blend.

The torch code in :mod:`anomalysynth.synth.perlin`, :mod:`anomalysynth.synth.textures`
and the blended synthesizer's parts is the reference and runs on every device; it
imports nothing from here. On CPU float32 tensors these kernels compute the same
arithmetic in one pass per stage instead of a dozen tensor passes, so one sample
stays in cache from its first operation to its last. They agree with the reference
up to float rounding (the 8-bit quantisation of the texture operations can move a
rare pixel by one level; ``tests/synth/test_kernels.py`` bounds it).

Nothing calls these functions but :mod:`anomalysynth.synth.dispatch`, the one place
that chooses between them and the reference (``ANOMALYSYNTH_KERNELS=0`` switches
them off). Deleting this package leaves every synthesizer working on the reference.

Files: ``pool`` (the thread pool), ``perlin_kernel`` (noise and mask),
``texture_kernel`` (DRAEM's augmentation), ``fused`` (mask x texture x alpha blend in
one pass), ``channels`` (grey images stored as RGB), ``jit`` (numba and its options).
"""

from __future__ import annotations

from anomalysynth.synth.backends.jit import NUMBA_ERROR, numba

__all__ = ["NUMBA_ERROR", "available"]


def available() -> bool:
    """True when numba is installed (the kernels can be compiled)."""
    return numba is not None
