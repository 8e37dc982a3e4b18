"""Reference local error: the same interval integrated with a much finer solver (docs/math.md §3).

From the step's start x_i, ``substeps`` classical RK4 steps uniform in σ over [σ_i, σ_{i+1}]
give x_ref ≈ x(σ_{i+1}); the reference error of the step is e* = x_{i+1} − x_ref.
RK4's error over the interval is O(|h|⁵/substeps⁴), far below the step's own.
"""

from __future__ import annotations

import torch

from ..solvers.base import Evaluate
from ..solvers.runge_kutta import runge_kutta_step
from ..solvers.tableau import RK4


def fine_solution(evaluate: Evaluate, x: torch.Tensor, sigma: float, sigma_next: float, substeps: int = 32) -> torch.Tensor:
    """x(σ_next) from x(σ) by ``substeps`` RK4 steps (σ_next > 0)."""
    grid = torch.linspace(sigma, sigma_next, substeps + 1, dtype=torch.float64).tolist()
    grid[-1] = sigma_next
    for s, s_next in zip(grid, grid[1:]):
        x = runge_kutta_step(RK4, evaluate, evaluate(x, s), s_next).x
    return x
