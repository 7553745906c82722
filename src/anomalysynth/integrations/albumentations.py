"""An albumentations transform that applies a synthesizer to (image, mask) and reports the label.

Written as albumentations documents third-party dual transforms: a ``DualTransform``
whose data-dependent parameters (``get_params_dependent_on_data``) are the
synthesizer's output for the sample's image; ``apply`` returns the synthetic image,
``apply_to_mask`` adds the anomaly to the mask, and the extra target
``anomaly_label`` receives the label (pass ``anomaly_label=0`` to get it back).

The torch generator of each call is seeded from the transform's own
``random_generator``, so ``Compose(..., seed=s)`` and albumentations' worker-aware
seeding make the anomalies reproducible; an explicit ``generator`` overrides that.

albumentations is an optional dependency (``pip install anomalysynth[albumentations]``;
the 2.0 series is the last MIT-licensed one).

Example:
    >>> import albumentations as A
    >>> import numpy as np
    >>> from anomalysynth.synth import CutPaste
    >>> pipeline = A.Compose([AlbumentationsSynthesizeAnomaly(CutPaste(), p=1.0)], seed=0)
    >>> out = pipeline(image=np.zeros((64, 64, 3), np.uint8) + 128, mask=np.zeros((64, 64), np.uint8),
    ...                anomaly_label=0)
    >>> out["anomaly_label"], int(out["mask"].max())
    (1, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

try:
    from albumentations.core.transforms_interface import DualTransform
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "anomalysynth.integrations.albumentations needs albumentations: pip install 'anomalysynth[albumentations]'."
    ) from err

from anomalysynth.synth.base import Synthesizer, as_synthesizer

__all__ = ["AlbumentationsSynthesizeAnomaly"]

_SEED_HIGH = 2**62


class AlbumentationsSynthesizeAnomaly(DualTransform):
    """Apply a synthesizer inside an albumentations pipeline.

    Args:
        synthesizer: a synthesizer or a registered name.
        anomaly_ratio: share of anomalous samples; ``None`` keeps the synthesizer's own.
        generator: a ``torch.Generator`` to draw from instead of the transform's seed.
        mask_threshold: integer masks receive the anomaly mask binarised here; float
            masks receive the soft mask.
        p: probability of applying the transform (albumentations' own).

    Images are (H, W, C) or (H, W), uint8 or float in [0, 1]; masks (H, W) or (H, W, 1).
    """

    def __init__(
        self,
        synthesizer: Synthesizer | str,
        anomaly_ratio: float | None = None,
        generator: torch.Generator | None = None,
        mask_threshold: float = 0.5,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.synthesizer = as_synthesizer(synthesizer)
        self.anomaly_ratio = anomaly_ratio
        self.generator = generator
        self.mask_threshold = float(mask_threshold)

    @property
    def targets(self) -> dict[str, Callable[..., Any]]:
        return {**super().targets, "anomaly_label": self.apply_to_anomaly_label}

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        image = data["image"]
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"Expected an image array (H, W, C) or (H, W); got {shape}.")
        hwc = image if image.ndim == 3 else image[..., None]
        tensor = torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1).unsqueeze(0)
        as_float = tensor.float() / 255 if image.dtype == np.uint8 else tensor.float()
        generator = self.generator
        if generator is None:
            generator = torch.Generator().manual_seed(int(self.random_generator.integers(_SEED_HIGH)))
        out = self.synthesizer(as_float, generator, anomaly_ratio=self.anomaly_ratio)
        synthetic = out.image[0].permute(1, 2, 0).numpy()
        if image.dtype == np.uint8:
            synthetic = np.clip(np.round(synthetic * 255), 0, 255).astype(np.uint8)
        else:
            synthetic = synthetic.astype(image.dtype)
        synthetic = synthetic if image.ndim == 3 else synthetic[..., 0]
        return {"synthetic": synthetic, "anomaly": out.mask[0, 0].numpy(), "synthetic_label": int(out.label[0])}

    def apply(self, img: np.ndarray, synthetic: np.ndarray, **params: Any) -> np.ndarray:
        return synthetic

    def apply_to_mask(self, mask: np.ndarray, anomaly: np.ndarray, **params: Any) -> np.ndarray:
        added = anomaly if mask.ndim == 2 else anomaly[..., None]
        if np.issubdtype(mask.dtype, np.floating):
            return np.maximum(mask, added.astype(mask.dtype))
        return np.maximum(mask, (added >= self.mask_threshold).astype(mask.dtype))

    def apply_to_anomaly_label(self, anomaly_label: Any, synthetic_label: int, **params: Any) -> int:
        """The sample's label: 1 if it already was anomalous or now is."""
        return max(int(anomaly_label), synthetic_label)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("anomaly_ratio", "mask_threshold")
