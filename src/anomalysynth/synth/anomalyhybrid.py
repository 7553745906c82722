"""AnomalyHybrid (Zhao, CVPRW 2025): anomalies from a depth/edge-conditioned GAN.

A trained :class:`~anomalysynth.gan.module.AnomalyHybridGAN` generator paints an
image's appearance onto edited structure: the image's depth and edge maps are
manipulated inside a local region (``remove``: holes, cracks, cuts; ``replace``:
the reference's structure; ``merge``: both; ``tps``: a local warp) and the generator
renders the edited structure (see :class:`~anomalysynth.gan.pipeline.HybridPipeline`).
``"global"`` is the paper's global hybrid: the reference's appearance on the whole
image's structure.

The reference is a normal image from ``reference_dir`` or, by default, the image
itself under an independent augmentation (flips, resize-translate-pad, a local TPS,
a circular shift), as in training. The mask is honest: the pixels of the region
where the output differs from the input (by more than ``change_threshold``);
everything else is the input, bit for bit. The strength is ``fusion_scale``, the
factor on the generator's fusion map (1 = the generator's own output).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.files import file_sha256
from anomalysynth.gan.augment import TripletAugmentation
from anomalysynth.gan.checkpoint import load_pipeline, match_channels
from anomalysynth.gan.generator import DECODERS
from anomalysynth.gan.pipeline import HYBRID_MODES, changed_region
from anomalysynth.gan.references import ReferenceImages
from anomalysynth.gan.regions import ellipse_region, region_centre
from anomalysynth.seeding import draw, log_uniform, uniform
from anomalysynth.synth.base import Synthesizer
from anomalysynth.synth.registry import register_synthesizer

__all__ = ["AnomalyHybrid"]

_NO_CHECKPOINT = (
    "AnomalyHybrid needs a trained generator and none is downloadable: train one with "
    "`lightning fit -c configs/anomalyhybrid.yaml` (CPU, demo data, minutes) and pass "
    "checkpoint=<results/anomalyhybrid/checkpoints/last.ckpt>."
)
_REFERENCE_KEYS = ("hflip", "vflip", "scale", "translate", "tps_shift")


@register_synthesizer("anomalyhybrid")
class AnomalyHybrid(Synthesizer):
    """Local (and global) hybrid anomalies from a trained AnomalyHybrid generator.

    Args:
        checkpoint: an ``AnomalyHybridGAN`` Lightning checkpoint (read with ``weights_only=True``).
        manipulations: the modes drawn from, uniformly per sample: any of ``"remove"``,
            ``"replace"``, ``"merge"``, ``"tps"``, ``"global"``; one name fixes the mode.
        decoder: ``"depth"`` (AHD), ``"edge"`` (AHE) or ``"random"`` (one per sample).
        reference_dir: folder of normal images for the references (e.g. the training
            set); ``None`` uses the image itself under another augmentation.
        region_area: range of the region's area as a fraction of the image.
        max_aspect: regions have long/short axis ratios log-uniform in [1, max_aspect].
        fusion_scale: range of the strength, the factor on the fusion map in [0, 1].
        tps_shift: range of the ``tps`` displacement of the region's centre, in region radii.
        change_threshold: a pixel counts as changed when the 3x3 mean of its absolute
            difference (channel mean, [0, 1] units) exceeds it.
        resolution: short side at which the generator runs (``None``: the checkpoint's
            training size); the output is resized back.
        depth_source, depth_model, edge_model: override the checkpoint's conditions
            (needed when it was trained with ``depth_source="folder"``: a synthesizer sees
            tensors, not file names).
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
    """

    needs_foreground = True

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        manipulations: Sequence[str] | str = ("remove", "replace", "merge", "tps"),
        decoder: str = "random",
        reference_dir: str | Path | None = None,
        region_area: tuple[float, float] = (0.01, 0.06),
        max_aspect: float = 4.0,
        fusion_scale: tuple[float, float] = (1.0, 1.0),
        tps_shift: tuple[float, float] = (0.5, 1.0),
        change_threshold: float = 0.02,
        resolution: int | None = None,
        depth_source: str | None = None,
        depth_model: str | None = None,
        edge_model: str | None = None,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if checkpoint is None:
            raise ValueError(_NO_CHECKPOINT)
        modes = [manipulations] if isinstance(manipulations, str) else list(manipulations)
        unknown = [m for m in modes if m not in HYBRID_MODES]
        if not modes or unknown:
            raise ValueError(f"`manipulations` must name some of {HYBRID_MODES}; got {manipulations!r}.")
        if decoder not in (*DECODERS, "random"):
            raise ValueError(f"`decoder` must be 'depth', 'edge' or 'random'; got {decoder!r}.")
        _check_range("region_area", region_area, 0.0, 1.0, open_low=True)
        _check_range("fusion_scale", fusion_scale, 0.0, 1.0)
        _check_range("tps_shift", tps_shift, 0.0, 3.0)
        if max_aspect < 1.0:
            raise ValueError(f"`max_aspect` must be >= 1; got {max_aspect}.")
        if resolution is not None and resolution < 8:
            raise ValueError(f"`resolution` must be None or >= 8; got {resolution}.")
        self.checkpoint = str(checkpoint)
        self.manipulations = modes
        self.decoder = decoder
        self.reference_dir = None if reference_dir is None else str(reference_dir)
        self.region_area = (float(region_area[0]), float(region_area[1]))
        self.max_aspect = float(max_aspect)
        self.fusion_scale = (float(fusion_scale[0]), float(fusion_scale[1]))
        self.tps_shift = (float(tps_shift[0]), float(tps_shift[1]))
        self.change_threshold = float(change_threshold)
        self.depth_source, self.depth_model, self.edge_model = depth_source, depth_model, edge_model
        self.pipeline, hparams = load_pipeline(
            checkpoint,
            change_threshold,
            depth_source=depth_source,
            depth_model=depth_model,
            edge_model=edge_model,
        )
        if self.pipeline.conditions.needs_paths:
            raise ValueError(
                f"The checkpoint {self.checkpoint!r} was trained with depth_source='folder', but a synthesizer "
                "receives image tensors without file names: pass depth_source='model' with depth_model=<TorchScript "
                "file> or depth_source='pseudo' (the conditions should match training as closely as possible)."
            )
        self.resolution = resolution
        self.working_size = int(resolution if resolution is not None else hparams["image_size"])
        self.channels = int(hparams["channels"])
        self.references = None if reference_dir is None else ReferenceImages(reference_dir)
        self.reference_augmentation = TripletAugmentation()
        self._checkpoint_sha256 = file_sha256(Path(checkpoint))

    def config(self) -> dict[str, object]:
        out = super().config()
        out["checkpoint_sha256"] = self._checkpoint_sha256
        if self.references is not None:
            out["reference_files"] = hashlib.sha256("\n".join(map(str, self.references.files)).encode()).hexdigest()
        return out

    # -- the contract hooks -------------------------------------------------------------------------
    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        n_modes, n_refs = len(self.manipulations), 0 if self.references is None else len(self.references)
        decoders = {"depth": 0, "edge": 1}
        params: dict[str, Tensor] = {
            "mode": draw(generators, lambda g: torch.randint(0, n_modes, (), generator=g)),
            "decoder": draw(generators, lambda g: torch.randint(0, 2, (), generator=g))
            if self.decoder == "random"
            else torch.full((len(generators),), decoders[self.decoder]),
            "area_ratio": uniform(generators, *self.region_area),
            "aspect": log_uniform(generators, 1.0, self.max_aspect)
            if self.max_aspect > 1
            else uniform(generators, 1, 1),
            "angle": uniform(generators, 0.0, torch.pi),
            "centre_u": uniform(generators, 0.0, 1.0),
            "fusion_scale": uniform(generators, *self.fusion_scale),
            "tps_shift": uniform(generators, *self.tps_shift),
            "tps_angle": uniform(generators, 0.0, 2 * torch.pi),
            "reference_index": draw(generators, lambda g: torch.randint(0, max(n_refs, 1), (), generator=g))
            if n_refs
            else torch.full((len(generators),), -1),
            "reference_roll": torch.stack([uniform(generators, 0.0, 1.0), uniform(generators, 0.0, 1.0)], dim=1),
        }
        reference = self.reference_augmentation.sample(generators)
        params.update({f"reference_{k}": v for k, v in reference.items()})
        return params

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        # one sample at a time: a sample's result cannot depend on its batch
        outs = [self._one(images[i : i + 1], {k: v[i : i + 1] for k, v in params.items()}) for i in range(len(images))]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), torch.cat([o[2] for o in outs])

    # -- one sample ---------------------------------------------------------------------------------
    def _one(self, image: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        _, c, h, w = image.shape
        device = image.device
        wh, ww = self._working_shape(h, w)
        target = _resize(match_channels(image, self.channels), wh, ww)
        foreground = F.interpolate(params["_foreground"], size=(wh, ww), mode="nearest")
        mode = self.manipulations[int(params["mode"])]
        reference = self._reference(target, params)
        centre = region_centre(foreground.cpu(), params["centre_u"].cpu())
        region = ellipse_region(
            centre, params["area_ratio"].cpu(), params["aspect"].cpu(), params["angle"].cpu(), wh, ww
        ).to(device, image.dtype)
        region = region * (foreground > 0).to(image.dtype)
        result = self.pipeline(
            target,
            reference,
            region,
            mode,
            DECODERS[int(params["decoder"])],
            params["fusion_scale"],
            tps_shift=params["tps_shift"],
            tps_angle=params["tps_angle"],
        )
        generated = match_channels(_resize(result.image, h, w), c).clamp(0, 1)
        region_full = F.interpolate(result.region * (foreground > 0).to(image.dtype), size=(h, w), mode="nearest")
        full_foreground = (params["_foreground"] > 0).to(image.dtype)
        mask = changed_region(generated, image, self.change_threshold) * region_full * full_foreground
        return generated.to(image.dtype), mask, params["fusion_scale"].to(device, image.dtype)

    def _reference(self, target: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The reference at the working size: the drawn image (or the target), augmented and shifted."""
        _, _, h, w = target.shape
        index = int(params["reference_index"])
        if index < 0 or self.references is None:
            reference = target
        else:
            reference = self.references.load(index, h, w, self.channels).to(target.device, target.dtype)
        aug = {k: params[f"reference_{k}"] for k in _REFERENCE_KEYS}
        reference = self.reference_augmentation.apply(reference, aug).clamp(0, 1)
        roll = params["reference_roll"][0]
        return torch.roll(reference, shifts=(int(float(roll[0]) * h), int(float(roll[1]) * w)), dims=(-2, -1))

    def _working_shape(self, h: int, w: int) -> tuple[int, int]:
        m = self.pipeline.generator.size_multiple
        scale = self.working_size / min(h, w)
        return max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m)

    def extra_repr(self) -> str:
        return f"checkpoint={self.checkpoint!r}, manipulations={self.manipulations}, {super().extra_repr()}"


def _resize(images: Tensor, h: int, w: int) -> Tensor:
    if images.shape[-2:] == (h, w):
        return images
    return F.interpolate(images, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _check_range(name: str, value: Any, low: float, high: float, open_low: bool = False) -> None:
    ok = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and (low < value[0] if open_low else low <= value[0])
        and value[0] <= value[1] <= high
    )
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"`{name}` must be a pair (low, high) with {bracket}{low} ... {high}]; got {value!r}.")
