"""Gathering AFS's anomalous triplets: cycling the loader, the per-pass epoch, on-device synthesis."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from anomalysynth.selection import AFSPlan, gather_triplets
from anomalysynth.synth import create_synthesizer
from anomalysynth.synth.keyed import synthesize_keyed


def synthetic_batch(labels: list[int], fill: float = 0.0) -> SimpleNamespace:
    b = len(labels)
    source = torch.full((b, 3, 16, 16), fill)
    mask = torch.zeros(b, 16, 16, dtype=torch.bool)
    mask[:, 4:10, 4:10] = torch.tensor(labels, dtype=torch.bool).view(b, 1, 1)
    image = source + mask[:, None].float() * 0.5
    return SimpleNamespace(image=image, source_image=source, gt_mask=mask, gt_label=torch.tensor(labels).bool())


class EpochLoader:
    """A loader whose sampler takes ``set_epoch``; each pass yields one batch whose content is its epoch."""

    def __init__(self) -> None:
        self.sampler = SimpleNamespace(epoch=7)
        self.sampler.set_epoch = lambda epoch: setattr(self.sampler, "epoch", epoch)
        self.epochs: list[int] = []

    def __iter__(self):
        self.epochs.append(self.sampler.epoch)
        yield synthetic_batch([1, 0, 1], fill=self.sampler.epoch / 10)


def test_the_loader_is_cycled_pass_p_at_epoch_p_until_exactly_num_samples():
    loader = EpochLoader()
    chunks = list(gather_triplets(loader, num_samples=5))
    assert [len(c) for c in chunks] == [2, 2, 1]  # 2 anomalous samples a pass, the last pass cut
    assert loader.epochs == [0, 1, 2]
    assert [float(c.normal[0, 0, 0, 0]) for c in chunks] == pytest.approx([0.0, 0.1, 0.2])
    assert loader.sampler.epoch == 7  # the sampler is left as it was found


def test_a_synthesizer_makes_every_normal_image_drawn_anomalous_keyed_by_pass():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = [SimpleNamespace(image=images[:2]), SimpleNamespace(image=images[2:])]  # no paths: keyed by position
    synthesizer = create_synthesizer("cutpaste")
    chunks = list(gather_triplets(plain, num_samples=6, synthesizer=synthesizer, seed=3))
    assert [len(c) for c in chunks] == [2, 2, 2]
    first = synthesize_keyed(synthesizer, images, [0, 1, 2, 3], 3, anomaly_ratio=1.0, epoch=0)
    second = synthesize_keyed(synthesizer, images[:2], [0, 1], 3, anomaly_ratio=1.0, epoch=1)
    assert torch.equal(torch.cat([c.anomalous for c in chunks[:2]]), first.image)
    assert torch.equal(chunks[2].anomalous, second.image)
    assert torch.equal(chunks[2].normal, images[:2]) and torch.equal(chunks[2].mask, second.mask)
    # a synthetic batch's normal samples are made anomalous from their source, its anomalous ones kept
    mixed = list(gather_triplets([synthetic_batch([1, 0, 0])], num_samples=3, synthesizer=synthesizer))
    assert [len(c) for c in mixed] == [1, 2]


def test_gathering_stops_at_num_batches_or_when_a_pass_gives_nothing():
    assert sum(len(c) for c in gather_triplets(EpochLoader(), num_samples=100, num_batches=3)) == 6
    one_shot = iter([synthetic_batch([1, 1])])
    assert sum(len(c) for c in gather_triplets(one_shot, num_samples=100)) == 2
    normal_only = [synthetic_batch([0, 0])]
    assert list(gather_triplets(normal_only, num_samples=100)) == []


class Counting:
    afs_dims = (2,)

    def afs_features(self, images):
        return [images]

    def set_feature_selection(self, indices):
        self.indices = indices


def test_a_plan_warns_when_the_loader_gives_fewer_samples_than_asked():
    with pytest.warns(UserWarning, match="AFS gathered 2 of 8"):
        AFSPlan(num_samples=8).apply(Counting(), iter([synthetic_batch([1, 1])]), progress=False)
