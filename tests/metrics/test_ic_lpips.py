"""IC-LPIPS and the perceptual distances behind it."""

from __future__ import annotations

import math

import pytest
import torch

from anomalysynth.metrics import LpipsAlexNet, ic_lpips
from tests.conftest import photo_batch


def test_identical_images_score_zero(effnet_perceptual):
    centre = photo_batch(1, 3, size=64)
    assert ic_lpips(effnet_perceptual, centre.repeat(5, 1, 1, 1), centre) == pytest.approx(0.0, abs=1e-7)


def test_more_diverse_set_scores_higher(effnet_perceptual):
    centre = photo_batch(1, 3, size=64)
    g = torch.Generator().manual_seed(0)
    similar = (centre + 0.02 * torch.randn(6, 3, 64, 64, generator=g)).clamp(0, 1)
    varied = photo_batch(6, 3, size=64)  # crops of four different photographs
    low = ic_lpips(effnet_perceptual, similar, centre)
    high = ic_lpips(effnet_perceptual, varied, centre)
    assert 0 < low < high


def test_clusters_form_around_their_nearest_centre(effnet_perceptual):
    from anomalysynth.metrics import nearest_centres

    centres = photo_batch(2, 3, size=64)  # astronaut and coffee crops
    g = torch.Generator().manual_seed(1)
    generated = (centres.repeat(3, 1, 1, 1) + 0.03 * torch.randn(6, 3, 64, 64, generator=g)).clamp(0, 1)
    embed = effnet_perceptual.embed
    assignment = nearest_centres(effnet_perceptual, embed(generated), embed(centres))
    assert assignment.tolist() == [0, 1, 0, 1, 0, 1]


def test_singleton_clusters_give_nan(effnet_perceptual):
    centres = photo_batch(2, 3, size=64)
    assert math.isnan(ic_lpips(effnet_perceptual, centres, centres))


def test_mask_variant_ignores_changes_outside_the_masks(effnet_perceptual):
    centre = photo_batch(1, 3, size=64)
    changed = centre.repeat(4, 1, 1, 1).clone()
    for i in range(4):
        changed[i, :, 40:, :] = 0.25 * i  # differences only in the bottom rows
    masks = torch.zeros(4, 1, 64, 64)
    masks[:, :, :16, :16] = 1
    full = ic_lpips(effnet_perceptual, changed, centre)
    masked = ic_lpips(effnet_perceptual, changed, centre, masks=masks)
    assert full > 0.05
    assert masked < 0.2 * full  # only the receptive fields reaching into the box see it


def test_lpips_alexnet_from_a_weights_file_matches_torchmetrics_lpips(tmp_path):
    import torchvision
    from torchmetrics.functional.image.lpips import _LPIPS

    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet.pth"
    torch.save(alexnet.state_dict(), path)
    ours = LpipsAlexNet(path)
    reference = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    features = alexnet.features
    for module in reference.net.children():  # the same AlexNet, loaded the other way
        for index, layer in module.named_children():
            layer.load_state_dict(features[int(index)].state_dict())
    a, b = photo_batch(3, 3, size=64), photo_batch(6, 3, size=64)[3:]
    expected = reference(a, b, normalize=True).flatten().double()
    got = ours.distance(ours.embed(a), ours.embed(b))
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert ours.metric_suffix == ""  # the papers' network: the papers' name


def test_lpips_needs_a_weights_file(tmp_path):
    from anomalysynth.metrics import create_perceptual_distance

    with pytest.raises(ValueError, match="AlexNet"):
        create_perceptual_distance("lpips")
    with pytest.raises(FileNotFoundError):
        LpipsAlexNet(tmp_path / "missing.pth")
