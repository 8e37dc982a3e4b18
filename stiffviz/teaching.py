"""Small exact examples that teach stiffness (the app's Learn tab), computed by the sampler's own code.

Time and σ. The engine integrates dx/dσ = f(x; σ) with σ decreasing. With t = σ_0 − σ and a
linear drift f(x; σ) = A x (denoiser D(x; σ) = x − σ A x, so f = (x − D)/σ = A x exactly),
choosing A = −M gives dy/dt = M y. The grid is σ_i = 1 + (N − i) h, i = 0..N: N steps of
size h = σ_i − σ_{i+1} > 0 in t, ending at σ = 1 so that the loop never takes its special
Euler step to σ = 0. Every state comes from :func:`stiffviz.sampler.integrate` with the
solver of :func:`stiffviz.solvers.get_solver`; nothing here re-implements a step.

The test equation y' = λy with complex λ = a + ib is the real system (Re y, Im y)' =
[[a, −b], [b, a]] (Re y, Im y). A Runge–Kutta step maps y_n to y_{n+1} = R(z) y_n with
z = hλ and R the method's stability function, so the measured growth |y_{n+1}/y_n| must
equal ``solver.amplification(z)`` = |R(z)|, while the exact solution grows by |e^z| = e^{Re z}.

Solvers. :data:`TEACHING_SOLVERS` are the fixed-tableau ones (euler, heun, bosh3, rk4), for
which that identity holds exactly. DPM-Solver-2 and DPM-Solver++(2M) are left out: their
steps depend on σ itself, not only on h (DPM-Solver-2's midpoint weight
c = √σ_i/(√σ_i + √σ_{i+1}); DPM-Solver++(2M)'s exponential weights in log σ and its
two-step memory), so on the test equation their growth per step is not a function of z
alone, and their ``amplification`` is a nominal value (c = ½, resp. Adams–Bashforth 2 for
h ≪ σ), not what the step does on this grid.
"""

from __future__ import annotations

import cmath
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .diagnostics.secant import abs_cosine
from .errors import ParameterError, check_finite
from .sampler import integrate
from .solvers import Solver, StepResult, get_solver

TEACHING_SOLVERS = ("euler", "heun", "bosh3", "rk4")
SIGMA_END = 1.0  # the σ grid ends here, above 0
MAX_STEPS = 200
H_MAX = 10.0
LAMBDA_MAX = 1000.0  # bound on |λ|
Z_MAX = 10.0  # bound on h|λ|: every stability boundary here is below 3
DENSE_PER_STEP = 20  # points per step of the smooth exact curve


