"""AnomalyAny on a tiny random-weight Stable Diffusion and CLIP."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.diffusion.attention import (
    AttentionStore,
    StoringAttnProcessor,
    find_token_indices,
    gaussian_smooth,
    pixels_above_mean,
    step_size,
    token_attention,
)
from anomalysynth.synth import AnomalyAny, create_synthesizer
from tests.conftest import anomalyany_kwargs, photo_batch


@pytest.fixture(scope="module")
def synth(tiny_sd):
    return create_synthesizer("anomalyany", **anomalyany_kwargs(tiny_sd))


def test_anomaly_token_is_found_from_the_prompt_words(synth):
    prompt = synth.prompts[0]
    assert prompt == "a photo of a brick wall with a crack"
    (index,) = synth.token_indices[0]
    ids = synth.tokenizer(prompt).input_ids
    assert synth.tokenizer.convert_ids_to_tokens(ids[index]) == "crack</w>"
    # a word split into several tokens gives its whole span
    span = find_token_indices(synth.tokenizer, "a photo of a brick wall with a scratch", "scratch")
    pieces = synth.tokenizer.convert_ids_to_tokens(synth.tokenizer("a photo of a brick wall with a scratch").input_ids)
    assert "".join(pieces[i] for i in span) == "scratch</w>"


def test_attention_store_returns_16x16_maps_for_the_anomaly_token(synth):
    store = AttentionStore(16)
    original = synth.unet.attn_processors
    synth.unet.set_attn_processor(StoringAttnProcessor(store))
    try:
        with torch.no_grad():
            synth.unet(torch.randn(1, 4, 16, 16), 500, encoder_hidden_states=synth.encode_prompt([synth.prompts[0]]))
    finally:
        synth.unet.set_attn_processor(original)
    assert len(store.maps) == 3  # one down and two up cross-attention layers run at 16x16
    maps = store.aggregate()
    assert maps.shape == (1, 16, 16, synth.tokenizer.model_max_length)
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 16, 16))  # probabilities over tokens
    (j,) = synth.token_indices[0]
    last = len(synth.tokenizer(synth.prompts[0]).input_ids) - 1
    expected = gaussian_smooth((maps[..., 1:last] * 100).softmax(-1)[..., j - 1])
    torch.testing.assert_close(token_attention(maps, [[j]], [last]), expected)
    with torch.no_grad():
        emb = synth.encode_prompt([synth.prompts[0]])
        assert synth.attention_maps(torch.zeros(1, 4, 16, 16), 500, emb, 0).shape == (1, 16, 16)


def test_one_optimisation_step_lowers_the_attention_loss(synth):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 16, 16, generator=g).requires_grad_(True)
    emb = synth.encode_prompt([synth.prompts[0]]).detach()
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:12, 4:12] = 1
    loss = synth.attention_loss(synth.attention_maps(z, 500, emb, 0), mask)
    (grad,) = torch.autograd.grad(loss.sum(), [z])
    assert grad.abs().sum() > 0
    latent_mask = mask.unsqueeze(1)
    z_new = (z - 20.0 * grad * latent_mask).detach()
    with torch.no_grad():
        new_loss = synth.attention_loss(synth.attention_maps(z_new, 500, emb, 0), mask)
    assert new_loss.item() < loss.item()


def test_step_size_shrinks_as_attention_localises():
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    spread = (1 + 0.1 * torch.sin(xx) * torch.cos(yy)).unsqueeze(0)
    local = torch.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 4).unsqueeze(0)
    n_spread, n_local = pixels_above_mean(spread), pixels_above_mean(local)
    assert n_local < n_spread
    alpha_start = step_size(20.0, 500, 1000, n_spread, n_spread)
    alpha_local = step_size(20.0, 500, 1000, n_local, n_spread)
    assert alpha_local < alpha_start
    torch.testing.assert_close(alpha_start, torch.tensor([20.0 * 1.5]))
    assert step_size(20.0, 100, 1000, n_spread, n_spread) < alpha_start  # and with time


def test_outside_the_mask_the_latent_is_the_noised_normal_latent(synth):
    image = photo_batch(1, 3, size=32)
    fg = torch.zeros(1, 1, 32, 32)
    fg[..., 8:24, 8:24] = 1
    seen = []

    def check(step, t, z, normal, latent_mask):
        outside = latent_mask.expand_as(z) == 0
        assert outside.any() and (~outside).any()
        assert torch.equal(z[outside], normal[outside])
        seen.append(step)

    _image_out, mask, strength = synth.generate(image, fg, 0, seed=3, callback=check)
    assert seen == list(range(len(seen))) and len(seen) >= 2
    assert mask[fg == 0].max() == 0
    assert strength.item() > 0


def test_same_seed_same_image_and_prompt_in_params(synth):
    images = photo_batch(2, 3)
    a = synth(images, generator=torch.Generator().manual_seed(5))
    b = synth(images, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert {"prompt_index", "seed"} <= set(a.params)
    assert all(p in synth.prompts for p in synth.prompt_for(a.params))


def test_missing_weights_say_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match=r"pipeline_path=.*clip_path="):
        AnomalyAny()
    with pytest.raises(ValueError, match="'unet/' is missing"):
        AnomalyAny(pipeline_path=tmp_path, clip_path=tmp_path)


def test_prompt_without_the_anomaly_word_is_refused(tiny_sd):
    kwargs = anomalyany_kwargs(tiny_sd)
    with pytest.raises(ValueError, match="does not contain an anomaly word"):
        AnomalyAny(**kwargs, prompts=["a photo of a brick wall"])
    with pytest.raises(ValueError, match="does not contain the anomaly word"):
        AnomalyAny(**kwargs, prompt_template="a photo of a {object}")


def test_mask_with_no_foreground_is_refused(synth):
    images = photo_batch(2, 3)
    fg = torch.ones(2, 1, 64, 64)
    fg[1] = 0
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] has no foreground"):
        synth(images, generator=torch.Generator().manual_seed(0), foreground=fg)
