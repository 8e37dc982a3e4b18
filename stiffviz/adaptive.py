"""Adaptive steps from the embedded error estimate (docs/math.md §12).

The sampling loop (:func:`stiffviz.sampler.integrate`) takes its steps from an
:class:`AdaptiveSteps` instead of a fixed grid. The controller proposes steps in u = log σ
(σ_next = σ·e^{−h}, h > 0), from the grid's first level σ_start down to its smallest positive
level σ_end, then the grid's final step to 0 when it has one. Each attempted step's embedded
estimate e = x_high − x_low (docs/math.md §2) is measured, one number for the whole batch (the
grid is shared), as the scaled RMS over every element of the batch:

    ε = sqrt( mean( (e / (atol + rtol·max(|x_i|, |x_low|)))² ) ),   x_low = x_high − e.

The step is accepted when ε ≤ 1. The next step is h ← h·φ with Gustafsson's PI factor

    accepted: φ = clip(0.9 · ε_n^{−0.7/k} · ε_{n−1}^{0.4/k}, 0.2, 5)
    rejected: φ = max(0.9 · ε_n^{−1/k}, 0.2)

where k is the order of the error estimate (e = O(h^k): 2 for Heun–Euler 2(1) and DPM-Solver-2,
3 for Bogacki–Shampine 3(2)) and ε_{n−1} the ratio of the last accepted step (1 before the first).
A rejected step leaves the state where it was and reuses its first stage; it is recorded in the
trace with ``accepted: False`` and its evaluations counted in ``nfe``. No ε is formed on the step
to σ = 0, which has no embedded pair.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from .errors import ParameterError
from .solvers import Solver, StepResult, get_solver

H_INIT = 0.05  # the first proposed step in log σ (k-diffusion's dpm_adaptive starts with the same)
SAFETY = 0.9
FACTOR_MIN, FACTOR_MAX = 0.2, 5.0
PI_ALPHA, PI_BETA = 0.7, 0.4  # φ = SAFETY · ε_n^{−α/k} · ε_{n−1}^{β/k}
RATIO_FLOOR = 1e-10  # an exact step (ε = 0) grows by FACTOR_MAX instead of dividing by zero
RTOL, ATOL = 0.05, 0.0078  # k-diffusion's dpm_adaptive defaults


def embedded_order(solver: Solver) -> int:
    """k such that the solver's embedded estimate is e = O(h^k); ParameterError without one."""
    tableau = getattr(solver, "tableau", None)
    if tableau is None or tableau.b_low is None:
        raise ParameterError("solver", f"adaptive steps need a solver with an embedded error estimate "
                                       f"(heun, bosh3, dpm2), got {solver.name!r}")  # fmt: skip
    return tableau.order


def error_ratio(error: torch.Tensor, x: torch.Tensor, x_high: torch.Tensor, rtol: float, atol: float) -> float:
    """ε = RMS over all elements of e/(atol + rtol·max(|x|, |x_high − e|)), in float64."""
    error, x, x_high = error.double(), x.double(), x_high.double()
    scale = atol + rtol * torch.maximum(x.abs(), (x_high - error).abs())
    return float((error / scale).square().mean().sqrt())


class PIController:
    """Gustafsson's PI step-size factor for an error estimate of order ``order`` (docs/math.md §12)."""

    def __init__(self, order: int):
        self.order, self.previous = order, 1.0

    def factor(self, ratio: float) -> float:
        """φ for a step with ε = ``ratio``: the PI factor when ε ≤ 1 (and ε becomes ε_{n−1}),
        the I factor, at most 1, when ε > 1; FACTOR_MIN when ε is not finite."""
        if not math.isfinite(ratio):
            return FACTOR_MIN
        ratio = max(ratio, RATIO_FLOOR)
        if ratio > 1.0:
            return max(SAFETY * ratio ** (-1.0 / self.order), FACTOR_MIN)
        phi = SAFETY * ratio ** (-PI_ALPHA / self.order) * self.previous ** (PI_BETA / self.order)
        self.previous = ratio
        return min(max(phi, FACTOR_MIN), FACTOR_MAX)


