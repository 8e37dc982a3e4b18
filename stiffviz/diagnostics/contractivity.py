"""How contractive SteinDiff's relaxed step is, as a function of γ (docs/math.md §5).

For one step σ_k → σ_{k+1} with candidate map T (the solver's step) SteinDiff applies

    T_γ(x) = (1 − γ) x + γ T(x) = x − γ u(x),    u = x − T(x),

whose Jacobian is M(γ) = (1 − γ) I + γ A with A = ∂T/∂x at the step's start state. Its local
Lipschitz constant per sample is

    L(γ) = ‖(1 − γ) I + γ A‖₂,

the largest singular value of M(γ). L(0) = 1 (the identity); the step map contracts where L < 1.
For a symmetric A with eigenvalues R_j, L(γ) = max_j |1 − γ(1 − R_j)|: a direction with R_j < 1
contracts for 0 < γ < 2/(1 − R_j), one with R_j ≥ 1 (an unstable explicit step, |hλ| beyond the
boundary) expands for every γ > 0, so no relaxation rescues it.

Two ways to get L(γ) on a grid of γ's:

* ``exact``: A per sample by reverse mode (d vector-Jacobian products of T, one per output
  coordinate; each is 2 D-passes backwards for Heun), then the singular values of M(γ) for
  every γ at once. Used where d ≤ ``EXACT_MAX_DIM`` (the 2-D toys, the 64-D digits mixture).
* ``power``: M(γ)ᵀM(γ) by power iteration (:func:`.lipschitz.lipschitz_constant`), all γ's
  in one batch: x is repeated once per γ and the map y ↦ (1 − γ_row) y + γ_row T(y) acts on
  every copy, so each iteration is one JVP and one VJP of T on G·B samples.

The curve is summarised over the batch by a median and a high quantile; :meth:`ContractivityCurve.crossing`
is the γ at which such a summary climbs back through 1 (the end of the contractive interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ParameterError
from ..solvers.base import Evaluator, Solver, StepResult
from .ground_truth import candidate_step
from .lipschitz import lipschitz_constant

EXACT_MAX_DIM = 64  # states of at most this many elements get the exact Jacobian of T
METHODS = ("auto", "exact", "power")
HIGH_QUANTILE = 0.9


@dataclass(frozen=True)
class ContractivityCurve:
    """L(γ) per sample on a grid: ``values[g, b]`` = ‖(1 − γ_g) I + γ_g A_b‖₂ for ``gammas[g]``."""

    gammas: np.ndarray  # (G,), increasing, from 0
    values: np.ndarray  # (G, B)
    method: str  # "exact" or "power"

    def summary(self, q: float) -> np.ndarray:
        """The q-quantile of L(γ) over the batch, per γ (q = 0.5: the median)."""
        return np.quantile(self.values, q, axis=1)

    def crossing(self, q: float = 0.5) -> float | None:
        """The γ > 0 where the q-quantile of L(γ) first climbs back to 1 after dipping below it
        (linear interpolation between grid points): the relaxed step contracts for 0 < γ < that.

        None when the curve never dips below 1 on the grid (no γ > 0 contracts); ``math.inf``
        when it stays below 1 to the grid's end.
        """
        curve = self.summary(q)
        below = np.flatnonzero(curve[1:] < 1.0) + 1
        if below.size == 0:
            return None
        above = np.flatnonzero(curve[below[0]:] >= 1.0)
        if above.size == 0:
            return math.inf
        j = below[0] + above[0]
        g0, g1, l0, l1 = self.gammas[j - 1], self.gammas[j], curve[j - 1], curve[j]
        return float(g0 + (1.0 - l0) / (l1 - l0) * (g1 - g0))


def step_map(denoise: Callable[[torch.Tensor, float], torch.Tensor], solver: Solver, sigma: float, sigma_next: float,
             history: Sequence[StepResult] = ()) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """The candidate map y ↦ T(y) of one step σ → σ_next (Heun: two denoiser calls)."""
    evaluate = Evaluator(denoise)
    return lambda y: candidate_step(evaluate, solver, y, sigma, sigma_next, history)


def step_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """∂fn/∂x per sample, shape (B, d, d) with d the flattened state size, by d reverse passes.

    Row j is the gradient of Σ_b fn(x)_b,j; it is sample b's row j because samples do not interact.
    """
    batch = x.shape[0]
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        out = fn(x_in).reshape(batch, -1)
        rows = [torch.autograd.grad(out[:, j].sum(), x_in, retain_graph=j < out.shape[1] - 1)[0].reshape(batch, -1)
                for j in range(out.shape[1])]  # fmt: skip
    return torch.stack(rows, dim=1).detach()


def relaxed_norms(jacobian: torch.Tensor, gammas: np.ndarray) -> np.ndarray:
    """L(γ) = ‖(1 − γ) I + γ A‖₂ for every γ and every sample's A (B, d, d); shape (G, B)."""
    a = jacobian.to(torch.float64)
    g = torch.as_tensor(gammas, dtype=torch.float64).view(-1, 1, 1, 1)
    eye = torch.eye(a.shape[-1], dtype=torch.float64, device=a.device)
    return torch.linalg.matrix_norm((1 - g) * eye + g * a, ord=2).cpu().numpy()


