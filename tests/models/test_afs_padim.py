"""AFSPadim: PaDiM with AFS-selected channels."""

from __future__ import annotations

import torch

from tests.conftest import torch_threads


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


def test_spd_gaussian_matches_anomalibs_gaussian() -> None:
    from anomalib.models.components.stats import MultiVariateGaussian

    from anomalysynth.models.afs_padim import SPDGaussian

    embedding = torch.randn(40, 8, 3, 5, generator=torch.Generator().manual_seed(0))
    mean, inverse = SPDGaussian(chunk=4).fit(embedding)
    ref_mean, ref_inverse = MultiVariateGaussian().fit(embedding)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(inverse, ref_inverse, rtol=1e-4, atol=1e-5)


def test_spd_gaussian_inverts_many_channels_with_two_threads() -> None:
    # anomalib's torch.linalg.inv returns wrong inverses or fails here (oneMKL's batched LU, pytorch#142815)
    import numpy as np

    from anomalysynth.models.afs_padim import SPDGaussian

    embedding = torch.randn(200, 176, 2, 1, generator=torch.Generator().manual_seed(1))
    with torch_threads(2):
        _, inverse = SPDGaussian().fit(embedding)
    for position in range(2):
        samples = embedding[:, :, position, 0].double().numpy()
        covariance = np.cov(samples, rowvar=False) + (0.01 + 1e-5) * np.eye(176)
        np.testing.assert_allclose(inverse[position].numpy(), np.linalg.inv(covariance), rtol=1e-3, atol=1e-3)


def test_afs_padim_fits_with_the_cholesky_gaussian() -> None:
    from anomalysynth.models import AFSPadim
    from anomalysynth.models.afs_padim import SPDGaussian

    assert isinstance(AFSPadim().model.gaussian, SPDGaussian)
