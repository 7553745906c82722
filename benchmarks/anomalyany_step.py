"""AnomalyAny's CPU cost per denoising step on a tiny random-weight Stable Diffusion
(32 px, 16x16 attention; the same model the tests build). Guided steps run the UNet
three times (attention pass with gradient, conditional, unconditional); refinement
steps also decode the latent and run CLIP with gradient.

    python benchmarks/anomalyany_step.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import diffusers
    import transformers
    from tests.tiny_sd import save_tiny_stable_diffusion

    from anomalysynth.synth import create_synthesizer

    diffusers.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    sd, clip = save_tiny_stable_diffusion(Path(tempfile.mkdtemp()))
    image = torch.rand(1, 3, 64, 64)
    fg = torch.ones(1, 1, 64, 64)
    for refine in (0, 10):
        synth = create_synthesizer(
            "anomalyany", pipeline_path=sd, clip_path=clip, object_name="brick wall",
            num_steps=40, refine_steps=refine, resolution=32, attention_resolution=16,
        )  # fmt: skip
        synth.generate(image, fg, 0, seed=0)  # warm-up
        steps: list[int] = []
        start = time.perf_counter()
        synth.generate(image, fg, 0, seed=1, callback=lambda k, *_, seen=steps: seen.append(k))
        per_step = (time.perf_counter() - start) / len(steps)
        kind = "guided only" if refine == 0 else f"{refine} of {len(steps)} steps refined"
        print(f"tiny SD, 32 px, {len(steps)} steps ({kind}): {1000 * per_step:.1f} ms per denoising step")


if __name__ == "__main__":
    main()