# ------------------------------------------------------------------ input checks
def as_number(parameter: str, value: object) -> float:
    """``float(value)``, or :class:`ParameterError` naming ``parameter`` if it is no finite number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(parameter, f"must be a number, got {value!r}") from None
    return check_finite(parameter, number)


def _complex(parameter: str, value: object) -> complex:
    try:
        number = complex(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(parameter, f"must be a number, got {value!r}") from None
    if not cmath.isfinite(number):
        raise ParameterError(parameter, f"must be a finite number, got {number}")
    return number


def _steps(value: object) -> int:
    steps = as_number("steps", value)
    if steps != int(steps) or not 1 <= steps <= MAX_STEPS:
        raise ParameterError("steps", f"must be an integer in [1, {MAX_STEPS}], got {value!r}")
    return int(steps)


def _step_size(value: object, rate: float, rate_name: str) -> float:
    """h in (0, H_MAX] with h·rate ≤ Z_MAX (rate = |λ| of the fastest mode)."""
    h = as_number("h", value)
    if not 0.0 < h <= H_MAX:
        raise ParameterError("h", f"must be in (0, {H_MAX:g}], got {h:g}")
    if h * rate > Z_MAX:
        raise ParameterError("h", f"h·{rate_name} = {h * rate:.4g} must be ≤ {Z_MAX:g}, "
                                  f"so h ≤ {Z_MAX / rate:.4g} here; got h = {h:g}")  # fmt: skip
    return h


def _solver(name: object) -> Solver:
    if name not in TEACHING_SOLVERS:
        raise ParameterError("solver", f"must be one of {', '.join(TEACHING_SOLVERS)} (the fixed-tableau solvers, "
                                       f"whose step on y' = λy is y ← R(hλ) y), got {name!r}")  # fmt: skip
    return get_solver(name)


# ------------------------------------------------------------------ the sampler on y' = M y
class _Recorder:
    """A solver that keeps every :class:`StepResult` it returns (for the error vectors e_i)."""

    def __init__(self, solver: Solver):
        self.solver, self.steps = solver, []

    def __getattr__(self, name: str):
        return getattr(self.solver, name)

    def step(self, evaluate, first, sigma_next, history) -> StepResult:
        result = self.solver.step(evaluate, first, sigma_next, history)
        self.steps.append(result)
        return result


@dataclass(frozen=True)
class _Run:
    t: np.ndarray  # (n+1,) t_i = σ_0 − σ_i
    states: np.ndarray  # (n+1, d)
    estimates: np.ndarray | None  # (n, d) embedded e_i, None without a pair
    secant_z: np.ndarray  # (n,) the sampler's z = |h|ρ̂, NaN where it has no pair
    message: str  # why the run stopped early, or ""


def _integrate_linear(drift: np.ndarray, x0: np.ndarray, h: float, steps: int, solver: str) -> _Run:
    """Run :func:`integrate` on f(x; σ) = A x (``drift`` = A) over σ_i = 1 + (N − i) h, in float64."""
    A = torch.as_tensor(drift, dtype=torch.float64)
    sigmas = SIGMA_END + h * torch.arange(steps, -1, -1, dtype=torch.float64)
    states = [torch.as_tensor(x0, dtype=torch.float64).reshape(1, -1)]
    recorder = _Recorder(get_solver(solver))
    _, trace = integrate(lambda x, sigma: x - sigma * (x @ A.T), sigmas, states[0], recorder,  # type: ignore[arg-type]
                         on_step=lambda record, x, denoised: states.append(x), config={"batch": 1})  # fmt: skip
    n = len(states) - 1  # a non-finite state stops the loop before on_step
    t = (sigmas[0] - sigmas[: n + 1]).numpy()
    estimates = None
    if recorder.steps[0].error is not None:
        estimates = np.array([s.error[0].numpy() for s in recorder.steps[:n]]).reshape(n, -1)
    message = "" if n == steps else f"the numerical solution overflowed in step n = {n}; the charts stop at t = {t[-1]:.4g}"
    return _Run(t, torch.cat(states).numpy(), estimates, trace.column("stiffness_z")[:n, 0], message)


def _dense_times(t: np.ndarray) -> np.ndarray:
    return np.linspace(0.0, t[-1], DENSE_PER_STEP * (len(t) - 1) + 1)


# ------------------------------------------------------------------ (a) the test equation
@dataclass(frozen=True)
class ScalarExample:
    """y' = λy, y(0) = y0, stepped by ``solver`` with step h (results of :func:`test_equation`).

    Attributes:
        z: hλ.  amplification: |R(z)| from ``solver.amplification``.  exact_growth: |e^z|.
        boundary: the solver's real-axis stability boundary (stable for z ∈ [−boundary, 0]).
        t: t_n = n h (from the σ grid), n = 0..steps.  y, y_exact: numerical y_n and y0·e^{λ t_n}.
        t_dense, y_dense: the exact solution on a fine grid, for drawing.
        growth: |y_{n+1}/y_n| per step, measured from the stepping code.
        secant_z: per step the sampler's stiffness estimate z = |h|ρ̂ (NaN where it has no pair).
        message: why the run stopped early (overflow), or "".
    """

    solver: str
    lam: complex
    h: float
    z: complex
    amplification: float
    exact_growth: float
    boundary: float
    t: np.ndarray
    y: np.ndarray
    y_exact: np.ndarray
    t_dense: np.ndarray
    y_dense: np.ndarray
    growth: np.ndarray
    secant_z: np.ndarray
    message: str

    @property
    def stable(self) -> bool:
        """|R(z)| ≤ 1: the numerical solution does not grow."""
        return self.amplification <= 1.0

    @property
    def max_error(self) -> float:
        """max_n |y_n − y0 e^{λ t_n}|."""
        return float(np.max(np.abs(self.y - self.y_exact)))


def test_equation(lam: complex, h: float, steps: int, solver: str, y0: complex = 1) -> ScalarExample:
    """Integrate y' = λy with the sampler's loop, as the real system [[a, −b], [b, a]] for λ = a + ib.

    Limits: Re λ ≤ 0, |λ| ≤ 1000, 0 < h ≤ 10 with h|λ| ≤ 10, steps in [1, 200], y0 ≠ 0,
    ``solver`` in :data:`TEACHING_SOLVERS`; otherwise :class:`ParameterError`.
    """
    lam, y0 = _complex("lam", lam), _complex("y0", y0)
    if lam.real > 0:
        raise ParameterError("lam", f"real part must be ≤ 0 (a solution that decays or oscillates), got {lam:g}")
    if abs(lam) > LAMBDA_MAX:
        raise ParameterError("lam", f"|λ| must be ≤ {LAMBDA_MAX:g}, got {abs(lam):g}")
    if y0 == 0:
        raise ParameterError("y0", "must be non-zero (the growth |y_{n+1}/y_n| is a ratio)")
    h, steps, method = _step_size(h, abs(lam), "|λ|"), _steps(steps), _solver(solver)
    a, b = lam.real, lam.imag
    run = _integrate_linear(-np.array([[a, -b], [b, a]]), np.array([y0.real, y0.imag]), h, steps, solver)
    y = run.states[:, 0] + 1j * run.states[:, 1]
    t_dense = _dense_times(run.t)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.abs(y[1:] / y[:-1])
    z = h * lam
    return ScalarExample(solver, lam, h, z, float(method.amplification(np.array(z))), abs(cmath.exp(z)),
                         method.stability_boundary, run.t, y, y0 * np.exp(lam * run.t), t_dense,
                         y0 * np.exp(lam * t_dense), growth, run.secant_z, run.message)  # fmt: skip


test_equation.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one


# ------------------------------------------------------------------ (b) a stiff 2-D system
@dataclass(frozen=True)
class StiffSystemExample:
    """y' = M y with M = R(θ) diag(λ_stiff, λ_slow) R(θ)ᵀ (results of :func:`stiff_system`).

    Attributes:
        matrix: M.  v_stiff, v_slow: its unit eigenvectors (cos θ, sin θ), (−sin θ, cos θ).
        z_stiff, z_slow: hλ_stiff, hλ_slow; amplification_stiff/_slow: |R(z)| of each mode.
        t, y, y_exact: t_n, numerical y_n (n+1, 2) and e^{t_n M} y_0.  t_dense, y_dense: exact, fine grid.
        lte_exact: per step ℓ_n = e^{hM} y_n − y_{n+1} (n, 2), the exact one-step error from y_n.
        lte_estimate: per step the solver's embedded estimate e_n = x_high − x_low (n, 2), or
            None for solvers without an embedded pair (euler, rk4): then only ℓ_n is shown.
        cos_exact, cos_estimate: |cos(ℓ_n, v_stiff)|, |cos(e_n, v_stiff)| (None without a pair).
        secant_z: the sampler's z = |h|ρ̂ per step (NaN where it has no pair).
    """

    solver: str
    h: float
    lam_stiff: float
    lam_slow: float
    angle: float
    boundary: float
    matrix: np.ndarray
    v_stiff: np.ndarray
    v_slow: np.ndarray
    z_stiff: float
    z_slow: float
    amplification_stiff: float
    amplification_slow: float
    t: np.ndarray
    y: np.ndarray
    y_exact: np.ndarray
    t_dense: np.ndarray
    y_dense: np.ndarray
    lte_exact: np.ndarray
    lte_estimate: np.ndarray | None
    cos_exact: np.ndarray
    cos_estimate: np.ndarray | None
    secant_z: np.ndarray
    message: str

    @property
    def stable(self) -> bool:
        """Both modes inside the stability region: |R(hλ_stiff)| ≤ 1 and |R(hλ_slow)| ≤ 1."""
        return max(self.amplification_stiff, self.amplification_slow) <= 1.0

    @property
    def max_error(self) -> float:
        """max_n ‖y_n − e^{t_n M} y_0‖."""
        return float(np.max(np.linalg.norm(self.y - self.y_exact, axis=1)))


def _propagate(matrix: np.ndarray, times: np.ndarray, states: np.ndarray) -> np.ndarray:
    """e^{τ_k M} s_k for each row k (torch.linalg.matrix_exp)."""
    exp = torch.linalg.matrix_exp(torch.as_tensor(times[:, None, None] * matrix, dtype=torch.float64))
    return (exp @ torch.as_tensor(states, dtype=torch.float64)[..., None])[..., 0].numpy()


def _alignment(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """|cos(u_n, v)| per row, by the sampler's :func:`abs_cosine`."""
    u = torch.as_tensor(vectors, dtype=torch.float64)
    return abs_cosine(u, torch.as_tensor(direction, dtype=torch.float64).expand_as(u)).numpy()


