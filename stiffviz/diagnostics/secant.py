"""Secant stiffness: ERK-Guid's estimator of the drift Jacobian's spectral radius (docs/math.md §3–4).

Given two states whose drifts are known, Δx = x_a − x_b and Δf = f(x_a) − f(x_b):

    ρ̂ = ‖Δf‖ / (‖Δx‖ + 1e−8)        (≈ ‖J Δx‖/‖Δx‖, a Rayleigh-type estimate of |λ_max|)
    v̂ = Δf / (‖Δf‖ + 1e−8)          (one power-iteration step: Δf ≈ J Δx)

Norms are per sample over all non-batch dimensions. Which two states form the pair
depends on the solver (``Solver.pair``): ``lagged`` (Heun: x_i and the previous step's
Euler predictor x^E_i, both at σ_i), ``within`` (DPM-Solver-2: x_i and its midpoint
predictor) or ``consecutive`` (x_i and x_{i−1}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..solvers.base import Stage, StepResult

EPS = 1e-8


def batch_norm(v: torch.Tensor) -> torch.Tensor:
    """‖v_b‖ over all non-batch dimensions, shape (B,)."""
    return v.flatten(1).norm(dim=1)


def batch_dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """⟨u_b, v_b⟩ over all non-batch dimensions, shape (B,)."""
    return (u * v).flatten(1).sum(1)


def abs_cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """|cos(u_b, v_b)| per sample (eigenvectors have no sign); 0 where either vector is 0."""
    return batch_dot(u, v).abs() / (batch_norm(u) * batch_norm(v)).clamp_min(torch.finfo(u.dtype).tiny)


@dataclass(frozen=True)
class SecantPair:
    """Two evaluated states, the step size ``h`` > 0 the pair belongs to and ERK-Guid's sign."""

    current: Stage
    other: Stage
    h: float
    sign: float

    @property
    def dx(self) -> torch.Tensor:
        return self.current.x - self.other.x

    @property
    def df(self) -> torch.Tensor:
        return self.current.drift - self.other.drift


def secant_pair(kind: str, step: StepResult, history: Sequence[StepResult], sigma_next: float) -> SecantPair | None:
    """The pair a solver of this ``kind`` offers at this step, or None (e.g. on step 0).

    ``lagged`` and ``within`` pairs come with h = σ_i − σ_{i+1} and the minus sign;
    ``consecutive`` with h = σ_{i−1} − σ_i and the plus sign (docs/math.md §4).
    """
    first = step.stages[0]
    if kind == "within":
        if len(step.stages) < 2:
            return None
        return SecantPair(first, step.stages[1], first.sigma - sigma_next, -1.0)
    if not history:
        return None
    if kind == "lagged":
        predictor = history[-1].stages[-1]
        if predictor.sigma != first.sigma:
            return None
        return SecantPair(first, predictor, first.sigma - sigma_next, -1.0)
    if kind == "consecutive":
        previous = history[-1].stages[0]
        return SecantPair(first, previous, previous.sigma - first.sigma, 1.0)
    raise ValueError(f"unknown secant pair kind {kind!r}")


@dataclass(frozen=True)
class SecantStiffness:
    """ρ̂ (B,) and v̂ (B, …) of a pair."""

    rho: torch.Tensor
    direction: torch.Tensor


def secant_stiffness(pair: SecantPair) -> SecantStiffness:
    """ρ̂ = ‖Δf‖/(‖Δx‖ + 1e−8) and v̂ = Δf/(‖Δf‖ + 1e−8), per sample."""
    df = pair.df
    df_norm = batch_norm(df)
    shape = (-1,) + (1,) * (df.ndim - 1)
    return SecantStiffness(df_norm / (batch_norm(pair.dx) + EPS), df / (df_norm + EPS).view(shape))
