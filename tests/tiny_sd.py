"""Tiny random-weight Stable Diffusion and CLIP, built from configs and saved in
diffusers/transformers layout (as diffusers' own tests build them; nothing downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = [
    "a", "photo", "of", "with", "on", "its", "the", "surface", "close-up", "damaged", "clearly", "visible",
    "brick", "wall", "object", "crack", "scratch", "hole", "stain", "dent",
]  # fmt: skip


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose vocabulary has every word above as one token."""
    from transformers import CLIPTokenizer

    chars = sorted({c for w in WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz-,.'"))
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in WORDS:
        pieces = [*list(word[:-1]), word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    tok.save_pretrained(folder)


def text_config(tokenizer_folder: Path) -> dict:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tokenizer_folder)
    return {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": len(tok),
        "max_position_embeddings": 16,
        "projection_dim": 16,
    }


def save_tiny_stable_diffusion(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/sd`` (unet, vae, text_encoder, tokenizer, scheduler) and ``root/clip``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    sd, clip = root / "sd", root / "clip"
    write_tokenizer(sd / "tokenizer")
    write_tokenizer(clip)
    cfg = text_config(sd / "tokenizer")
    torch.manual_seed(seed)
    UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).save_pretrained(sd / "unet")
    AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=32,
    ).save_pretrained(sd / "vae")
    CLIPTextModel(CLIPTextConfig(**cfg)).save_pretrained(sd / "text_encoder")
    DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    ).save_pretrained(sd / "scheduler")
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "image_size": 32,
        "patch_size": 8,
        "projection_dim": 16,
    }
    CLIPModel(CLIPConfig(text_config=cfg, vision_config=vision, projection_dim=16)).save_pretrained(clip)
    return sd, clip