def stiff_system(lam_stiff: float, lam_slow: float, angle: float, h: float, steps: int, solver: str,
                 x0: Sequence[float] = (1.0, 1.0)) -> StiffSystemExample:  # fmt: skip
    """Integrate y' = M y, M = R(angle) diag(λ_stiff, λ_slow) R(angle)ᵀ, with the sampler's loop.

    For a linear system the step is y_{n+1} = R(hM) y_n, so ℓ_n = (e^{hM} − R(hM)) y_n: in
    eigen-coordinates its stiff component carries e^{hλ_stiff} − R(hλ_stiff), of order one as
    h|λ_stiff| nears the stability boundary, and the error turns towards v_stiff.
    ``angle`` in radians. Limits: λ_stiff < λ_slow < 0, |λ_stiff| ≤ 1000, 0 < h ≤ 10 with
    h|λ_stiff| ≤ 10, steps in [1, 200], x0 two finite numbers, not both 0.
    """
    lam_stiff, lam_slow = as_number("lam_stiff", lam_stiff), as_number("lam_slow", lam_slow)
    angle = as_number("angle", angle)
    if not lam_slow < 0:
        raise ParameterError("lam_slow", f"must be < 0, got {lam_slow:g}")
    if not -LAMBDA_MAX <= lam_stiff < lam_slow:
        raise ParameterError("lam_stiff", f"must be in [−{LAMBDA_MAX:g}, lam_slow = {lam_slow:g}) "
                                          f"(the stiff eigenvalue is the more negative one), got {lam_stiff:g}")  # fmt: skip
    if len(x0) != 2:
        raise ParameterError("x0", f"must have 2 components, got {len(x0)}")
    start = np.array([as_number("x0", v) for v in x0])
    if not start.any():
        raise ParameterError("x0", "must not be (0, 0)")
    h, steps, method = _step_size(h, -lam_stiff, "|λ_stiff|"), _steps(steps), _solver(solver)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation @ np.diag([lam_stiff, lam_slow]) @ rotation.T
    run = _integrate_linear(-matrix, start, h, steps, solver)
    n = len(run.t) - 1
    lte = _propagate(matrix, np.diff(run.t), run.states[:-1]) - run.states[1:]
    t_dense = _dense_times(run.t)
    v_stiff = rotation[:, 0]
    cos_estimate = None if run.estimates is None else _alignment(run.estimates, v_stiff)
    z_stiff, z_slow = h * lam_stiff, h * lam_slow
    return StiffSystemExample(
        solver, h, lam_stiff, lam_slow, angle, method.stability_boundary, matrix, v_stiff, rotation[:, 1],
        z_stiff, z_slow, float(method.amplification(np.array(z_stiff))), float(method.amplification(np.array(z_slow))),
        run.t, run.states, _propagate(matrix, run.t, np.tile(start, (n + 1, 1))),
        t_dense, _propagate(matrix, t_dense, np.tile(start, (len(t_dense), 1))),
        lte, run.estimates, _alignment(lte, v_stiff), cos_estimate, run.secant_z, run.message,
    )  # fmt: skip
