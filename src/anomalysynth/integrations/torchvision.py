"""A torchvision ``transforms.v2`` transform that applies a synthesizer to (image, mask).

Written as torchvision documents custom v2 transforms: :meth:`make_params` draws
(here: runs the synthesizer on the sample's image once) and :meth:`transform`
hands each input its share: the ``tv_tensors.Image`` (or, without one, the first
plain tensor, torchvision's own rule) gets the synthetic image, every
``tv_tensors.Mask`` the union of its mask and the anomaly's, everything else
passes through. The label is the mask's ``any()`` (the contract's honest label),
and the last draw is kept in ``last_output``.

Example:
    >>> from torchvision import tv_tensors
    >>> from torchvision.transforms import v2
    >>> from anomalysynth.synth import CutPaste
    >>> t = v2.Compose([SynthesizeAnomaly(CutPaste(), generator=torch.Generator().manual_seed(0))])
    >>> image, mask = t(tv_tensors.Image(torch.rand(3, 64, 64)), tv_tensors.Mask(torch.zeros(1, 64, 64)))
    >>> bool(mask.any()), t.transforms[0].last_output.label.tolist()
    (True, [1])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from anomalysynth.synth.base import Synthesizer, SynthOutput, as_synthesizer

__all__ = ["SynthesizeAnomaly"]


class SynthesizeAnomaly(v2.Transform):
    """Apply a synthesizer inside a torchvision v2 pipeline.

    Args:
        synthesizer: a synthesizer or a registered name.
        anomaly_ratio: share of anomalous samples; ``None`` keeps the synthesizer's own.
        generator: ``None`` draws from torch's global generator (DataLoader workers
            are seeded apart by torch); a ``torch.Generator`` makes the stream explicit.
        mask_threshold: integer and bool masks receive the anomaly mask binarised here;
            float masks receive the soft mask.

    Images are (C, H, W) or (B, C, H, W), float in [0, 1] or uint8 (converted and
    rounded back). Masks are (H, W), (1, H, W) or (B, 1, H, W).
    """

    def __init__(
        self,
        synthesizer: Synthesizer | str,
        anomaly_ratio: float | None = None,
        generator: torch.Generator | None = None,
        mask_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.synthesizer = as_synthesizer(synthesizer)
        self.anomaly_ratio = anomaly_ratio
        self.generator = generator
        self.mask_threshold = float(mask_threshold)
        self.last_output: SynthOutput | None = None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = _find_image(flat_inputs)
        batch = image.as_subclass(Tensor)
        single = batch.ndim == 3
        if single:
            batch = batch.unsqueeze(0)
        if batch.ndim != 4:
            raise ValueError(f"Expected an image (C, H, W) or (B, C, H, W); got shape {tuple(batch.shape)}.")
        as_float = batch.float() / 255 if batch.dtype == torch.uint8 else batch
        out = self.synthesizer(as_float, self.generator, anomaly_ratio=self.anomaly_ratio)
        self.last_output = out
        synthetic = out.image
        if batch.dtype == torch.uint8:
            synthetic = (synthetic * 255).round().clamp(0, 255).to(torch.uint8)
        return {"image_id": id(image), "image": synthetic, "mask": out.mask, "single": single}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if id(inpt) == params["image_id"]:
            out = params["image"][0] if params["single"] else params["image"]
            return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out
        if isinstance(inpt, tv_tensors.Mask):
            return tv_tensors.wrap(self._merge_mask(inpt.as_subclass(Tensor), params["mask"]), like=inpt)
        return inpt

    def _merge_mask(self, mask: Tensor, anomaly: Tensor) -> Tensor:
        """``mask`` with the anomaly (B, 1, H, W) added, in ``mask``'s shape and dtype."""
        if anomaly.numel() != mask.numel():
            raise ValueError(
                f"Expected a mask (H, W), (1, H, W) or (B, 1, H, W) matching the image; got {tuple(mask.shape)}."
            )
        anomaly = anomaly.reshape(mask.shape).to(mask.device)
        if mask.is_floating_point():
            return torch.maximum(mask, anomaly.to(mask.dtype))
        binary = anomaly >= self.mask_threshold
        return mask | binary if mask.dtype == torch.bool else torch.maximum(mask, binary.to(mask.dtype))

    def extra_repr(self) -> str:
        return f"synthesizer={self.synthesizer.name}, anomaly_ratio={self.anomaly_ratio}"


def _find_image(flat_inputs: list[Any]) -> Tensor:
    """The sample's image: its ``tv_tensors.Image``, else its first plain tensor (torchvision's rule)."""
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.Image):
            return inpt
    for inpt in flat_inputs:
        if isinstance(inpt, Tensor) and not isinstance(inpt, tv_tensors.TVTensor):
            return inpt
    raise ValueError("Expected a tv_tensors.Image (or a plain image tensor) in the sample; found none.")
