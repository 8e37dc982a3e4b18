"""The network answers calls: ``network(x_in, timestep, cond) -> output`` for each supported class.

The scheduler family (schedulers.py) decides what x_in, timestep and output mean; this module only
knows how each diffusers network class is called and what it needs:

- ``UNet2DModel``: ``unet(x_in, t, class_labels=labels)``, class labels when ``num_class_embeds``;
- ``UNet2DConditionModel``: ``unet(x_in, t, encoder_hidden_states=E)``, E from the text conditioning;
- ``SD3Transformer2DModel``, or any diffusers transformer with its call signature (keywords
  ``hidden_states``, ``timestep``, ``encoder_hidden_states``, ``pooled_projections`` and nothing
  else required): ``net(hidden_states=x_in, timestep=t, encoder_hidden_states=E, pooled_projections=P)``.

The network runs in its own dtype (float16/bfloat16 weights allowed): inputs are cast to it and the
output back to the caller's dtype. A network with twice the input channels (learned variance)
gives its prediction in the first half.

**Differentiating through attention** (docs/math.md §10). PyTorch's fused attention kernels
(flash / memory-efficient ``scaled_dot_product_attention``, on the CPU and on CUDA) have neither a
forward-mode rule nor a second derivative, so neither route of ``autodiff.jvp`` gets through them.
A call that is being differentiated (its input tracked by autograd with grad mode on, a
forward-mode dual, or a ``torch.func`` transform's tensor) therefore runs attention on the math
backend, which is composed of differentiable operations; plain sampling keeps the fused kernels.
On the tiny test networks forward mode then works for UNet2DConditionModel and SD3; a
UNet2DModel with a mid-block attention still fails in forward mode (PyTorch's group-norm rule
rejects the non-contiguous tangent that attention hands on) and ``autodiff.jvp`` takes its
VJP-based route there.
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext

import torch
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...errors import ParameterError

JOINT_KEYWORDS = ("hidden_states", "timestep", "encoder_hidden_states", "pooled_projections")
POSITION_IDS = ("img_ids", "txt_ids")  # packed-latent transformers (Flux) need these: not this call
SUPPORTED = ("UNet2DModel", "UNet2DConditionModel", "SD3Transformer2DModel")


def _spatial(size, name: str) -> tuple[int, int]:
    if size is None:
        raise ParameterError("model", f"{name}: the network's config has no sample_size, so its sample shape is unknown")
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class Network:
    """A diffusers network as ``(x_in, timestep, cond) -> output``.

    ``shape`` (C, H, W) from the config (``in_channels``, ``sample_size``), ``classes``,
    ``text_conditioned`` (takes ``encoder_hidden_states``), ``pooled`` (also ``pooled_projections``),
    ``patch_size`` (1 for UNets), ``parameter_count``, ``dtype`` (the weights' dtype, its inputs' dtype).
    """

    def __init__(self, module, name: str, dtype: torch.dtype):
        self.module, self.kind, self.dtype = module, type(module).__name__, dtype
        config = module.config
        self.parameter_count = sum(p.numel() for p in module.parameters())
        height, width = _spatial(config.get("sample_size"), name)
        self.shape = (int(config.in_channels), height, width)
        self.out_channels = int(config.get("out_channels") or config.in_channels)
        if self.out_channels not in (self.shape[0], 2 * self.shape[0]):
            raise ParameterError("model", f"{name}: out_channels {self.out_channels} must be in_channels or twice it")
        self.patch_size = int(config.get("patch_size") or 1)
        self.classes, self.text_conditioned, self.pooled = None, False, False
        if self.kind == "UNet2DModel":
            if config.get("time_embedding_type", "positional") == "fourier":
                raise ParameterError("model", f"{name}: a UNet2DModel with a Fourier time embedding (score SDE) is not supported")
            if config.get("class_embed_type") is not None:
                raise ParameterError("model", f"{name}: class_embed_type={config['class_embed_type']!r} is not supported "
                                              "(only num_class_embeds, a class-label table)")  # fmt: skip
            classes = config.get("num_class_embeds")
            self.classes = tuple(str(i) for i in range(classes)) if classes else None
        elif self.kind == "UNet2DConditionModel":
            extra = ("addition_embed_type", "class_embed_type", "num_class_embeds", "time_cond_proj_dim", "encoder_hid_dim_type")
            for option in extra:
                if config.get(option) is not None:
                    raise ParameterError("model", f"{name}: a UNet2DConditionModel with {option}={config[option]!r} needs "
                                                  "extra conditioning that is not supported (text only)")  # fmt: skip
            self.text_conditioned = True
        elif joint_transformer(type(module)):
            self.text_conditioned = self.pooled = True
        else:
            raise ParameterError("model", f"{name}: the network class {self.kind} is not supported; supported: {', '.join(SUPPORTED)} "
                                          f"or a transformer called with {', '.join(JOINT_KEYWORDS)}")  # fmt: skip

    def __call__(self, x_in: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor | None = None,
                 embeds: torch.Tensor | None = None, pooled: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The network's output for x_in (B, C, H, W) at ``timestep`` (B,), in x_in's dtype."""
        x = x_in.to(self.dtype)
        t = timestep.to(torch.float32)
        with sdpa_kernel([SDPBackend.MATH]) if differentiated(x_in) else nullcontext():
            out = self._forward(x, t, labels, embeds, pooled)
        return out[:, : self.shape[0]].to(x_in.dtype)

    def _forward(self, x, t, labels, embeds, pooled) -> torch.Tensor:
        if self.kind == "UNet2DModel":
            return self.module(x, t, class_labels=labels).sample
        if self.kind == "UNet2DConditionModel":
            return self.module(x, t, encoder_hidden_states=embeds.to(self.dtype)).sample
        return self.module(hidden_states=x, timestep=t, encoder_hidden_states=embeds.to(self.dtype),
                           pooled_projections=pooled.to(self.dtype), return_dict=False)[0]  # fmt: skip


def differentiated(x: torch.Tensor) -> bool:
    """Whether autodiff is tracking ``x``: a ``torch.func`` transform, a forward-mode dual, or autograd."""
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return True
    return forward_ad.unpack_dual(x).tangent is not None or (torch.is_grad_enabled() and x.requires_grad)


def joint_transformer(cls) -> bool:
    """Whether ``cls.forward`` takes SD3's keywords and requires nothing else (nor position ids)."""
    if cls.__name__ == "SD3Transformer2DModel":
        return True
    try:
        parameters = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False
    required = {n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n != "self"
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}  # fmt: skip
    return set(JOINT_KEYWORDS) <= set(parameters) and required <= set(JOINT_KEYWORDS) and not set(POSITION_IDS) & set(parameters)
