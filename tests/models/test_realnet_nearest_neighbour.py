"""RealNet's nearest-neighbour normality term, against brute-force references (numpy, scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from anomalysynth.models.realnet.nearest_neighbour import NearestNeighbourNormality, greedy_coreset, nearest_distance
from tests.models.tiny_realnet import CHANNELS, tiny_model


def test_nearest_distance_matches_scipy():
    g = torch.Generator().manual_seed(0)
    query, bank = torch.randn(300, 7, generator=g), torch.randn(50, 7, generator=g)
    expected = cdist(query.numpy(), bank.numpy()).min(axis=1)
    np.testing.assert_allclose(nearest_distance(query, bank, chunk=64).numpy(), expected, rtol=1e-4, atol=1e-4)


def naive_k_center(points: np.ndarray, size: int, start: int) -> list[int]:
    chosen = [start]
    nearest = np.linalg.norm(points - points[start], axis=1)
    for _ in range(size - 1):
        index = int(np.argmax(nearest))
        chosen.append(index)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[index], axis=1))
    return chosen


def test_greedy_coreset_is_the_k_center_selection():
    points = torch.randn(400, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    chosen = greedy_coreset(points, 20, torch.Generator().manual_seed(3))
    start = int(torch.randint(400, (1,), generator=torch.Generator().manual_seed(3)))
    assert chosen.tolist() == naive_k_center(points.numpy(), 20, start)
    with pytest.raises(ValueError, match="size"):
        greedy_coreset(points, 401)


def test_fit_scales_by_held_out_images_and_finds_training_patches():
    g = torch.Generator().manual_seed(2)
    term = NearestNeighbourNormality([0], [6], bank_size=10_000, pool=1)
    embeddings = torch.randn(16, 6, 4, 4, generator=g)
    term.fit(embeddings)
    # every 8th image (7 and 15) is held out; with a bank of all other patches the scale is their mean distance
    held = embeddings[[7, 15]].permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    rest = embeddings[[i for i in range(16) if i not in (7, 15)]].permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    assert len(term.bank) == len(rest)
    assert float(term.scale) == pytest.approx(cdist(held, rest).min(axis=1).mean(), rel=1e-4)
    # a training image's own patches sit at distance 0; an unseen image's do not
    assert term([embeddings[:1]]).abs().max() < 1e-2  # float rounding of |q|^2 - 2 q.b + |b|^2 under the root
    assert term([embeddings[7:8]]).min() > 0


def test_term_refuses_to_run_without_a_bank_and_round_trips_its_bank():
    term = NearestNeighbourNormality([0], [3], bank_size=5, pool=1)
    with pytest.raises(RuntimeError, match="no bank"):
        term([torch.zeros(1, 3, 2, 2)])
    term.fit(torch.randn(9, 3, 4, 4, generator=torch.Generator().manual_seed(0)))
    other = NearestNeighbourNormality([0], [3], bank_size=5, pool=1)
    other.load_state_dict(term.state_dict())
    assert torch.equal(other.bank, term.bank) and bool(other.fitted)
    # a state dict from before the term existed loads as "no bank"
    fresh = NearestNeighbourNormality([0], [3], bank_size=5, pool=1)
    fresh.load_state_dict({})
    assert not bool(fresh.fitted)


def _patch_mean(features: torch.Tensor, zeros_count: bool) -> torch.Tensor:
    """PatchCore's local average written as it writes it: unfold 3x3 patches with zero padding and
    average them (over all 9 places, or over the places inside the image only)."""
    b, c, h, w = features.shape
    patches = torch.nn.functional.unfold(features, 3, padding=1).view(b, c, 9, h * w)
    if zeros_count:
        return patches.mean(dim=2).view(b, c, h, w)
    inside = torch.nn.functional.unfold(torch.ones(1, 1, h, w), 3, padding=1).view(1, 1, 9, h * w)
    return (patches.sum(dim=2) / inside.sum(dim=2)).view(b, c, h, w)


def test_embedding_averages_patches_with_the_zero_padding_as_patchcore_does():
    g = torch.Generator().manual_seed(5)
    fine, coarse = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    term = NearestNeighbourNormality([0, 1], [3, 4], bank_size=5)
    expected = torch.cat(
        [
            _patch_mean(fine, True),
            torch.nn.functional.interpolate(_patch_mean(coarse, True), size=(8, 8), mode="bilinear"),
        ],
        dim=1,
    )
    torch.testing.assert_close(term.embed([fine, coarse]), expected)
    # the border differs from the average over the inside places alone (the pooling before)
    assert not torch.allclose(
        term.embed([fine, coarse])[..., 0, :],
        torch.cat([_patch_mean(fine, False)[..., 0, :], expected[:, 3:, 0, :]], dim=1),
    )


def test_a_bank_saved_before_the_zero_padding_keeps_its_own_pooling():
    g = torch.Generator().manual_seed(6)
    term = NearestNeighbourNormality([0], [3], bank_size=5)
    term.fit(term.embed([torch.randn(9, 3, 4, 4, generator=g)]))
    older = {k: v for k, v in term.state_dict().items() if k != "zero_padded"}  # as such models were saved
    loaded = NearestNeighbourNormality([0], [3], bank_size=5)
    loaded.load_state_dict(older)
    features = torch.randn(1, 3, 4, 4, generator=g)
    assert not bool(loaded.zero_padded)
    torch.testing.assert_close(loaded.embed([features]), _patch_mean(features, False))
    round_trip = NearestNeighbourNormality([0], [3], bank_size=5)
    round_trip.load_state_dict(term.state_dict())
    assert bool(round_trip.zero_padded)
    torch.testing.assert_close(round_trip.embed([features]), _patch_mean(features, True))
    unbuilt = NearestNeighbourNormality([0], [3], bank_size=5)
    unbuilt.load_state_dict({})  # no bank yet: it will be built, and read, with the zero padding
    assert bool(unbuilt.zero_padded)


def test_realnet_mixes_the_distance_into_its_map():
    model = tiny_model(neighbour_weight=0.4, neighbour_levels=[1, 2]).eval()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    raw = model.extract(images)
    assert model.nearest_neighbour is not None
    model.nearest_neighbour.fit(model.nearest_neighbour.embed(raw))
    out = model(images)
    # the same map written out: (1 - w) p + w n / (1 + n), with n the distance brought to image size
    probability = out.logits.softmax(dim=1)[:, 1:2]
    n = torch.nn.functional.interpolate(model.nearest_neighbour(raw), size=(64, 64), mode="bilinear")
    expected = 0.6 * probability + 0.4 * n / (1 + n)
    torch.testing.assert_close(out.anomaly_map, expected)
    # w = 0: the discriminator's probability alone
    model.neighbour_weight = 0.0
    torch.testing.assert_close(model(images).anomaly_map, probability)
    with pytest.raises(ValueError, match="neighbour_levels"):
        tiny_model(neighbour_weight=0.4)
    with pytest.raises(ValueError, match="neighbour_levels"):
        tiny_model(neighbour_weight=0.4, neighbour_levels=[len(CHANNELS)])


def test_the_image_score_reads_the_distance_at_its_own_weight():
    model = tiny_model(neighbour_weight=0.25, neighbour_levels=[1, 2], score_topk=7).eval()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    raw = model.extract(images)
    assert model.nearest_neighbour is not None
    model.nearest_neighbour.fit(model.nearest_neighbour.embed(raw))
    probability = model(images).logits.softmax(dim=1)[:, 1:2]
    n = torch.nn.functional.interpolate(model.nearest_neighbour(raw), size=(64, 64), mode="bilinear")
    q = n / (1 + n)

    def top7(m: torch.Tensor) -> torch.Tensor:
        return torch.sort(m.flatten(1), dim=1, descending=True).values[:, :7].mean(dim=1)

    # None: the map's own mix
    out = model(images)
    torch.testing.assert_close(out.pred_score, top7(0.75 * probability + 0.25 * q))
    model.score_neighbour_weight = 0.6
    out = model(images)
    torch.testing.assert_close(out.anomaly_map, 0.75 * probability + 0.25 * q)  # the map keeps its weight
    torch.testing.assert_close(out.pred_score, top7(0.4 * probability + 0.6 * q))
    # neighbour_weight 0 turns the term off in the score too
    model.neighbour_weight = 0.0
    torch.testing.assert_close(model(images).pred_score, top7(probability))
    with pytest.raises(ValueError, match="score_neighbour_weight"):
        tiny_model(neighbour_weight=0.25, neighbour_levels=[1, 2], score_neighbour_weight=1.5)
    with pytest.raises(ValueError, match="score_neighbour_weight"):
        tiny_model(neighbour_weight=0.25, neighbour_levels=[1, 2], residual_weight=0.5, score_neighbour_weight=0.6)


def test_realnet_ships_a_heavier_distance_in_the_image_score():
    from anomalysynth.models import RealNet

    model = RealNet(evaluator=False)
    assert (model.model.neighbour_weight, model.model.score_neighbour_weight) == (0.15, 0.35)
