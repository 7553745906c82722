"""RealNet's reconstruction U-Nets and residuals."""

from __future__ import annotations

import torch

from tests.models.tiny_realnet import tiny_model


def test_reconstruction_starts_at_zero_and_the_backbone_is_frozen():
    model = tiny_model()
    model.train()
    assert not model.extractor.training
    out = model(torch.rand(1, 3, 64, 64))
    assert all(r.abs().max() == 0 for r in out.reconstructions)  # zero-initialised output convs
    assert not any(p.requires_grad for p in model.extractor.parameters())
