"""The albumentations adapter inside an A.Compose gives the synthesizer's output bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

A = pytest.importorskip("albumentations")

from anomalysynth.integrations.albumentations import AlbumentationsSynthesizeAnomaly  # noqa: E402
from anomalysynth.synth import CutPaste  # noqa: E402
from tests.conftest import photo_batch  # noqa: E402


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uint8_image(channels: int = 3) -> np.ndarray:
    image = (photo_batch(1, channels)[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return image if channels == 3 else image[..., 0]


def test_compose_matches_the_synthesizer_bit_for_bit():
    image = uint8_image()
    pipeline = A.Compose([A.HorizontalFlip(p=1.0), AlbumentationsSynthesizeAnomaly(CutPaste(), generator=gen(0))])
    out = pipeline(image=image, mask=np.zeros((64, 64), np.uint8), anomaly_label=0)
    flipped = torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    expected = CutPaste()(flipped, gen(0))
    want = (expected.image[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out["image"], want)
    np.testing.assert_array_equal(out["mask"], (expected.mask[0, 0] >= 0.5).numpy().astype(np.uint8))
    assert out["anomaly_label"] == int(expected.label[0]) == 1


def test_float_images_grey_images_and_float_masks():
    image = photo_batch(1, 1)[0, 0].numpy()
    out = AlbumentationsSynthesizeAnomaly("cutpaste", generator=gen(1))(
        image=image, mask=np.zeros((64, 64), np.float32)
    )
    expected = CutPaste()(torch.from_numpy(image)[None, None], gen(1))
    np.testing.assert_array_equal(out["image"], expected.image[0, 0].numpy())
    np.testing.assert_array_equal(out["mask"], expected.mask[0, 0].numpy())


def test_compose_seed_makes_the_anomalies_reproducible():
    image = uint8_image()

    def run(seed):
        return A.Compose([AlbumentationsSynthesizeAnomaly(CutPaste())], seed=seed)(image=image)["image"]

    assert np.array_equal(run(3), run(3)) and not np.array_equal(run(3), run(4))


def test_the_label_stays_anomalous_and_probability_zero_passes_through():
    image = uint8_image()
    kept = AlbumentationsSynthesizeAnomaly(CutPaste(), anomaly_ratio=0.0)(image=image, anomaly_label=1)
    assert kept["anomaly_label"] == 1 and np.array_equal(kept["image"], image)
    skipped = AlbumentationsSynthesizeAnomaly(CutPaste(), p=0.0)(image=image, anomaly_label=0)
    assert skipped["anomaly_label"] == 0 and np.array_equal(skipped["image"], image)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="Synthesizer"):
        AlbumentationsSynthesizeAnomaly(3.5)  # type: ignore[arg-type]
