"""Gaussian probability paths x = s(t)·(x0 + σ(t)·ε): one ODE in other coordinates (docs/math.md §9).

In EDM coordinates y = x/s with noise level σ the probability-flow ODE is dy/dσ = (y − D(y; σ))/σ.
Changing variables to x = s(t)·y and the path's own time t gives (Karras et al. 2022, Algorithm 1)

    dx/dt = f(x, t) = (σ′/σ + s′/s)·x − (σ′·s/σ)·D(x/s; σ(t)).

The sampling loop steps an ODE of the form dx/dt = (x − D̃(x, t))/t, so a path hands it the
path denoiser D̃(x, t) = x − t·f(x, t) = c_x·x + c_d·D(x/s; σ) with c_x = 1 − t(σ′/σ + s′/s) and
c_d = t·σ′·s/σ; every solver, ρ̂, ERK-Guid and eigenvalue then runs unchanged with t in σ's place.
Its drift Jacobian is J_path = σ′·J_edm(x/s; σ) + (s′/s)·I.

Paths (``PATHS``):

* ``edm``: s = 1, σ = t (D̃ = D).
* ``vp``: the VP-SDE's linear β schedule (Song et al. 2021; Karras et al. 2022, Table 1),
  σ(t) = √(exp(½β_d t² + β_min t) − 1), s(t) = 1/√(1 + σ²), β_min = 0.1, β_d = 19.9, t ∈ (0, 1];
  its inverse is t(σ) = (√(β_min² + 2β_d·ln(1 + σ²)) − β_min)/β_d.
* ``flow``: rectified flow x_t = (1 − t)·x0 + t·ε, s = 1 − t, σ = t/(1 − t), t(σ) = σ/(1 + σ);
  D̃ = D(x/(1 − t); t/(1 − t)) exactly (c_x = 0, c_d = 1), so (x − D̃)/t is the velocity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import ParameterError
from .schedules import flow_times, make_schedule, uniform_times

PATHS = ("edm", "vp", "flow")
VP_BETA_MIN, VP_BETA_D = 0.1, 19.9


@dataclass(frozen=True)
class Path:
    """A Gaussian path by name: σ(t), s(t), their derivatives, and the inverse t(σ)."""

    name: str

    def __post_init__(self):
        if self.name not in PATHS:
            raise ParameterError("path", f"must be one of {', '.join(PATHS)}, got {self.name!r}")

    def sigma(self, t: float) -> tuple[float, float]:
        """(σ(t), dσ/dt)."""
        if self.name == "edm":
            return t, 1.0
        if self.name == "flow":
            return t / (1 - t), 1 / (1 - t) ** 2
        exponent = 0.5 * VP_BETA_D * t * t + VP_BETA_MIN * t
        sigma = math.sqrt(math.expm1(exponent))
        return sigma, (VP_BETA_D * t + VP_BETA_MIN) * math.exp(exponent) / (2 * sigma)

    def log_scale_rate(self, t: float) -> float:
        """s′/s, the shift this path adds to every eigenvalue of the drift Jacobian."""
        if self.name == "edm":
            return 0.0
        if self.name == "flow":
            return -1 / (1 - t)
        return -0.5 * (VP_BETA_D * t + VP_BETA_MIN)

    def scale(self, t: float) -> float:
        """s(t)."""
        if self.name == "flow":
            return 1 - t
        return 1.0 if self.name == "edm" else 1 / math.sqrt(1 + self.sigma(t)[0] ** 2)

    def noise_std(self, t: float) -> float:
        """s(t)·σ(t), the standard deviation of the initial state at t (flow: t, so t = 1 is pure noise)."""
        if self.name in ("edm", "flow"):
            return t
        sigma = self.sigma(t)[0]
        return sigma / math.sqrt(1 + sigma * sigma)

    def time(self, sigmas: torch.Tensor) -> torch.Tensor:
        """t(σ) elementwise; σ = 0 gives t = 0."""
        if self.name == "edm":
            return sigmas.clone()
        if self.name == "flow":
            return flow_times(sigmas)
        return (torch.sqrt(VP_BETA_MIN**2 + 2 * VP_BETA_D * torch.log1p(sigmas * sigmas)) - VP_BETA_MIN) / VP_BETA_D

    def coefficients(self, t: float) -> tuple[float, float, float, float]:
        """(c_x, c_d, s, σ) of D̃(x, t) = c_x·x + c_d·D(x/s; σ); flow and EDM have c_x = 0, c_d = 1."""
        sigma, rate = self.sigma(t)
        s = self.scale(t)
        if self.name in ("edm", "flow"):
            return 0.0, 1.0, s, sigma
        return 1 - t * (rate / sigma + self.log_scale_rate(t)), t * rate * s / sigma, s, sigma


@dataclass(frozen=True)
class PathDenoiser:
    """D̃(x, t) = c_x·x + c_d·D(x/s(t); σ(t)) for an EDM denoiser D (a guided denoiser), with its
    Jacobian-vector product and (where D has one) analytic Jacobian ∂D̃/∂x = c_x·I + (c_d/s)·∂D/∂y.
    ``t`` is a float, as the sampling loop passes it."""

    inner: object
    path: Path

    @property
    def calls(self) -> int:
        return self.inner.calls

    @property
    def has_jacobian(self) -> bool:
        return getattr(self.inner, "has_jacobian", False)

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        c_x, c_d, s, sigma = self.path.coefficients(float(t))
        denoised = self.inner(x / s, sigma)
        return c_d * denoised if c_x == 0.0 else c_x * x + c_d * denoised

    def jvp(self, x: torch.Tensor, t: float, v: torch.Tensor) -> torch.Tensor:
        c_x, c_d, s, sigma = self.path.coefficients(float(t))
        return c_x * v + (c_d / s) * self.inner.jvp(x / s, sigma, v)

    def jacobian(self, x: torch.Tensor, t: float) -> torch.Tensor:
        c_x, c_d, s, sigma = self.path.coefficients(float(t))
        inner = self.inner.jacobian(x / s, sigma)
        d = inner.shape[-1]
        return c_x * torch.eye(d, dtype=inner.dtype, device=inner.device) + (c_d / s) * inner


def path_denoiser(denoise, path: str, native: str = "edm"):
    """The denoiser the loop integrates for ``path``: ``denoise`` itself where the path is the
    model's own (``native``), else :class:`PathDenoiser` around the EDM denoiser ``denoise``."""
    return denoise if path == native else PathDenoiser(denoise, Path(path))