class AdaptiveSteps:
    """The (σ, σ_next) steps of an adaptive run, judged by :meth:`accept` as the loop takes them.

    ``grid`` is the fixed grid the settings would give: the run goes from ``grid[0]`` to its
    smallest positive level, then to 0 if the grid ends there. ``max_attempts`` caps the attempted
    steps above σ_end (accepted and rejected; the final step to 0 is not counted).
    """

    def __init__(self, grid: Sequence[float], solver: Solver, rtol: float, atol: float, max_attempts: int,
                 h_init: float = H_INIT):  # fmt: skip
        levels = [float(s) for s in grid]
        self.sigma, self.sigma_end, self.final = levels[0], min(s for s in levels if s > 0), levels[-1] == 0.0
        self.rtol, self.atol, self.max_attempts, self.h = rtol, atol, max_attempts, h_init
        self.controller = PIController(embedded_order(solver))
        self.attempts, self.proposed = 0, self.sigma
        self.sigmas = [self.sigma]  # the accepted levels: the grid the run took

    def __iter__(self) -> Iterator[tuple[float, float]]:
        while self.sigma > self.sigma_end:
            if self.attempts == self.max_attempts:
                raise ParameterError("steps", f"caps the adaptive run's attempted steps; all {self.max_attempts} were "
                                              f"used before σ reached {self.sigma_end:.4g} (it is at {self.sigma:.4g}): "
                                              f"raise steps or loosen rtol/atol")  # fmt: skip
            self.attempts += 1
            self.proposed = max(self.sigma * math.exp(-self.h), self.sigma_end)
            yield self.sigma, self.proposed
        if self.final:
            self.proposed = 0.0
            yield self.sigma, 0.0

    def accept(self, record: dict, x: torch.Tensor, step: StepResult) -> bool:
        """Judge the step just taken from state ``x``: record ``accepted`` (and ``lte_ratio`` = ε),
        update the step size, and move to σ_next when accepted. The step to 0 is always accepted."""
        accepted = True
        if self.proposed > 0.0:
            ratio = error_ratio(step.error, x, step.x, self.rtol, self.atol)
            accepted = ratio <= 1.0
            self.h = math.log(self.sigma / self.proposed) * self.controller.factor(ratio)
            record["lte_ratio"] = ratio
        record["accepted"] = accepted
        if accepted:
            self.sigma = self.proposed
            self.sigmas.append(self.sigma)
        return accepted


def check_adaptive(config) -> None:
    """The settings adaptive steps refuse or need, each named (``config`` a SampleConfig)."""
    for name in ("rtol", "atol"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ParameterError(name, f"must be a finite number > 0, got {value!r}")
    if not isinstance(config.adaptive, bool):
        raise ParameterError("adaptive", f"must be true or false, got {config.adaptive!r}")
    if not config.adaptive:
        return
    embedded_order(get_solver(config.solver))
    if config.steps < 2:
        raise ParameterError("steps", f"caps the attempted steps of an adaptive run: must be ≥ 2, got {config.steps}")
    if config.erk_guid is not None:
        raise ParameterError("erk_guid", "ERK-Guid is defined on a fixed grid (its w_con follows the step count) "
                                         "and would move the state after the error was judged: turn it off "
                                         "(none) or turn adaptive off")  # fmt: skip
    if config.stein:
        raise ParameterError("stein", "SteinDiff relaxes each step after the error was judged, so the accepted "
                                      "step is not the one measured: turn it off or turn adaptive off")  # fmt: skip
    if getattr(config, "sigmas", None) is not None:
        raise ParameterError("sigmas", "an explicit grid and adaptive steps exclude each other: give one")


def attempt_grid(grid: Sequence[float], max_attempts: int) -> list[float]:
    """The longest run ``max_attempts`` allows, as a fixed grid: that many steps from ``grid[0]`` to
    the smallest positive level (log-spaced), then the grid's final 0 if it has one. Counted like a
    fixed grid, it bounds an adaptive run's cost: a rejected attempt costs at most an accepted one."""
    levels = [float(s) for s in grid]
    positive = torch.logspace(math.log10(levels[0]), math.log10(min(s for s in levels if s > 0)), max_attempts + 1,
                              dtype=torch.float64).tolist()  # fmt: skip
    return positive + [0.0] * (levels[-1] == 0.0)
