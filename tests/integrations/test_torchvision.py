"""The torchvision v2 adapter inside a v2.Compose gives the synthesizer's output bit for bit."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from anomalysynth.integrations.torchvision import SynthesizeAnomaly
from anomalysynth.synth import NSA, CutPaste
from tests.conftest import photo_batch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("synth", [CutPaste(), NSA()], ids=["cutpaste", "nsa"])
def test_compose_matches_the_synthesizer_bit_for_bit(synth):
    image = photo_batch(1, 3)[0]
    pipeline = v2.Compose([v2.RandomHorizontalFlip(p=1.0), SynthesizeAnomaly(synth, generator=gen(0))])
    out_image, out_mask = pipeline(tv_tensors.Image(image), tv_tensors.Mask(torch.zeros(1, 64, 64)))
    expected = synth(image.flip(-1)[None], gen(0))
    assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
    assert torch.equal(out_image.as_subclass(torch.Tensor), expected.image[0])
    assert torch.equal(out_mask.as_subclass(torch.Tensor), expected.mask[0])
    assert pipeline.transforms[1].last_output.label.tolist() == expected.label.tolist() == [1]


def test_uint8_images_and_integer_masks_keep_their_dtypes_and_the_mask_is_a_union():
    image = (photo_batch(1, 3)[0] * 255).round().to(torch.uint8)
    mask = torch.zeros(64, 64, dtype=torch.uint8)
    mask[:4, :4] = 1
    out_image, out_mask = SynthesizeAnomaly(CutPaste(), generator=gen(1))(
        tv_tensors.Image(image), tv_tensors.Mask(mask)
    )
    expected = CutPaste()(image[None].float() / 255, gen(1))
    assert out_image.dtype == torch.uint8 and out_mask.dtype == torch.uint8 and out_mask.shape == (64, 64)
    assert torch.equal(out_image.as_subclass(torch.Tensor), (expected.image[0] * 255).round().to(torch.uint8))
    assert out_mask[:4, :4].all()
    assert torch.equal(out_mask[4:].bool(), expected.mask[0, 0, 4:] >= 0.5)


def test_batches_plain_tensors_and_other_inputs():
    images = photo_batch(4, 1)
    out = SynthesizeAnomaly("cutpaste", generator=gen(2))({"image": images, "name": "x"})
    assert torch.equal(out["image"], CutPaste()(images, gen(2)).image) and out["name"] == "x"
    bool_mask = tv_tensors.Mask(torch.zeros(4, 1, 64, 64, dtype=torch.bool))
    _, mask = SynthesizeAnomaly("cutpaste", generator=gen(2))(tv_tensors.Image(images), bool_mask)
    assert mask.dtype == torch.bool and mask.flatten(1).any(1).all()


def test_anomaly_ratio_zero_changes_nothing_and_global_seed_is_reproducible():
    image = tv_tensors.Image(photo_batch(1, 3)[0])
    same, mask = SynthesizeAnomaly(CutPaste(), anomaly_ratio=0.0)(image, tv_tensors.Mask(torch.zeros(1, 64, 64)))
    assert torch.equal(same, image) and not mask.any()
    t = SynthesizeAnomaly(CutPaste())
    torch.manual_seed(5)
    a = t(image)
    torch.manual_seed(5)
    assert torch.equal(a, t(image))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"tv_tensors\.Image"):
        SynthesizeAnomaly(CutPaste())(tv_tensors.Mask(torch.zeros(1, 8, 8)))
    with pytest.raises(ValueError, match="Synthesizer"):
        SynthesizeAnomaly(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="matching the image"):
        SynthesizeAnomaly(CutPaste())(tv_tensors.Image(torch.rand(3, 64, 64)), tv_tensors.Mask(torch.zeros(32, 32)))
