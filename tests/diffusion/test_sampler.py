"""SDAS sampling against diffusers' schedulers, and the strength's effect on the noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from anomalysynth.diffusion import SDASSampler, load_diffusion
from tests.conftest import tiny_module


def gens(n: int, base: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


@pytest.fixture(scope="module")
def module():
    return tiny_module()


def test_ddpm_step_with_zero_strength_equals_diffusers_bit_for_bit(module):
    sampler = module.sampler(num_steps=20)
    reference = DDPMScheduler.from_config(module.scheduler.config)
    reference.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 6, 8, 8, generator=g)
    for t in reference.timesteps:
        ours = sampler.step(out, int(t), x, 0.0, torch.Generator().manual_seed(7))
        theirs = reference.step(out, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
        assert torch.equal(ours, theirs), int(t)


def test_whole_chain_with_zero_strength_equals_a_diffusers_loop(module):
    sampler = module.sampler(num_steps=10)
    images = sampler.sample(2, 0.0, torch.Generator().manual_seed(3))
    reference = DDPMScheduler.from_config(module.scheduler.config)
    reference.set_timesteps(10)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g)
    with torch.no_grad():
        for t in reference.timesteps:
            x = reference.step(module.ema_unet(x, t).sample, t, x, generator=g).prev_sample
    assert torch.equal(images, ((x + 1) / 2).clamp(0, 1))


def test_ddim_variant_with_zero_strength_equals_ddim_eta_zero_on_the_clipped_output(module):
    """RealNet's ddim_sample re-derives eps from the clipped x0: diffusers' use_clipped_model_output=True."""
    assert module.scheduler.config.clip_sample
    sampler = module.sampler(num_steps=20, method="ddim")
    reference = DDIMScheduler.from_config(module.scheduler.config)
    reference.set_timesteps(20)
    g = torch.Generator().manual_seed(1)
    x, out = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 6, 8, 8, generator=g) * 3
    clipped_steps = 0
    for t in reference.timesteps:
        ours = sampler.step(out, int(t), x, 0.0, torch.Generator().manual_seed(0))
        theirs = reference.step(out[:, :3], t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        assert torch.equal(ours, theirs), int(t)
        raw = reference.step(out[:, :3], t, x, eta=0.0).prev_sample
        clipped_steps += int(not torch.allclose(raw, theirs))
    assert clipped_steps > 0  # the clipping mattered, so the raw-eps variant would have failed


def test_ddim_step_follows_realnets_reference_formula(module):
    """The reference's step in float64: x0 clipped to [-1, 1], eps = (x / sqrt(a) - x0) / sqrt(1 / a - 1),
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps (eta = 0, s = 0)."""
    sampler = module.sampler(num_steps=20, method="ddim")
    g = torch.Generator().manual_seed(4)
    x, out = torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 6, 8, 8, generator=g) * 3
    x64, eps64 = x.double(), out[:, :3].double()
    for t in sampler.scheduler.timesteps[:-1]:
        t = int(t)
        prev_t = int(sampler.scheduler.previous_timestep(t))
        a, a_prev = (sampler.scheduler.alphas_cumprod[k].double() for k in (t, prev_t))
        x0 = (x64 / a.sqrt() - (1 / a - 1).sqrt() * eps64).clamp(-1, 1)
        eps = (x64 / a.sqrt() - x0) / (1 / a - 1).sqrt()
        expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        raw_eps = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps64
        assert not torch.allclose(raw_eps, expected, atol=1e-3)  # clipping changed this step
        torch.testing.assert_close(sampler.step(out, t, x, 0.0).double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_noise_standard_deviation_scales_with_strength(module, method):
    sampler = module.sampler(num_steps=20, method=method)
    g = torch.Generator().manual_seed(2)
    x, out = torch.randn(64, 3, 8, 8, generator=g), torch.randn(64, 6, 8, 8, generator=g) * 0.5
    t = int(sampler.scheduler.timesteps[5])
    stds = {}
    for s in (0.0, 0.2, 0.4, 1.0):
        draws = torch.stack([sampler.step(out, t, x, s, torch.Generator().manual_seed(100 + k)) for k in range(40)])
        stds[s] = (draws - draws.mean(0)).std().item()
    for s in (0.2, 0.4, 1.0):
        # ddpm: sqrt(1 + s) times the s = 0 noise; ddim: N(0, s Sigma), so sqrt(s / 0.2) times the s = 0.2 noise
        expected = (1 + s) ** 0.5 if method == "ddpm" else (s / 0.2) ** 0.5
        base = stds[0.0] if method == "ddpm" else stds[0.2]
        assert stds[s] / base == pytest.approx(expected, rel=0.03), (s, stds)
    if method == "ddim":
        assert stds[0.0] < 1e-6  # deterministic DDIM: identical draws


def test_per_sample_strength_and_generators_match_single_calls(module):
    sampler = module.sampler(num_steps=5)
    strength = torch.tensor([0.0, 0.1, 0.4])
    batch = sampler.sample(3, strength, gens(3))
    for i in range(3):
        single = sampler.sample(1, float(strength[i]), gens(1, base=i))
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-5, rtol=0)
    assert batch.min() >= 0 and batch.max() <= 1


def test_refuses_a_model_without_learned_variance():
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        layers_per_block=1,
    )
    scheduler = DDPMScheduler(num_train_timesteps=100)
    with pytest.raises(ValueError, match=r"no learned variance.*fixed_variance=True"):
        SDASSampler(unet, scheduler)
    images = SDASSampler(unet, scheduler, num_steps=4, fixed_variance=True).sample(
        2, 0.1, torch.Generator().manual_seed(0)
    )
    assert images.shape == (2, 3, 8, 8)


def test_bad_arguments(module):
    with pytest.raises(ValueError, match="method"):
        module.sampler(method="euler")
    with pytest.raises(ValueError, match="num_steps"):
        module.sampler(num_steps=0)
    sampler = module.sampler(num_steps=2)
    with pytest.raises(ValueError, match="strength"):
        sampler.sample(2, -0.1)
    with pytest.raises(ValueError, match=r"\(2,\) tensor"):
        sampler.sample(2, torch.zeros(3))
    with pytest.raises(ValueError, match="one per image"):
        sampler.sample(2, 0.1, gens(3))


def test_checkpoint_and_pretrained_folder_load_the_same_model(tiny_checkpoint, tmp_path):
    from anomalysynth.diffusion import NormalImageDiffusion

    unet, scheduler = load_diffusion(tiny_checkpoint)
    assert scheduler.config.variance_type == "learned_range"
    folder = NormalImageDiffusion.from_checkpoint(tiny_checkpoint).save_pretrained(tmp_path / "pretrained")
    unet2, scheduler2 = load_diffusion(folder)
    a = SDASSampler(unet, scheduler, num_steps=3).sample(2, 0.1, gens(2))
    b = SDASSampler(unet2, scheduler2, num_steps=3).sample(2, 0.1, gens(2))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not exist"):
        load_diffusion(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="unet/"):
        load_diffusion(tmp_path)
