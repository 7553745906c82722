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
    last = synth.last_tokens[0]  # SD 1.x: every token but the start and the last padding one
    assert last == synth.tokenizer.model_max_length - 1
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


def _unet_conditions(synth, run):
    """The conditional embeddings the UNet sees during ``run()`` (the unconditional ones left out)."""
    seen = []
    hook = synth.unet.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True
    )
    try:
        run()
    finally:
        hook.remove()
    with torch.no_grad():
        uncond = synth.encode_prompt([""])
    return [e for e in seen if not torch.equal(e, uncond.expand_as(e))]


def test_prompt_embedding_moves_by_a_meaningful_amount_in_refinement(synth):
    image, fg = photo_batch(1, 3), torch.ones(1, 1, 64, 64)
    with torch.no_grad():
        start, detail = synth.encode_prompt([synth.prompts[0]]), synth.encode_prompt([synth.details[0]])
    conditions = _unet_conditions(synth, lambda: synth.generate(image, fg, 0, seed=3))
    # one refinement step (refine_steps=1): the last UNet passes use the refined embedding,
    # turned towards the detailed description's by prompt_lr * sin(angle) of its norm
    moved = max(((c - start).norm() / start.norm()).item() for c in conditions)
    sine = (1 - torch.nn.functional.cosine_similarity(start.flatten(1), detail.flatten(1)) ** 2).sqrt().item()
    assert sine > 0.3
    assert moved == pytest.approx(synth.prompt_lr * sine, rel=1e-2)
    refined = max(conditions, key=lambda c: (c - start).norm().item())
    assert synth.prompt_loss(refined, detail).item() < synth.prompt_loss(start, detail).item()


def test_one_prompt_update_is_a_scale_free_step_down_the_prompt_loss(synth):
    with torch.no_grad():
        c = synth.encode_prompt([synth.prompts[0], synth.prompts[1]])
        detail = synth.encode_prompt([synth.details[0], synth.details[1]])
    new = synth.refine_prompt(c, detail)
    relative = (new - c).flatten(1).norm(dim=1) / c.flatten(1).norm(dim=1)
    sine = (1 - torch.nn.functional.cosine_similarity(c.flatten(1), detail.flatten(1)) ** 2).sqrt()
    torch.testing.assert_close(relative, synth.prompt_lr * sine, rtol=1e-3, atol=0)
    assert (synth.prompt_loss(new, detail) < synth.prompt_loss(c, detail)).all()
    # the same relative step whatever the embedding's scale; none once aligned
    torch.testing.assert_close(synth.refine_prompt(10 * c, detail), 10 * new, rtol=1e-5, atol=1e-5)
    aligned = synth.refine_prompt(detail, detail)
    assert ((aligned - detail).norm() / detail.norm()).item() < 1e-5


def _transitions(mask):
    """Positions (x of horizontal, y of vertical neighbours) where a (B, 1, H, W) mask changes."""
    m = mask[:, 0]
    xs = torch.nonzero(m[:, :, 1:] != m[:, :, :-1])[:, 2] + 1
    ys = torch.nonzero(m[:, 1:, :] != m[:, :-1, :])[:, 1] + 1
    return torch.cat([xs, ys])


def test_annotation_thresholds_the_bilinearly_upsampled_map(synth):
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    blob = torch.exp(-((yy - 6.3) ** 2 + (xx - 9.6) ** 2) / 8).unsqueeze(0)
    mask = synth.annotation(blob, torch.ones(1, 1, 64, 64), (64, 64))
    edges = _transitions(mask)
    assert len(edges) > 0 and (edges % 4 != 0).any()  # not the 4-px blocks of the 16x16 grid
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    # the foreground restricts the mask and the threshold is relative to the peak inside it
    fg = torch.zeros(1, 1, 64, 64)
    fg[..., 40:, :20] = 1
    inside = synth.annotation(blob, fg, (64, 64))
    assert inside.sum() > 0 and inside[fg == 0].max() == 0


