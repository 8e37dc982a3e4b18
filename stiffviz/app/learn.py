"""The Learn tab: stiffness taught with small exact examples whose inputs a person can change.

Layout and wiring only: the numbers come from :mod:`stiffviz.teaching` (the sampler's own
loop and solvers on linear problems) and the figures from :mod:`stiffviz.app.teaching_plots`.
The handlers :func:`learn_test_equation` and :func:`learn_stiff_system` are plain functions
of the inputs returning (figures..., Markdown summary); they never raise on bad input but
return the message in their Markdown output.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import gradio as gr
import numpy as np

from .. import teaching
from ..paths import PATHS, Path, gaussian_eigenvalue
from ..schedules import karras
from ..teaching import MAX_STEPS, TEACHING_SOLVERS, AlignmentSweep, ScalarExample, StiffSystemExample
from .requests import real
from .teaching_plots import (
    alignment_figure, complex_text, growth_figure, modes_stability_figure, path_stiffness_figure, phase_figure,
    solution_figure, sweep_figure, z_stability_figure,
)  # fmt: skip

TEST_DEFAULTS = dict(lam_re=-10.0, lam_im=0.0, h=0.21, steps=30, solver="heun")  # z = −2.1: just outside Heun's region
STIFF_DEFAULTS = dict(lam_stiff=-40.0, lam_slow=-1.0, angle_deg=30.0, h=0.045, steps=40, solver="heun")  # hλ_stiff = −1.8

INTRO = """## Learn: why explicit steps fail along stiff directions
Two small linear problems, solved by the **same loop and solvers** the sampler uses (every number
below can be checked by hand). Change any input and the example is recomputed."""

TEST_TEXT = """### 1. The test equation y′ = λy
One step of an explicit Runge–Kutta method multiplies y by the same number R(z), z = hλ: the method's
stability function (Euler R(z) = 1 + z, Heun 1 + z + z²/2, RK4 up to z⁴/24). The exact solution is
multiplied by exp(z). Where |R(z)| > 1 the numerical solution grows although the exact one decays: z lies
outside the blue stability region. On the negative real axis the region ends at −2 (Euler, Heun),
≈ −2.51 (Bogacki–Shampine) and ≈ −2.79 (RK4). The *growth per step* chart measures |yₙ₊₁/yₙ| from
the stepping code itself; it must sit on |R(z)|.

In the **Sampler** tab the same test is run along the Jacobian's dominant direction: the *Stiffness*
chart plots z = |h|ρ̂ per step (ρ̂ the secant estimate of |λ₁|) against the solver's boundary, and the
*stability region* view places each step's z = hλ₁ on this picture. Below, that secant estimate is
computed by the sampler's code on y′ = λy; here it recovers |hλ|."""

STIFF_TEXT = """### 2. A stiff 2-D system y′ = My
M = R(θ) diag(λ_stiff, λ_slow) R(θ)ᵀ: the solution decays fast along v_stiff = (cos θ, sin θ) and slowly
along v_slow. In eigen-coordinates each component is a test equation, multiplied per step by
R(hλ_stiff) and R(hλ_slow): the stiff mode alone limits the step, even after it has died out.
The local truncation error of step n (exact one-step solution exp(hM)yₙ minus the numerical step) is
(exp(hM) − R(hM)) yₙ. Its stiff component carries the factor exp(hλ_stiff) − R(hλ_stiff), which becomes of
order one as h|λ_stiff| nears the boundary while the numerical stiff mode is barely damped
(|R(hλ_stiff)| → 1), so the error turns towards v_stiff: the observation ERK-Guid builds on. With small
h the stiff transient decays and the error turns to v_slow after a while.

The embedded estimate e (Heun: x^H − x^E) is what the sampler records as the LTE. It estimates the
error of the pair's lower-order member: for Heun e = (hM)²yₙ/2, while the Heun step's own error is
≈ (hM)³yₙ/6 = (hM/3)·e, so both lean towards v_stiff. Euler and RK4 have no embedded pair: only the
exact error is shown. In the **Sampler** tab this is the *Alignment* chart, |cos(e, v₁)| per step with
v₁ the Jacobian's dominant eigenvector.

The *sweep* chart repeats your run over the same duration T = N·h with other step sizes and plots the
median (solid) and last-step (dashed) |cos(error, v_stiff)| against h|λ_stiff|: with small h the stiff
transient dies within the run and the error turns to v_slow (|cos| ≈ 0); as h|λ_stiff| nears the boundary
(dotted) the numerical stiff mode is barely damped and the error stays on v_stiff (|cos| → 1).
Try h = 0.045 (hλ_stiff = −1.8, aligned all along), then h = 0.01 with 80 steps (the error turns to
v_slow once the stiff transient has died), then h = 0.055 (outside the region: the stiff mode grows)."""

