"""An embedded demo data set: real photographs from scikit-image, no download.

``build_demo_dataset`` writes an MVTec-style tree::

    <root>/<category>/train/good/000.png ...
    <root>/<category>/test/good/000.png ...
    <root>/<category>/test/{scratch,inclusion,dent}/<defect>_000.png ...
    <root>/<category>/ground_truth/{scratch,inclusion,dent}/<defect>_000_mask.png ...

Normal images are crops of one real photograph (brick, grass or gravel); train
and test crops come from disjoint parts of it. The test defects are made by
procedures that none of the synthesizers uses, so a detector trained on
synthetic anomalies is not tested on its own training distribution:

* ``scratch``: a thin curved groove with a physical profile (dark core, bright
  lip on the lit side) along a random cubic Bezier curve;
* ``inclusion``: foreign material cut from a different photograph (coffee,
  astronaut, tissue) inside a star-shaped blob with an anti-aliased edge;
* ``dent``: a local radial warp of the surface with directional shading.

``DemoDataModule`` is anomalib's ``Folder`` on that tree; it builds the tree on
first use (atomically, so an interrupted build never leaves a half tree).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from anomalib.data import Folder
from PIL import Image
from skimage import data as skdata
from skimage.transform import resize

from anomalysynth.files import home_dir

__all__ = ["DEFECT_TYPES", "DEMO_CATEGORIES", "DemoDataModule", "build_demo_dataset", "default_demo_root"]

DEMO_CATEGORIES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "inclusion", "dent")
_FOREIGN = ("coffee", "astronaut", "immunohistochemistry")
_LAYOUT_VERSION = "v1"


def default_demo_root() -> Path:
    """``$ANOMALYSYNTH_HOME/demo`` (default ``~/.cache/anomalysynth/demo``)."""
    return home_dir() / "demo"


def build_demo_dataset(
    root: str | Path | None = None,
    category: str = "brick",
    image_size: int = 128,
    num_train: int = 64,
    num_test_good: int = 16,
    num_defects: int = 8,
    seed: int = 0,
) -> Path:
    """Write the demo tree for ``category`` under ``root`` (once) and return its folder.

    The folder name records every argument, so a changed setting never reuses a
    stale tree. The tree is written to a temporary folder and renamed into place.
    """
    if category not in DEMO_CATEGORIES:
        raise ValueError(f"Unknown demo category {category!r}; expected one of {DEMO_CATEGORIES}.")
    if image_size < 32:
        raise ValueError(f"`image_size` must be >= 32; got {image_size}.")
    root = Path(root) if root is not None else default_demo_root()
    name = f"{category}_{_LAYOUT_VERSION}_s{image_size}_n{num_train}-{num_test_good}-{num_defects}_seed{seed}"
    target = root / name
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        _write_tree(staging, category, image_size, num_train, num_test_good, num_defects, seed)
        (staging / ".complete").write_text("ok\n")
        try:
            staging.rename(target)
        except OSError:
            # another process finished first: keep its tree
            if not (target / ".complete").exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


class DemoDataModule(Folder):
    """anomalib ``Folder`` on the embedded demo data (built on first use).

    Args:
        category: one of ``DEMO_CATEGORIES``.
        root: where the tree is built (default :func:`default_demo_root`).
        image_size: side of the square images written to disk.
        num_train, num_test_good, num_defects: image counts (defects per type).
        train_batch_size, eval_batch_size, num_workers: as anomalib's ``Folder``.
        seed: seeds the demo images and anomalib's splits.
        **kwargs: any other ``Folder`` argument (augmentations, split modes, ...).
    """

    def __init__(
        self,
        category: str = "brick",
        root: str | Path | None = None,
        image_size: int = 128,
        num_train: int = 64,
        num_test_good: int = 16,
        num_defects: int = 8,
        train_batch_size: int = 16,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        tree = build_demo_dataset(root, category, image_size, num_train, num_test_good, num_defects, seed)
        super().__init__(
            name=f"demo_{category}",
            root=tree,
            normal_dir="train/good",
            normal_test_dir="test/good",
            abnormal_dir=[f"test/{d}" for d in DEFECT_TYPES],
            mask_dir=[f"ground_truth/{d}" for d in DEFECT_TYPES],
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            **kwargs,  # type: ignore[arg-type]
        )
        self.category = category
        self.tree = tree
        _quiet_hidden_path_warning(tree)


class _DropHiddenWarning(logging.Filter):
    """Drops anomalib's "hidden files found in <path>" for the demo tree: its files are not
    hidden, only its default home (``~/.cache``) is a dot-folder."""

    def __init__(self, tree: Path) -> None:
        super().__init__()
        self.tree = str(tree)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("hidden files found in" in message and self.tree in message)


def _quiet_hidden_path_warning(tree: Path) -> None:
    anomalib_logger = logging.getLogger("anomalib.data.utils.path")
    if not any(isinstance(f, _DropHiddenWarning) and f.tree == str(tree) for f in anomalib_logger.filters):
        anomalib_logger.addFilter(_DropHiddenWarning(tree))


# ---------------------------------------------------------------------- writing
def _write_tree(out: Path, category: str, size: int, n_train: int, n_good: int, n_def: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    photo = getattr(skdata, category)().astype(np.float32) / 255
    split = int(photo.shape[0] * 0.66)
    crop = min(160, photo.shape[0] - split)
    train_area, test_area = photo[:split], photo[split:]
    _save_many(out / "train" / "good", [_tile(train_area, crop, size, rng) for _ in range(n_train)], "{:03d}")
    _save_many(out / "test" / "good", [_tile(test_area, crop, size, rng) for _ in range(n_good)], "{:03d}")
    makers = {"scratch": _scratch, "inclusion": _inclusion, "dent": _dent}
    for defect in DEFECT_TYPES:
        images, masks = [], []
        for i in range(n_def):
            tile = _tile(test_area, crop, size, rng)
            image, mask = makers[defect](tile, rng, i)
            images.append(image)
            masks.append(mask.astype(np.float32))
        _save_many(out / "test" / defect, images, defect + "_{:03d}")
        _save_many(out / "ground_truth" / defect, masks, defect + "_{:03d}_mask")


def _save_many(folder: Path, arrays: list[np.ndarray], pattern: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(arrays):
        pixels = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / (pattern.format(i) + ".png"))


def _tile(area: np.ndarray, crop: int, size: int, rng: np.random.Generator) -> np.ndarray:
    y = int(rng.integers(0, area.shape[0] - crop + 1))
    x = int(rng.integers(0, area.shape[1] - crop + 1))
    tile = area[y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        tile = tile[:, ::-1]
    return resize(tile, (size, size), anti_aliasing=True).astype(np.float32)


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _scratch(tile: np.ndarray, rng: np.random.Generator, _: int) -> tuple[np.ndarray, np.ndarray]:
    """A groove along a cubic Bezier curve: dark core, bright lip, width 1-2.5 px."""
    size = tile.shape[0]
    pts = rng.uniform(0.1 * size, 0.9 * size, size=(4, 2))
    t = np.linspace(0, 1, 4 * size)[:, None]
    curve = (1 - t) ** 3 * pts[0] + 3 * (1 - t) ** 2 * t * pts[1] + 3 * (1 - t) * t**2 * pts[2] + t**3 * pts[3]
    yy, xx = _coords(size)
    grid = np.stack([yy.ravel(), xx.ravel()], 1)
    # distance to the polyline (by its dense samples) and which side of it a pixel is on
    dist: np.ndarray = np.full(grid.shape[0], np.inf, dtype=np.float32)
    side: np.ndarray = np.zeros(grid.shape[0], dtype=np.float32)
    tangent = np.gradient(curve, axis=0)
    for chunk in np.array_split(np.arange(len(curve)), 8):
        d = grid[:, None, :] - curve[None, chunk, :]
        norm = np.linalg.norm(d, axis=2)
        best = norm.argmin(1)
        better = norm[np.arange(len(grid)), best] < dist
        dist = np.where(better, norm[np.arange(len(grid)), best], dist)
        tan = tangent[chunk][best]
        cross = np.sign(tan[:, 0] * d[np.arange(len(grid)), best, 1] - tan[:, 1] * d[np.arange(len(grid)), best, 0])
        side = np.where(better, cross, side)
    dist, side = dist.reshape(size, size), side.reshape(size, size)
    width = rng.uniform(1.0, 2.5)
    depth = rng.uniform(0.25, 0.5)
    core = -depth * np.exp(-(dist**2) / (2 * (width / 2) ** 2))
    lip = 0.5 * depth * np.exp(-((dist - width) ** 2) / (2 * (width / 3) ** 2)) * (side > 0)
    image = np.clip(tile + core + lip, 0, 1)
    mask = dist <= width + 0.5
    return image, mask


def _inclusion(tile: np.ndarray, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreign material from another photograph inside a star-shaped blob."""
    size = tile.shape[0]
    foreign = getattr(skdata, _FOREIGN[index % len(_FOREIGN)])().astype(np.float32) / 255
    if foreign.ndim == 3:
        foreign = foreign @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    y = int(rng.integers(0, foreign.shape[0] - size + 1))
    x = int(rng.integers(0, foreign.shape[1] - size + 1))
    patch = foreign[y : y + size, x : x + size]
    # match the patch's mean to a clearly different level from the surface
    shift = rng.choice([-1, 1]) * rng.uniform(0.15, 0.3)
    patch = np.clip(patch - patch.mean() + tile.mean() + shift, 0, 1)
    yy, xx = _coords(size)
    cy, cx = rng.uniform(0.25 * size, 0.75 * size, size=2)
    radius = rng.uniform(0.06, 0.14) * size
    theta = np.arctan2(yy - cy, xx - cx)
    wobble = sum(rng.uniform(0, 0.25) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    edge = radius * (1 + wobble) - np.hypot(yy - cy, xx - cx)
    alpha = np.clip(edge + 0.5, 0, 1)  # anti-aliased one-pixel edge
    image = tile * (1 - alpha) + patch * alpha
    return image, alpha > 0.5


def _dent(tile: np.ndarray, rng: np.random.Generator, _: int) -> tuple[np.ndarray, np.ndarray]:
    """A radial warp (material pushed in) with shading from a light at a random azimuth."""
    size = tile.shape[0]
    yy, xx = _coords(size)
    cy, cx = rng.uniform(0.25 * size, 0.75 * size, size=2)
    radius = rng.uniform(0.08, 0.16) * size
    dy, dx = yy - cy, xx - cx
    r = np.hypot(dy, dx)
    bump = np.where(r < radius, np.cos(np.pi * r / (2 * radius)) ** 2, 0.0)
    strength = rng.uniform(0.3, 0.5)
    src_y = cy + dy * (1 - strength * bump)
    src_x = cx + dx * (1 - strength * bump)
    warped = _bilinear(tile, src_y, src_x)
    azimuth = rng.uniform(0, 2 * np.pi)
    slope = -np.sin(np.pi * r / radius) * (r < radius)  # derivative of the dent profile
    shade = rng.uniform(0.15, 0.3) * slope * (np.cos(azimuth) * dx + np.sin(azimuth) * dy) / np.maximum(r, 1e-6)
    image = np.clip(warped + shade, 0, 1)
    mask = bump > 0.2
    return image, mask


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    h, w = img.shape
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = ys - y0, xs - x0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