def test_generated_masks_have_no_block_seams(tiny_sd):
    synth = AnomalyAny(**anomalyany_kwargs(tiny_sd), mask_threshold=0.9)
    out = synth(photo_batch(4, 3), generator=[torch.Generator().manual_seed(i) for i in range(4)])
    assert out.label.tolist() == [1, 1, 1, 1]
    edges = _transitions(out.mask)  # 64-px images, 16x16 attention: grid lines every 4 px
    assert len(edges) > 0
    assert (edges % 4 != 0).float().mean() > 0.5


def test_padding_tokens_stay_in_the_softmax_for_sd1_and_leave_it_for_sd2(tiny_sd, monkeypatch):
    kwargs = anomalyany_kwargs(tiny_sd)
    sd1 = AnomalyAny(**kwargs)
    assert not sd1.is_sd2() and not sd1.drops_padding_tokens
    max_length = sd1.tokenizer.model_max_length
    assert sd1.last_tokens == [max_length - 1] * len(sd1.prompts)
    dropped = AnomalyAny(**kwargs, normalize_eot=True)  # what SD 2.x gets by default
    ends = [len(sd1.tokenizer(p).input_ids) - 1 for p in sd1.prompts]
    assert dropped.last_tokens == ends and max(ends) < max_length - 1
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        emb = sd1.encode_prompt([sd1.prompts[0]])
        assert not torch.allclose(sd1.attention_maps(z, 500, emb, 0), dropped.attention_maps(z, 500, emb, 0))
    monkeypatch.setattr(sd1.text_encoder.config, "hidden_size", 1024)
    assert sd1.is_sd2()  # an OpenCLIP ViT-H text encoder: SD 2.x
    assert AnomalyAny(**kwargs, normalize_eot=False).config()["normalize_eot"] is False


def test_decoded_image_is_clamped_before_clip(synth, monkeypatch):
    from types import SimpleNamespace

    seen = []

    def decode(z):
        out = torch.linspace(-3, 3, 3 * 32 * 32).view(1, 3, 32, 32).expand(z.shape[0], -1, -1, -1)
        return SimpleNamespace(sample=out + 0 * z.sum())

    def features(pixel_values):
        seen.append(pixel_values.detach())
        return pixel_values.flatten(1)[:, :16]

    monkeypatch.setattr(synth.vae, "decode", decode)
    monkeypatch.setattr(synth.clip, "get_image_features", features)
    synth.image_loss(torch.zeros(1, 4, 16, 16), torch.ones(1, 16))
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    pixels = seen[0] * std + mean
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert pixels.min() < 1e-6 and pixels.max() > 1 - 1e-6  # the out-of-range values were clamped


def test_batched_generation_is_opt_in_and_close_to_one_at_a_time(tiny_sd):
    kwargs = anomalyany_kwargs(tiny_sd)
    images = photo_batch(3, 3)
    generators = lambda: [torch.Generator().manual_seed(10 + i) for i in range(3)]  # noqa: E731
    single = AnomalyAny(**kwargs)
    batched = AnomalyAny(**kwargs, batch_size=2)
    assert single.batch_size == 1
    a, b = single(images, generator=generators()), batched(images, generator=generators())
    assert torch.equal(a.params["seed"], b.params["seed"])
    torch.testing.assert_close(b.image, a.image, atol=1e-4, rtol=0)  # float rounding, not bit-identical
    assert (b.mask != a.mask).float().mean() < 0.01
    again = batched(images, generator=generators())  # the same batches: the same result
    assert torch.equal(again.image, b.image) and torch.equal(again.mask, b.mask)
    assert torch.equal(batched(images, params=b.params).image, b.image)
    with pytest.raises(ValueError, match="batch_size"):
        AnomalyAny(**kwargs, batch_size=0)


def test_config_records_the_loaded_weights_content(tiny_sd):
    from anomalysynth.files import path_sha256

    kwargs = anomalyany_kwargs(tiny_sd)
    digests = AnomalyAny(**kwargs).config()["weights_sha256"]
    assert digests == {"pipeline": path_sha256(kwargs["pipeline_path"]), "clip": path_sha256(kwargs["clip_path"])}
