"""SynthesizeOnDevice inside a real Trainer.fit, ahead of an anomalib module's PreProcessor."""

from __future__ import annotations

from typing import Any

import torch
from anomalib import LearningType
from anomalib.models.components import AnomalibModule
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import CenterCrop, Compose, Normalize, Resize
from torchvision.tv_tensors import Image, Mask

from anomalysynth.callbacks import SynthesizeOnDevice
from anomalysynth.synth import create_synthesizer
from tests.conftest import quiet_trainer

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# The tiny Folder's images are 48 px. anomalib's datamodule moves the model's Resize into the
# dataset (so the synthesizer sees 40 px images); the PreProcessor then crops image and mask
# on the batch and normalises the image.
LOADED, SIZE = 40, 32


class RecordingModule(AnomalibModule):
    """The smallest anomalib module: resize, crop and normalise; records what training_step gets."""

    def __init__(self) -> None:
        transform = Compose([Resize((LOADED, LOADED)), CenterCrop(SIZE), Normalize(MEAN, STD)])
        super().__init__(
            pre_processor=PreProcessor(transform=transform), post_processor=False, evaluator=False, visualizer=False
        )
        self.head = torch.nn.Linear(1, 1)
        self.seen: list[dict[str, Any]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        fields = ("image", "gt_mask", "gt_label", "source_image", "anomaly_strength", "synthesis_params")
        self.seen.append({name: getattr(batch, name) for name in fields})
        return self.head(batch.image.mean().view(1, 1)).sum()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.head.parameters(), lr=0.1)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


def test_synthesized_anomalies_reach_training_step_through_anomalibs_pre_processor(tiny_folder, tmp_path):
    synthesizer = create_synthesizer("perlin_texture")
    module = RecordingModule()
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[SynthesizeOnDevice(synthesizer, anomaly_ratio=0.5)]
    )
    trainer.fit(module, datamodule=tiny_folder)
    assert len(module.seen) == 3  # 10 images in batches of 4
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    labels = []
    for seen in module.seen:
        image, mask, label, source = seen["image"], seen["gt_mask"], seen["gt_label"], seen["source_image"]
        b = source.shape[0]
        # the synthesizer ran first, on the raw images; the pre-processor then cropped and normalised once
        assert source.shape == (b, 3, LOADED, LOADED) and float(source.min()) >= 0 and float(source.max()) <= 1
        assert image.shape == (b, 3, SIZE, SIZE) and isinstance(image, Image)
        raw = image.as_subclass(torch.Tensor) * std + mean
        assert float(raw.min()) > -1e-4 and float(raw.max()) < 1 + 1e-4  # the contract's [0, 1] before normalising
        # labels bool, set for every sample whose (cropped) mask has a positive pixel; the centre
        # crop can cut an anomaly out of the view, so a labelled sample may show an empty mask
        assert label.dtype == torch.bool and label.shape == (b,)
        assert isinstance(mask, Mask) and mask.dtype == torch.bool and mask.shape == (b, SIZE, SIZE)
        assert bool(label[mask.flatten(1).any(dim=1)].all())
        assert torch.equal(seen["anomaly_strength"] > 0, label)
        # aligned: the image differs from its (cropped) source only inside the mask, and inside the
        # mask of every anomalous sample most pixels changed
        margin = (LOADED - SIZE) // 2
        clean = source[..., margin : margin + SIZE, margin : margin + SIZE]
        changed = (raw - clean).abs().amax(dim=1) > 1e-4
        assert not (changed & ~mask).any()
        for i in torch.nonzero(mask.flatten(1).any(dim=1)).flatten():
            assert changed[i][mask[i]].float().mean() > 0.5
        # the batch replays: the synthesizer's own output, through the same transform, is what arrived
        out = synthesizer.apply(source, seen["synthesis_params"])
        expected_image, expected_mask = module.pre_processor.transform(Image(out.image), Mask(out.mask[:, 0] > 0))
        assert torch.allclose(image, expected_image, atol=1e-6) and torch.equal(mask, expected_mask)
        labels.append(label)
    labels = torch.cat(labels)
    assert labels.any() and not labels.all()  # anomaly_ratio 0.5 of 10: both kinds
