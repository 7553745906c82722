"""The synthesizer contract, checked for every registered synthesizer."""

from __future__ import annotations

import json

import pytest
import torch

from anomalysynth.synth import OneOf, available_synthesizers, create_synthesizer, from_config
from tests.conftest import anomalyany_kwargs, photo_batch

NAMES = available_synthesizers()
SHAPES = [(1, 3), (8, 3), (1, 1), (8, 1)]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def contract_kwargs(name: str, request) -> dict:
    """Synthesizers that need a model or a bank get tiny local ones."""
    if name == "sdas":
        return {"bank": request.getfixturevalue("sdas_texture_folder")}
    if name == "default_mix":
        return {"normal_dir": request.getfixturevalue("sdas_texture_folder")}
    if name == "anomalyany":
        return anomalyany_kwargs(request.getfixturevalue("tiny_sd"))
    if name == "anomalyhybrid":
        from tests.gan.tiny_hybrid import contract_kwargs as hybrid_kwargs

        return hybrid_kwargs(request.getfixturevalue("tmp_path_factory"))
    return {}


@pytest.fixture(scope="module", params=NAMES)
def synth(request):
    return create_synthesizer(request.param, **contract_kwargs(request.param, request))


def test_registry_is_populated():
    assert {"cutpaste", "cutpaste_scar", "cutpaste_union", "perlin_texture", "memseg", "sdas"} <= set(NAMES)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="perlin_texture"):
        create_synthesizer("no_such_method")


@pytest.mark.parametrize(("batch", "channels"), SHAPES)
def test_shapes_ranges_and_honest_labels(synth, batch, channels):
    images = photo_batch(batch, channels)
    out = synth(images, generator=gen(0))
    assert out.image.shape == images.shape and out.image.dtype == images.dtype
    assert out.mask.shape == (batch, 1, 64, 64) and out.mask.dtype == images.dtype
    assert out.label.shape == (batch,) and out.label.dtype == torch.long
    assert out.strength.shape == (batch,) and out.strength.is_floating_point()
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    assert torch.equal(out.label, (out.mask.flatten(1).amax(1) > 0).long())
    outside = (out.mask == 0).expand_as(images)
    assert torch.equal(out.image[outside], images[outside])
    # an anomalous sample really changed the image; a normal one has strength 0
    for i in range(batch):
        if out.label[i]:
            assert not torch.equal(out.image[i], images[i])
        else:
            assert out.strength[i] == 0


@pytest.mark.parametrize(("batch", "channels"), SHAPES)
def test_seeded_determinism_and_replay(synth, batch, channels):
    images = photo_batch(batch, channels)
    a = synth(images, generator=gen(3))
    b = synth(images, generator=gen(3))
    c = synth(images, generator=gen(4))
    for field in ("image", "mask", "label", "strength"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.image, c.image) or not torch.equal(a.mask, c.mask)
    replay = synth(images, params=a.params)
    assert torch.equal(replay.image, a.image) and torch.equal(replay.mask, a.mask)
    assert torch.equal(synth.apply(images, a.params).image, a.image)


def test_memory_layout_does_not_matter(synth):
    images = photo_batch(4, 3)
    expected = synth(images, generator=gen(5))
    for layout in (images.to(memory_format=torch.channels_last), images.repeat_interleave(2, dim=-1)[..., ::2]):
        assert not layout.is_contiguous()
        out = synth(layout, generator=gen(5))
        assert torch.equal(out.image, expected.image) and torch.equal(out.mask, expected.mask)


@pytest.mark.parametrize("channels", [3, 1])
def test_generator_list_matches_single_image_calls(synth, channels):
    images = photo_batch(8, channels)
    batched = synth(images, generator=[gen(100 + i) for i in range(8)])
    for i in range(8):
        single = synth(images[i : i + 1], generator=gen(100 + i))
        assert torch.equal(single.image[0], batched.image[i]), f"sample {i} differs"
        assert torch.equal(single.mask[0], batched.mask[i])
        assert torch.equal(single.strength[0], batched.strength[i])


@pytest.mark.parametrize("channels", [3, 1])
def test_foreground_restricts_the_mask(synth, channels):
    images = photo_batch(8, channels)
    fg = torch.zeros(8, 1, 64, 64)
    fg[..., 16:48, 8:40] = 1
    out = synth(images, generator=gen(5), foreground=fg)
    assert out.mask[fg.expand_as(out.mask) == 0].max() == 0
    assert torch.equal(out.image[(fg == 0).expand_as(images)], images[(fg == 0).expand_as(images)])
    replay = synth(images, params=out.params)
    assert torch.equal(replay.mask, out.mask)


