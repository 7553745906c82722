"""Integrations with other libraries: anomalib's in-model generators, torchvision v2 and albumentations.

Each submodule imports its library only when used; import the submodule you need,
e.g. ``from anomalysynth.integrations.anomalib import use_synthesizer``.
"""
