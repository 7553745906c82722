"""Data: the embedded demo data set and wrappers that add synthetic anomalies."""

from anomalysynth.datamodules.demo import DEMO_CATEGORIES, DemoDataModule, build_demo_dataset

__all__ = ["DEMO_CATEGORIES", "DemoDataModule", "build_demo_dataset"]
