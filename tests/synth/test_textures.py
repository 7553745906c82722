import pytest
import torch

from anomalysynth.synth.textures import _OPS, TextureAugment


def reference_augment(texture: torch.Tensor, params: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    """One sample, one operation at a time on 8-bit levels, as imgaug does (no lookup tables)."""
    x = (texture[None] * 255).round() / 255
    sub_params = {k: v[i : i + 1] for k, v in params.items()}
    for op in params["aug_ops"][i].tolist():
        func, kind, _ = _OPS[op]
        if kind == "histogram":
            levels = (x * 255).round().long().flatten(2)
            hist = torch.zeros(1, x.shape[1], 256).scatter_add_(2, levels, torch.ones_like(levels, dtype=torch.float))
            x = torch.gather(func(hist, sub_params), 2, levels).view_as(x)
        else:
            x = func(x, sub_params)
        x = (x.clamp(0, 1) * 255).round() / 255
    return x[0]


@pytest.mark.parametrize("channels", [1, 3])
def test_lookup_table_pipeline_equals_one_operation_at_a_time(channels):
    gen = torch.Generator().manual_seed(0)
    textures = torch.nn.functional.avg_pool2d(torch.rand(40, channels, 24, 24, generator=gen), 3, 1, 1)
    augment = TextureAugment()
    params = augment.sample([torch.Generator().manual_seed(i) for i in range(40)])
    out = augment(textures, params)
    assert out.shape == textures.shape
    for i in range(textures.shape[0]):
        # table entries and pixels are both rounded to 8-bit levels: equal up to one level
        diff = (out[i] - reference_augment(textures[i], params, i)).abs()
        assert diff.max() <= 1 / 255 + 1e-6, (i, params["aug_ops"][i].tolist())
        assert (diff > 1e-6).float().mean() < 0.01, (i, params["aug_ops"][i].tolist())
