"""Offline pretrained backbones."""

from __future__ import annotations

import pytest
import timm
import torch
from skimage import data
from torchvision.transforms.functional import normalize, resize

import anomalysynth  # noqa: F401  (registers the offline tags)
from anomalysynth.backbones import available_offline_backbones, create_timm_model


def test_offline_tag_is_registered_and_classifies_real_photographs():
    assert "efficientnet_lite0.offline_in1k" in available_offline_backbones()
    assert "efficientnet_lite0.offline_in1k" in timm.list_pretrained("efficientnet_lite0*")
    model = timm.create_model("efficientnet_lite0.offline_in1k", pretrained=True).eval()
    expected = {"chelsea": range(281, 286), "coffee": [967]}  # cats; espresso
    for name, classes in expected.items():
        image = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255
        x = normalize(resize(image, [224, 224], antialias=True), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        with torch.no_grad():
            top = int(model(x[None]).argmax())
        assert top in classes, f"{name} classified as {top}"


def test_anomalib_feature_extractor_uses_the_offline_weights():
    from anomalib.models.components import TimmFeatureExtractor

    extractor = TimmFeatureExtractor("efficientnet_lite0.offline_in1k", layers=["blocks.2", "blocks.4"])
    features = extractor(torch.rand(1, 3, 64, 64))
    assert features["blocks.2"].shape == (1, 40, 8, 8) and features["blocks.4"].shape == (1, 112, 4, 4)
    reference = create_timm_model("efficientnet_lite0.offline_in1k")
    assert torch.equal(extractor.feature_extractor.conv_stem.weight, reference.conv_stem.weight)


def test_user_weights_file_and_clear_errors(tmp_path):
    model = timm.create_model("resnet18", pretrained=False)
    torch.nn.init.constant_(model.conv1.weight, 0.5)
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    loaded = create_timm_model("resnet18", weights=path)
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)
    with pytest.raises(ValueError, match="weights="):
        create_timm_model("resnet18")
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        create_timm_model("resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="Unknown timm model"):
        create_timm_model("no_such_net", weights=path)


def test_fold_batchnorms_keeps_the_features_and_leaves_the_original_alone():
    from anomalysynth.backbones import fold_batchnorms

    model = create_timm_model("efficientnet_lite0.offline_in1k", features_only=True, out_indices=[1, 2, 3, 4]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorms(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 40
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        for a, b in zip(model(x), folded(x), strict=True):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fold_batchnorms_falls_back_when_a_batchnorm_does_not_follow_its_conv(caplog):
    from anomalysynth.backbones import fold_batchnorms

    class NotSequential(torch.nn.Module):  # registers conv then bn, but applies bn to the input
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(4.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.bn(x))

    torch.manual_seed(0)
    model = NotSequential().eval()
    folded = fold_batchnorms(model)
    assert "unfused" in caplog.text
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(model(x), folded(x))
