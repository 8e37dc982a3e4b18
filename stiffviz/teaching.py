"""Small exact examples that teach stiffness (the app's Learn tab), computed by the sampler's own code.

Time and σ. The engine integrates dx/dσ = f(x; σ) with σ decreasing. With t = σ_0 − σ and a
linear drift f(x; σ) = A x (denoiser D(x; σ) = x − σ A x, so f = (x − D)/σ = A x exactly),
choosing A = −M gives dy/dt = M y. The grid is σ_i = 1 + (N − i) h, i = 0..N: N steps of
size h = σ_i − σ_{i+1} > 0 in t, ending at σ = 1 so that the loop never takes its special
Euler step to σ = 0. Every state comes from :func:`stiffviz.sampler.integrate` with the
solver of :func:`stiffviz.solvers.get_solver`; nothing here re-implements a step.
:func:`alignment_sweep` runs many step sizes h_k in one call, as the batch rows y' = (h_k M) y
with step 1 (the same steps, since the drift does not depend on t).

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
import math
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
    """B runs side by side (batch row b: drift A_b, start x0_b), n ≤ steps steps each."""

    t: np.ndarray  # (n+1,) t_i = σ_0 − σ_i
    states: np.ndarray  # (B, n+1, d)
    estimates: np.ndarray | None  # (B, n, d) embedded e_i, None without a pair
    secant_z: np.ndarray  # (B, n) the sampler's z = |h|ρ̂, NaN where it has no pair (or diagnostics off)
    message: str  # why the run stopped early, or ""


def _integrate_linear(drift: np.ndarray, x0: np.ndarray, h: float, steps: int, solver: str,
                      diagnostics: bool = True) -> _Run:  # fmt: skip
    """Run :func:`integrate` on f(x; σ) = A x over σ_i = 1 + (N − i) h, in float64.

    ``drift`` is A (d, d) or a batch (B, d, d) with ``x0`` (B, d): one run per batch row, all
    in one call of the loop (the sampler's batch axis). A non-finite state in any row stops all.
    """
    A = torch.as_tensor(drift, dtype=torch.float64)
    sigmas = SIGMA_END + h * torch.arange(steps, -1, -1, dtype=torch.float64)
    x = torch.as_tensor(x0, dtype=torch.float64)
    x = x.reshape(-1, A.shape[-1]) if A.dim() == 2 else x
    states = [x]
    recorder = _Recorder(get_solver(solver))
    _, trace = integrate(lambda x, sigma: x - sigma * (A @ x[..., None])[..., 0], sigmas, x, recorder,  # type: ignore[arg-type]
                         diagnostics=diagnostics, on_step=lambda record, x, denoised: states.append(x),
                         config={"batch": x.shape[0]})  # fmt: skip
    n = len(states) - 1  # a non-finite state stops the loop before on_step
    t = (sigmas[0] - sigmas[: n + 1]).numpy()
    stacked = torch.stack(states, dim=1).numpy()  # (B, n+1, d)
    estimates = None
    if recorder.steps[0].error is not None:
        errors = [s.error for s in recorder.steps[:n]]
        estimates = torch.stack(errors, dim=1).numpy() if n else np.zeros((x.shape[0], 0, x.shape[1]))
    message = "" if n == steps else f"the numerical solution overflowed in step n = {n}; the charts stop at t = {t[-1]:.4g}"
    return _Run(t, stacked, estimates, trace.column("stiffness_z")[:n].T, message)


def _one_step_errors(step_exp: np.ndarray, states: np.ndarray) -> np.ndarray:
    """ℓ_i = e^{hM} y_i − y_{i+1} per row: ``step_exp`` (B, d, d) = e^{h_b M}, ``states`` (B, n+1, d) → (B, n, d)."""
    return np.einsum("bij,bnj->bni", step_exp, states[:, :-1]) - states[:, 1:]


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
    y = run.states[0, :, 0] + 1j * run.states[0, :, 1]
    t_dense = _dense_times(run.t)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.abs(y[1:] / y[:-1])
    z = h * lam
    return ScalarExample(solver, lam, h, z, float(method.amplification(np.array(z))), abs(cmath.exp(z)),
                         method.stability_boundary, run.t, y, y0 * np.exp(lam * run.t), t_dense,
                         y0 * np.exp(lam * t_dense), growth, run.secant_z[0], run.message)  # fmt: skip


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


def _system(lam_stiff: object, lam_slow: object, angle: object,
            x0: Sequence[float]) -> tuple[float, float, float, np.ndarray, np.ndarray]:  # fmt: skip
    """Checked (λ_stiff, λ_slow, angle, rotation R(angle), y_0) of :func:`stiff_system` and :func:`alignment_sweep`."""
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
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return lam_stiff, lam_slow, angle, rotation, start


def _matrix(rotation: np.ndarray, lam_stiff: float, lam_slow: float) -> np.ndarray:
    return rotation @ np.diag([lam_stiff, lam_slow]) @ rotation.T


def _step_exp(matrix: np.ndarray, h: np.ndarray) -> np.ndarray:
    """e^{h_b M} for each step size h_b (torch.linalg.matrix_exp), shape (B, d, d)."""
    return torch.linalg.matrix_exp(torch.as_tensor(np.asarray(h)[:, None, None] * matrix, dtype=torch.float64)).numpy()


def stiff_system(lam_stiff: float, lam_slow: float, angle: float, h: float, steps: int, solver: str,
                 x0: Sequence[float] = (1.0, 1.0)) -> StiffSystemExample:  # fmt: skip
    """Integrate y' = M y, M = R(angle) diag(λ_stiff, λ_slow) R(angle)ᵀ, with the sampler's loop.

    For a linear system the step is y_{n+1} = R(hM) y_n, so ℓ_n = (e^{hM} − R(hM)) y_n: in
    eigen-coordinates its stiff component carries e^{hλ_stiff} − R(hλ_stiff), of order one as
    h|λ_stiff| nears the stability boundary, and the error turns towards v_stiff (how far, for
    every h at once: :func:`alignment_sweep`).
    ``angle`` in radians. Limits: λ_stiff < λ_slow < 0, |λ_stiff| ≤ 1000, 0 < h ≤ 10 with
    h|λ_stiff| ≤ 10, steps in [1, 200], x0 two finite numbers, not both 0.
    """
    lam_stiff, lam_slow, angle, rotation, start = _system(lam_stiff, lam_slow, angle, x0)
    h, steps, method = _step_size(h, -lam_stiff, "|λ_stiff|"), _steps(steps), _solver(solver)
    matrix = _matrix(rotation, lam_stiff, lam_slow)
    run = _integrate_linear(-matrix, start, h, steps, solver)
    n = len(run.t) - 1
    states = run.states[0]
    lte = _one_step_errors(_step_exp(matrix, np.array([h])), run.states)[0]
    estimates = None if run.estimates is None else run.estimates[0]
    t_dense = _dense_times(run.t)
    v_stiff = rotation[:, 0]
    cos_estimate = None if estimates is None else _alignment(estimates, v_stiff)
    z_stiff, z_slow = h * lam_stiff, h * lam_slow
    return StiffSystemExample(
        solver, h, lam_stiff, lam_slow, angle, method.stability_boundary, matrix, v_stiff, rotation[:, 1],
        z_stiff, z_slow, float(method.amplification(np.array(z_stiff))), float(method.amplification(np.array(z_slow))),
        run.t, states, _propagate(matrix, run.t, np.tile(start, (n + 1, 1))),
        t_dense, _propagate(matrix, t_dense, np.tile(start, (len(t_dense), 1))),
        lte, estimates, _alignment(lte, v_stiff), cos_estimate, run.secant_z[0], run.message,
    )  # fmt: skip


# ------------------------------------------------------------------ (c) the alignment against h|λ_stiff|
SWEEP_Z_MIN = 0.05  # the smallest h|λ_stiff| swept (unless the chosen h is smaller)
SWEEP_MAX_STEPS = 600  # at most this many steps per run: the cost of one sweep (one batched loop)
SWEEP_BEYOND = 1.1  # the sweep ends at this multiple of the solver's real-axis stability boundary
SWEEP_POINTS = 40


@dataclass(frozen=True)
class AlignmentSweep:
    """|cos(error, v_stiff)| of y' = M y for many step sizes over one duration (:func:`alignment_sweep`).

    Attributes:
        duration: T = steps·h of the chosen run; every run of the sweep covers [0, T] exactly.
        h_chosen, z_chosen: the chosen h and h|λ_stiff|.  boundary: the solver's real-axis boundary.
        z: h_k|λ_stiff| per run (ascending).  h: h_k = T/N_k.  steps: N_k.
        chosen: index of the chosen h in these arrays, or None when it lies beyond the swept range.
        median_exact, last_exact: median over the N_k steps and last-step value of |cos(ℓ_n, v_stiff)|.
        median_estimate, last_estimate: the same for the embedded estimate e_n (None without a pair).
        message: "" or why some runs have NaN (their states overflowed).
    """

    solver: str
    lam_stiff: float
    lam_slow: float
    angle: float
    boundary: float
    duration: float
    h_chosen: float
    z_chosen: float
    z: np.ndarray
    h: np.ndarray
    steps: np.ndarray
    chosen: int | None
    median_exact: np.ndarray
    last_exact: np.ndarray
    median_estimate: np.ndarray | None
    last_estimate: np.ndarray | None
    message: str


def _sweep_steps(duration_z: float, steps: int, top: float, points: int) -> np.ndarray:
    """Step counts N_k (descending, so h_k|λ| = duration_z/N_k ascends), with ``steps`` itself when within range."""
    low = max(1, math.ceil(duration_z / top - 1e-9))
    high = max(low, min(SWEEP_MAX_STEPS, math.floor(duration_z / SWEEP_Z_MIN + 1e-9)))
    targets = np.linspace(duration_z / high, duration_z / low, points)
    counts = set(np.clip(np.rint(duration_z / targets), low, high).astype(int).tolist())
    if low <= steps:
        counts.add(steps)
    return np.array(sorted(counts, reverse=True))


def _median_and_last(cos: np.ndarray, counts: np.ndarray, done: int) -> tuple[np.ndarray, np.ndarray]:
    """Row k: median and last of cos[k, :N_k]; NaN where the loop stopped (``done`` steps) before N_k."""
    median = np.array([np.median(row[:n]) if n <= done else np.nan for row, n in zip(cos, counts)])
    last = np.array([row[n - 1] if n <= done else np.nan for row, n in zip(cos, counts)])
    return median, last


def alignment_sweep(lam_stiff: float, lam_slow: float, angle: float, h: float, steps: int, solver: str,
                    x0: Sequence[float] = (1.0, 1.0), points: int = SWEEP_POINTS) -> AlignmentSweep:  # fmt: skip
    """The run of :func:`stiff_system` (same arguments) repeated with other step sizes over the
    same duration T = steps·h: for h_k|λ_stiff| from 0.05 to 1.1 × the solver's real-axis
    boundary, N_k = T/h_k steps (an integer; so h_k = T/N_k), the median over the steps and the
    last-step value of |cos(ℓ_n, v_stiff)| and, where the solver has a pair, |cos(e_n, v_stiff)|.

    Why the direction turns. In eigen-coordinates c = (c_s, c_l) of y_0, ℓ_n has components
    (e^{z} − R(z)) R(z)^n c for z = hλ_stiff, hλ_slow, so |cos(ℓ_n, v_stiff)| = ρ_n/√(1 + ρ_n²) with
    ρ_n = K q^n |c_s/c_l|, K = |e^{z_s} − R(z_s)| / |e^{z_l} − R(z_l)|, q = |R(z_s)/R(z_l)|. ρ_n is
    geometric in n, so |cos| is monotone along a run and its median is the value at the middle
    step (t ≈ T/2). For h → 0, K → (λ_stiff/λ_slow)^{p+1} (p the order: 40³ for Heun with the
    defaults) and q^n → e^{−(|λ_stiff| − |λ_slow|) t_n}: the error starts on v_stiff and turns to
    v_slow at t* ≈ ln(K|c_s/c_l|)/(|λ_stiff| − |λ_slow|), the same time for every small h. As
    h|λ_stiff| nears the boundary, |R(z_s)| → 1: the numerical stiff mode is barely damped, q^n
    decays ever more slowly per unit time, t* grows without bound, and once |R(z_s)| ≥ |R(z_l)|
    (Heun: h|λ_stiff| ≥ 2(1 − λ_slow/λ_stiff)) the error never leaves v_stiff. Over a fixed
    duration T > t* the curve therefore rises from ≈ 0 (small h: turned to v_slow) to 1 near the
    boundary. Beyond the boundary the stiff mode grows and the error stays on v_stiff.

    Why a fixed duration and not a fixed number of steps: with N fixed, a smaller h also shortens
    the run to N·h, and for h|λ_stiff| ≪ 1 it ends before t* with the error still on v_stiff; per
    step the stiff mode is damped by |R(z_s)|, weakly both for z_s → 0 and at the boundary, so the
    curve would be U-shaped and mix "run too short" with the stability effect.

    How. For y' = My (no dependence on t) a step of size h is the same computation as a step of
    size 1 on y' = (hM) y, so row k integrates y' = (h_k M) y over σ_i = 1 + (N − i) with the
    sampler's :func:`integrate` and solver (the code path of :func:`stiff_system`, diagnostics
    off), all rows in one batched loop of N = max N_k ≤ 600 steps; row k uses its first N_k.
    The smallest h_k|λ_stiff| is max(0.05, T|λ_stiff|/600) (unless the chosen h is smaller), and
    the chosen h is one of the rows when h|λ_stiff| ≤ 1.1 × boundary, so its values are those of
    :func:`stiff_system`. Where the slow part of ℓ_n is below float64 rounding of y_n (≈ 1e−16‖y_n‖;
    rk4 with small h), the measured direction is that of the rounding. Limits: those of
    :func:`stiff_system`, and points in [2, 200].
    """
    lam_stiff, lam_slow, angle, rotation, start = _system(lam_stiff, lam_slow, angle, x0)
    h, steps, method = _step_size(h, -lam_stiff, "|λ_stiff|"), _steps(steps), _solver(solver)
    count = as_number("points", points)
    if count != int(count) or not 2 <= count <= 200:
        raise ParameterError("points", f"must be an integer in [2, 200], got {points!r}")
    rate, boundary = -lam_stiff, method.stability_boundary
    duration = steps * h
    counts = _sweep_steps(duration * rate, steps, SWEEP_BEYOND * boundary, int(count))
    step_sizes = duration / counts
    step_sizes[counts == steps] = h  # the chosen run exactly
    matrix = _matrix(rotation, lam_stiff, lam_slow)
    batch = len(counts)
    run = _integrate_linear(-step_sizes[:, None, None] * matrix, np.tile(start, (batch, 1)), 1.0, int(counts[0]),
                            solver, diagnostics=False)  # fmt: skip
    done = len(run.t) - 1
    v_stiff = rotation[:, 0]

    def cosines(vectors: np.ndarray) -> np.ndarray:
        return _alignment(vectors.reshape(-1, 2), v_stiff).reshape(batch, -1)

    lte = _one_step_errors(_step_exp(matrix, step_sizes), run.states)
    median_exact, last_exact = _median_and_last(cosines(lte), counts, done)
    median_estimate = last_estimate = None
    if run.estimates is not None:
        median_estimate, last_estimate = _median_and_last(cosines(run.estimates), counts, done)
    hits = np.flatnonzero(counts == steps)
    message = "" if done == counts[0] else f"runs with more than {done} steps overflowed and are left out"
    return AlignmentSweep(solver, lam_stiff, lam_slow, angle, boundary, duration, h, h * rate, step_sizes * rate,
                          step_sizes, counts, int(hits[0]) if hits.size else None, median_exact, last_exact,
                          median_estimate, last_estimate, message)  # fmt: skip
