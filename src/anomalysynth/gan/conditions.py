"""The structure conditions of AnomalyHybrid: an edge map and a depth map per image.

The paper takes edges from PiDiNet and depth from DepthAnythingV2; neither has
weights offline, so:

* edges: ``"canny"`` (kornia's Canny, binary, the default), ``"sobel"`` (the Sobel
  gradient magnitude, normalised per image) or ``"model"`` (a user TorchScript file);
* depth: ``"folder"`` (user depth maps named like the images, e.g. MVTec 3D-AD's
  ``xyz/*.tiff``), ``"model"`` (a user TorchScript file, e.g. an exported depth
  network) or ``"pseudo"``: the image's grey level, Gaussian-smoothed and normalised
  per image. The pseudo-depth is a shading cue ("dark is deep": holes, cracks and
  grooves are usually darker), not geometry; it is the documented fallback when no
  depth exists. There is no silent default: the choice must be made.

Both maps are (B, 1, H, W) floats in [0, 1]; depth is *nearness* (1 near, 0 far or
background), so "set to background" means 0 for both maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEPTH_SOURCES", "EDGE_SOURCES", "ConditionExtractor", "edge_map", "grey", "pseudo_depth"]

EDGE_SOURCES = ("canny", "sobel", "model")
DEPTH_SOURCES = ("pseudo", "folder", "model")
_DEPTH_EXTENSIONS = (".npy", ".tiff", ".tif", ".png")
_LUMA = (0.299, 0.587, 0.114)


def grey(images: Tensor) -> Tensor:
    """(B, 1, H, W) luminance of (B, 1 or 3, H, W) images."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def edge_map(images: Tensor, method: str = "canny", low_threshold: float = 0.1, high_threshold: float = 0.2) -> Tensor:
    """(B, 1, H, W) edges in [0, 1]: binary Canny edges or the per-image normalised Sobel magnitude."""
    import kornia

    g = grey(images)
    if method == "canny":
        _, edges = kornia.filters.canny(g, low_threshold=low_threshold, high_threshold=high_threshold)
        return edges.clamp(0, 1)
    if method == "sobel":
        return _normalise(kornia.filters.sobel(g, eps=1e-12))
    raise ValueError(f"Edge `method` must be 'canny' or 'sobel'; got {method!r}.")


def pseudo_depth(images: Tensor, sigma_ratio: float = 0.01) -> Tensor:
    """(B, 1, H, W) pseudo-depth: the grey level smoothed by a Gaussian of ``sigma_ratio * min(H, W)``
    pixels (at least 1), min-max normalised per image (bright = near)."""
    import kornia

    sigma = max(1.0, sigma_ratio * min(images.shape[-2:]))
    k = 2 * round(2 * sigma) + 1
    return _normalise(kornia.filters.gaussian_blur2d(grey(images), (k, k), (sigma, sigma), border_type="reflect"))


