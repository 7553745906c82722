"""AFSPadim: PaDiM with AFS-selected channels."""

from __future__ import annotations

import torch


def test_afs_padim_trains_with_afs_and_tests(tiny_folder, tmp_path):
    from anomalib.engine import Engine

    from anomalysynth.callbacks import AnomalyAwareFeatureSelection
    from anomalysynth.datamodules import SyntheticAnomalyDataModule
    from anomalysynth.models import AFSPadim
    from anomalysynth.selection import FeatureSelectable, RunsFeatureSelectionInWarmUp
    from anomalysynth.synth import create_synthesizer

    model = AFSPadim()
    assert isinstance(model, FeatureSelectable) and not isinstance(model, RunsFeatureSelectionInWarmUp)
    random_idx = model.model.idx.clone()
    assert sum(model.afs_dims) == model.model.n_features
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=0.5)
    engine = Engine(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        logger=False,
        callbacks=[AnomalyAwareFeatureSelection(num_batches=2)],
    )
    engine.fit(model=model, datamodule=dm)
    assert model.feature_selection_done and not torch.equal(model.model.idx, random_idx)
    assert model.model.idx.numel() == model.model.n_features
    (metrics,) = engine.test(model=model, datamodule=dm)
    assert "image_AUROC" in metrics
