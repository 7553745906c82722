"""The embedded demo data set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anomalysynth.datamodules.demo import DEFECT_TYPES, DemoDataModule, build_demo_dataset


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_demo_dataset(
        tmp_path_factory.mktemp("demo"), "grass", image_size=64, num_train=6, num_test_good=3, num_defects=2
    )


def test_tree_layout_and_masks(tree):
    assert len(list((tree / "train" / "good").glob("*.png"))) == 6
    assert len(list((tree / "test" / "good").glob("*.png"))) == 3
    for defect in DEFECT_TYPES:
        images = sorted((tree / "test" / defect).glob("*.png"))
        masks = sorted((tree / "ground_truth" / defect).glob("*.png"))
        assert [p.stem + "_mask" for p in images] == [m.stem for m in masks]
        for image_path, mask_path in zip(images, masks, strict=True):
            mask = np.asarray(Image.open(mask_path)) > 127
            assert 0.001 < mask.mean() < 0.3, f"{mask_path.name} covers {mask.mean():.3f}"
            assert np.asarray(Image.open(image_path)).shape == (64, 64)


def test_defects_change_the_image_where_the_mask_is(tree):
    # the defect tiles are crops of the same test area as test/good, so compare statistics:
    # inside the mask the local contrast to the surroundings must be clearly visible
    for defect in DEFECT_TYPES:
        for image_path in sorted((tree / "test" / defect).glob("*.png")):
            image = np.asarray(Image.open(image_path), dtype=np.float32) / 255
            mask = np.asarray(Image.open(tree / "ground_truth" / defect / f"{image_path.stem}_mask.png")) > 127
            assert abs(image[mask].mean() - image[~mask].mean()) > 0.01 or image[mask].std() > 0.05


def test_build_is_cached_and_keyed_by_its_settings(tree):
    again = build_demo_dataset(tree.parent, "grass", image_size=64, num_train=6, num_test_good=3, num_defects=2)
    assert again == tree
    assert not list(tree.parent.glob(".grass*")), "no staging folder left behind"


def test_unknown_category_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="brick"):
        build_demo_dataset(tmp_path, "marble")


def test_datamodule_pairs_masks_with_their_images(tree):
    dm = DemoDataModule("grass", root=tree.parent, image_size=64, num_train=6, num_test_good=3, num_defects=2)
    dm.setup()
    assert len(dm.train_data) == 6
    items = [dm.test_data[i] for i in range(len(dm.test_data))] + [dm.val_data[i] for i in range(len(dm.val_data))]
    assert len(items) == 3 + 2 * len(DEFECT_TYPES)
    for item in items:
        if item.gt_label:
            stem = item.image_path.rsplit("/", 1)[-1][:-4]
            defect = stem.rsplit("_", 1)[0]
            expected = np.asarray(Image.open(tree / "ground_truth" / defect / f"{stem}_mask.png")) > 127
            assert np.array_equal(item.gt_mask.numpy(), expected)
        else:
            assert not item.gt_mask.any()


def test_a_demo_tree_in_a_dot_folder_gives_no_hidden_files_warning(tmp_path, caplog):
    from anomalib.data.utils.path import _prepare_files_labels

    root = tmp_path / ".cache" / "demo"
    dm = DemoDataModule("grass", root=root, image_size=64, num_train=6, num_test_good=3, num_defects=2)
    with caplog.at_level("WARNING", logger="anomalib.data.utils.path"):
        dm.setup()
        assert "hidden files" not in caplog.text
        # anomalib still warns about other folders with hidden parts
        other = tmp_path / ".other"
        other.mkdir()
        Image.new("L", (4, 4)).save(other / "a.png")
        _prepare_files_labels(other, "normal", None)
        assert "hidden files found" in caplog.text
