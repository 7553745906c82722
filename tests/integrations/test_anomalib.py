"""anomalib's DRAEM, DSR, GLASS and SuperSimpleNet drawing their anomalies from our synthesizers."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

import anomalysynth  # noqa: F401  (registers the offline backbone)
from anomalysynth.integrations.anomalib import SUPPORTED_MODELS, UseSynthesizer, use_synthesizer
from anomalysynth.integrations.anomalib_generators import (
    FeatureNoiseOff,
    ImageAnomalyGenerator,
    MaskAnomalyGenerator,
)
from anomalysynth.synth import CutPaste, OneOf, PerlinTextureBlend, create_synthesizer
from tests.conftest import photo_batch, quiet_trainer

BACKBONE = "efficientnet_lite0.offline_in1k"
SIZE = (64, 64)


def count_calls(synth: torch.nn.Module) -> list[int]:
    calls = [0]
    synth.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def build(kind: str, tmp_path, size: tuple[int, int] = SIZE):
    from anomalib.models import Draem, Dsr, Glass, Supersimplenet

    if kind == "Draem":
        # an existing (empty) dtd_dir: DRAEM downloads DTD only when the folder is missing
        return Draem(dtd_dir=tmp_path, pre_processor=Draem.configure_pre_processor(image_size=size))
    if kind == "Dsr":
        return Dsr(pre_processor=Dsr.configure_pre_processor(image_size=size))
    if kind == "Glass":
        return Glass(
            input_shape=SIZE,
            backbone=BACKBONE,
            layers=["blocks.2", "blocks.4"],
            pretrain_embed_dim=32,
            target_embed_dim=32,
            discriminator_hidden=16,
            step=2,
            pre_processor=Glass.configure_pre_processor(image_size=SIZE),
        )
    return Supersimplenet(
        backbone=BACKBONE,
        layers=["blocks.2", "blocks.4"],
        pre_processor=Supersimplenet.configure_pre_processor(image_size=SIZE),
    )


# ---------------------------------------------------------------------- output formats
def assert_same_format(ours, theirs):
    ours = ours if isinstance(ours, tuple) else (ours,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    # masks are 0/1 as anomalib's
    assert set(torch.unique(ours[-1]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("single", [False, True])
def test_image_generator_matches_perlin_generator_format(single):
    from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

    images = photo_batch(4, 3)
    images = images[0] if single else images
    model = use_synthesizer(fake_draem(), "cutpaste", seed=0, anomaly_ratio=1.0)
    ours = model.augmenter(images)
    theirs = PerlinAnomalyGenerator(probability=1.0)(images)
    assert_same_format(ours, theirs)


def test_mask_generator_matches_dsr_generator_format():
    from anomalib.models.image.dsr.anomaly_generator import DsrAnomalyGenerator

    images = photo_batch(4, 3)
    draw_model = use_synthesizer(fake_dsr(), "cutpaste", seed=0)
    assert isinstance(draw_model.quantized_anomaly_generator, MaskAnomalyGenerator)
    assert_same_format(
        draw_model.quantized_anomaly_generator.augment_batch(images), DsrAnomalyGenerator().augment_batch(images)
    )


def test_feature_noise_off_matches_supersimplenet_generator_format():
    from anomalib.models.image.supersimplenet.anomaly_generator import AnomalyGenerator

    feats, adapted = torch.randn(2, 8, 32, 32), torch.randn(2, 8, 32, 32)
    masks, labels = torch.zeros(2, 1, 32, 32), torch.zeros(2)
    masks[0, :, 2:5, 2:5] = 1
    labels[0] = 1
    theirs = AnomalyGenerator(0, 0.015, 0.2)(feats, adapted, masks, labels)
    ours = FeatureNoiseOff()(feats, adapted, masks, labels)
    for a, b in zip(ours, theirs, strict=True):
        # same rank, dtype and per-sample shape; ours keeps B samples, theirs duplicates the batch (2B)
        assert a.dtype == b.dtype and a.shape[1:] == b.shape[1:] and 2 * a.shape[0] == b.shape[0]
    assert torch.equal(ours[1], adapted) and torch.equal(ours[2], masks) and torch.equal(ours[3], labels)


def test_replaced_generator_gives_the_synthesizers_output_bit_for_bit():
    images = photo_batch(4, 3)
    synth = CutPaste()
    model = use_synthesizer(fake_draem(), synth, seed=7, anomaly_ratio=0.5)
    augmented, mask = model.augmenter(images)
    expected = synth(images, torch.Generator().manual_seed(7), anomaly_ratio=0.5)
    assert torch.equal(mask, (expected.mask >= 0.5).float())
    assert torch.equal(augmented, torch.where(mask.bool(), expected.image, images))
    # pixels outside the mask are the input's, also when the input left [0, 1] slightly
    shifted = images * 1.01
    augmented, mask = use_synthesizer(fake_draem(), synth, seed=7).augmenter(shifted)
    assert torch.equal(augmented[mask.expand_as(shifted) == 0], shifted[mask.expand_as(shifted) == 0])


def test_generator_follows_the_images_device_and_stays_out_of_the_state_dict():
    model = fake_draem()
    before = set(model.state_dict())
    synth = PerlinTextureBlend()
    use_synthesizer(model, synth)
    assert set(model.state_dict()) == before
    assert isinstance(model.augmenter, ImageAnomalyGenerator)
    # every draw moves the synthesizer to the device of the images it is handed
    moves = []
    original_to = synth.to

    def recording_to(*args, **kwargs):
        moves.append(args[0] if args else kwargs.get("device"))
        return original_to(*args, **kwargs)

    synth.to = recording_to  # type: ignore[method-assign]
    images = photo_batch(2, 3)
    model.augmenter(images)
    assert moves == [images.device]


def test_unsupported_model_lists_the_supported_ones():
    with pytest.raises(ValueError, match="Draem, Dsr, Glass, Supersimplenet") as info:
        use_synthesizer(pl.LightningModule(), "cutpaste")
    assert info.match("LightningModule")
    with pytest.raises(ValueError, match="Unknown synthesizer"):
        UseSynthesizer("no_such_method")
    with pytest.raises(ValueError, match="anomaly_ratio"):
        UseSynthesizer("cutpaste", anomaly_ratio=2.0)


def test_supported_models_are_the_four():
    assert set(SUPPORTED_MODELS) == {"Draem", "Dsr", "Glass", "Supersimplenet"}


# ---------------------------------------------------------------------- training, offline
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("Draem", marks=pytest.mark.slow),  # a full-size U-Net pair: ~20 s on 2 busy cores
        pytest.param("Dsr", marks=pytest.mark.slow),
        "Glass",
        "Supersimplenet",
    ],
)
def test_training_steps_run_offline_with_the_replaced_generator(kind, tiny_folder, tmp_path, offline, monkeypatch):
    torch.manual_seed(0)
    model = build(kind, tmp_path, size=(32, 32) if kind == "Draem" else SIZE)
    if kind == "Dsr":
        # DSR loads its pretrained discrete model at train start: hand it local random weights
        path = tmp_path / "vq.pckl"
        torch.save(model.model.discrete_latent_model.state_dict(), path)
        monkeypatch.setattr(type(model), "prepare_pretrained_model", staticmethod(lambda: path))
        model.upsampling_train_ratio = 0.5  # phase 2 (mask generator) in epoch 0, phase 3 in epoch 1
    synth = OneOf([create_synthesizer("cutpaste"), create_synthesizer("cutpaste_scar")])
    calls = count_calls(synth)
    use_synthesizer(model, synth)
    epochs = 2 if kind == "Dsr" else 1
    trainer = quiet_trainer(
        tmp_path, max_epochs=epochs, limit_train_batches=1, limit_val_batches=0, num_sanity_val_steps=0
    )
    trainer.fit(model, datamodule=tiny_folder)
    assert calls[0] == epochs  # every training step drew from the synthesizer
    loss = trainer.callback_metrics.get("train_loss", trainer.callback_metrics.get("loss"))
    assert loss is not None and torch.isfinite(loss)


def test_supersimplenet_sees_synthetic_images_masks_and_labels(tmp_path):
    model = build("Supersimplenet", tmp_path)
    use_synthesizer(model, "cutpaste", seed=3, anomaly_ratio=1.0)
    seen = {}
    model.model.segdec.register_forward_hook(
        lambda m, args, kwargs, out: seen.update(n=kwargs["seg_features"].shape[0]), with_kwargs=True
    )
    images = (photo_batch(2, 3) - 0.45) / 0.225
    model.model.train()
    _, _, masks, labels = model.model(images=images, masks=torch.zeros(2, 64, 64), labels=torch.zeros(2))
    assert labels.tolist() == [1.0, 1.0] and masks.amax() == 1 and seen["n"] == 2
    model.model.eval()
    model.model(images)  # inference is untouched by the hook


def test_callback_installs_the_synthesizer(tmp_path):
    model = fake_draem()
    UseSynthesizer("cutpaste", anomaly_ratio=0.3).setup(quiet_trainer(tmp_path), model, "fit")
    assert isinstance(model.augmenter, ImageAnomalyGenerator) and model.augmenter.draw.anomaly_ratio == 0.3


# ---------------------------------------------------------------------- light stand-ins
def fake_draem():  # a Draem without its 100 MB network, for format tests
    from anomalib.models import Draem

    model = Draem.__new__(Draem)
    pl.LightningModule.__init__(model)
    return model


def fake_dsr():
    from anomalib.models import Dsr

    model = Dsr.__new__(Dsr)
    pl.LightningModule.__init__(model)
    return model
