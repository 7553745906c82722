"""Cross-attention maps of a Stable Diffusion UNet, for attention-guided generation
(Attend-and-Excite style; used by AnomalyAny)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from anomalysynth.filters import gaussian_blur

__all__ = [
    "AttentionStore",
    "StoringAttnProcessor",
    "find_token_indices",
    "gaussian_smooth",
    "pixels_above_mean",
    "step_size",
    "token_attention",
]


class AttentionStore:
    """Collects the cross-attention probabilities of every layer whose query map is
    ``resolution x resolution`` during one UNet forward pass."""

    def __init__(self, resolution: int) -> None:
        self.resolution = int(resolution)
        self.maps: list[Tensor] = []

    def reset(self) -> None:
        self.maps = []

    def add(self, probs: Tensor, batch: int, heads: int) -> None:
        """``probs``: (batch * heads, queries, tokens) attention probabilities."""
        if probs.shape[1] == self.resolution * self.resolution:
            self.maps.append(probs.reshape(batch, heads, probs.shape[1], probs.shape[2]).mean(1))

    def aggregate(self) -> Tensor:
        """(B, resolution, resolution, tokens): the mean over layers (and heads)."""
        if not self.maps:
            raise RuntimeError(
                f"No cross-attention map of {self.resolution}x{self.resolution} was recorded; "
                "pass an `attention_resolution` the UNet has cross-attention at."
            )
        stacked = torch.stack(self.maps).mean(0)
        return stacked.reshape(stacked.shape[0], self.resolution, self.resolution, stacked.shape[-1])


class StoringAttnProcessor:
    """diffusers' plain attention computation that also hands cross-attention
    probabilities to an :class:`AttentionStore` (self-attention is not stored)."""

    def __init__(self, store: AttentionStore) -> None:
        self.store = store

    def __call__(
        self,
        attn: Any,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, sequence_length, _ = context.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        query, key, value = (attn.head_to_batch_dim(x) for x in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)
        if is_cross:
            self.store.add(probs, batch, attn.heads)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def gaussian_smooth(maps: Tensor, kernel_size: int = 3, sigma: float = 0.5) -> Tensor:
    """Smooth (B, H, W) maps with a normalised Gaussian (reflect padding; AnomalyAny's kernel 3, sigma 0.5)."""
    return gaussian_blur(maps.unsqueeze(1), sigma, kernel_size, padding="reflect").squeeze(1)


def token_attention(
    maps: Tensor, token_indices: list[list[int]], last_token: list[int], scale: float = 100.0, smooth: bool = True
) -> Tensor:
    """The (B, H, W) attention map of each sample's anomaly token.

    ``maps``: (B, H, W, tokens) aggregated cross-attention; the start token is
    dropped, the prompt's tokens (1 .. ``last_token[b]``, exclusive) are rescaled by
    ``scale`` and softmax-normalised over tokens (Attend-and-Excite), then the
    anomaly token's map (the mean over ``token_indices[b]`` if the word spans
    several tokens) is Gaussian-smoothed (kernel 3, sigma 0.5).
    """
    out = []
    for b in range(maps.shape[0]):
        text = maps[b, :, :, 1 : last_token[b]] * scale
        probs = text.softmax(dim=-1)
        idx = torch.tensor([i - 1 for i in token_indices[b]], device=maps.device)
        out.append(probs.index_select(-1, idx).mean(-1))
    result = torch.stack(out)
    return gaussian_smooth(result) if smooth else result


def find_token_indices(tokenizer: Any, prompt: str, word: str) -> list[int]:
    """Positions of ``word``'s tokens in the tokenized ``prompt`` (start token at 0).

    Raises ValueError when the prompt does not contain the word."""
    ids = tokenizer(prompt, add_special_tokens=True).input_ids
    candidates = [word, " " + word]
    for candidate in candidates:
        word_ids = tokenizer(candidate, add_special_tokens=False).input_ids
        n = len(word_ids)
        if n == 0:
            continue
        for start in range(len(ids) - n, -1, -1):  # the last occurrence: the anomaly comes after the object
            if ids[start : start + n] == word_ids:
                return list(range(start, start + n))
    raise ValueError(f"The prompt {prompt!r} does not contain the anomaly word {word!r}; put the word in the prompt.")


def step_size(scale: float, t: int, num_train_timesteps: int, n_t: Tensor, n_start: Tensor) -> Tensor:
    """AnomalyAny's localization-aware step ``alpha_t = lambda (1 + dt) n_t / n_start``
    with ``dt = t / T`` (the normalised timestep): large while the anomaly token's
    attention is spread, shrinking as it localises (``n``: pixels above the map's mean)."""
    return scale * (1.0 + t / num_train_timesteps) * n_t.float() / n_start.float().clamp(min=1.0)


def pixels_above_mean(maps: Tensor) -> Tensor:
    """(B,) number of pixels of each (B, H, W) map above its mean."""
    return (maps > maps.flatten(1).mean(1).view(-1, 1, 1)).flatten(1).sum(1)
