"""Data: the embedded demo data set, synthetic-anomaly wrappers and the synthesis cache."""

from anomalysynth.datamodules.cache import CacheCorruptError, CachedSyntheticDataset, SynthesisCache, build_with_trainer
from anomalysynth.datamodules.demo import DEMO_CATEGORIES, DemoDataModule, build_demo_dataset
from anomalysynth.datamodules.synthetic import (
    EpochSampler,
    SyntheticAnomalyDataset,
    SyntheticImageBatch,
    SyntheticImageItem,
    sample_generator,
)
from anomalysynth.datamodules.wrapper import SyntheticAnomalyDataModule

__all__ = [
    "DEMO_CATEGORIES",
    "CacheCorruptError",
    "CachedSyntheticDataset",
    "DemoDataModule",
    "EpochSampler",
    "SynthesisCache",
    "SyntheticAnomalyDataModule",
    "SyntheticAnomalyDataset",
    "SyntheticImageBatch",
    "SyntheticImageItem",
    "build_demo_dataset",
    "build_with_trainer",
    "sample_generator",
]
