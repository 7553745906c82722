"""AnomalyHybrid's cost on this machine: training images/s and generation ms/image.

Trains the CPU configuration of configs/anomalyhybrid.yaml (64 px, batch 8, demo brick)
for a few batches and times them, then times the ``anomalyhybrid`` synthesizer on a
checkpoint (the given one, or the module just timed, saved to a temporary file).

    python benchmarks/anomalyhybrid.py [--checkpoint results/anomalyhybrid/checkpoints/last.ckpt]

Prints wall-clock and process-CPU rates; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from anomalysynth.datamodules import DemoDataModule
from anomalysynth.files import atomic_write_bytes, torch_bytes
from anomalysynth.gan import AnomalyHybridGAN
from anomalysynth.synth import create_synthesizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()

    module = AnomalyHybridGAN(
        image_size=64, generator_width=16, num_resnet_blocks=4, discriminator_width=32, depth_source="pseudo"
    )
    sizes = {n: sum(p.numel() for p in getattr(module, n).parameters()) for n in ("generator", "discriminator")}
    print(f"parameters: generator {sizes['generator'] / 1e6:.2f} M, discriminator {sizes['discriminator'] / 1e6:.2f} M")
    data = DemoDataModule(category="brick", image_size=128, train_batch_size=8)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    opt_g, opt_d = module.configure_optimizers()

    def step(i: int) -> None:
        pair = module.training_pair(batch, i)
        outs = module.generator(pair.content, pair.depth, pair.edge)
        module.discriminator.requires_grad_(False)
        loss_g = module.generator_loss(pair, outs)["loss_g"]
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        module.discriminator.requires_grad_(True)
        loss_d = module.discriminator_loss(pair, outs)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()

    step(0)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(1, args.batches + 1):
        step(i)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = 8 * args.batches
    print(f"training, 64 px, batch 8: {n / wall:.2f} images/s wall ({cpu / n:.3f} s CPU per image)")

    checkpoint = args.checkpoint
    if checkpoint is None:
        folder = Path(tempfile.mkdtemp())
        state = {k: v for k, v in module.state_dict().items() if not k.startswith("perceptual.")}
        checkpoint = str(folder / "timed.ckpt")
        atomic_write_bytes(checkpoint, torch_bytes({"state_dict": state, "hyper_parameters": dict(module.hparams)}))
    synth = create_synthesizer("anomalyhybrid", checkpoint=checkpoint)
    images = torch.stack([data.train_data[i].image for i in range(args.images)]).float()
    synth(images[:2], generator=torch.Generator().manual_seed(0))
    wall, cpu = time.perf_counter(), time.process_time()
    synth(images, generator=torch.Generator().manual_seed(1))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    side = images.shape[-1]
    print(
        f"generation, {side} px input: {1000 * wall / args.images:.1f} ms/image wall "
        f"({1000 * cpu / args.images:.1f} ms CPU)"
    )


if __name__ == "__main__":
    main()
