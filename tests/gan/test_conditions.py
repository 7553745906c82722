"""Edge and depth conditions, and the errors when a depth source is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from anomalysynth.gan import ConditionExtractor, edge_map, pseudo_depth
from tests.conftest import photo_batch


def test_sobel_edges_match_scipy():
    images = photo_batch(2, 3, size=32)
    edges = edge_map(images, "sobel").numpy()
    grey = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).numpy()
    for i in range(2):
        gx = ndimage.sobel(grey[i], axis=1, mode="nearest")
        gy = ndimage.sobel(grey[i], axis=0, mode="nearest")
        mag = np.hypot(gx, gy)
        expected = (mag - mag.min()) / (mag.max() - mag.min())
        np.testing.assert_allclose(edges[i, 0], expected, atol=5e-4)


def test_canny_edges_are_binary_and_on_the_step():
    image = torch.zeros(1, 3, 32, 32)
    image[..., 16:] = 1.0
    edges = edge_map(image)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    columns = torch.nonzero(edges[0, 0].amax(dim=0)).flatten().tolist()  # the step is between columns 15 and 16
    assert columns and all(15 <= c <= 16 for c in columns)
    assert edges[0, 0, 4:-4].amax(dim=1).min() == 1  # an unbroken vertical edge


def test_pseudo_depth_is_the_normalised_smoothed_grey_level():
    images = photo_batch(1, 1, size=64)
    depth = pseudo_depth(images, sigma_ratio=0.05)[0, 0].numpy()
    smooth = ndimage.gaussian_filter(images[0, 0].numpy(), sigma=3.2, mode="reflect", truncate=2.0)
    expected = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    assert depth.min() == 0 and depth.max() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(depth[8:-8, 8:-8], expected[8:-8, 8:-8], atol=0.02)


def test_missing_depth_choice_says_what_to_pass():
    with pytest.raises(ValueError, match=r"depth_source='folder'.*depth_source='model'.*depth_source='pseudo'"):
        ConditionExtractor()
    with pytest.raises(ValueError, match="depth_dir"):
        ConditionExtractor(depth_source="folder")
    with pytest.raises(ValueError, match="depth_model"):
        ConditionExtractor(depth_source="model")
    with pytest.raises(ValueError, match="edge_model"):
        ConditionExtractor(edge_source="model", depth_source="pseudo")
    with pytest.raises(ValueError, match="edge_source"):
        ConditionExtractor(edge_source="pidinet", depth_source="pseudo")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ConditionExtractor(depth_source="model", depth_model="/no/such/depth.pt")


def test_depth_folder_matches_files_by_name_and_normalises(tmp_path):
    z = np.array([[0.0, 2.0], [4.0, 6.0]])  # 0 = missing
    np.save(tmp_path / "000.npy", z)
    Image.fromarray(np.array([[10, 20], [30, 40]], dtype=np.uint8)).save(tmp_path / "001.png")
    near = ConditionExtractor(depth_source="folder", depth_dir=tmp_path, depth_is_distance=True)
    images = torch.rand(2, 3, 2, 2)
    depth = near.depth(images, ["x/rgb/000.png", "y/001.jpg"])
    np.testing.assert_allclose(depth[0, 0].numpy(), [[0.0, 1.0], [0.5, 0.0]])  # far (6) = 0, near (2) = 1
    np.testing.assert_allclose(depth[1, 0].numpy(), [[1.0, 2 / 3], [1 / 3, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match="No depth map for image"):
        near.depth(images[:1], ["z/002.png"])
    with pytest.raises(ValueError, match="no image paths came with the batch"):
        near.depth(images)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated in favour of torch.export
def test_user_models_are_torchscript_or_exported_files(tmp_path):
    class Mean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=1)

    path = tmp_path / "depth.pt"
    torch.jit.script(Mean()).save(str(path))
    extractor = ConditionExtractor(depth_source="model", depth_model=path, edge_source="model", edge_model=path)
    images = photo_batch(2, 3, size=16)
    depth, edge = extractor(images)
    mean = images.mean(1, keepdim=True)
    lo, hi = mean.amin((2, 3), keepdim=True), mean.amax((2, 3), keepdim=True)
    torch.testing.assert_close(depth, (mean - lo) / (hi - lo))
    torch.testing.assert_close(edge, depth)
    exported = tmp_path / "depth.pt2"
    torch.export.save(torch.export.export(Mean(), (images,)), str(exported))
    from_export = ConditionExtractor(depth_source="model", depth_model=exported)
    torch.testing.assert_close(from_export.depth(images), depth)
