"""Noise-level schedules σ_0 > σ_1 > … > σ_{N−1} > σ_N = 0 (docs/math.md §1).

* Karras et al. (EDM): σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ.
* log-SNR uniform: log σ_i linear between log σ_max and log σ_min (σ = e^{−λ/2}, λ the log-SNR).
* uniform: linear in the time of the path the loop steps in (σ for EDM; VP's and flow's own t,
  with a shift for flow: docs/math.md §9, :mod:`stiffviz.paths`).

Each appends σ_N = 0, so ``steps`` noise levels give ``steps`` solver steps.
"""

from __future__ import annotations

import math

import torch

from .errors import ParameterError, check_finite

SCHEDULES = ("karras", "logsnr", "uniform")


def _check(steps: int, sigma_min: float, sigma_max: float) -> int:
    """Validate the common arguments; return ``steps`` as an int."""
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 1:
        raise ParameterError("steps", f"must be an integer ≥ 1, got {steps}")
    steps = int(steps)
    check_finite("sigma_min", sigma_min)
    check_finite("sigma_max", sigma_max)
    if sigma_min <= 0:
        raise ParameterError("sigma_min", f"must be > 0, got {sigma_min}")
    if sigma_min >= sigma_max:
        raise ParameterError("sigma_min", f"must be < sigma_max = {sigma_max}, got {sigma_min}")
    return steps


def _with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM schedule with ``steps`` positive levels and the appended 0, float64, shape (steps + 1,).

    With a single step the only positive level is σ_max.
    """
    steps = _check(steps, sigma_min, sigma_max)
    if check_finite("rho", rho) <= 0:
        raise ParameterError("rho", f"must be > 0, got {rho}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_zero((hi + ramp * (lo - hi)) ** rho)


def logsnr(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """Uniform in log σ (hence in log-SNR = −2 log σ), with the appended 0, float64."""
    steps = _check(steps, sigma_min, sigma_max)
    if steps == 1:
        return _with_zero(torch.tensor([sigma_max], dtype=torch.float64))
    return _with_zero(torch.logspace(math.log10(sigma_max), math.log10(sigma_min), steps, dtype=torch.float64))


def flow_times(sigmas: torch.Tensor) -> torch.Tensor:
    """The flow times t = σ/(1 + σ) of an EDM σ grid (docs/math.md §9): x_t = (1 − t)·x_edm,
    so a flow-matching model can be sampled on the same grid; σ = 0 stays t = 0."""
    return sigmas / (1 + sigmas)


def uniform_times(steps: int, t_min: float, t_max: float, shift: float = 1.0) -> torch.Tensor:
    """``steps`` times from t_max down to t_min, uniform in the unshifted time u, then shifted
    t = shift·u/(1 + (shift − 1)·u) as diffusers' FlowMatchEulerDiscreteScheduler does (for the
    flow path this multiplies σ = t/(1 − t) by ``shift``; shift ≠ 1 needs t < 1); the endpoints
    are kept and the final 0 appended. With shift = 1 it is uniform in t (σ for EDM)."""
    steps = _check(steps, t_min, t_max)
    if check_finite("shift", shift) <= 0:
        raise ParameterError("shift", f"must be > 0, got {shift}")
    if shift != 1.0 and t_max >= 1:
        raise ParameterError("shift", f"applies to flow times t < 1 only (the flow path's uniform grid), got t_max = {t_max}")
    u_max, u_min = (t / (shift - (shift - 1) * t) for t in (t_max, t_min))
    u = torch.linspace(u_max, u_min, steps, dtype=torch.float64) if steps > 1 else torch.tensor([u_max], dtype=torch.float64)
    return _with_zero(shift * u / (1 + (shift - 1) * u))


def make_schedule(
    name: str, steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> torch.Tensor:
    """Schedule by name (``karras``, ``logsnr`` or ``uniform`` in σ); ``rho`` is used by ``karras`` only."""
    if name == "karras":
        return karras(steps, sigma_min, sigma_max, rho)
    if name == "logsnr":
        return logsnr(steps, sigma_min, sigma_max)
    if name == "uniform":
        return uniform_times(steps, sigma_min, sigma_max)
    raise ParameterError("schedule", f"must be one of {', '.join(SCHEDULES)}, got {name!r}")


def explicit_levels(sigmas, max_levels: int = 1000) -> tuple[float, ...]:
    """An explicit grid given by the user, checked: finite numbers, strictly decreasing, positive
    except for a final 0, at most ``max_levels`` positive levels. Returned as a tuple of floats
    without the final 0 (``explicit_grid`` appends it)."""
    if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__len__"):
        raise ParameterError("sigmas", f"must be a sequence of numbers, got {type(sigmas).__name__}")
    try:
        values = [float(v) for v in (sigmas.tolist() if hasattr(sigmas, "tolist") else sigmas)]
    except (TypeError, ValueError) as err:
        raise ParameterError("sigmas", f"must be numbers, got {list(sigmas)[:5]!r}") from err
    if values and values[-1] == 0.0:
        values = values[:-1]
    if not 1 <= len(values) <= max_levels:
        raise ParameterError("sigmas", f"must hold 1 to {max_levels} positive levels (a final 0 is optional), got {len(values)}")
    for n, value in enumerate(values):
        if not math.isfinite(value) or value <= 0:
            raise ParameterError("sigmas", f"level {n} must be a finite number > 0 (only the last may be 0), got {value}")
    for n, (a, b) in enumerate(zip(values, values[1:])):
        if b >= a:
            raise ParameterError("sigmas", f"must be strictly decreasing; level {n + 1} = {b} is not < level {n} = {a}")
    return tuple(values)


def explicit_grid(sigmas) -> torch.Tensor:
    """The loop's grid from an explicit list of levels: checked by ``explicit_levels``, float64,
    with the final 0 appended."""
    return _with_zero(torch.tensor(explicit_levels(sigmas), dtype=torch.float64))
