"""Classifier-free guidance and Autoguidance as denoiser combinators (MATH.md §6).

Both evaluate D_w(x) = D_ref(x) + w·(D(x) − D_ref(x)): for CFG, D_ref is the same model
without a class; for Autoguidance, D_ref is a weaker version of the same model with the
same class. w = 1 is no guidance and returns D(x) itself (one model call).
"""

from __future__ import annotations

import torch

from ..errors import ParameterError, check_finite
from .base import Denoiser


def guided_denoiser(model: Denoiser, cond=None, cfg: float = 1.0, autoguidance: float = 1.0):
    """Return ``D_w(x, σ)`` for ``model`` with class ``cond`` and the given guidance weights.

    With both weights ≠ 1, the two extrapolations compose:
    D = D_c + (w_cfg − 1)(D_c − D_uncond) + (w_ag − 1)(D_c − D_weak,c).
    Returns the callable and the number of model calls it makes per evaluation.
    """
    cfg = check_finite("cfg", cfg)
    autoguidance = check_finite("autoguidance", autoguidance)
    if cfg != 1.0:
        if getattr(model, "classes", None) is None:
            raise ParameterError("cfg", "classifier-free guidance needs a class-conditional model; use cfg = 1")
        if cond is None:
            raise ParameterError("cfg", "classifier-free guidance needs a class; pass one or use cfg = 1")
    weak = getattr(model, "weak", None)
    if autoguidance != 1.0 and weak is None:
        raise ParameterError("autoguidance", "this model has no weaker version; use autoguidance = 1")

    def denoise(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        d = model(x, sigma, cond)
        out = d
        if cfg != 1.0:
            out = out + (cfg - 1.0) * (d - model(x, sigma, None))
        if autoguidance != 1.0:
            out = out + (autoguidance - 1.0) * (d - weak(x, sigma, cond))
        return out

    calls = 1 + (cfg != 1.0) + (autoguidance != 1.0)
    return denoise, calls
