"""The diffusers model as the engine's denoiser: scheduler family + network (+ text, + VAE).

``model(x, σ, cond)`` = ``family.denoised(x, σ, network(*family.network_input(x, σ), cond))``,
the scheduler's D(x; σ) (or D_flow(x_t; t) for ``path == "flow"``), docs/math.md §1.
"""

from __future__ import annotations

import torch

from ...errors import ParameterError
from ..base import cond_per_sample
from .networks import Network
from .text import TextCondition, TextEncoder


class DiffusersDenoiser:
    """D(x; σ, cond) of a diffusers model (package docstring).

    Attributes (the engine's contract): ``shape``, ``classes``, ``weak`` (None), ``device``, ``dtype``
    (the network's weights; the engine state keeps its own dtype), ``name``, ``path``
    ("edm" or "flow"), ``text_conditioned``, ``latent``, ``parameter_count`` (network only),
    ``prediction_type``, ``scheduler``, ``network`` (the diffusers module), ``sigma_min``/``sigma_max``
    (the range of the model's σ, or t for flow models); methods ``model_sigmas``, ``condition``,
    ``decode``.
    """

    weak = None

    def __init__(self, network: Network, family, name: str, device: torch.device,
                 text: TextEncoder | None = None, decoder=None):  # fmt: skip
        self.net, self.family, self.name, self.device = network, family, name, device
        self.network, self.scheduler = network.module, family.scheduler
        self.shape, self.classes, self.dtype = network.shape, network.classes, network.dtype
        self.path, self.prediction_type = family.path, family.prediction_type
        self.sigma_min, self.sigma_max = family.sigma_min, family.sigma_max
        self.parameter_count = network.parameter_count
        self.text, self.decoder = text, decoder
        self.text_conditioned = text is not None
        self.latent = decoder is not None

    def model_sigmas(self, steps: int) -> torch.Tensor:
        """The scheduler's own grid for ``steps`` steps, float64, decreasing, ending at 0 (σ's, or t's for flow)."""
        return self.family.model_sigmas(steps)

    def condition(self, prompt=None, negative_prompt=None, prompt_embeds=None, negative_prompt_embeds=None,
                  pooled_prompt_embeds=None, negative_pooled_prompt_embeds=None) -> tuple[TextCondition, TextCondition]:  # fmt: skip
        """(cond, uncond) for a prompt and a negative prompt ("" by default), each encoded once (text.py)."""
        if self.text is None:
            given = [n for n, v in (("prompt", prompt), ("negative_prompt", negative_prompt), ("prompt_embeds", prompt_embeds),
                                    ("negative_prompt_embeds", negative_prompt_embeds)) if v is not None]  # fmt: skip
            raise ParameterError(given[0] if given else "prompt", f"{self.name} is not text-conditioned; it takes no prompt")
        return self.text.condition(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds,
                                   pooled_prompt_embeds, negative_pooled_prompt_embeds)  # fmt: skip

    def decode(self, x0: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """RGB (B, 3, H, W) in [−1, 1] from latents x0: the VAE, or its fitted linear projection (latent.py)."""
        if self.decoder is None:
            raise ParameterError("model", f"{self.name} is not a latent model; its samples are images already")
        return self.decoder.decode(x0, fast)

    def _network_condition(self, cond, batch: int) -> dict:
        if self.text is not None:
            if cond is None:
                cond = self.text.empty()
            if not isinstance(cond, TextCondition):
                raise ParameterError("class", f"{self.name} is text-conditioned; it takes a prompt, not a class")
            text = cond.expand(batch)
            return {"embeds": text.embeds, "pooled": text.pooled}
        if isinstance(cond, TextCondition):
            raise ParameterError("prompt", f"{self.name} is not text-conditioned; it takes no prompt")
        labels = cond_per_sample(cond, batch, self.classes, self.device)
        if self.classes is not None and labels is None:
            raise ParameterError("class", f"{self.name} is class-conditional; pass a class in 0..{len(self.classes) - 1}")
        return {"labels": labels}

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """D(x; σ) (or D_flow(x_t; t)): network input, call, denoised estimate (schedulers.py)."""
        if x.ndim != len(self.shape) + 1 or tuple(x.shape[1:]) != self.shape:
            raise ParameterError("x", f"must have shape (batch, {', '.join(map(str, self.shape))}) for {self.name}, "
                                      f"got {tuple(x.shape)}")  # fmt: skip
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ParameterError("sigma", f"must be a scalar or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
        kwargs = self._network_condition(cond, x.shape[0])
        x_in, timestep = self.family.network_input(x, sigma)
        output = self.net(x_in.to(self.device), timestep.to(self.device), **kwargs).to(x.device)
        return self.family.denoised(x, sigma, output)
