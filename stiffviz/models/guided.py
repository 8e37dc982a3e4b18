"""Classifier-free guidance and Autoguidance as denoiser combinators (docs/math.md §6).

Both evaluate D_w(x) = D_ref(x) + w·(D(x) − D_ref(x)): for CFG, D_ref is the same model
without a class; for Autoguidance, D_ref is a weaker version of the same model with the
same class. With both on, the two extrapolations compose:

    D_w = D_c + (w_cfg − 1)(D_c − D_u) + (w_ag − 1)(D_c − D_weak,c)

a fixed linear combination Σ_j a_j D_j of model calls, so its Jacobian is Σ_j a_j ∂D_j/∂x
wherever every model gives its Jacobian. w = 1 is no guidance and D_w is D_c itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..diagnostics.autodiff import jvp
from ..errors import ParameterError, check_finite
from .base import Denoiser


@dataclass(frozen=True)
class GuidedDenoiser:
    """D_w(x, σ) = Σ_j a_j D_j(x, σ, c_j) over ``terms`` = ((D_j, c_j, a_j), …)."""

    terms: tuple[tuple[Any, Any, float], ...]

    @property
    def calls(self) -> int:
        """Model calls per evaluation of D_w."""
        return len(self.terms)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        (model, cond, a), *rest = self.terms
        out = model(x, sigma, cond) if a == 1.0 else a * model(x, sigma, cond)
        for model, cond, a in rest:
            out = out + a * model(x, sigma, cond)
        return out

    @property
    def has_jacobian(self) -> bool:
        return all(hasattr(model, "denoiser_jacobian") for model, _, _ in self.terms)

    def jvp(self, x: torch.Tensor, sigma: float, v: torch.Tensor) -> torch.Tensor:
        """(∂D_w/∂x) v = Σ_j a_j (∂D_j/∂x) v: each model's own ``denoiser_jvp`` where it has one
        (no autograd), autodiff otherwise (forward mode, or the VJP-based fallback: docs/math.md §10)."""
        out = 0
        for model, cond, a in self.terms:
            if hasattr(model, "denoiser_jvp"):
                jv = model.denoiser_jvp(x, sigma, v, cond)
            else:
                jv = jvp(lambda y: model(y, sigma, cond), x, v, key=model)  # noqa: B023
            out = out + a * jv
        return out

    def jacobian(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """∂D_w/∂x = Σ_j a_j ∂D_j/∂x, shape (B, d, d); needs ``has_jacobian``."""
        return sum(a * model.denoiser_jacobian(x, sigma, cond) for model, cond, a in self.terms)


def guided_denoiser(model: Denoiser, cond=None, cfg: float = 1.0, autoguidance: float = 1.0, uncond=None) -> GuidedDenoiser:
    """D_w for ``model`` with condition ``cond`` and the given guidance weights (1 = off).

    ``cond`` is a class for class-conditional models or a text model's prompt conditioning;
    ``uncond`` is what CFG's D_u gets (None: no class; a text model's negative prompt).
    """
    cfg = check_finite("cfg", cfg)
    autoguidance = check_finite("autoguidance", autoguidance)
    if cfg != 1.0:
        if getattr(model, "classes", None) is None and not getattr(model, "text_conditioned", False):
            raise ParameterError("cfg", "classifier-free guidance needs a class- or text-conditioned model; use cfg = 1")
        if cond is None:
            raise ParameterError("cfg", "classifier-free guidance needs a class or a prompt; pass one or use cfg = 1")
    weak = getattr(model, "weak", None)
    if autoguidance != 1.0 and weak is None:
        raise ParameterError("autoguidance", "this model has no weaker version; use autoguidance = 1")
    terms = [(model, cond, 1.0 + (cfg - 1.0) + (autoguidance - 1.0))]
    if cfg != 1.0:
        terms.append((model, uncond, -(cfg - 1.0)))
    if autoguidance != 1.0:
        terms.append((weak, cond, -(autoguidance - 1.0)))
    return GuidedDenoiser(tuple(terms))
