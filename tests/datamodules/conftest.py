"""A tiny demo tree shared by the data tests."""

from __future__ import annotations

import pytest

from anomalysynth.datamodules.demo import build_demo_dataset


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    return build_demo_dataset(
        tmp_path_factory.mktemp("tiny_demo"), "brick", image_size=48, num_train=10, num_test_good=2, num_defects=1
    )


@pytest.fixture
def tiny_folder(tiny_tree):
    from anomalib.data import Folder

    defects = ["scratch", "inclusion", "dent"]
    return Folder(
        name="tiny",
        root=tiny_tree,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{d}" for d in defects],
        mask_dir=[f"ground_truth/{d}" for d in defects],
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
    )
