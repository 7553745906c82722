"""SDAS: sampling speed against the number of steps, and RealNet trained with the
SDAS bank vs ``perlin_texture`` vs ``cutpaste`` at the same budget, in one run.

    python benchmarks/sdas.py --root ../shared/datasets/deeppcb [--checkpoint CKPT] [--epochs 5]

Without ``--checkpoint`` it first trains ``NormalImageDiffusion`` (the CPU config's
32-px UNet) on ``<root>/train/good`` for ``--diffusion-steps`` steps, then builds a
bank of ``--bank-size`` textures (s ~ U[0.1, 0.2], 20 steps) and reports each cost.
Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_quality import evaluator, folder, run


def train_diffusion(root: Path, steps: int, out: Path) -> tuple[Path, float]:
    from anomalysynth.diffusion import NormalImageDiffusion

    data = folder(root, 128, 16)
    module = NormalImageDiffusion(image_size=32, lr=3e-4, ema_decay=0.998)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        max_epochs=-1,
        gradient_clip_val=1.0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=out,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    path = out / "diffusion.ckpt"
    trainer.save_checkpoint(path)
    return path, seconds


def sampling_speed(checkpoint: Path, steps_list: list[int], batch: int) -> list[tuple[int, float]]:
    from anomalysynth.diffusion import SDASSampler, load_diffusion

    unet, scheduler = load_diffusion(checkpoint)
    rows = []
    for steps in steps_list:
        sampler = SDASSampler(unet, scheduler, num_steps=steps)
        sampler.sample(2, 0.15, torch.Generator().manual_seed(0))  # warm-up
        start = time.perf_counter()
        sampler.sample(batch, 0.15, torch.Generator().manual_seed(1))
        rows.append((steps, batch / (time.perf_counter() - start)))
        print(f"sampling: {steps} steps, {rows[-1][1]:.1f} images/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/datasets/deeppcb"))
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="a NormalImageDiffusion checkpoint of the normals"
    )
    parser.add_argument("--diffusion-steps", type=int, default=4000)
    parser.add_argument("--bank-size", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5, help="RealNet epochs per synthesizer")
    parser.add_argument("--sampling-steps", default="5,10,20,50,100")
    parser.add_argument("--out", type=Path, default=Path("results/bench_sdas"))
    args = parser.parse_args()
    if not (args.root / "train" / "good").is_dir():
        raise SystemExit(f"{args.root} is not an MVTec-style folder (no train/good).")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)

    import anomalysynth  # noqa: F401
    from anomalysynth.callbacks import AnomalyAwareFeatureSelection
    from anomalysynth.datamodules import SyntheticAnomalyDataModule
    from anomalysynth.diffusion import build_sdas_bank
    from anomalysynth.models import RealNet
    from anomalysynth.synth import create_synthesizer

    costs: dict[str, float] = {}
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint, costs["diffusion training s"] = train_diffusion(args.root, args.diffusion_steps, args.out)
    speeds = sampling_speed(checkpoint, [int(s) for s in args.sampling_steps.split(",")], args.batch)
    start = time.perf_counter()
    bank = build_sdas_bank(checkpoint, args.out / "bank", num_textures=args.bank_size, seed=0)
    costs["bank build s"] = time.perf_counter() - start

    def realnet_row(name: str, synthesizer: Any) -> dict[str, Any]:
        data = folder(args.root, args.image_size, args.batch)
        dm = SyntheticAnomalyDataModule(data, synthesizer, anomaly_ratio=0.5)
        model = RealNet(backbone="efficientnet_lite0.offline_in1k", lr=5e-4, evaluator=evaluator())
        return run(name, model, dm, args.epochs, [AnomalyAwareFeatureSelection(num_batches=16)])

    rows = [
        realnet_row("RealNet + sdas (bank)", create_synthesizer("sdas", bank=str(bank))),
        realnet_row("RealNet + perlin_texture", create_synthesizer("perlin_texture")),
        realnet_row("RealNet + cutpaste", create_synthesizer("cutpaste")),
    ]
    print(f"\nSDAS sampling, 32-px UNet, batch {args.batch}, CPU (2 threads)")
    print(f"{'steps':>6s} {'images/s':>9s}")
    for steps, speed in speeds:
        print(f"{steps:6d} {speed:9.1f}")
    print("\ncompute: " + ", ".join(f"{k} {v:.0f}" for k, v in costs.items()) + f" ({args.bank_size} textures)")
    print(f"\n{args.root.name}, {args.image_size}px, RealNet {args.epochs} epochs per synthesizer, same budget")
    print(f"{'synthesizer':28s} {'img AUROC':>9s} {'px AUROC':>9s} {'AUPRO':>7s} {'train s':>8s}")
    for r in rows:
        print(f"{r['name']:28s} {r['image_AUROC']:9.3f} {r['pixel_AUROC']:9.3f} {r['AUPRO']:7.3f} {r['train_s']:8.1f}")


if __name__ == "__main__":
    main()
