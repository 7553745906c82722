"""IS: 1 for one repeated image, K for K equally likely confident classes, equal to torchmetrics'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from anomalysynth.metrics import inception_score
from tests.conftest import photo_batch
from tests.metrics.conftest import FeaturesAsInput


def test_one_repeated_image_scores_one(effnet_features):
    image = photo_batch(1, 3, size=64)
    logits = effnet_features.extract(image.repeat(6, 1, 1, 1)).logits
    assert inception_score(logits)[0] == pytest.approx(1.0, abs=1e-6)


def test_confident_distinct_classes_score_their_number():
    logits = torch.full((5, 10), -50.0)
    logits[torch.arange(5), torch.arange(5)] = 50.0
    assert inception_score(logits)[0] == pytest.approx(5.0, rel=1e-6)


def test_matches_scipy_entropy_reference():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(40, 7, generator=g, dtype=torch.float64)
    p = torch.softmax(logits, 1).numpy()
    marginal = p.mean(0)
    expected = np.exp(np.mean([entropy(row, marginal) for row in p]))
    assert inception_score(logits)[0] == pytest.approx(expected, rel=1e-9)


def test_matches_torchmetrics_on_the_same_logits():
    from torchmetrics.image.inception import InceptionScore

    g = torch.Generator().manual_seed(2)
    logits = 2 * torch.randn(24, 9, generator=g)
    metric = InceptionScore(feature=FeaturesAsInput(9), splits=1)
    metric.update(logits)
    expected, _ = metric.compute()
    assert inception_score(logits)[0] == pytest.approx(float(expected), rel=1e-5)


def test_splits_are_checked():
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(3, 4), splits=4)
