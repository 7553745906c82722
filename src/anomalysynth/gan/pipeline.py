"""One AnomalyHybrid generation: conditions, a manipulation, the generator, the changed region.

:class:`HybridPipeline` holds a trained generator and the condition extractor it was
trained with, and runs the inference of Zhao (2025) on images at the generator's
working resolution:

1. the target's depth and edges ``D_t, E_t`` and the reference's ``D_r, E_r``;
2. a manipulation of ``D_t, E_t`` inside the region ``R`` (local modes), or none
   (``"global"``: the reference's appearance on the whole target structure);
3. ``G(C_in, D', E')`` through the depth-controlled (AHD) or edge-controlled (AHE)
   decoder, with the fusion map scaled by ``fusion_scale`` (the strength). The content
   ``C_in`` is the target itself in local modes (the generator repaints the edited
   structure in the target's appearance), the reference in global mode;
4. the mask: pixels of ``R`` where the output differs from the target by more than
   ``change_threshold`` (mean over channels of a 3x3 box average of ``|out - target|``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalysynth.gan.conditions import ConditionExtractor
from anomalysynth.gan.generator import AnomalyHybridGenerator, fuse
from anomalysynth.gan.manipulations import MANIPULATIONS, manipulate

__all__ = ["HYBRID_MODES", "HybridPipeline", "HybridResult", "changed_region"]

#: the local manipulations and the global hybrid
HYBRID_MODES = (*MANIPULATIONS, "global")


@dataclass
class HybridResult:
    """Everything one generation computed, each (B, ., H, W) at the working resolution.

    Attributes:
        image: the generated images, C channels.
        mask: binary (B, 1, H, W): inside the region and changed.
        region: the manipulated region (all ones in global mode).
        depth, edge: the target's conditions.
        edited_depth, edited_edge: after the manipulation (the generator's conditions).
        fusion: the decoder's fusion map times ``fusion_scale``.
    """

    image: Tensor
    mask: Tensor
    region: Tensor
    depth: Tensor
    edge: Tensor
    edited_depth: Tensor
    edited_edge: Tensor
    fusion: Tensor


class HybridPipeline(nn.Module):
    """A trained AnomalyHybrid generator with its condition extractor.

    Args:
        generator: the trained generator (used as it is: training code can render grids
            with the live network; :func:`~anomalysynth.gan.checkpoint.load_pipeline` freezes it).
        conditions: the extractor the generator was trained with.
        change_threshold: how much a pixel must change (mean absolute difference in
            [0, 1] units, 3x3-averaged) to count as anomalous.
    """

    def __init__(
        self, generator: AnomalyHybridGenerator, conditions: ConditionExtractor, change_threshold: float = 0.02
    ) -> None:
        super().__init__()
        if not 0.0 <= change_threshold < 1.0:
            raise ValueError(f"`change_threshold` must lie in [0, 1); got {change_threshold}.")
        self.generator = generator
        self.conditions = conditions
        self.change_threshold = float(change_threshold)

    @torch.no_grad()
    def forward(
        self,
        target: Tensor,
        reference: Tensor,
        region: Tensor,
        mode: str,
        decoder: str,
        fusion_scale: Tensor,
        tps_shift: Tensor | None = None,
        tps_angle: Tensor | None = None,
        reference_conditions: tuple[Tensor, Tensor] | None = None,
        target_conditions: tuple[Tensor, Tensor] | None = None,
    ) -> HybridResult:
        """Generate one batch.

        Args:
            target: (B, C, H, W) images in [0, 1], C = the generator's channels.
            reference: (B, C, H, W) reference images (already augmented).
            region: (B, 1, H, W) binary region (ignored in global mode).
            mode: one of :data:`HYBRID_MODES`.
            decoder: ``"depth"`` (AHD) or ``"edge"`` (AHE).
            fusion_scale: (B,) factor on the fusion map in [0, 1] (1 = the generator's output).
            tps_shift, tps_angle: (B,) for ``mode="tps"``.
            reference_conditions, target_conditions: (depth, edge) when known (else computed
                from the images; a depth folder needs them, as it knows files, not tensors).
        """
        if mode not in HYBRID_MODES:
            raise ValueError(f"`mode` must be one of {HYBRID_MODES}; got {mode!r}.")
        depth, edge = target_conditions if target_conditions is not None else self.conditions(target)
        if mode == "global":
            region = torch.ones_like(region)
            edited_depth, edited_edge, content = depth, edge, reference
        else:
            ref_depth, ref_edge = (
                reference_conditions if reference_conditions is not None else self.conditions(reference)
            )
            edited_depth, edited_edge = manipulate(
                mode, depth, edge, ref_depth, ref_edge, region, tps_shift=tps_shift, tps_angle=tps_angle
            )
            content = target
        out = self.generator.decode(content, edited_depth, edited_edge, decoder)
        fusion = out.fusion * fusion_scale.to(out.fusion.dtype).view(-1, 1, 1, 1)
        image = fuse(out.anomaly, fusion, content).clamp(0, 1)
        mask = changed_region(image, target, self.change_threshold) * region
        return HybridResult(image, mask, region, depth, edge, edited_depth, edited_edge, fusion)


def changed_region(image: Tensor, reference: Tensor, threshold: float) -> Tensor:
    """(B, 1, H, W) binary: the 3x3 box average of the channel-mean ``|image - reference|`` exceeds ``threshold``
    and the pixel itself changed."""
    diff = (image - reference).abs().mean(dim=1, keepdim=True)
    smooth = F.avg_pool2d(F.pad(diff, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return ((smooth > threshold) & (diff > 0)).to(image.dtype)
