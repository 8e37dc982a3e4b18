"""Tiny random-weight diffusers models, built locally and saved with safetensors (no download).

``build_tiny(kind, path, scheduler=None, network=None, **scheduler_config)`` writes the model
``kind`` into the folder ``path`` and returns ``path`` as a string; ``load_model("diffusers:" + path)``
opens it. Kinds:

- ``"ddpm"``, ``"ddim"``, ``"euler"``, ``"edm"``, ``"flow-unet"``: a 1-channel 8×8 ``UNet2DModel``
  with DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler, EDMEulerScheduler,
  FlowMatchEulerDiscreteScheduler (shift 3) in the flat layout (config.json + weights +
  scheduler_config.json);
- ``"latent-text"``: a Stable-Diffusion-like pipeline folder: ``unet/`` (UNet2DConditionModel,
  4 latent channels, 8×8), ``vae/`` (AutoencoderKL, scale factor 2), ``scheduler/``
  (EulerDiscreteScheduler, scaled_linear), ``text_encoder/`` (CLIPTextModel) and ``tokenizer/``;
- ``"sd3"``: an SD3-like pipeline folder: ``transformer/`` (SD3Transformer2DModel, patch 2, 4
  latent channels, 8×8), ``vae/`` (with a shift_factor), ``scheduler/`` (FlowMatchEuler, shift 3),
  two CLIPTextModelWithProjection encoders and tokenizers (no T5: diffusers uses zeros for it).

``scheduler`` replaces the default scheduler (any diffusers scheduler instance),
``scheduler_config`` overrides fields of the default one, ``network`` overrides network config
fields (e.g. ``{"num_class_embeds": 3}``). ``tiny_tokenizer(path)`` writes vocab.json/merges.txt
and returns the CLIPTokenizer read from them.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, EDMEulerScheduler, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, UNet2DConditionModel, UNet2DModel)  # fmt: skip
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

KINDS = ("ddpm", "ddim", "euler", "edm", "flow-unet", "latent-text", "sd3")
PIXEL_SCHEDULERS = {
    "ddpm": lambda **c: DDPMScheduler(**{"beta_schedule": "linear", "clip_sample": False} | c),
    "ddim": lambda **c: DDIMScheduler(**{"beta_schedule": "linear", "clip_sample": False, "set_alpha_to_one": True} | c),
    "euler": lambda **c: EulerDiscreteScheduler(**{"beta_schedule": "linear"} | c),
    "edm": lambda **c: EDMEulerScheduler(**c),
    "flow-unet": lambda **c: FlowMatchEulerDiscreteScheduler(**{"shift": 3.0} | c),
}
TOKEN_MAX_LENGTH = 8




def tiny_unet(seed: int = 0, **config) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(**dict(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ) | config)  # fmt: skip


def tiny_condition_unet(seed: int = 0, **config) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4,
    ) | config)  # fmt: skip


def tiny_sd3_transformer(seed: int = 0, **config) -> SD3Transformer2DModel:
    torch.manual_seed(seed)
    return SD3Transformer2DModel(**dict(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=32,
        pos_embed_max_size=8,
    ) | config)  # fmt: skip


def tiny_vae(seed: int = 0, **config) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=4, sample_size=16, layers_per_block=1,
    ) | config)  # fmt: skip


def tiny_text_config(**config) -> CLIPTextConfig:
    return CLIPTextConfig(**dict(
        vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=TOKEN_MAX_LENGTH, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ) | config)  # fmt: skip


def tiny_tokenizer(path: str | Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over a–z with a few merges, read back from the vocab.json/merges.txt written to ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        vocab.update({c + suffix: len(vocab) + i for i, c in enumerate(string.ascii_lowercase)})
    merges = [("t", "h"), ("th", "e</w>"), ("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("r", "e"), ("re", "d</w>")]
    vocab.update({"".join(m): len(vocab) + i for i, m in enumerate(merges)})
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer.from_pretrained(str(path), model_max_length=TOKEN_MAX_LENGTH)


def _model_index(path: Path, pipeline: str, parts: dict[str, tuple[str, str]]) -> None:
    index = {"_class_name": pipeline, "_diffusers_version": "0.42.1"} | {k: list(v) for k, v in parts.items()}
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


def build_tiny(kind: str, path: str | Path, scheduler=None, network: dict | None = None, **scheduler_config) -> str:
    """Write the tiny model ``kind`` to ``path`` (module docstring); returns ``str(path)``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    network = network or {}
    if kind in PIXEL_SCHEDULERS:
        tiny_unet(**network).save_pretrained(path, safe_serialization=True)
        (scheduler or PIXEL_SCHEDULERS[kind](**scheduler_config)).save_pretrained(path)
        return str(path)
    if kind == "latent-text":
        tiny_condition_unet(**network).save_pretrained(path / "unet", safe_serialization=True)
        default = EulerDiscreteScheduler(**{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                                            "steps_offset": 1} | scheduler_config)  # fmt: skip
        torch.manual_seed(1)
        CLIPTextModel(tiny_text_config()).save_pretrained(path / "text_encoder", safe_serialization=True)
        tiny_tokenizer(path / "tokenizer_source").save_pretrained(path / "tokenizer")
        parts = {"unet": ("diffusers", "UNet2DConditionModel"), "text_encoder": ("transformers", "CLIPTextModel"),
                 "tokenizer": ("transformers", "CLIPTokenizer")}  # fmt: skip
        pipeline, vae = "StableDiffusionPipeline", tiny_vae()
    elif kind == "sd3":
        tiny_sd3_transformer(**network).save_pretrained(path / "transformer", safe_serialization=True)
        default = FlowMatchEulerDiscreteScheduler(**{"shift": 3.0} | scheduler_config)
        for i, suffix in enumerate(("", "_2")):
            torch.manual_seed(2 + i)
            CLIPTextModelWithProjection(tiny_text_config()).save_pretrained(path / f"text_encoder{suffix}", safe_serialization=True)
            tiny_tokenizer(path / f"tokenizer_source{suffix}").save_pretrained(path / f"tokenizer{suffix}")
        clip = ("transformers", "CLIPTextModelWithProjection")
        parts = {"transformer": ("diffusers", "SD3Transformer2DModel"), "text_encoder": clip, "text_encoder_2": clip,
                 "tokenizer": ("transformers", "CLIPTokenizer"), "tokenizer_2": ("transformers", "CLIPTokenizer")}  # fmt: skip
        pipeline, vae = "StableDiffusion3Pipeline", tiny_vae(scaling_factor=1.5, shift_factor=0.1)
    else:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    vae.save_pretrained(path / "vae", safe_serialization=True)
    scheduler = scheduler or default
    scheduler.save_pretrained(path / "scheduler")
    _model_index(path, pipeline, parts | {"vae": ("diffusers", "AutoencoderKL"), "scheduler": ("diffusers", type(scheduler).__name__)})
    return str(path)
