"""The compiled CPU kernels (synth/backends, reached through synth/dispatch) agree with the torch reference."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from anomalysynth.seeding import per_sample_generators
from anomalysynth.synth import create_synthesizer, dispatch, perlin
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.dispatch import kernels_enabled
from anomalysynth.synth.masks.perlin import sample_perlin_params
from anomalysynth.synth.textures import generated_textures, sample_generated_textures
from tests.conftest import torch_threads

pytestmark = pytest.mark.skipif(not kernels_enabled(torch.zeros(1)), reason="numba kernels unavailable")


def _torch_only(monkeypatch: pytest.MonkeyPatch, fn):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setenv("ANOMALYSYNTH_KERNELS", "0")
        assert not kernels_enabled(torch.zeros(1))
        return fn()


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (96, 40)])
@pytest.mark.parametrize("rotate", [False, True])
def test_perlin_noise_matches_torch(monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], rotate: bool) -> None:
    p = sample_perlin_params(per_sample_generators(torch.Generator().manual_seed(1), 12), (0, 5), (-90.0, 90.0))
    rotation = p["perlin_rotation"] if rotate else None
    args = (size, p["perlin_scale_y"], p["perlin_scale_x"], p["perlin_angles"], rotation)
    fast = dispatch.perlin_noise(*args)
    reference = perlin.perlin_noise(*args)  # the reference is callable directly
    assert torch.equal(_torch_only(monkeypatch, lambda: dispatch.perlin_noise(*args)), reference)
    assert fast.shape == reference.shape == (12, *size)
    assert torch.allclose(fast, reference, atol=1e-4)
    mask = dispatch.perlin_noise_mask(*args, threshold=0.5)
    mask_ref = perlin.perlin_noise_mask(*args, threshold=0.5)
    assert mask.shape == (12, 1, *size)
    # thresholding can only differ where the noise sits within rounding of 0.5
    assert (mask != mask_ref).float().mean() < 1e-3


def test_weak_noise_is_rescaled_like_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    p = sample_perlin_params(per_sample_generators(torch.Generator().manual_seed(2), 4), (0, 0), (0.0, 0.0))
    args = ((32, 32), p["perlin_scale_y"], p["perlin_scale_x"], p["perlin_angles"], p["perlin_rotation"])
    threshold = float(perlin.perlin_noise(*args).amax()) + 1e-3
    assert threshold < 1
    mask = dispatch.perlin_noise_mask(*args, threshold=threshold)  # never exceeded: rescaled, never empty
    mask_ref = perlin.perlin_noise_mask(*args, threshold=threshold)
    assert bool((mask.flatten(1).amax(1) == 1).all())
    assert (mask != mask_ref).float().mean() < 1e-3


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", range(TextureAugment.num_ops))
def test_each_texture_operation_matches_torch(monkeypatch: pytest.MonkeyPatch, channels: int, op: int) -> None:
    gens = per_sample_generators(torch.Generator().manual_seed(op), 6)
    aug = TextureAugment()
    params = {**sample_generated_textures(gens), **aug.sample(gens)}
    params["aug_ops"] = torch.full_like(params["aug_ops"], op)  # the operation three times
    textures = generated_textures(params, (48, 40))[:, :channels].contiguous()
    fast = dispatch.augment_textures(aug, textures, params)
    reference = aug(textures, params)
    diff = (fast - reference).abs()
    # 8-bit levels: a value on a rounding edge may land one level off, and rarely carry on
    assert (diff > 1.5 / 255).float().mean() < 2e-3
    assert diff.mean() < 1e-3


def test_random_operation_sequences_match_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    gens = per_sample_generators(torch.Generator().manual_seed(5), 40)
    aug = TextureAugment()
    params = {**sample_generated_textures(gens), **aug.sample(gens)}
    textures = generated_textures(params, (64, 64))
    diff = (dispatch.augment_textures(aug, textures, params) - aug(textures, params)).abs()
    assert (diff > 1.5 / 255).float().mean() < 1e-3


def _folder(tmp_path, n: int = 3):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        array = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(tmp_path / f"t{i}.png")
    return tmp_path


@pytest.mark.parametrize(
    "kwargs", [{}, {"augment": False}, {"texture_dir": "folder"}, {"texture_dir": "folder", "augment": False}]
)
@pytest.mark.parametrize("channels", [1, 3, "grey as rgb"])
def test_perlin_texture_matches_torch(monkeypatch: pytest.MonkeyPatch, tmp_path, kwargs, channels) -> None:  # type: ignore[no-untyped-def]
    if kwargs.get("texture_dir") == "folder":
        kwargs = {**kwargs, "texture_dir": _folder(tmp_path)}
    synth = create_synthesizer("perlin_texture", texture_colour="auto", **kwargs)
    if channels == "grey as rgb":
        images = torch.rand(6, 1, 56, 48, generator=torch.Generator().manual_seed(3)).expand(-1, 3, -1, -1)
        images = images.contiguous()
    else:
        images = torch.rand(6, channels, 56, 48, generator=torch.Generator().manual_seed(3))
    fast = synth(images, generator=torch.Generator().manual_seed(4))
    reference = _torch_only(monkeypatch, lambda: synth(images, params=fast.params))
    assert (fast.mask != reference.mask).float().mean() < 1e-3
    both = (fast.mask > 0) & (reference.mask > 0)
    diff = (fast.image - reference.image).abs()[both.expand_as(images)]
    assert (diff > 1.5 / 255).float().mean() < 2e-3
    outside = (fast.mask == 0).expand_as(images)
    assert torch.equal(fast.image[outside], images[outside])


def test_results_do_not_depend_on_the_thread_count() -> None:
    synth = create_synthesizer("perlin_texture")
    images = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch_threads(1):
        one = synth(images, generator=torch.Generator().manual_seed(1))
    with torch_threads(2):
        two = synth(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(one.image, two.image) and torch.equal(one.mask, two.mask)


def test_kernels_take_only_cpu_float32_and_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kernels_enabled(torch.zeros(2))
    assert not kernels_enabled(torch.zeros(2, dtype=torch.float64))
    monkeypatch.setenv("ANOMALYSYNTH_KERNELS", "0")
    assert not kernels_enabled(torch.zeros(2))
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        assert not kernels_enabled(torch.zeros(2, device="cuda"))


def test_reference_modules_import_nothing_compiled() -> None:
    import ast
    import inspect

    from anomalysynth.synth import augment, blended, textures
    from anomalysynth.synth.masks import perlin as perlin_mask
    from anomalysynth.synth.sources import generated, structure

    for module in (perlin, augment, textures, perlin_mask, generated, structure, blended):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any("numba" in n or "backends" in n for n in names), (module.__name__, names)


@pytest.mark.parametrize("name", ["memseg", "mix"])
def test_rendered_sources_take_the_fused_pass_and_match_torch(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    from anomalysynth.synth import BlendedSynthesizer
    from anomalysynth.synth.blends import AlphaBlend
    from anomalysynth.synth.masks import PerlinMask
    from anomalysynth.synth.sources import GeneratedTextureSource, NegativeSource, SourceMixture

    if name == "memseg":
        synth = create_synthesizer("memseg")
    else:
        source = SourceMixture([GeneratedTextureSource(), NegativeSource()])
        synth = BlendedSynthesizer(PerlinMask(), source, AlphaBlend(min_change=0.05))
    images = torch.rand(6, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    fast = synth(images, generator=torch.Generator().manual_seed(1))
    reference = _torch_only(monkeypatch, lambda: synth(images, params=fast.params))
    assert (fast.mask != reference.mask).float().mean() < 2e-3
    both = ((fast.mask > 0) & (reference.mask > 0)).expand_as(images)
    assert ((fast.image - reference.image).abs()[both] > 1.5 / 255).float().mean() < 2e-3
    torch.testing.assert_close(fast.strength, reference.strength)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "ops",
    [
        [0, 1, 2],  # sharpness last: evaluated at the mask's pixels only
        [2, 4, 6],  # sharpness first, table operations after it
        [3, 5, 0],  # hue/saturation
        [9, 1, 4],  # rotation
        [9, 2, 6],  # two pixel operations: the first dense, the second sparse
        [2, 8, 3],  # a histogram between them
        [9, 7, 0],  # rotation, then a histogram: dense
    ],
)
def test_pixel_operations_at_the_mask_match_torch(
    monkeypatch: pytest.MonkeyPatch, ops: list[int], channels: int
) -> None:
    synth = create_synthesizer("perlin_texture")
    images = torch.rand(8, channels, 48, 56, generator=torch.Generator().manual_seed(7))
    params = dict(synth(images, generator=torch.Generator().manual_seed(8)).params)
    params["aug_ops"] = torch.tensor(ops).expand(8, 3).clone()
    fast = synth(images, params=params)
    reference = _torch_only(monkeypatch, lambda: synth(images, params=params))
    assert torch.equal(fast.mask, reference.mask) or (fast.mask != reference.mask).float().mean() < 1e-3
    both = ((fast.mask > 0) & (reference.mask > 0)).expand_as(images)
    diff = (fast.image - reference.image).abs()[both]
    assert (diff > 1.5 / 255).float().mean() < 2e-3
    assert diff.mean() < 2e-3
