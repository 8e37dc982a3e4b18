"""One generic explicit Runge–Kutta step over a Butcher tableau (docs/math.md §2).

In σ, with h = σ_{i+1} − σ_i < 0: k_j = f(x_i + h Σ_l A_jl k_l; σ_i + c_j h),
x_{i+1} = x_i + h Σ_j b_j k_j and, with embedded weights b̂, e = h Σ_j (b_j − b̂_j) k_j.
Euler, Heun (EDM), Bogacki–Shampine 3(2), RK4 and DPM-Solver-2 are all this step.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ParameterError, check_finite
from .base import Evaluate, Stage, StepResult
from .tableau import BOGACKI_SHAMPINE, EULER, HEUN_EULER, RK4, Tableau, midpoint_tableau


def _combine(x: torch.Tensor, h: float, weights: Sequence[float], slopes: Sequence[torch.Tensor]) -> torch.Tensor:
    """x + h Σ_j w_j k_j, skipping zero weights."""
    out = x
    for w, k in zip(weights, slopes):
        if w != 0.0:
            out = out + (h * w) * k
    return out


def runge_kutta_step(tableau: Tableau, evaluate: Evaluate, first: Stage, sigma_next: float) -> StepResult:
    """Advance ``first.x`` from ``first.sigma`` to ``sigma_next`` (> 0) with ``tableau``."""
    h = sigma_next - first.sigma
    stages, slopes = [first], [first.drift]
    for c_j, a_j in zip(tableau.c[1:], tableau.A[1:]):
        sigma_j = sigma_next if c_j == 1.0 else first.sigma + c_j * h  # exact σ_{i+1} for lagged pairs
        stage = evaluate(_combine(first.x, h, a_j, slopes), sigma_j)
        stages.append(stage)
        slopes.append(stage.drift)
    if tableau.fsal:  # the last stage sits at the result: hand it on as the next first stage
        return StepResult(stages[-1].x, _error(tableau, h, slopes), stages, tableau.stability_boundary, stages[-1])
    x_next = _combine(first.x, h, tableau.b, slopes)
    return StepResult(x_next, _error(tableau, h, slopes), stages, tableau.stability_boundary)


def _error(tableau: Tableau, h: float, slopes: Sequence[torch.Tensor]) -> torch.Tensor | None:
    if tableau.b_low is None:
        return None
    diff = [b - bl for b, bl in zip(tableau.b, tableau.b_low)]
    return _combine(torch.zeros_like(slopes[0]), h, diff, slopes)


class RungeKuttaSolver:
    """A solver over a fixed tableau, or over one built per step by ``tableau_for``."""

    def __init__(self, name: str, tableau: Tableau, pair: str, tableau_for: Callable[[float, float], Tableau] | None = None):
        self.name, self.tableau, self.pair, self._tableau_for = name, tableau, pair, tableau_for

    def step(self, evaluate: Evaluate, first: Stage, sigma_next: float, history: Sequence[StepResult]) -> StepResult:
        tableau = self._tableau_for(first.sigma, sigma_next) if self._tableau_for else self.tableau
        return runge_kutta_step(tableau, evaluate, first, sigma_next)

    def amplification(self, z: np.ndarray) -> np.ndarray:
        return np.abs(self.tableau.stability_function(z))

    @property
    def stability_boundary(self) -> float:
        return self.tableau.stability_boundary

    @property
    def order(self) -> int:
        return self.tableau.order


def dpm2_tableau(sigma: float, sigma_next: float) -> Tableau:
    """DPM-Solver-2 in EDM form: the slope at σ_mid = √(σ_i σ_{i+1}), c = (σ_mid − σ_i)/h."""
    sigma_mid = math.sqrt(sigma * sigma_next)
    return midpoint_tableau((sigma_mid - sigma) / (sigma_next - sigma))


def euler() -> RungeKuttaSolver:
    """x_{i+1} = x_i + h f(x_i; σ_i); no embedded pair, so no LTE estimate."""
    return RungeKuttaSolver("euler", EULER, pair="consecutive")


class AncestralEuler(RungeKuttaSolver):
    """Euler ancestral's deterministic part, Euler from σ_i to σ_down; the sampling loop then adds
    σ_up noise to reach σ_{i+1} (docs/math.md §11). ``eta`` = η ≥ 0 scales σ_up (0: plain Euler)."""

    def __init__(self, eta: float = 1.0):
        super().__init__("euler_ancestral", EULER, pair="consecutive")
        if not 0.0 <= check_finite("eta", eta) <= 10.0:
            raise ParameterError("eta", f"must lie in [0, 10], got {eta}")
        self.eta = float(eta)


def heun() -> RungeKuttaSolver:
    """EDM Heun: Euler predictor x^E, trapezoidal corrector x^H; e = x^H − x^E (Heun–Euler 2(1))."""
    return RungeKuttaSolver("heun", HEUN_EULER, pair="lagged")


def bosh3() -> RungeKuttaSolver:
    """Bogacki–Shampine 3(2), first-same-as-last: 3 evaluations per step after the first."""
    return RungeKuttaSolver("bosh3", BOGACKI_SHAMPINE, pair="consecutive")


def rk4() -> RungeKuttaSolver:
    """Classical RK4 (no embedded pair); the fine reference solver of the tests."""
    return RungeKuttaSolver("rk4", RK4, pair="consecutive")


def dpm2() -> RungeKuttaSolver:
    """DPM-Solver-2: x_mid = x_i + (σ_mid − σ_i) f_i, x_{i+1} = x_i + h f(x_mid; σ_mid); e = h(f_mid − f_i).

    Its stability function is 1 + z + c z², c = √σ_i/(√σ_i + √σ_{i+1}) ∈ [½, 1), boundary 1/c;
    the nominal values (``amplification``, ``stability_boundary``) are those of c = ½.
    """
    return RungeKuttaSolver("dpm2", midpoint_tableau(0.5), pair="within", tableau_for=dpm2_tableau)