PATHS_TEXT = """### 3. One ODE, other coordinates: is flow matching less stiff?
Every Gaussian path x = s(t)·(x0 + σ(t)·ε) has the same probability-flow ODE under a change of variables
(docs/math.md §9); the **Sampler** tab's *path* picks the coordinates the solver steps in: `edm` (x, σ),
`vp` (x/√(1 + σ²), VP-SDE time) or `flow` (x_t = (1 − t)x0 + tε, t = σ/(1 + σ)). The drift's Jacobian
changes with them: J_path = σ′·J_edm + (s′/s)·I. Each eigenvalue λ becomes σ′λ + s′/s (the same
eigenvectors): the factor σ′ = dσ/dt only converts the step (h_t·σ′ ≈ h_σ), while s′/s is a shift that the
scaling adds. ρ̂ converts the same way along the direction of its pair. The chart shows h·λ per step of a
16-step Karras grid (the same σ's in every path) for data N(0, c²I), c² = 0.25, where λ is known exactly:
the dotted lines are the shift h·s′/s. In flow and VP coordinates the same steps read as less stiff at large
σ, because the shift cancels most of the EDM eigenvalue there: a lower z is partly a change of units, which is
why Euler in flow time takes exactly the same steps as Euler in σ (DDIM) and still shows a smaller z."""
PATHS_GRID = dict(steps=16, variance=0.25)

Outputs = tuple[Any, ...]  # (figures..., Markdown summary)


def _failed(error: ValueError, figures: int) -> Outputs:
    """Keep the ``figures`` on screen; the Markdown names the parameter and its limit."""
    text = f"**Not recomputed.** {error}\n\nThe charts still show the last valid input."
    return (*[gr.skip() for _ in range(figures)], text)


def _stability_word(stable: bool) -> str:
    return "**stable** (inside the region)" if stable else "**unstable** (outside the region)"


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def _scalar_summary(ex: ScalarExample) -> str:
    lines = [
        f"z = hλ = {complex_text(ex.z)}; |R(z)| = {ex.amplification:.6g}, {_stability_word(ex.stable)}; "
        f"{ex.solver}'s real-axis boundary is {ex.boundary:.4g}.",
        f"Measured growth per step |yₙ₊₁/yₙ|: median {_median(ex.growth):.6g}; "
        f"exact |exp(z)| = {ex.exact_growth:.4g}.",
        f"Largest error maxₙ |yₙ − y(tₙ)| = {ex.max_error:.4g}; final |y| = {abs(ex.y[-1]):.4g} "
        f"(exact {abs(ex.y_exact[-1]):.4g}).",
        f"Sampler's secant estimate z = |h|ρ̂: median {_median(ex.secant_z):.4g} (|hλ| = {abs(ex.z):.4g}).",
    ]
    return "\n".join(f"- {line}" for line in lines + ([f"⚠ {ex.message}"] if ex.message else []))


def _sweep_line(sw: AlignmentSweep) -> str:
    """Where the median alignment of the exact LTE first exceeds ½ along the sweep."""
    median = sw.median_exact
    above = np.flatnonzero(median > 0.5)
    turn = f"first exceeds 0.5 at h|λ_stiff| = {sw.z[above[0]]:.3g}" if above.size else "stays below 0.5"
    return (f"Sweep over h, same duration T = {sw.duration:.4g}: median |cos(exact LTE, v_stiff)| is "
            f"{median[0]:.3f} at h|λ_stiff| = {sw.z[0]:.3g}, {median[-1]:.3f} at {sw.z[-1]:.3g}, and {turn}.")  # fmt: skip