def path_grid(path: str, schedule: str, steps: int, sigma_min: float, sigma_max: float, rho: float,
              shift: float = 1.0) -> torch.Tensor:  # fmt: skip
    """The times t_0 > … > t_N = 0 the loop steps along on ``path``: a σ schedule (Karras, log-SNR)
    mapped through t(σ), so every path sees the same σ's, or ``uniform`` in the path's own time
    between t(σ_max) and t(σ_min) (with ``shift`` for flow)."""
    path_ = Path(path)
    if shift != 1.0 and (path != "flow" or schedule != "uniform"):
        raise ParameterError("shift", f"applies to the flow path's uniform grid only (path flow, schedule uniform); "
                                      f"got path {path!r}, schedule {schedule!r}")  # fmt: skip
    if schedule == "uniform":
        ends = path_.time(torch.tensor([sigma_min, sigma_max], dtype=torch.float64)).tolist()
        return uniform_times(steps, ends[0], ends[1], shift)
    return path_.time(make_schedule(schedule, steps, sigma_min, sigma_max, rho))


def gaussian_eigenvalue(path: str, t: float, variance: float) -> float:
    """λ of the path drift's Jacobian at time t for data N(0, variance·I), where D(y; σ) =
    variance/(variance + σ²)·y and J_edm = σ/(variance + σ²)·I: λ = σ′·σ/(variance + σ²) + s′/s."""
    path_ = Path(path)
    sigma, rate = path_.sigma(t)
    return rate * sigma / (variance + sigma * sigma) + path_.log_scale_rate(t)