def test_anomaly_ratio_gives_unchanged_normal_samples(synth, request):
    images = photo_batch(8, 3).repeat(4, 1, 1, 1)
    kwargs = contract_kwargs(synth.name, request)
    synth_half = type(synth)(anomaly_ratio=0.5, **kwargs)
    out = synth_half(images, generator=gen(0))
    anomalous = out.params["anomalous"]
    assert 6 <= int(anomalous.sum()) <= 26  # 32 draws at p = 0.5
    normal = ~anomalous
    assert torch.equal(out.image[normal], images[normal])
    assert out.mask[normal].max() == 0 and out.label[normal].max() == 0
    none = type(synth)(anomaly_ratio=0.0, **kwargs)(images, generator=gen(0))
    assert torch.equal(none.image, images) and none.label.max() == 0


BAD_INPUTS = {
    "uint8": (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "dtype"),
    "above one": (torch.full((2, 3, 32, 32), 2.0), r"values in \[0"),
    "below zero": (torch.full((2, 3, 32, 32), -0.5), r"values in \[0"),
    "rank 3": (torch.rand(3, 32, 32), "rank 3"),
    "rank 5": (torch.rand(1, 2, 3, 32, 32), "rank 5"),
    "2 channels": (torch.rand(2, 2, 32, 32), "2 channels"),
    "4 channels": (torch.rand(2, 4, 32, 32), "4 channels"),
    "empty batch": (torch.rand(0, 3, 32, 32), "empty batch"),
    "nan": (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
    "not a tensor": ([[0.5]], "list"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_with_what_was_expected(synth, case):
    images, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=r"Expected a float tensor \(B, C, H, W\)") as info:
        synth(images, generator=gen(0))
    assert info.match(message)


def test_bad_foreground_and_params_are_rejected(synth):
    images = photo_batch(2, 3)
    with pytest.raises(ValueError, match="foreground"):
        synth(images, generator=gen(0), foreground=torch.ones(2, 1, 8, 8))
    params = synth.sample_params(images, gen(0))
    with pytest.raises(ValueError, match="batch-first with 1 samples"):
        synth.apply(images[:1], params)
    with pytest.raises(ValueError, match=r"one torch\.Generator per sample"):
        synth(images, generator=[gen(0)])


def test_synthesizers_remain_ordinary_modules(synth):
    # nn.Module.apply(fn) and .to() keep working although `apply` is the contract's replay method
    parent = torch.nn.Sequential(synth)
    seen = []
    parent.apply(seen.append)
    assert synth in seen
    images = photo_batch(2, 3)
    out = synth.to(torch.float32)(images, generator=gen(0))
    with pytest.raises(ValueError, match="params"):
        synth.apply(images)
    assert out.image.shape == images.shape


def test_config_round_trip_rebuilds_the_same_synthesizer(synth):
    config = synth.config()
    json.dumps(config)  # plain data: it keys the synthesis cache
    rebuilt = from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(synth)
    assert rebuilt.config() == config
    images = photo_batch(4, 3)
    a, b = synth(images, generator=gen(11)), rebuilt(images, generator=gen(11))
    for field in ("image", "mask", "label", "strength"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("channels", [3, 1])
def test_oneof_keeps_the_contract(synth, channels):
    # the synthesizer as one child of a mixture: honest labels, untouched pixels outside the
    # mask, replay, and batch independence all survive the composition
    images = photo_batch(8, channels)
    mix = OneOf([synth, create_synthesizer("cutpaste")], weights=[3, 1], anomaly_ratio=0.75)
    out = mix(images, generator=[gen(200 + i) for i in range(8)])
    assert torch.equal(out.label, (out.mask.flatten(1).amax(1) > 0).long())
    outside = (out.mask == 0).expand_as(images)
    assert torch.equal(out.image[outside], images[outside])
    assert torch.equal(out.strength[out.label == 0], torch.zeros(int((out.label == 0).sum())))
    replay = mix.apply(images, out.params)
    assert torch.equal(replay.image, out.image) and torch.equal(replay.mask, out.mask)
    single = mix(images[5:6], generator=gen(205))
    assert torch.equal(single.image[0], out.image[5]) and torch.equal(single.mask[0], out.mask[5])
    chosen = out.params["choice"] == 0
    if bool((chosen & out.params["anomalous"]).any()):
        # where the synthesizer was chosen it ran with its own share of the parameters
        child = {k[2:]: v for k, v in out.params.items() if k.startswith("0.")}
        alone = synth.apply(images, child)
        idx = torch.nonzero(chosen & out.params["anomalous"]).flatten()
        assert torch.equal(alone.image[idx], out.image[idx]) and torch.equal(alone.mask[idx], out.mask[idx])