def relaxed_norms_power(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, gammas: np.ndarray,
                        iterations: int, generator: torch.Generator) -> np.ndarray:  # fmt: skip
    """L(γ) for every γ by power iteration on all γ's at once (x repeated per γ); shape (G, B)."""
    count, batch = len(gammas), x.shape[0]
    repeated = x.detach().repeat(count, *([1] * (x.ndim - 1)))
    rows = torch.as_tensor(np.repeat(gammas, batch), dtype=x.dtype, device=x.device).view(-1, *([1] * (x.ndim - 1)))
    start = torch.randn(repeated.shape, generator=generator, dtype=x.dtype).to(x.device)
    estimate = lipschitz_constant(lambda y: (1 - rows) * y + rows * fn(y), repeated, start, iterations, key=fn)
    return estimate.value.detach().to("cpu", torch.float64).numpy().reshape(count, batch)


def contractivity(denoise: Callable[[torch.Tensor, float], torch.Tensor], solver: Solver, x: torch.Tensor,
                  sigma: float, sigma_next: float, gammas: Sequence[float] | np.ndarray, method: str = "auto",
                  iterations: int = 10, generator: torch.Generator | None = None,
                  history: Sequence[StepResult] = ()) -> ContractivityCurve:  # fmt: skip
    """L(γ) of the relaxed step x ↦ (1 − γ) x + γ T(x) at the states ``x`` (B, …) for every γ.

    ``method``: "exact" (the Jacobian of T), "power" (``iterations`` power iterations), or "auto"
    (exact where the state has at most ``EXACT_MAX_DIM`` elements). ``history`` is what a
    multistep solver looks back on (empty: its first-order start).
    """
    if method not in METHODS:
        raise ParameterError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    grid = np.asarray(gammas, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.isfinite(grid).all() or (np.diff(grid) <= 0).any() or grid[0] < 0:
        raise ParameterError("gammas", "must be at least 2 finite, increasing values ≥ 0")
    if not sigma > sigma_next >= 0:
        raise ParameterError("sigma_next", f"must lie in [0, sigma = {sigma}), got {sigma_next}")
    fn = step_map(denoise, solver, sigma, sigma_next, history)
    size = math.prod(x.shape[1:])
    if method == "exact" or (method == "auto" and size <= EXACT_MAX_DIM):
        return ContractivityCurve(grid, relaxed_norms(step_jacobian(fn, x), grid), "exact")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return ContractivityCurve(grid, relaxed_norms_power(fn, x, grid, iterations, generator), "power")
