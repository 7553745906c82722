"""AnomalyAny (Sun et al., CVPR 2025): training-free anomalies from Stable Diffusion.

One normal image conditions the generation (VAE-encoded, noised to
``t_start = T (1 - gamma)``, latents outside the foreground reset to the noised
normal latent after every step). The anomaly word's 16x16 cross-attention map is
pushed into the foreground by gradient steps on the latent
(``L_att = 1 - max(A_j * mask)``, localization-aware step size), and over the last
denoising steps a CLIP image loss against a detailed description and a prompt
embedding loss refine the anomaly. The final smoothed attention map of the anomaly
token, upsampled bilinearly to the image and thresholded, is the pixel annotation.

Nothing downloads: pass a local Stable Diffusion folder in diffusers format
(``pipeline_path``) and a local CLIP model (``clip_path``). Each anomaly costs a
full guided denoising chain: build a cached bank (``anomalysynth cache``) rather
than synthesizing on the fly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from anomalysynth.files import path_sha256
from anomalysynth.seeding import draw
from anomalysynth.synth.base import Synthesizer, register_synthesizer
from anomalysynth.synth.textures import match_channels

__all__ = ["AnomalyAny", "DEFAULT_ANOMALIES"]

#: anomaly types per object; ``default`` for objects not listed
DEFAULT_ANOMALIES: dict[str, list[str]] = {
    "default": ["crack", "scratch", "hole", "stain", "dent"],
    "bottle": ["crack", "contamination", "chip"],
    "cable": ["cut", "bend", "crack"],
    "capsule": ["crack", "squeeze", "scratch"],
    "carpet": ["hole", "stain", "cut"],
    "hazelnut": ["crack", "hole", "print"],
    "metal_nut": ["scratch", "bend", "stain"],
    "pcb": ["scratch", "burn", "crack"],
    "screw": ["scratch", "crack", "bend"],
    "wood": ["crack", "hole", "stain"],
}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@register_synthesizer("anomalyany")
class AnomalyAny(Synthesizer):
    """Prompted, attention-localised anomalies from a local Stable Diffusion.

    Args:
        pipeline_path: local Stable Diffusion folder in diffusers format (v1.4/1.5/2.1-base:
            ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``).
        clip_path: local CLIP model folder (transformers ``CLIPModel`` and tokenizer) for
            the refinement losses, e.g. ``openai/clip-vit-large-patch14`` downloaded beforehand.
        object_name: the object in the prompts ("bottle", "brick wall", ...).
        anomaly_types: anomaly words; default :data:`DEFAULT_ANOMALIES` for the object.
        prompt_template: ``{object}`` and ``{anomaly}`` are filled in; the anomaly word
            must appear in it (its token is found from the prompt's words).
        detail_template: the detailed description ``c'`` for the refinement losses.
        prompts: explicit prompts, overriding the templates; each must contain one of
            ``anomaly_types``.
        num_steps: DDIM steps of the full chain (paper: 100).
        gamma: the chain starts at ``t_start = T (1 - gamma)`` (paper: 0.25).
        refine_steps: refinement over the last ``refine_steps`` of the full chain (paper: 30).
        guidance_scale: classifier-free guidance.
        step_scale: lambda of the step size ``alpha_t = lambda (1 + t/T) n_t / n_start``.
        prompt_lr: step of the prompt-embedding update, scale-free: each refinement step
            turns the embedding ``tau(c)`` towards ``tau(c')`` by ``prompt_lr * sin(angle)``
            of its norm (see :meth:`refine_prompt`; a raw gradient step on the 77 x 768
            embedding would move it by a negligible amount).
        attention_resolution: side of the cross-attention maps used (SD 1.x at 512 px: 16).
        resolution: side of the image given to Stable Diffusion (SD 1.x: 512).
        mask_threshold: the mask is where the final map, upsampled bilinearly to the
            image, exceeds this fraction of its peak inside the foreground.
        normalize_eot: leave the end and padding tokens out of the softmax over tokens
            (Attend-and-Excite's ``normalize_eot``); ``None`` does it for SD 2.x only (a
            text encoder of width 1024), as Attend-and-Excite and AnomalyAny's code do.
        batch_size: samples generated together. 1 (default): one at a time, so a sample
            does not depend on its batch. Larger values batch the denoising chains for
            GPU throughput; results then depend, up to float rounding, on which samples
            share a chain batch (not bit-identical across batch compositions).
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`; the
            foreground (or a ``foreground=`` tensor) is where anomalies may appear.
        progress: show a progress bar over denoising steps.
    """

    needs_foreground = True

    def __init__(
        self,
        pipeline_path: str | Path | None = None,
        clip_path: str | Path | None = None,
        object_name: str = "object",
        anomaly_types: Sequence[str] | None = None,
        prompt_template: str = "a photo of a {object} with a {anomaly}",
        detail_template: str = "a close-up photo of a damaged {object} with a clearly visible {anomaly} on its surface",
        prompts: Sequence[str] | None = None,
        num_steps: int = 100,
        gamma: float = 0.25,
        refine_steps: int = 30,
        guidance_scale: float = 7.5,
        step_scale: float = 20.0,
        prompt_lr: float = 1e-2,
        attention_resolution: int = 16,
        resolution: int = 512,
        mask_threshold: float = 0.5,
        normalize_eot: bool | None = None,
        batch_size: int = 1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
        progress: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if pipeline_path is None or clip_path is None:
            raise ValueError(
                "AnomalyAny needs local weights (nothing is downloaded): pass pipeline_path=<a Stable Diffusion "
                "1.x/2.x-base folder in diffusers format, with unet/, vae/, text_encoder/, tokenizer/, scheduler/> "
                "and clip_path=<a CLIP model folder for transformers.CLIPModel, e.g. clip-vit-large-patch14>."
            )
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"`gamma` must lie in (0, 1); got {gamma}.")
        if num_steps < 1 or refine_steps < 0:
            raise ValueError(f"`num_steps` must be >= 1 and `refine_steps` >= 0; got {num_steps}, {refine_steps}.")
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"`mask_threshold` must lie in (0, 1); got {mask_threshold}.")
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
        if prompt_lr < 0:
            raise ValueError(f"`prompt_lr` must be >= 0; got {prompt_lr}.")
        self.pipeline_path, self.clip_path = str(pipeline_path), str(clip_path)
        self.object_name = object_name
        key = object_name if object_name in DEFAULT_ANOMALIES else "default"
        self.anomaly_types = list(anomaly_types) if anomaly_types is not None else list(DEFAULT_ANOMALIES[key])
        if not self.anomaly_types:
            raise ValueError("`anomaly_types` must name at least one anomaly.")
        self.prompt_template, self.detail_template = prompt_template, detail_template
        self.num_steps, self.gamma, self.refine_steps = int(num_steps), float(gamma), int(refine_steps)
        self.guidance_scale, self.step_scale, self.prompt_lr = (
            float(guidance_scale),
            float(step_scale),
            float(prompt_lr),
        )
        self.attention_resolution, self.resolution = int(attention_resolution), int(resolution)
        self.mask_threshold = float(mask_threshold)
        self.normalize_eot = normalize_eot
        self.batch_size = int(batch_size)
        self.progress = progress
        self._load(Path(pipeline_path), Path(clip_path))
        # the loaded weights' content: a cache key tells weights replaced at the same path apart
        self._weights_sha256 = {"pipeline": path_sha256(pipeline_path), "clip": path_sha256(clip_path)}
        self.prompts, self.anomaly_words, self.details = self._build_prompts(prompts)
        from anomalysynth.diffusion.attention import find_token_indices

        # the softmax over tokens runs over 1 .. last (exclusive): up to the end token (SD 2.x,
        # or normalize_eot=True), else over every token but the start and the final padding one
        self.drops_padding_tokens = self.is_sd2() if normalize_eot is None else bool(normalize_eot)
        self.last_tokens = [
            len(self.tokenizer(p).input_ids) - 1 if self.drops_padding_tokens else self.tokenizer.model_max_length - 1
            for p in self.prompts
        ]
        self.token_indices = [
            find_token_indices(self.tokenizer, p, w) for p, w in zip(self.prompts, self.anomaly_words, strict=True)
        ]

    # -- loading ---------------------------------------------------------------------------------
    def config(self) -> dict[str, object]:
        return {**super().config(), "weights_sha256": dict(self._weights_sha256)}

    def _load(self, pipeline_path: Path, clip_path: Path) -> None:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

        for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
            if not (pipeline_path / sub).is_dir():
                raise ValueError(
                    f"pipeline_path {str(pipeline_path)!r} is not a Stable Diffusion folder in diffusers format: "
                    f"'{sub}/' is missing (expected unet/, vae/, text_encoder/, tokenizer/, scheduler/)."
                )
        if not (clip_path / "config.json").is_file():
            raise ValueError(
                f"clip_path {str(clip_path)!r} is not a local CLIP model folder (no config.json); pass a folder "
                "saved by transformers' CLIPModel.save_pretrained (with its tokenizer files)."
            )
        kw: dict[str, Any] = {"local_files_only": True}
        self.unet = UNet2DConditionModel.from_pretrained(pipeline_path, subfolder="unet", **kw).requires_grad_(False)
        self.vae = AutoencoderKL.from_pretrained(pipeline_path, subfolder="vae", **kw).requires_grad_(False)
        self.text_encoder = CLIPTextModel.from_pretrained(pipeline_path, subfolder="text_encoder", **kw).requires_grad_(
            False
        )
        self.tokenizer = CLIPTokenizer.from_pretrained(pipeline_path, subfolder="tokenizer", **kw)
        self.scheduler_config = DDIMScheduler.from_pretrained(pipeline_path, subfolder="scheduler", **kw).config
        self.clip = CLIPModel.from_pretrained(clip_path, **kw).requires_grad_(False)
        self.clip_tokenizer = CLIPTokenizer.from_pretrained(clip_path, **kw)
        for module in (self.unet, self.vae, self.text_encoder, self.clip):
            module.eval()

    def is_sd2(self) -> bool:
        """Whether the pipeline is Stable Diffusion 2.x (OpenCLIP ViT-H text encoder, width 1024)."""
        return int(self.text_encoder.config.hidden_size) == 1024

    def train(self, mode: bool = True) -> AnomalyAny:
        """Sets the flag only: the frozen networks stay in eval mode."""
        super().train(mode)
        for module in (self.unet, self.vae, self.text_encoder, self.clip):
            module.eval()
        return self

    def _build_prompts(self, prompts: Sequence[str] | None) -> tuple[list[str], list[str], list[str]]:
        if prompts is None:
            out = [self.prompt_template.format(object=self.object_name, anomaly=a) for a in self.anomaly_types]
            words = list(self.anomaly_types)
        else:
            out, words = [], []
            for prompt in prompts:
                found = [a for a in self.anomaly_types if a in prompt]
                if not found:
                    raise ValueError(
                        f"The prompt {prompt!r} does not contain an anomaly word of {self.anomaly_types}; "
                        "name the anomaly in the prompt or pass anomaly_types."
                    )
                out.append(prompt)
                words.append(found[-1])
        details = [self.detail_template.format(object=self.object_name, anomaly=w) for w in words]
        return out, [w.split()[-1] for w in words], details

    def prompt_for(self, params: dict[str, Tensor]) -> list[str]:
        """The prompt of every sample of ``params``."""
        return [self.prompts[int(i)] for i in params["prompt_index"].tolist()]

    # -- the contract hooks -------------------------------------------------------------------------
    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        n = len(self.prompts)
        return {
            "prompt_index": draw(generators, lambda g: torch.randint(0, n, (), generator=g)),
            "seed": draw(generators, lambda g: torch.randint(0, 2**62, (), generator=g)),
        }

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        fg = params["_foreground"]
        empty = torch.nonzero(fg.flatten(1).amax(1) <= 0).flatten().tolist()
        if empty:
            raise ValueError(
                f"AnomalyAny generates inside the foreground, but the mask of sample(s) {empty} has no foreground "
                "pixel; pass a foreground= mask with positive pixels (or foreground=None for the whole image)."
            )
        indices, seeds = params["prompt_index"].tolist(), params["seed"].tolist()
        n, outs = self.batch_size, []
        for i in range(0, images.shape[0], n):
            outs.append(self.generate(images[i : i + n], fg[i : i + n], indices[i : i + n], seeds[i : i + n]))
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), torch.cat([o[2] for o in outs])

    def _chunk_size(self, images: Tensor) -> int:
        # a whole number of generation batches per chunk
        return self.batch_size * max(1, self.chunk_size // self.batch_size)

    # -- the method -----------------------------------------------------------------------------------
    def encode_prompt(self, prompts: list[str]) -> Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def attention_loss(self, maps: Tensor, mask: Tensor) -> Tensor:
        """``L_att = 1 - max(A_j * mask)`` per sample: maps (B, r, r), mask (B, r, r)."""
        return 1.0 - (maps * mask).flatten(1).amax(1)

    def attention_maps(self, z: Tensor, t: int, prompt_emb: Tensor, prompt_index: int | Sequence[int]) -> Tensor:
        """(B, r, r) smoothed attention maps of each sample's anomaly token for latents ``z`` at
        step ``t`` (differentiable in ``z`` and ``prompt_emb``)."""
        return self._unet_with_maps(z, t, prompt_emb, prompt_index)[1]

    def _unet_with_maps(
        self, z: Tensor, t: int, prompt_emb: Tensor, prompt_index: int | Sequence[int]
    ) -> tuple[Tensor, Tensor]:
        from anomalysynth.diffusion.attention import AttentionStore, StoringAttnProcessor, token_attention

        indices = _per_sample(prompt_index, z.shape[0])
        store = AttentionStore(self.attention_resolution)
        original = self.unet.attn_processors
        self.unet.set_attn_processor(StoringAttnProcessor(store))
        try:
            eps = self.unet(z, t, encoder_hidden_states=prompt_emb).sample
        finally:
            self.unet.set_attn_processor(original)
        maps = token_attention(
            store.aggregate(), [self.token_indices[i] for i in indices], [self.last_tokens[i] for i in indices]
        )
        return eps, maps

    def refine_prompt(self, prompt_emb: Tensor, detail_emb: Tensor) -> Tensor:
        """One prompt-embedding update down ``L_prompt = 1 - cos(tau(c), tau(c'))``, scale-free:
        ``c <- c - prompt_lr ||c||^2 grad L_prompt`` per sample. The gradient of a cosine is
        orthogonal to ``c`` with norm ``sin(angle(c, c')) / ||c||``, so each step turns ``c``
        towards ``c'`` by ``prompt_lr sin(angle)`` of its norm (a plain gradient step on a
        77 x 768 embedding moves it by a negligible ~1e-7 of its norm), and stops at ``c'``."""
        with torch.enable_grad():
            c = prompt_emb.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.prompt_loss(c, detail_emb).sum(), [c])
        c = c.detach()
        scale = self.prompt_lr * c.flatten(1).pow(2).sum(1)
        return c - scale.view(-1, *([1] * (c.dim() - 1))) * grad

    def annotation(self, maps: Tensor, fg: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, 1, H, W) mask from (B, r, r) smoothed attention maps: upsampled bilinearly to the
        image, restricted to ``fg`` and thresholded at ``mask_threshold`` times each map's peak
        there (thresholding after the upsampling keeps the attention grid's blocks out of the mask)."""
        inside = (fg > 0).to(fg.dtype)
        smooth = F.interpolate(maps.unsqueeze(1).to(fg.dtype), size=size, mode="bilinear", align_corners=False)
        smooth = smooth * inside
        peak = smooth.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
        return (smooth / peak > self.mask_threshold).to(fg.dtype) * inside

    def generate(
        self,
        image: Tensor,
        fg: Tensor,
        prompt_index: int | Sequence[int],
        seed: int | Sequence[int],
        callback: Any = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Anomalies for ``image`` (B, C, H, W) in [0, 1] with foregrounds ``fg`` (B, 1, H, W),
        one prompt index and one seed per sample (or one for all); the chains run as one batch.

        Returns the generated images, their masks and the attention peaks (B,).
        ``callback(step, t, z, z_normal, latent_mask)``, if given, sees the latents after
        every denoising step together with the noised normal latents they were reset to.
        """
        from diffusers import DDIMScheduler
        from diffusers.utils.torch_utils import randn_tensor

        from anomalysynth.diffusion.attention import pixels_above_mean, step_size

        b = image.shape[0]
        indices, seeds = _per_sample(prompt_index, b), _per_sample(seed, b)
        device, dtype = image.device, self.unet.dtype
        h, w = image.shape[-2:]
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        prompts, details = [self.prompts[i] for i in indices], [self.details[i] for i in indices]
        rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        x = F.interpolate(
            rgb.to(dtype), size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False
        )
        scaling = float(self.vae.config.scaling_factor)
        with torch.no_grad():
            z0 = self.vae.encode(x.clamp(0, 1) * 2 - 1).latent_dist.mean * scaling
            cond = self.encode_prompt(prompts)
            uncond = self.encode_prompt([""]).expand(b, -1, -1)
            detail_cond = self.encode_prompt(details)
            clip_text = self._clip_text(details)
        fg_model = fg.to(device, dtype)
        mask_lat = (F.interpolate(fg_model, size=z0.shape[-2:], mode="area") > 0).to(dtype)
        r = self.attention_resolution
        mask_att = (F.interpolate(fg_model, size=(r, r), mode="area") > 0).to(dtype)[:, 0]

        scheduler = DDIMScheduler.from_config(self.scheduler_config)
        scheduler.set_timesteps(self.num_steps, device=device)
        num_train = int(scheduler.config.num_train_timesteps)
        t_start = int(num_train * (1 - self.gamma))
        timesteps = [int(t) for t in scheduler.timesteps if int(t) <= t_start]
        if not timesteps:
            raise ValueError(f"No denoising step at or below t_start = {t_start}; raise `num_steps` or lower `gamma`.")
        noise = randn_tensor(z0.shape, generator=generators, device=device, dtype=dtype)
        z = scheduler.add_noise(z0, noise, torch.tensor([timesteps[0]]))
        first_refine = len(timesteps) - min(self.refine_steps, len(timesteps))
        n_start: Tensor | None = None
        maps = torch.zeros(b, r, r, device=device, dtype=dtype)
        for k, t in enumerate(tqdm(timesteps, desc="AnomalyAny", disable=not self.progress, leave=False)):
            refine = k >= first_refine
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                maps = self.attention_maps(z, t, cond.detach(), indices)
                n_t = pixels_above_mean(maps)
                n_start = n_t if n_start is None else n_start
                alpha = step_size(self.step_scale, t, num_train, n_t, n_start).to(dtype).view(-1, 1, 1, 1)
                if refine:
                    # prompt-guided refinement: L = L_img + alpha_t L_att, and the prompt embedding follows c'
                    loss = self.image_loss(z, clip_text) + alpha.flatten() * self.attention_loss(maps, mask_att)
                    (grad_z,) = torch.autograd.grad(loss.sum(), [z])
                    z = (z - grad_z * mask_lat).detach()
                    cond = self.refine_prompt(cond, detail_cond)
                else:
                    (grad_z,) = torch.autograd.grad(self.attention_loss(maps, mask_att).sum(), [z])
                    z = (z - alpha * grad_z * mask_lat).detach()
            with torch.no_grad():
                eps_c, maps = self._unet_with_maps(z, t, cond, indices)  # maps: also the final annotation
                eps_u = self.unet(z, t, encoder_hidden_states=uncond).sample
                eps = eps_u + self.guidance_scale * (eps_c - eps_u)
                z = scheduler.step(eps, t, z).prev_sample
                t_prev = timesteps[k + 1] if k + 1 < len(timesteps) else -1
                normal = scheduler.add_noise(z0, noise, torch.tensor([t_prev])) if t_prev >= 0 else z0
                z = mask_lat * z + (1 - mask_lat) * normal
                if callback is not None:
                    callback(k, t, z, normal, mask_lat)
        with torch.no_grad():
            out = self.vae.decode(z / scaling).sample
        out = F.interpolate((out + 1) / 2, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(
            0, 1
        )
        out = match_channels(out, image.shape[1]).to(image.dtype)
        mask = self.annotation(maps, fg.to(device, image.dtype), (h, w))
        strength = (maps * mask_att).flatten(1).amax(1).to(image.dtype)
        return out, mask, strength

    def image_loss(self, z: Tensor, clip_text: Tensor) -> Tensor:
        """``L_img = 1 - cos(CLIP_text(c'), CLIP_image(decode(z_t)))`` per sample; the decoded
        image is clamped to its valid range [0, 1] before CLIP (as AnomalyAny's code does)."""
        decoded = self.vae.decode(z / float(self.vae.config.scaling_factor)).sample
        size = int(getattr(self.clip.config.vision_config, "image_size", 224))
        pixels = ((decoded + 1) / 2).clamp(0, 1)
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
        mean = torch.tensor(_CLIP_MEAN, device=z.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(_CLIP_STD, device=z.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        image_features = self.clip.get_image_features(pixel_values=(pixels - mean) / std)
        image_features = image_features.pooler_output if hasattr(image_features, "pooler_output") else image_features
        return 1.0 - F.cosine_similarity(image_features, clip_text, dim=-1)

    def _clip_text(self, texts: list[str]) -> Tensor:
        ids = self.clip_tokenizer(texts, padding=True, truncation=True, return_tensors="pt").input_ids
        features = self.clip.get_text_features(input_ids=ids.to(self.clip.device))
        return features.pooler_output if hasattr(features, "pooler_output") else features

    @staticmethod
    def prompt_loss(prompt_emb: Tensor, detail_emb: Tensor) -> Tensor:
        """``L_prompt = 1 - cos(tau(c), tau(c'))`` per sample (flattened token embeddings)."""
        return 1.0 - F.cosine_similarity(prompt_emb.flatten(1), detail_emb.flatten(1), dim=-1)


def _per_sample(value: int | Sequence[int], n: int) -> list[int]:
    """One int for every sample, or a list that already has one per sample."""
    if isinstance(value, int | float) or (isinstance(value, Tensor) and value.dim() == 0):
        return [int(value)] * n
    values = [int(v) for v in value]
    if len(values) != n:
        raise ValueError(f"Expected one value per sample ({n}); got {len(values)}.")
    return values
