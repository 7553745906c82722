"""Training throughput: plain loading vs on-the-fly synthesis vs the synthesis cache.

One small detector (anomalib's SuperSimpleNet, supervised, offline EfficientNet-Lite0)
trained on the demo data three ways in one run: plain normal images, synthetic
anomalies made on the fly in 2 DataLoader workers, and synthetic anomalies read
from a prebuilt bank. Each is timed over its second epoch (workers are
persistent, so the first epoch's start-up is excluded); ratios are against plain.
Run it alone:

    python benchmarks/training_throughput.py [--num-train 128] [--synthesizer perlin_texture]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        self.times.append(time.perf_counter() - self._start)


def epoch_seconds(datamodule, seed: int = 0) -> float:  # type: ignore[no-untyped-def]
    from anomalib.models import Supersimplenet

    pl.seed_everything(seed, verbose=False)
    model = Supersimplenet(backbone="efficientnet_lite0.offline_in1k", layers=["blocks.2", "blocks.4"], supervised=True)
    timer = EpochTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=datamodule)
    return min(timer.times[1:])


def loader_seconds(datamodule) -> float:  # type: ignore[no-untyped-def]
    """One pass over the training loader alone (the second pass: workers are warm)."""
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--synthesizer", default="perlin_texture")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)

    import anomalysynth  # noqa: F401
    from anomalysynth.datamodules import DemoDataModule, SyntheticAnomalyDataModule
    from anomalysynth.synth import create_synthesizer

    def demo() -> DemoDataModule:
        return DemoDataModule(
            image_size=args.image_size,
            num_train=args.num_train,
            train_batch_size=args.batch_size,
            num_workers=args.workers,
        )

    with tempfile.TemporaryDirectory() as cache_dir:
        synth = create_synthesizer(args.synthesizer)
        plain_dm = demo()
        plain_dm.train_dataloader = _persistent(plain_dm)  # type: ignore[method-assign]
        fly = SyntheticAnomalyDataModule(demo(), synth, anomaly_ratio=0.5)
        cached = SyntheticAnomalyDataModule(demo(), synth, anomaly_ratio=0.5, mode="cached", cache_dir=cache_dir)
        cached.setup("fit")  # builds the bank outside the timed epochs
        names = [
            "plain loading",
            f"on the fly ({args.synthesizer}, {args.workers} workers)",
            "from the synthesis cache",
        ]
        modules = [plain_dm, fly, cached]
        loaders = [loader_seconds(dm) for dm in modules]
        epochs = [epoch_seconds(dm) for dm in modules]
    print(
        f"SuperSimpleNet (supervised), {args.num_train} images {args.image_size}px, batch {args.batch_size}, "
        f"{args.workers} workers, 2 threads; best of epochs 2-3"
    )
    print(f"{'loading':44s} {'train s/epoch':>13s} {'x plain':>8s} {'loader s/epoch':>15s} {'x plain':>8s}")
    for name, epoch, loader in zip(names, epochs, loaders, strict=True):
        print(f"{name:44s} {epoch:13.2f} {epoch / epochs[0]:8.3f} {loader:15.3f} {loader / loaders[0]:8.3f}")


def _persistent(datamodule):  # type: ignore[no-untyped-def]
    """The plain Folder loader with persistent workers, like the wrapped ones."""
    from torch.utils.data import DataLoader

    def loader() -> DataLoader:
        return DataLoader(
            datamodule.train_data,
            shuffle=True,
            batch_size=datamodule.train_batch_size,
            num_workers=datamodule.num_workers,
            collate_fn=datamodule.train_data.collate_fn,
            persistent_workers=datamodule.num_workers > 0,
        )

    return loader


if __name__ == "__main__":
    main()
