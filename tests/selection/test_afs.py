"""AFS: channel errors, accumulation and selection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from anomalysynth.selection import (
    AFSAccumulator,
    AFSPlan,
    FeatureSelectable,
    afs_channel_errors,
    load_indices,
    save_indices,
    select_channels,
)


def test_afs_selects_exactly_the_channels_that_carry_the_mask():
    g = torch.Generator().manual_seed(0)
    b, c, h, w = 6, 32, 16, 16
    mask = torch.zeros(b, 1, 64, 64)
    for i in range(b):
        y, x = torch.randint(0, 40, (2,), generator=g).tolist()
        mask[i, :, y : y + 20, x : x + 16] = 1
    planted = torch.tensor([3, 7, 19, 30])
    normal = torch.randn(b, c, h, w, generator=g)
    anomalous = normal + 0.3 * torch.randn(b, c, h, w, generator=g)  # noise everywhere
    small = torch.nn.functional.interpolate(mask, size=(h, w), mode="nearest")
    anomalous[:, planted] = normal[:, planted] + 3.0 * small  # the planted channels answer the anomaly
    accumulator = AFSAccumulator()
    accumulator.update([anomalous], [normal], mask)
    (chosen,) = accumulator.select([4])
    assert torch.equal(chosen, planted)
    assert torch.equal(select_channels(afs_channel_errors(anomalous, normal, mask), 4), planted)


class PlantedModel:
    """A FeatureSelectable whose channels 1 and 4 (of 6) answer the anomaly mask; the rest is noise."""

    afs_dims = (2,)

    def __init__(self) -> None:
        self.calls = 0
        self.indices: list[torch.Tensor] | None = None
        self.noise = torch.Generator().manual_seed(1)

    def afs_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        self.calls += 1
        features = torch.rand(images.shape[0], 6, 8, 8, generator=self.noise)
        # the images' red channel carries the anomaly (0 on sources): planted channels copy it
        small = F.interpolate(images[:, :1], size=(8, 8), mode="nearest")
        features[:, [1, 4]] = 4 * small
        return [features]

    def set_feature_selection(self, indices) -> None:
        self.indices = list(indices)


def planted_batches(count: int = 2) -> list[SimpleNamespace]:
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        mask = torch.zeros(4, 1, 32, 32)
        for i in range(4):
            y, x = torch.randint(0, 20, (2,), generator=g).tolist()
            mask[i, :, y : y + 12, x : x + 12] = 1
        source = torch.zeros(4, 3, 32, 32)
        image = source + mask.expand(-1, 3, -1, -1)
        label = torch.tensor([1, 1, 0, 1])
        batches.append(SimpleNamespace(image=image, source_image=source, gt_mask=mask, gt_label=label))
    return batches


def test_a_plan_selects_the_planted_channels_and_reuses_its_cache(tmp_path):
    plan = AFSPlan(num_batches=2, cache_path=tmp_path / "afs" / "indices.pt")
    first = PlantedModel()
    assert isinstance(first, FeatureSelectable)
    assert plan.apply(first, planted_batches()) is True
    assert first.indices is not None and torch.equal(first.indices[0], torch.tensor([1, 4]))
    assert torch.equal(load_indices(plan.cache_path)[0], torch.tensor([1, 4]))
    assert [p.name for p in plan.cache_path.parent.iterdir()] == ["indices.pt"]  # no temporary file left
    second = PlantedModel()
    assert plan.apply(second, planted_batches()) is False
    assert second.calls == 0 and torch.equal(second.indices[0], torch.tensor([1, 4]))
    done = PlantedModel()
    done.feature_selection_done = True  # e.g. restored from a checkpoint: left alone
    assert AFSPlan(num_batches=2).apply(done, planted_batches()) is False
    assert done.calls == 0 and done.indices is None


def test_plans_and_accumulators_reject_what_they_cannot_use(tmp_path):
    with pytest.raises(ValueError, match="num_batches"):
        AFSPlan(num_batches=0)
    with pytest.raises(ValueError, match="positive `dims`"):
        AFSPlan(dims=(4, 0))
    with pytest.raises(ValueError, match=r"dims\[0\]` = 7 is larger than layer 0 \(6 channels\)"):
        AFSPlan(num_batches=1, dims=(7,)).apply(PlantedModel(), planted_batches(1))
    without_source = [SimpleNamespace(image=torch.zeros(1, 3, 8, 8), source_image=None)]
    with pytest.raises(ValueError, match="source_image"):
        AFSPlan(num_batches=1).apply(PlantedModel(), without_source)
    with pytest.raises(ValueError, match="afs_features"):
        AFSPlan().apply(object(), [])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no anomalous triplets"):
        AFSAccumulator().select([1])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read AFS indices"):
        load_indices(garbage)
    save_indices(tmp_path / "ok.pt", [torch.tensor([3, 1])])
    assert torch.equal(load_indices(tmp_path / "ok.pt")[0], torch.tensor([3, 1]))
