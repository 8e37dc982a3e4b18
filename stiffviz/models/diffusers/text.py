"""Text conditioning: prompts encoded once per run by the folder's own text encoders.

``TextCondition`` is the opaque conditioning object the denoiser accepts: the prompt embeddings
E (1 or B, L, E_dim) and, for joint transformers (SD3), the pooled embeddings P (1 or B, P_dim);
batch 1 is expanded to the run's batch inside the call.

Encoding reuses diffusers' own ``encode_prompt``: a ``StableDiffusionPipeline`` (UNet2DConditionModel:
CLIPTokenizer + CLIPTextModel) or a ``StableDiffusion3Pipeline`` (joint transformer: two CLIP
encoders with projection, the optional T5 ``text_encoder_3``, zeros in its place when absent)
built from the loaded components, with ``do_classifier_free_guidance=False`` for each prompt in
turn, which is exactly what the pipeline computes for a prompt and for its negative prompt. The
empty prompt's conditioning (the default negative, and ``model(x, σ, None)``) is encoded at most
once per model and kept. Without text encoders, prompts are refused and embeddings from Python are
accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import ParameterError


@dataclass(frozen=True)
class TextCondition:
    """Prompt embeddings E and (SD3) pooled embeddings P, batch 1 or B."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def expand(self, batch: int) -> "TextCondition":
        """E and P with batch ``batch`` (a batch of 1 is broadcast)."""
        if self.embeds.shape[0] not in (1, batch):
            raise ParameterError("prompt_embeds", f"must have batch 1 or {batch}, got shape {tuple(self.embeds.shape)}")
        pooled = self.pooled
        if pooled is not None:
            if pooled.shape[0] not in (1, batch):
                raise ParameterError("pooled_prompt_embeds", f"must have batch 1 or {batch}, got shape {tuple(pooled.shape)}")
            pooled = pooled.expand(batch, *pooled.shape[1:])
        return TextCondition(self.embeds.expand(batch, *self.embeds.shape[1:]), pooled)


class TextEncoder:
    """Prompts → :class:`TextCondition` through ``pipeline.encode_prompt`` (module docstring).

    ``pipeline`` is None when the folder has no (complete) text encoders: prompts are then refused.
    ``embed_shape`` = (L, E_dim) or None when unknown, ``pooled`` whether P is needed.
    """

    def __init__(self, pipeline, pooled: bool, device: torch.device, name: str, embed_dim: int | None):
        self.pipeline, self.pooled, self.device, self.name, self.embed_dim = pipeline, pooled, device, name, embed_dim
        self._empty: TextCondition | None = None

    def encode(self, prompt: str) -> TextCondition:
        """One prompt's conditioning (batch 1)."""
        if self.pipeline is None:
            raise ParameterError("prompt", f"{self.name} has no text encoder (text_encoder/ and tokenizer/ folders); "
                                           "pass prompt_embeds (and pooled_prompt_embeds) from Python instead")  # fmt: skip
        if not isinstance(prompt, str):
            raise ParameterError("prompt", f"must be a string, got {type(prompt).__name__}")
        with torch.no_grad():
            if self.pooled:
                embeds, _, pooled, _ = self.pipeline.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None,
                                                                   device=self.device, num_images_per_prompt=1,
                                                                   do_classifier_free_guidance=False)  # fmt: skip
                return TextCondition(embeds, pooled)
            embeds, _ = self.pipeline.encode_prompt(prompt, self.device, 1, False)
        return TextCondition(embeds)

    def empty(self) -> TextCondition:
        """The empty prompt's conditioning, encoded on first use and kept."""
        if self._empty is None:
            self._empty = self.encode("")
        return self._empty

    def wrap(self, embeds, pooled, what: str) -> TextCondition:
        """Embeddings given from Python as a :class:`TextCondition` (checked)."""
        if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3:
            raise ParameterError(what, f"must be a tensor (batch, tokens, {self.embed_dim or 'dim'}), got {_describe(embeds)}")
        if self.embed_dim is not None and embeds.shape[-1] != self.embed_dim:
            raise ParameterError(what, f"must have last dimension {self.embed_dim} for {self.name}, got {tuple(embeds.shape)}")
        pooled_name = what.replace("prompt_embeds", "pooled_prompt_embeds")
        if self.pooled:
            if not isinstance(pooled, torch.Tensor) or pooled.ndim != 2:
                raise ParameterError(pooled_name, f"is needed with {what} for {self.name}: a tensor (batch, dim), "
                                                  f"got {_describe(pooled)}")  # fmt: skip
        elif pooled is not None:
            raise ParameterError(pooled_name, f"{self.name} takes no pooled embeddings")
        return TextCondition(embeds.to(self.device), pooled.to(self.device) if pooled is not None else None)

    def condition(self, prompt=None, negative_prompt=None, prompt_embeds=None, negative_prompt_embeds=None,
                  pooled_prompt_embeds=None, negative_pooled_prompt_embeds=None) -> tuple[TextCondition, TextCondition]:  # fmt: skip
        """(cond, uncond): the prompt's and the negative prompt's conditioning ("" when not given)."""
        if prompt is not None and prompt_embeds is not None:
            raise ParameterError("prompt", "pass a prompt or prompt_embeds, not both")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ParameterError("negative_prompt", "pass a negative prompt or negative_prompt_embeds, not both")
        if prompt_embeds is not None:
            cond = self.wrap(prompt_embeds, pooled_prompt_embeds, "prompt_embeds")
        else:
            cond = self.empty() if prompt in (None, "") else self.encode(prompt)
        if negative_prompt_embeds is not None:
            uncond = self.wrap(negative_prompt_embeds, negative_pooled_prompt_embeds, "negative_prompt_embeds")
        else:
            uncond = self.empty() if negative_prompt in (None, "") else self.encode(negative_prompt)
        return cond, uncond


def _describe(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def text_pipeline(components: dict, network_kind: str):
    """A diffusers pipeline holding only what ``encode_prompt`` needs, or None without text encoders.

    ``components``: the loaded ``text_encoder``, ``tokenizer`` (``_2``, ``_3`` for SD3) and the network.
    """
    from diffusers import StableDiffusion3Pipeline, StableDiffusionPipeline

    get = components.get
    if network_kind == "UNet2DConditionModel":
        if get("text_encoder") is None or get("tokenizer") is None:
            return None
        return StableDiffusionPipeline(vae=None, text_encoder=get("text_encoder"), tokenizer=get("tokenizer"), unet=None,
                                       scheduler=None, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)  # fmt: skip
    if any(get(k) is None for k in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")):
        return None
    return StableDiffusion3Pipeline(transformer=get("network"), scheduler=None, vae=None, text_encoder=get("text_encoder"),
                                    tokenizer=get("tokenizer"), text_encoder_2=get("text_encoder_2"),
                                    tokenizer_2=get("tokenizer_2"), text_encoder_3=get("text_encoder_3"),
                                    tokenizer_3=get("tokenizer_3"))  # fmt: skip
