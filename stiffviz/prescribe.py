"""Prescribed schedules: from one recorded run, a grid with the same NFE (docs/math.md §13).

The recorded run has positive levels σ_0 > … > σ_{M−1} (a final step to 0 after them, unless
the run ends at σ_min). The new grid keeps σ_0, σ_{M−1} and the number of levels, so the same
solver makes the same number of model calls; only the M − 2 levels in between move.

* ``lte`` equidistributes the estimated local error. A step h near σ is modelled as
  ‖e‖ ≈ C(σ)·|h|^{p+1}, p the order of the embedded estimate (the solver's order − 1), with
  C_j = median‖e_j‖/|h_j|^{p+1} read off recorded step j at √(σ_j σ_{j+1}). The new grid makes
  C(√(σ_j σ_{j+1}))·|h_j|^{p+1} = ε the same on every step: first by the continuous rule (step
  density in ln σ ∝ C^{1/(p+1)}·σ, cut into M − 1 equal parts), then exactly, by Newton's method
  on the interior levels and ln ε.
* ``stability`` bounds z_j/B = |h_j|·max ρ̂ over the step / B by the target τ (B: the smallest
  stability boundary the run's steps report). The grid is walked down from σ_0: each step is the
  shorter of the longest step with z/B ≤ τ and a step of s base-grid levels (the base grid's
  level index, interpolated in ln σ), with the least s ≥ 1 that reaches σ_{M−1} in M − 1 steps;
  where the bound does not bind the base grid's spacing stands (s = 1: the base grid itself).
  When even the bound alone cannot reach σ_{M−1} the target is out of reach (``feasible`` False)
  and every step gets the same z/B = τ′ > τ, the least largest z these steps allow.

C(σ) and ρ̂(σ) are interpolated linearly in (ln σ, ln value) between the steps that recorded
them (medians over samples), and extended along the end segments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ParameterError, check_finite
from .schedules import explicit_levels
from .solvers import get_solver
from .trace import Trace

RULES = ("lte", "stability")
DEFAULT_TARGET = 0.8  # z/B the stability rule aims at
FINE_CELLS = 4096  # quadrature cells of Φ over [ln σ_{M−1}, ln σ_0] (the levels and knots are added)
CHECKED_SETTINGS = ("model", "solver", "path", "denoise_to_zero")  # a prescribed grid is for these only


@dataclass(frozen=True)
class Prescription:
    """A proposed grid and what the rule predicts for it.

    ``sigmas`` are the positive levels (as many as the recorded run's); ``predicted`` and
    ``base_predicted`` give, per step between them, the quantity the rule evens out (C·|h|^{p+1}
    for ``lte``, z/B for ``stability``) on the new and on the recorded grid; ``feasible`` is False
    when the stability target cannot be met with these steps.
    """

    sigmas: tuple[float, ...]
    rule: str
    target: float | None
    feasible: bool
    predicted: tuple[float, ...]
    base_predicted: tuple[float, ...]


def load_trace(source: Trace | dict | str | Path, parameter: str = "trace") -> Trace:
    """A trace from a :class:`Trace`, its dict, JSON text or a file; errors name ``parameter``."""
    if isinstance(source, Trace):
        return source
    try:
        return Trace.from_json(json.dumps(source) if isinstance(source, dict) else source)
    except (ParameterError, TypeError, ValueError) as err:
        raise ParameterError(parameter, f"{_short(source)} is not a stiffviz trace: {err}") from err


def check_matches(trace: Trace, parameter: str = "trace", **run) -> None:
    """Refuse a trace recorded with another model, solver, path or end convention than ``run``."""
    for key in CHECKED_SETTINGS:
        wanted, recorded = run.get(key), trace.config.get(key)
        if key in ("model", "solver") and recorded is None:
            raise ParameterError(parameter, f"the trace's config records no {key}")
        if wanted is not None and recorded is not None and wanted != recorded:
            raise ParameterError(parameter, f"the trace was recorded with {key} {recorded!r}, the run asks for "
                                            f"{key} {wanted!r}; a prescribed grid is for the same {key}")  # fmt: skip


def prescribe(source: Trace | dict | str | Path, rule: str = "lte", target: float = DEFAULT_TARGET,
              parameter: str = "trace") -> Prescription:  # fmt: skip
    """The grid ``rule`` proposes from the recorded run ``source`` (see the module docstring)."""
    if rule not in RULES:
        raise ParameterError("rule", f"must be one of {', '.join(RULES)}, got {rule!r}")
    if not 0 < check_finite("target", target) <= 1:
        raise ParameterError("target", f"must be in (0, 1] (a fraction of the stability boundary), got {target}")
    trace = load_trace(source, parameter)
    levels, steps = _recorded_grid(trace, parameter)
    u = np.log(levels)
    intervals = len(levels) - 1
    if rule == "lte":
        exponent = _exponent(trace, parameter)
        ok, lte = _medians(steps[:intervals], "lte", parameter, "the embedded LTE")
        h = (levels[:-1] - levels[1:])[ok]
        log_c = _log_linear(((u[:-1] + u[1:]) / 2)[ok], np.log(lte[ok]) - exponent * np.log(h))
        density = lambda x: np.exp(log_c(x) / exponent + x)  # noqa: E731

        def measure(grid: np.ndarray) -> np.ndarray:
            return np.exp(log_c(np.log(np.sqrt(grid[:-1] * grid[1:])))) * (grid[:-1] - grid[1:]) ** exponent

        placed, feasible = _equalise(_place(u, density, intervals), log_c, exponent), True
    else:
        boundaries = [float(s["stability_boundary"]) for s in steps[:intervals] if s.get("stability_boundary")]
        if not boundaries:
            raise ParameterError(parameter, "the trace records no stability_boundary on its steps")
        boundary = min(boundaries)
        ok, rho = _medians(steps, "stiffness", parameter, "the secant stiffness ρ̂")
        log_rho = _log_linear(u[: len(steps)][ok], np.log(rho[ok]))

        knots = u[: len(steps)][ok]

        def largest(top: float, bottom: float) -> float:
            """max ρ̂ over a step [e^bottom, e^top]: at its ends or at a knot inside (ln ρ̂ is piecewise linear)."""
            inside = knots[(knots > bottom) & (knots < top)]
            return float(np.exp(log_rho(np.concatenate([[top, bottom], inside]))).max())

        def measure(grid: np.ndarray) -> np.ndarray:
            logs = np.log(grid)
            return np.array([(a - b) * largest(x, y) / boundary for a, b, x, y in zip(grid, grid[1:], logs, logs[1:])])

        placed, feasible = _stable_walk(u, lambda x, y: (np.exp(x) - np.exp(y)) * largest(x, y) / boundary, target)
    sigmas = np.exp(placed)
    sigmas[0], sigmas[-1] = levels[0], levels[-1]  # the ends stay exactly where they were
    return Prescription(tuple(float(s) for s in sigmas), rule, target if rule == "stability" else None, feasible,
                        tuple(measure(sigmas).tolist()), tuple(measure(levels).tolist()))  # fmt: skip


def _short(source) -> str:
    return repr(source) if isinstance(source, (str, Path)) and len(str(source)) < 80 else f"the {type(source).__name__}"


def _recorded_grid(trace: Trace, parameter: str) -> tuple[np.ndarray, list[dict]]:
    """The positive levels of a finished run, and its steps."""
    if trace.status != "ok":
        raise ParameterError(parameter, f"the recorded run {trace.status} ({trace.message}); prescribe from a finished run")
    try:
        levels = np.array(explicit_levels(trace.sigmas), dtype=float)
    except ParameterError as err:
        raise ParameterError(parameter, f"the trace's grid is not usable: {err}") from err
    if len(trace.steps) != len(trace.sigmas) - 1:
        raise ParameterError(parameter, f"the trace has {len(trace.steps)} steps for {len(trace.sigmas)} levels; "
                                        "it must hold every step of its grid")  # fmt: skip
    return levels, trace.steps


def _exponent(trace: Trace, parameter: str) -> int:
    """p + 1, with p the order of the embedded estimate: the solver's order − 1."""
    order = getattr(get_solver(str(trace.config.get("solver"))), "order", None)
    if not order or order < 2:
        raise ParameterError(parameter, f"the solver {trace.config.get('solver')!r} has no embedded error estimate "
                                        "for the lte rule; use the stability rule")  # fmt: skip
    return int(order)


def _medians(steps: list[dict], name: str, parameter: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-step medians over samples of the field ``name``, and where they are finite and > 0."""
    try:
        medians = np.array([np.nanmedian(np.asarray(s[name], dtype=float)) if s.get(name) is not None else np.nan
                            for s in steps], dtype=float)  # fmt: skip
    except (TypeError, ValueError) as err:
        raise ParameterError(parameter, f"the trace's {name!r} values are not numbers") from err
    ok = np.isfinite(medians) & (medians > 0)
    if not ok.any():
        raise ParameterError(parameter, f"the trace records no {name!r} ({what}) on its steps; record the run with "
                                        "the diagnostics on (and, for lte, a solver with an embedded pair)")  # fmt: skip
    return ok, medians


def _log_linear(knots: np.ndarray, values: np.ndarray):
    """x ↦ the piecewise-linear interpolant of (knots, values), extended along its end segments."""
    order = np.argsort(knots)
    k, v = knots[order], values[order]

    def at(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if k.size == 1:
            return np.full_like(x, v[0])
        y = np.interp(x, k, v)
        low, high = x < k[0], x > k[-1]
        y[low] = v[0] + (x[low] - k[0]) * (v[1] - v[0]) / (k[1] - k[0])
        y[high] = v[-1] + (x[high] - k[-1]) * (v[-1] - v[-2]) / (k[-1] - k[-2])
        return y

    return at


def _place(u_levels: np.ndarray, density, intervals: int) -> np.ndarray:
    """Levels (in u, decreasing, ends kept) splitting ∫ n du over [u_{M−1}, u_0] into ``intervals``
    equal parts, n = ``density``, exp-linear across each quadrature cell (exact where ln n is
    piecewise linear with knots among the cells' ends)."""
    lo, hi = u_levels[-1], u_levels[0]
    nodes = np.unique(np.concatenate([np.linspace(lo, hi, FINE_CELLS + 1), u_levels]))
    w0, w1 = density(nodes[:-1]), density(nodes[1:])
    width = np.diff(nodes)
    ratio = np.log(w1 / w0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = width * np.where(np.abs(ratio) < 1e-12, w0, (w1 - w0) / ratio)  # ∫ over a cell: the logarithmic mean
    cumulative = np.concatenate([[0.0], np.cumsum(mass)])
    targets = cumulative[-1] * np.arange(intervals - 1, 0, -1) / intervals
    cell = np.clip(np.searchsorted(cumulative, targets, side="right") - 1, 0, len(mass) - 1)
    rest, slope = targets - cumulative[cell], ratio[cell] / width[cell]  # n = w0·e^{slope·(u − u0)} in the cell
    flat = np.abs(ratio[cell]) < 1e-12
    step = np.where(flat, rest / w0[cell], np.log1p(slope * rest / w0[cell] * ~flat) / np.where(flat, 1.0, slope))
    return np.concatenate([[hi], nodes[cell] + step, [lo]])


def _stable_walk(u: np.ndarray, z_over_b, target: float) -> tuple[np.ndarray, bool]:
    """The stability rule's grid, walked down from σ_0 (levels in u = ln σ, ends kept).

    Each step is the shorter of the longest with ``z_over_b``(u_j, u_{j+1}) ≤ τ and the step that moves
    s levels along the base grid (its level index, linear in ln σ between levels); s ≥ 1 is the
    least for which M − 1 steps reach σ_{M−1}, so where the cap does not bind the steps keep the
    base grid's spacing, stretched by s. If even the caps alone fall short (infeasible), every step
    takes the same z/B = τ′ > τ that lands on σ_{M−1}."""
    intervals, index = len(u) - 1, np.arange(len(u), dtype=float)
    position = lambda x: np.interp(-x, -u, index)  # noqa: E731  (the base grid's level index at u = x)
    level = lambda k: np.interp(k, index, u, right=u[-1])  # noqa: E731

    def capped(top: float, fraction: float) -> float:
        """The lowest level a step from ``top`` may reach with z/B ≤ ``fraction`` (z/B grows with the step)."""
        if z_over_b(top, u[-1]) <= fraction:
            return u[-1]
        low, high = u[-1], top
        for _ in range(50):
            mid = (low + high) / 2
            low, high = (low, mid) if z_over_b(top, mid) <= fraction else (mid, high)
        return high

    def walk(stretch: float, fraction: float) -> np.ndarray:
        out = [u[0]]
        for _ in range(intervals):
            spaced = level(position(out[-1]) + stretch) if np.isfinite(stretch) else -np.inf
            out.append(max(capped(out[-1], fraction), spaced, u[-1]))
        return np.array(out)

    def solve(reaches, low: float, high: float) -> float:
        for _ in range(60):
            mid = (low + high) / 2 if np.isfinite(high) else 2 * low
            low, high = (low, mid) if reaches(mid) else (mid, high)
        return high

    lands = lambda grid: grid[-1] <= u[-1] + 1e-12 and (grid[:-1] > u[-1]).all()  # noqa: E731
    if walk(np.inf, target)[-1] <= u[-1]:
        stretch = 1.0 if lands(walk(1.0, target)) else solve(lambda s: walk(s, target)[-1] <= u[-1], 1.0, float(intervals))
        grid = walk(stretch, target)
        return _land(grid, u), True
    fraction = solve(lambda f: walk(np.inf, f)[-1] <= u[-1], target, np.inf)
    return _land(walk(np.inf, fraction), u), False


def _land(grid: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The walk's levels with the last one exactly on σ_{M−1}."""
    grid = grid.copy()
    grid[-1] = u[-1]
    return grid


def _equalise(u: np.ndarray, log_c, exponent: int, iterations: int = 60) -> np.ndarray:
    """Newton's method from the continuous placement ``u`` (levels in ln σ, ends fixed) to the grid
    whose every step has the same ln C(√(σ_j σ_{j+1})) + k·ln(σ_j − σ_{j+1}) = ln ε (unknowns: the
    interior levels and ln ε). Returns ``u`` unchanged if it does not converge."""
    if len(u) < 3:
        return u

    def residual(levels: np.ndarray) -> np.ndarray:
        sigma = np.exp(levels)
        return log_c((levels[:-1] + levels[1:]) / 2) + exponent * np.log(sigma[:-1] - sigma[1:])

    steps, current = len(u) - 1, u.copy()
    values = residual(current)
    log_eps = values.mean()
    for _ in range(iterations):
        gap = values - log_eps
        if np.abs(gap).max() < 1e-11:
            return current
        sigma, mid = np.exp(current), (current[:-1] + current[1:]) / 2
        h = sigma[:-1] - sigma[1:]
        slope = (log_c(mid + 1e-6) - log_c(mid - 1e-6)) / 2e-6
        jacobian = np.zeros((steps, steps))  # columns: interior levels 1..M−2, then ln ε
        rows = np.arange(steps)
        jacobian[rows[1:], rows[1:] - 1] = slope[1:] / 2 + exponent * sigma[1:-1] / h[1:]
        jacobian[rows[:-1], rows[:-1]] = slope[:-1] / 2 - exponent * sigma[1:-1] / h[:-1]
        jacobian[:, -1] = -1.0
        delta = np.linalg.solve(jacobian, -gap)
        for damping in 0.5 ** np.arange(30):  # keep the levels strictly decreasing
            trial = current.copy()
            trial[1:-1] += damping * delta[:-1]
            if (np.diff(trial) < 0).all():
                break
        else:
            return u
        current, log_eps = trial, log_eps + damping * delta[-1]
        values = residual(current)
    return u