class ConditionExtractor(nn.Module):
    """Computes ``(depth, edge)`` for a batch of images.

    Args:
        edge_source: one of :data:`EDGE_SOURCES`.
        depth_source: one of :data:`DEPTH_SOURCES`; required (no default is honest).
        edge_model: TorchScript file, ``torch.export`` archive (``.pt2``) or module for
            ``edge_source="model"``: (B, 3, H, W)
            in [0, 1] -> (B, 1, H, W) or (B, H, W), normalised per image afterwards.
        depth_model: the same for ``depth_source="model"``.
        depth_dir: folder of depth maps for ``depth_source="folder"``: the map of image
            ``.../name.png`` is ``<depth_dir>/name.{npy,tiff,tif,png}`` (searched
            recursively); multi-channel maps (MVTec 3D-AD's XYZ) use their last channel,
            zeros and non-finite values count as background.
        depth_is_distance: the folder's maps or the model's output grow with distance
            (MVTec 3D-AD's Z): inverted to nearness.
        canny_low, canny_high: Canny's hysteresis thresholds on the gradient of [0, 1] images.
        pseudo_depth_sigma: see :func:`pseudo_depth`.
    """

    def __init__(
        self,
        edge_source: str = "canny",
        depth_source: str | None = None,
        edge_model: str | Path | nn.Module | None = None,
        depth_model: str | Path | nn.Module | None = None,
        depth_dir: str | Path | None = None,
        depth_is_distance: bool = False,
        canny_low: float = 0.1,
        canny_high: float = 0.2,
        pseudo_depth_sigma: float = 0.01,
    ) -> None:
        super().__init__()
        if edge_source not in EDGE_SOURCES:
            raise ValueError(f"`edge_source` must be one of {EDGE_SOURCES}; got {edge_source!r}.")
        if depth_source is None:
            raise ValueError(
                "AnomalyHybrid needs a depth source and has no honest default: pass depth_source='folder' with "
                "depth_dir=<folder of depth maps named like the images>, depth_source='model' with "
                "depth_model=<TorchScript file: (B, 3, H, W) -> (B, 1, H, W)>, or depth_source='pseudo' "
                "(smoothed grey level as a stand-in for depth; see the README)."
            )
        if depth_source not in DEPTH_SOURCES:
            raise ValueError(f"`depth_source` must be one of {DEPTH_SOURCES}; got {depth_source!r}.")
        if edge_source == "model" and edge_model is None:
            raise ValueError("edge_source='model' needs edge_model=<TorchScript file: (B, 3, H, W) -> (B, 1, H, W)>.")
        if depth_source == "model" and depth_model is None:
            raise ValueError("depth_source='model' needs depth_model=<TorchScript file: (B, 3, H, W) -> (B, 1, H, W)>.")
        if depth_source == "folder" and depth_dir is None:
            raise ValueError("depth_source='folder' needs depth_dir=<folder of depth maps named like the images>.")
        if not 0.0 <= canny_low <= canny_high:
            raise ValueError(f"Expected 0 <= canny_low <= canny_high; got {canny_low}, {canny_high}.")
        self.edge_source, self.depth_source = edge_source, depth_source
        self.depth_is_distance = bool(depth_is_distance)
        self.canny_low, self.canny_high = float(canny_low), float(canny_high)
        self.pseudo_depth_sigma = float(pseudo_depth_sigma)
        self.edge_model = _load_model(edge_model) if edge_source == "model" else None
        self.depth_model = _load_model(depth_model) if depth_source == "model" else None
        self.depth_dir = None if depth_dir is None else Path(depth_dir)
        self._depth_files: dict[str, Path] | None = None
        if depth_source == "folder":
            self._depth_files = _index_depth_folder(self.depth_dir)  # type: ignore[arg-type]

    @property
    def needs_paths(self) -> bool:
        """Whether depth comes from files named like the images (the caller must pass paths)."""
        return self.depth_source == "folder"

    @torch.no_grad()
    def forward(self, images: Tensor, paths: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
        """(depth, edge), each (B, 1, H, W) in [0, 1], for (B, C, H, W) images in [0, 1]."""
        return self.depth(images, paths), self.edges(images)

    def edges(self, images: Tensor) -> Tensor:
        if self.edge_model is not None:
            return _run_model(self.edge_model, images, invert=False)
        return edge_map(images, self.edge_source, self.canny_low, self.canny_high)

    def depth(self, images: Tensor, paths: Sequence[str] | None = None) -> Tensor:
        if self.depth_source == "pseudo":
            return pseudo_depth(images, self.pseudo_depth_sigma)
        if self.depth_model is not None:
            return _run_model(self.depth_model, images, invert=self.depth_is_distance)
        if paths is None or len(paths) != images.shape[0]:
            raise ValueError(
                "depth_source='folder' looks depth maps up by image file name, but no image paths came with the "
                f"batch (expected {images.shape[0]} paths; got {None if paths is None else len(paths)}). "
                "Use a datamodule whose batches carry `image_path`, or depth_source='model'/'pseudo'."
            )
        maps = [self._load_depth(p, images.shape[-2:]) for p in paths]
        return torch.stack(maps).to(images.device, images.dtype)

    def _load_depth(self, image_path: str, size: torch.Size) -> Tensor:
        assert self._depth_files is not None
        stem = Path(image_path).stem
        path = self._depth_files.get(stem)
        if path is None:
            raise ValueError(
                f"No depth map for image {image_path!r}: expected {self.depth_dir}/{stem}"
                f"{{{','.join(_DEPTH_EXTENSIONS)}}}."
            )
        array = _read_depth(path)
        valid = np.isfinite(array) & (array != 0)
        depth = torch.zeros(array.shape, dtype=torch.float32)
        if valid.any():
            values = torch.from_numpy(array[valid].astype(np.float32))
            lo, hi = values.min(), values.max()
            scaled = (values - lo) / (hi - lo).clamp_min(1e-8)
            depth[torch.from_numpy(valid)] = 1 - scaled if self.depth_is_distance else scaled
        depth = depth[None, None]
        if depth.shape[-2:] != size:
            depth = F.interpolate(depth, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        return depth[0].clamp(0, 1)

    def extra_repr(self) -> str:
        return f"edge_source={self.edge_source!r}, depth_source={self.depth_source!r}"


def _normalise(maps: Tensor) -> Tensor:
    """Per-image min-max normalisation to [0, 1] (constant maps become 0)."""
    flat = maps.flatten(1)
    lo, hi = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    return ((maps - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)


def _load_model(model: str | Path | nn.Module | None) -> nn.Module:
    if isinstance(model, nn.Module):
        return model.eval()
    path = Path(str(model))
    if not path.is_file():
        raise FileNotFoundError(
            f"Condition model file {str(path)!r} does not exist (expected a TorchScript or torch.export .pt2 file)."
        )
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
    return torch.jit.load(str(path), map_location="cpu").eval()


def _run_model(model: nn.Module, images: Tensor, invert: bool) -> Tensor:
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    device = next(iter(model.parameters()), images).device
    out = model(rgb.to(device)).to(images.device, images.dtype)
    if out.dim() == 3:
        out = out.unsqueeze(1)
    if out.dim() != 4 or out.shape[1] != 1 or out.shape[0] != images.shape[0]:
        raise ValueError(f"A condition model must return (B, 1, H, W) or (B, H, W); got {tuple(out.shape)}.")
    if out.shape[-2:] != images.shape[-2:]:
        out = F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
    out = _normalise(out)
    return 1 - out if invert else out


def _index_depth_folder(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"depth_dir {str(folder)!r} is not a folder.")
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in _DEPTH_EXTENSIONS:
            files.setdefault(path.stem, path)
    if not files:
        raise ValueError(f"No depth maps ({', '.join(_DEPTH_EXTENSIONS)}) found under {str(folder)!r}.")
    return files


def _read_depth(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        array = tifffile.imread(path)
    else:
        from PIL import Image

        with Image.open(path) as img:
            array = np.asarray(img)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3:
        array = array[..., -1]
    if array.ndim != 2:
        raise ValueError(f"Depth map {str(path)!r} must be (H, W) or (H, W, C); got shape {array.shape}.")
    return array