def _stiff_summary(ex: StiffSystemExample, sw: AlignmentSweep) -> str:
    estimate = ("no embedded pair: exact error only" if ex.cos_estimate is None
                else f"embedded e: median {_median(ex.cos_estimate):.3f}, last step {ex.cos_estimate[-1]:.3f}")  # fmt: skip
    lines = [
        f"Stiff mode: z = hλ_stiff = {ex.z_stiff:.4g}, |R| = {ex.amplification_stiff:.6g}; slow mode: "
        f"z = {ex.z_slow:.4g}, |R| = {ex.amplification_slow:.6g}: {_stability_word(ex.stable)} "
        f"(boundary {ex.boundary:.4g}).",
        f"|cos(error, v_stiff)|: exact LTE median {_median(ex.cos_exact):.3f}, "
        f"last step {ex.cos_exact[-1]:.3f}; {estimate}.",
        f"Largest exact one-step error ‖ℓₙ‖ = {np.max(np.linalg.norm(ex.lte_exact, axis=1)):.4g}; "
        f"largest global error ‖yₙ − y(tₙ)‖ = {ex.max_error:.4g}.",
        f"Sampler's secant estimate z = |h|ρ̂: median {_median(ex.secant_z):.4g} (h|λ_stiff| = {abs(ex.z_stiff):.4g}).",
        _sweep_line(sw),
    ]
    notes = [f"⚠ {m}" for m in (ex.message, sw.message and f"sweep: {sw.message}") if m]
    return "\n".join(f"- {line}" for line in lines + notes)


def learn_test_equation(lam_re: float, lam_im: float, h: float, steps: int, solver: str) -> Outputs:
    """(solution figure, growth figure, stability figure, Markdown summary) for y' = λy, λ = lam_re + i·lam_im."""
    try:
        lam = complex(real("lam_re", lam_re), real("lam_im", lam_im))
        ex = teaching.test_equation(lam, real("h", h), real("steps", steps), solver)
    except ValueError as error:  # ParameterError is a ValueError
        return _failed(error, 3)
    return solution_figure(ex), growth_figure(ex), z_stability_figure(ex), _scalar_summary(ex)


def learn_stiff_system(lam_stiff: float, lam_slow: float, angle_deg: float, h: float, steps: int, solver: str) -> Outputs:
    """(phase plane, alignment chart, stability figure, sweep over h, Markdown summary) for y' = My;
    ``angle_deg`` in degrees."""
    try:
        angle = math.radians(real("angle_deg", angle_deg))
        lam_stiff, lam_slow, h, steps = (real(name, value) for name, value in
                                         (("lam_stiff", lam_stiff), ("lam_slow", lam_slow), ("h", h), ("steps", steps)))
        ex = teaching.stiff_system(lam_stiff, lam_slow, angle, h, steps, solver)
        sw = teaching.alignment_sweep(lam_stiff, lam_slow, angle, h, steps, solver)
    except ValueError as error:
        return _failed(error, 4)
    return phase_figure(ex), alignment_figure(ex), modes_stability_figure(ex), sweep_figure(sw), _stiff_summary(ex, sw)


def learn_paths(steps: int = PATHS_GRID["steps"], variance: float = PATHS_GRID["variance"]) -> Outputs:
    """h·λ per step (h = t_{i+1} − t_i, λ exact for data N(0, variance·I)) on the Karras grid
    mapped to each path, and the shift h·s′/s; the final step to t = 0 is left out."""
    sigmas = karras(steps)[:-1]
    z, shift = {}, {}
    for name in PATHS:
        path = Path(name)
        times = path.time(karras(steps)).tolist()
        h = np.diff(times)[:-1]
        z[name] = h * np.array([gaussian_eigenvalue(name, t, variance) for t in times[:-2]])
        shift[name] = h * np.array([path.log_scale_rate(t) for t in times[:-2]])
    figure = path_stiffness_figure(sigmas.numpy()[:-1], z, shift)
    largest = ", ".join(f"{name} {np.abs(values).max():.3g}" for name, values in z.items())
    return figure, f"largest |h·λ| per path: {largest}"


