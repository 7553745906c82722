"""RealNet's SDAS textures (Zhang et al., CVPR 2024): diffusion samples of the normal
images pushed off the normal manifold by the strength ``s``, from a bank on disk or
sampled on the fly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.config import config_of
from anomalysynth.synth.parts import AnomalySource
from anomalysynth.synth.ranges import check_range
from anomalysynth.synth.textures import TextureFolder, match_channels

__all__ = ["SDASBankSource", "SDASSamplerSource"]


class SDASBankSource(AnomalySource):
    """One texture drawn uniformly per sample from a bank built by ``anomalysynth cache sdas``
    (each texture's ``s`` is known) or from a folder of images such as RealNet's released SIA
    textures for one category (``s`` unknown: -1).

    Params: ``texture_index``, ``sdas_strength`` (s, or -1). Strength share: s where it
    is known (a bank), none for a plain folder.
    """

    def __init__(self, bank: str | Path) -> None:
        from anomalysynth.diffusion.bank import SDASBank

        self.bank = str(bank)
        self.strengths: Tensor | None = None
        if SDASBank.is_bank(bank):
            sdas_bank = SDASBank(bank)
            self.textures = TextureFolder(bank, files=sdas_bank.files)
            self.strengths = sdas_bank.strengths.float()
            self.bank_key = json.dumps(sdas_bank.key, sort_keys=True)
        else:
            self.textures = TextureFolder(bank)
            self.bank_key = hashlib.sha256("\n".join(str(f) for f in self.textures.files).encode()).hexdigest()

    def config(self) -> dict[str, object]:
        return {**config_of(self), "bank_key": self.bank_key}

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        n = len(self.textures)
        index = draw(generators, lambda g: torch.randint(0, n, (), generator=g))
        strengths = self.strengths[index] if self.strengths is not None else torch.full((len(index),), -1.0)
        return {"texture_index": index, "sdas_strength": strengths}

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        textures = self.textures.load(params["texture_index"].cpu(), (images.shape[-2], images.shape[-1]))
        return match_channels(textures.to(images.device, images.dtype), images.shape[1])

    def strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor | None:
        s = params["sdas_strength"].to(images.dtype)
        return torch.where(s >= 0, s, torch.ones_like(s))


class SDASSamplerSource(AnomalySource, torch.nn.Module):
    """SDAS textures sampled on the fly from a diffusion checkpoint with ``s ~ U[sdas_strength]``
    (slow: a full reverse chain per anomaly; a bank is the usual path).

    A part that is also a ``torch.nn.Module``: its :class:`~anomalysynth.diffusion.SDASSampler`
    (and the UNet in it) is a registered submodule, so the synthesizer's ``.to(device)``
    moves the network and its ``state_dict`` holds the weights (frozen: no gradients).

    Args:
        checkpoint: :class:`~anomalysynth.diffusion.NormalImageDiffusion` ``.ckpt`` or
            ``save_pretrained`` folder.
        sdas_strength: range of ``s`` (paper: U[0.1, 0.2]).
        num_steps: respaced reverse steps.

    Params: ``texture_seed``, ``sdas_strength``. Strength share: s.
    """

    def __init__(
        self, checkpoint: str | Path, sdas_strength: tuple[float, float] = (0.1, 0.2), num_steps: int = 20
    ) -> None:
        from anomalysynth.diffusion.sampler import SDASSampler, load_diffusion

        torch.nn.Module.__init__(self)
        self.sdas_strength = check_range("sdas_strength", sdas_strength, 0.0, float("inf"))
        self.checkpoint = str(checkpoint)
        self.num_steps = int(num_steps)
        unet, scheduler = load_diffusion(checkpoint)
        self.sampler = SDASSampler(unet, scheduler, num_steps=self.num_steps).requires_grad_(False)

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        return {
            "texture_seed": draw(generators, lambda g: torch.randint(0, 2**62, (), generator=g)),
            "sdas_strength": uniform(generators, *self.sdas_strength),
        }

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        size = (images.shape[-2], images.shape[-1])
        generators = [torch.Generator().manual_seed(int(s)) for s in params["texture_seed"].tolist()]
        textures = self.sampler.sample(len(generators), params["sdas_strength"].float().cpu(), generators)
        if textures.shape[-2:] != size:
            textures = F.interpolate(textures, size=size, mode="bilinear", antialias=True, align_corners=False)
        textures = textures.clamp(0, 1)
        if textures.shape[1] == 1:
            textures = textures.expand(-1, 3, -1, -1)
        return match_channels(textures.to(images.device, images.dtype), images.shape[1])

    def strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor | None:
        return params["sdas_strength"].to(images.dtype)
