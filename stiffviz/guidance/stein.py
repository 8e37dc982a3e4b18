"""SteinDiff: Stein-stabilised relaxation of a solver step (docs/math.md §5).

Any solver step is a candidate map T; with the residual u = x_k − T(x_k) the update is

    x_{k−1} = (1 − γ_k) x_k + γ_k T(x_k) = x_k − γ_k u_k

with γ = 1 the plain solver. Under the forward coupling x_k = α_k x* + σ_k ε:

    oracle:  γ* = E⟨u, x − x*⟩ / E‖u‖²
    Stein:   γ  = [(1 − 1/α) E⟨u, x⟩ + (σ²/α) E[∇·u]] / E‖u‖²        (EDM: α = 1)

by Stein's identity E⟨u, ε⟩ = σ E[∇·u]. Expectations are batch means, so γ is one scalar
per step. E[∇·u] is estimated by Hutchinson, vᵀ(∂u/∂x)v over K Gaussian probes, one
vector-Jacobian product each. The paper clips γ below at γ_min; we also clip above at
γ_max and act only for σ in [sigma_min, sigma_max]; γ is recorded before and after clipping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..diagnostics.secant import batch_dot
from ..errors import ParameterError, check_finite


@dataclass(frozen=True)
class SteinDiff:
    """SteinDiff settings: ``probes`` K, clips [gamma_min, gamma_max], active σ range."""

    probes: int = 5
    gamma_min: float = 1.0
    gamma_max: float = 3.0
    sigma_min: float = 0.0
    sigma_max: float = math.inf
    alpha: float = 1.0

    def __post_init__(self):
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or not 1 <= self.probes <= 64:
            raise ParameterError("stein_probes", f"must be an integer in [1, 64], got {self.probes!r}")
        for name in ("gamma_min", "gamma_max", "alpha"):
            check_finite(f"stein_{name}", getattr(self, name))
        if self.gamma_min > self.gamma_max:
            raise ParameterError("stein_gamma_min", f"must be ≤ stein_gamma_max = {self.gamma_max}, got {self.gamma_min}")
        if not 0 <= self.sigma_min <= self.sigma_max:
            raise ParameterError("stein_sigma_min", f"must lie in [0, stein_sigma_max = {self.sigma_max}], got {self.sigma_min}")
        if self.alpha <= 0:
            raise ParameterError("stein_alpha", f"must be > 0, got {self.alpha}")

    def acts_at(self, sigma: float) -> bool:
        return self.sigma_min <= sigma <= self.sigma_max

    def clip(self, gamma: float) -> float:
        return min(max(gamma, self.gamma_min), self.gamma_max)


def hutchinson_divergence(u: torch.Tensor, x: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """∇·u per sample ≈ mean_k v_kᵀ (∂u/∂x) v_k, from the autograd graph of u(x).

    ``probes`` has shape (K, B, …); each probe costs one backward pass (a VJP).
    """
    estimates = []
    for v in probes:
        (vjp,) = torch.autograd.grad(u, x, grad_outputs=v, retain_graph=True)
        estimates.append(batch_dot(vjp, v))
    return torch.stack(estimates).mean(0)


def stein_coefficient(u: torch.Tensor, x: torch.Tensor, divergence: torch.Tensor, sigma: float, alpha: float = 1.0) -> float:
    """γ = [(1 − 1/α) E⟨u, x⟩ + (σ²/α) E[∇·u]] / E‖u‖² over the batch."""
    numerator = (1 - 1 / alpha) * batch_dot(u, x).mean() + (sigma**2 / alpha) * divergence.mean()
    return float(numerator / batch_dot(u, u).mean())


def oracle_coefficient(u: torch.Tensor, x: torch.Tensor, x_star: torch.Tensor) -> float:
    """γ* = E⟨u, x − x*⟩ / E‖u‖² over forward-coupled pairs (x*, x)."""
    return float(batch_dot(u, x - x_star).mean() / batch_dot(u, u).mean())