def _section(text: str, make_inputs: Callable[[], list], handler: Callable[..., Outputs], defaults: dict,
             plots: tuple[tuple[str, str], ...], prefix: str) -> None:  # fmt: skip
    """Controls, a summary and the ``plots`` ((label, id suffix) each, two a row) filled with
    ``handler(**defaults)``; any input change recomputes."""
    *figures, summary = handler(**defaults)
    gr.Markdown(text)
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            inputs = make_inputs()
            note = gr.Markdown(summary, elem_id=f"learn-{prefix}-summary")
        with gr.Column(scale=3):
            components = []
            for row in range(0, len(plots), 2):
                with gr.Row():
                    components += [gr.Plot(value=fig, label=label, elem_id=f"learn-{prefix}-{suffix}")
                                   for fig, (label, suffix) in zip(figures[row : row + 2], plots[row : row + 2])]  # fmt: skip
    # preprocess=False: raw values reach the handler, whose checks name the parameter and its limit
    gr.on([c.change for c in inputs], handler, inputs, [*components, note], trigger_mode="always_last",
          api_name=handler.__name__, show_progress="hidden", preprocess=False)  # fmt: skip


def _test_inputs() -> list:
    d = TEST_DEFAULTS
    return [
        gr.Slider(-50, 0, value=d["lam_re"], step=0.1, label="Re λ (lam_re)", elem_id="learn-lam-re"),
        gr.Slider(-50, 50, value=d["lam_im"], step=0.1, label="Im λ (lam_im)", elem_id="learn-lam-im"),
        gr.Number(d["h"], label="step h (> 0)", elem_id="learn-h"),
        gr.Slider(1, MAX_STEPS, value=d["steps"], step=1, label="steps", elem_id="learn-steps"),
        gr.Dropdown(list(TEACHING_SOLVERS), value=d["solver"], label="solver", elem_id="learn-solver"),
    ]


def _stiff_inputs() -> list:
    d = STIFF_DEFAULTS
    return [
        gr.Slider(-200, -1, value=d["lam_stiff"], step=0.5, label="λ_stiff (lam_stiff)", elem_id="learn-lam-stiff"),
        gr.Slider(-5, -0.1, value=d["lam_slow"], step=0.1, label="λ_slow (lam_slow)", elem_id="learn-lam-slow"),
        gr.Slider(0, 180, value=d["angle_deg"], step=1, label="angle θ of v_stiff (degrees)", elem_id="learn-angle"),
        gr.Number(d["h"], label="step h (> 0)", elem_id="learn-stiff-h"),
        gr.Slider(1, MAX_STEPS, value=d["steps"], step=1, label="steps", elem_id="learn-stiff-steps"),
        gr.Dropdown(list(TEACHING_SOLVERS), value=d["solver"], label="solver", elem_id="learn-stiff-solver"),
    ]


def build_learn_tab() -> None:
    """Build the Learn tab inside the caller's ``with gr.Tab("Learn"):`` of a ``gr.Blocks``.

    Nothing else to wire: the figures and summaries are computed here, at build time, from
    :data:`TEST_DEFAULTS` and :data:`STIFF_DEFAULTS` (about 0.1 s on a CPU) and are the components'
    initial values, so the tab renders without a load event; every input's ``change`` recomputes
    its example (``gr.on``, ``trigger_mode="always_last"``, API names ``learn_test_equation`` and
    ``learn_stiff_system``).
    """
    gr.Markdown(INTRO)
    _section(TEST_TEXT, _test_inputs, learn_test_equation, TEST_DEFAULTS,
             (("solution", "solution"), ("growth per step", "growth-per-step"), ("stability region", "stability")),
             "test")  # fmt: skip
    _section(STIFF_TEXT, _stiff_inputs, learn_stiff_system, STIFF_DEFAULTS,
             (("phase plane", "phase-plane"), ("alignment", "alignment"), ("stability region", "stability"),
              ("alignment against h|λ_stiff| (sweep)", "sweep")), "stiff")  # fmt: skip
    figure, summary = learn_paths()
    gr.Markdown(PATHS_TEXT)
    gr.Plot(value=figure, label="h·λ per step in each path", elem_id="learn-paths")
    gr.Markdown(summary, elem_id="learn-paths-summary")
