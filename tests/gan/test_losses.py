"""The GAN, feature-matching and perceptual losses, and that training lowers them on a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalysynth.gan import PerceptualLoss, feature_matching_loss, gan_loss
from tests.gan.tiny_hybrid import tiny_module


def test_lsgan_and_hinge_losses_match_numpy():
    g = torch.Generator().manual_seed(0)
    outputs = [[torch.randn(2, 4, 5, 5, generator=g), torch.randn(2, 1, 5, 5, generator=g)] for _ in range(2)]
    logits = [o[-1].numpy() for o in outputs]
    assert float(gan_loss(outputs, True)) == pytest.approx(np.mean([np.mean((x - 1) ** 2) for x in logits]), rel=1e-5)
    assert float(gan_loss(outputs, False)) == pytest.approx(np.mean([np.mean(x**2) for x in logits]), rel=1e-5)
    hinge_real = np.mean([np.mean(np.maximum(0, 1 - x)) for x in logits])
    assert float(gan_loss(outputs, True, "hinge")) == pytest.approx(hinge_real, rel=1e-5)
    assert float(gan_loss(outputs, True, "hinge", for_discriminator=False)) == pytest.approx(
        -np.mean([x.mean() for x in logits]), abs=1e-6
    )
    with pytest.raises(ValueError, match="mode"):
        gan_loss(outputs, True, "wgan")


def test_feature_matching_matches_numpy():
    g = torch.Generator().manual_seed(1)
    fake = [[torch.randn(2, 3, 4, 4, generator=g) for _ in range(3)] for _ in range(2)]
    real = [[torch.randn(2, 3, 4, 4, generator=g) for _ in range(3)] for _ in range(2)]
    expected = np.mean(
        [
            sum(np.abs(f.numpy() - r.numpy()).mean() for f, r in zip(fs[:-1], rs[:-1], strict=True))
            for fs, rs in zip(fake, real, strict=True)
        ]
    )
    assert float(feature_matching_loss(fake, real)) == pytest.approx(expected, rel=1e-5)


def test_efficientnet_perceptual_loss_is_zero_only_for_equal_images():
    loss = PerceptualLoss()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(loss(x, x)) == 0.0
    assert float(loss(x, x.flip(-1))) > 0.0
    assert float(loss(x[:, :1], x[:, :1])) == 0.0  # grey is repeated to RGB
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training  # frozen BatchNorm statistics


def test_vgg19_needs_a_local_weights_file_and_loads_one(tmp_path):
    with pytest.raises(ValueError, match=r"vgg19-dcbb9e9d\.pth"):
        PerceptualLoss("vgg19")
    from torchvision.models import vgg19

    path = tmp_path / "vgg19.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    loss = PerceptualLoss("vgg19", weights=path)
    assert len(loss.stages) == 5 and loss.stage_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    x = torch.rand(1, 3, 32, 32)
    assert float(loss(x, x)) == 0.0 and float(loss(x, 1 - x)) > 0
    with pytest.raises(ValueError, match="backbone"):
        PerceptualLoss("lpips")


def fixed_pair(module):
    return module.training_pair(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)), step=0)


def generator_steps(module, pair, steps: int = 4) -> tuple[dict[str, float], dict[str, float]]:
    """Generator loss terms before and after ``steps`` Adam steps against a fixed discriminator."""
    opt = torch.optim.Adam(module.generator.parameters(), lr=3e-3)
    module.discriminator.requires_grad_(False)

    def terms() -> dict[str, torch.Tensor]:
        return module.generator_loss(pair, module.generator(pair.content, pair.depth, pair.edge))

    with torch.no_grad():
        first = {k: float(v) for k, v in terms().items()}
    for _ in range(steps):
        opt.zero_grad()
        terms()["loss_g"].backward()
        opt.step()
    with torch.no_grad():
        last = {k: float(v) for k, v in terms().items()}
    module.discriminator.requires_grad_(True)
    return first, last


def test_generator_steps_lower_the_perceptual_loss():
    module = tiny_module(perceptual_backbone="efficientnet_lite0", gan_weight=0.0, feature_matching_weight=0.0)
    first, last = generator_steps(module, fixed_pair(module))
    assert last["perceptual_depth"] < first["perceptual_depth"]
    assert last["perceptual_edge"] < first["perceptual_edge"]


def test_generator_and_discriminator_steps_lower_their_gan_losses():
    module = tiny_module(perceptual_weight=0.0, feature_matching_weight=0.0)
    pair = fixed_pair(module)
    first, last = generator_steps(module, pair)
    assert last["gan_depth"] < first["gan_depth"] and last["gan_edge"] < first["gan_edge"]
    # the discriminator against fixed generated images
    opt = torch.optim.Adam(module.discriminator.parameters(), lr=3e-3)
    with torch.no_grad():
        outs = module.generator(pair.content, pair.depth, pair.edge)
        first_d = float(module.discriminator_loss(pair, outs))
    for _ in range(4):
        opt.zero_grad()
        module.discriminator_loss(pair, outs).backward()
        opt.step()
    with torch.no_grad():
        assert float(module.discriminator_loss(pair, outs)) < first_d
