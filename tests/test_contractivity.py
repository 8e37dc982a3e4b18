"""The contractivity curve L(γ) = ‖(1 − γ) I + γ ∂T/∂x‖₂ against independent computations (docs/math.md §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stiffviz import ParameterError, load_model, sample
from stiffviz.diagnostics.contractivity import ContractivityCurve, contractivity, step_jacobian, step_map
from stiffviz.models import guided_denoiser
from stiffviz.models.gmm import GaussianMixtureDenoiser
from stiffviz.solvers import get_solver

SCALES = torch.tensor([0.05, 0.4, 2.0], dtype=torch.float64)  # per-axis standard deviations s_j of the data


def _gaussian():
    """One Gaussian N(μ, diag(s²)): D(x; σ) = μ + s²/(s² + σ²)(x − μ), a linear drift per axis."""
    return GaussianMixtureDenoiser(torch.tensor([[0.3, -1.0, 0.5]]), torch.diag(SCALES**2)[None], torch.ones(1))


def _rate(sigma: float) -> np.ndarray:
    """λ_j(σ) of the drift f = (x − D)/σ = λ_j(σ)(x − μ)_j: λ = σ/(s² + σ²)."""
    s2 = SCALES.numpy() ** 2
    return sigma / (s2 + sigma**2)


def _factor(solver: str, sigma: float, sigma_next: float) -> np.ndarray:
    """The step's amplification R_j per axis, written out for the σ-dependent linear drift:
    Euler 1 + hλ(σ); Heun 1 + h/2 (λ(σ) + λ(σ')(1 + hλ(σ))), h = σ' − σ."""
    h, l0, l1 = sigma_next - sigma, _rate(sigma), _rate(sigma_next)
    return 1 + h * l0 if solver == "euler" else 1 + h / 2 * (l0 + l1 * (1 + h * l0))


def _states(model, n: int, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = model.sample_reference(n, g) if hasattr(model, "sample_reference") else torch.zeros(n, *model.shape)
    return (x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)).to(torch.float64)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("sigma, sigma_next", [(3.0, 1.0), (0.5, 0.1), (0.2, 0.002)])
def test_linear_drift_matches_the_closed_form(solver, sigma, sigma_next):
    """∂T/∂x = diag(R_j) for a Gaussian, so L(γ) = max_j |1 − γ + γ R_j| at every state."""
    model = _gaussian()
    gammas = np.linspace(0.0, 6.0, 61)
    curve = contractivity(guided_denoiser(model), get_solver(solver), _states(model, 7, sigma), sigma, sigma_next, gammas)
    r = _factor(solver, sigma, sigma_next)
    expected = np.abs(1 - gammas[:, None] + gammas[:, None] * r[None, :]).max(axis=1)
    assert curve.method == "exact"
    np.testing.assert_allclose(curve.values, np.repeat(expected[:, None], 7, axis=1), rtol=1e-10, atol=1e-12)


def test_crossing_of_the_linear_drift():
    """Every R_j < 1 contracts for 0 < γ < 2/(1 − R_j); the curve crosses 1 at min_j 2/(1 − R_j)."""
    model, sigma, sigma_next = _gaussian(), 0.5, 0.1
    r = _factor("heun", sigma, sigma_next)
    assert (r < 1).all()
    expected = float((2 / (1 - r)).min())
    gammas = np.linspace(0.0, 2 * expected, 4001)
    curve = contractivity(guided_denoiser(model), get_solver("heun"), _states(model, 3, sigma), sigma, sigma_next, gammas)
    assert curve.crossing(0.5) == pytest.approx(expected, abs=gammas[1])
    assert curve.crossing(0.9) == pytest.approx(expected, abs=gammas[1])


def test_crossing_none_and_inf():
    """An expanding direction (R = 1.5) gives L(γ) = 1 + γ/2 > 1 for every γ > 0: no crossing; a curve
    below 1 to the grid's end crosses beyond it."""
    gammas = np.linspace(0.0, 4.0, 9)
    expanding = ContractivityCurve(gammas, (1 + 0.5 * gammas)[:, None], "exact")
    assert expanding.crossing() is None
    shrinking = ContractivityCurve(gammas, (1 - 0.1 * gammas)[:, None], "exact")
    assert shrinking.crossing() == math.inf
    # |1 − γ/2| crosses 1 again at γ = 4 exactly, between grid points 3.5 and 4.5
    vee = ContractivityCurve(np.array([0.0, 1.0, 3.5, 4.5]), np.abs(1 - np.array([0.0, 1.0, 3.5, 4.5]) / 2)[:, None], "exact")
    assert vee.crossing() == pytest.approx(4.0)


def test_step_jacobian_matches_finite_differences():
    """The tree toy's Heun step map: autograd's 2×2 Jacobian against central differences."""
    model = load_model("tree")
    fn = step_map(guided_denoiser(model), get_solver("heun"), 0.8, 0.3)
    x = _states(model, 5, 0.8, seed=3)
    jac = step_jacobian(fn, x)
    eps = 1e-6
    for j in range(2):
        e = torch.zeros_like(x)
        e[:, j] = eps
        column = (fn(x + e) - fn(x - e)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, j].numpy(), column.numpy(), rtol=1e-6, atol=1e-6)


def test_relaxed_norm_is_the_largest_singular_value():
    """L(γ) at each γ equals numpy's singular values of (1 − γ) I + γ A from the same A."""
    model = load_model("rings")
    x = _states(model, 6, 0.4)
    fn = step_map(guided_denoiser(model), get_solver("heun"), 0.4, 0.15)
    a = step_jacobian(fn, x).numpy()
    gammas = np.array([0.0, 0.5, 1.0, 2.5])
    curve = contractivity(guided_denoiser(model), get_solver("heun"), x, 0.4, 0.15, gammas)
    for g, row in zip(gammas, curve.values):
        expected = [np.linalg.svd((1 - g) * np.eye(2) + g * a_b, compute_uv=False)[0] for a_b in a]
        np.testing.assert_allclose(row, expected, rtol=1e-10)
    np.testing.assert_allclose(curve.values[0], 1.0, rtol=1e-12)


def test_power_iteration_approaches_the_exact_curve_from_below():
    """Power iteration gives ‖M v‖ for a unit v: never above the exact norm, and close after 30 iterations
    (within 0.1 % for most samples; slower where the two singular values nearly tie)."""
    model = load_model("rings")
    x = _states(model, 6, 0.6, seed=1)
    gammas = np.array([0.0, 1.0, 3.0])
    args = (guided_denoiser(model), get_solver("heun"), x, 0.6, 0.25, gammas)
    exact = contractivity(*args, method="exact").values
    power = contractivity(*args, method="power", iterations=30, generator=torch.Generator().manual_seed(0))
    assert power.method == "power"
    assert (power.values <= exact * (1 + 1e-9)).all()
    relative = np.abs(power.values - exact) / exact
    assert relative.max() < 0.05
    assert (relative < 1e-3).mean() >= 0.9


def test_multistep_history_reproduces_the_sampled_step():
    """DPM-Solver++(2M) with SteinDiff clipped to γ = 1 samples as plain: T(x_k) rebuilt from the kept
    states and denoised estimates (the app's history) is the next state the sampler produced."""
    from stiffviz.app.contractivity import _history
    from stiffviz.app.live import RunRecord
    from stiffviz.sampler import initial_noise

    model, states, previews = _gaussian(), [], []
    _, trace = sample(model, solver="dpmpp2m", steps=5, batch=16, dtype="float64", stein=True, stein_gamma_min=1.0,
                      stein_gamma_max=1.0, on_step=lambda r, x, d: (states.append(x), previews.append(d)))  # fmt: skip
    states.insert(0, initial_noise((3,), 16, 0, trace.sigmas[0], torch.float64, "cpu"))
    run = RunRecord("run", trace, states, previews)
    k = 3
    record = trace.steps[k]
    fn = step_map(guided_denoiser(model), get_solver("dpmpp2m"), record["sigma"], record["sigma_next"],
                  _history(run, k, 16, torch.device("cpu"), torch.float64))  # fmt: skip
    np.testing.assert_allclose(fn(states[k]).numpy(), states[k + 1].numpy(), rtol=1e-12, atol=1e-12)


def test_bad_input_names_the_parameter():
    model = _gaussian()
    args = (guided_denoiser(model), get_solver("heun"), _states(model, 2, 1.0))
    with pytest.raises(ParameterError, match="method"):
        contractivity(*args, 1.0, 0.5, [0.0, 1.0], method="svd")
    with pytest.raises(ParameterError, match="gammas"):
        contractivity(*args, 1.0, 0.5, [1.0, 0.5])
    with pytest.raises(ParameterError, match="sigma_next"):
        contractivity(*args, 1.0, 1.5, [0.0, 1.0])


# ---------------------------------------------------------------- the app's view and the report
def _heun_step(model, sigma: float, sigma_next: float):
    """A Heun step written out here, on the model's own denoiser: x^E = x + h f(x), x + h (f(x) + f(x^E))/2."""
    def drift(y, s):
        return (y - model(y, s)) / s

    def step(x):
        h = sigma_next - sigma
        f0 = drift(x, sigma)
        return x + h * (f0 + drift(x + h * f0, sigma_next)) / 2

    return step


@pytest.fixture(scope="module")
def stein_session():
    from stiffviz.app import ui
    from stiffviz.app.live import Session
    from stiffviz.app.requests import DEFAULTS, INPUTS

    values = DEFAULTS | dict(model="tree", solver="heun", steps=4, batch=48, erk_on=False, stein_on=True,
                             compare=False, eig=False, lipschitz=False)  # fmt: skip
    (*_, last) = ui.run(*[values[name] for name in INPUTS], "step")
    sessions = [out for out in last if isinstance(out, Session)]
    assert sessions, f"the run did not finish: {last[0]}"
    return sessions[0]


def test_app_view_draws_the_curve_of_the_recorded_states(stein_session):
    """The handler's median line at each γ equals the median over the kept states of the largest singular
    value of (1 − γ) I + γ A, with A from central differences of a separately written Heun step."""
    from stiffviz.app import ui

    (run,) = stein_session.runs.values()
    k = 1
    record = run.trace.steps[k]
    figure = ui.show_contractivity(stein_session, k)
    (median,) = [t for t in figure.data if t.name == "median L(γ)"]
    gammas, shown = np.array(median.x, dtype=float), np.array(median.y, dtype=float)
    model = load_model("tree")
    step = _heun_step(model, record["sigma"], record["sigma_next"])
    x, eps = run.states[k].to(torch.float64), 1e-5
    columns = []
    for j in range(2):
        e = torch.zeros_like(x)
        e[:, j] = eps
        columns.append((step(x + e) - step(x - e)) / (2 * eps))
    a = torch.stack(columns, dim=-1).numpy()  # (B, 2, 2), column j = ∂T/∂x_j
    for g, value in list(zip(gammas, shown))[::10]:
        expected = np.median([np.linalg.svd((1 - g) * np.eye(2) + g * a_b, compute_uv=False)[0] for a_b in a])
        assert value == pytest.approx(expected, rel=1e-3)
    annotations = " ".join(a.text for a in figure.layout.annotations)
    assert f"γ raw = {record['stein_gamma_raw']:.3g}" in annotations
    assert f"γ applied = {record['stein_gamma']:.3g}" in annotations
    assert gammas[-1] >= min(record["stein_gamma_raw"], 1000.0)  # the axis reaches the raw γ


def test_app_view_refuses_what_it_cannot_draw(stein_session):
    from stiffviz.app import ui

    last = len(next(iter(stein_session.runs.values())).trace.steps) - 1
    with pytest.raises(ui.gr.Error, match=r"step: SteinDiff acted at steps 0…2 of this run, not at step 3"):
        ui.show_contractivity(stein_session, last)  # the step to σ = 0 is never relaxed
    with pytest.raises(ui.gr.Error, match="step: run the sampler first"):
        ui.show_contractivity(None, 1)
    with pytest.raises(ui.gr.Error, match="step: must be an integer"):
        ui.show_contractivity(stein_session, 99)


def test_report_has_the_contractivity_figure_of_a_stein_run(stein_session, tmp_path):
    from stiffviz.app.report import RunResult, html_report, write_exports

    model = load_model("tree")
    paths = write_exports(stein_session.runs, tmp_path, model)
    report = paths[-1].read_text(encoding="utf-8")
    (run,) = stein_session.runs.values()
    raws = [s.get("stein_gamma_raw", -math.inf) for s in run.trace.steps]
    k = int(np.argmax(raws))
    assert "SteinDiff: contractivity of the step with the largest raw γ" in report
    assert f"step {k}, σ {run.trace.steps[k]['sigma']:.3g}" in report
    plain = {"run": RunResult(run.trace, run.samples)}  # no kept states: no figure
    assert "SteinDiff: contractivity" not in html_report(plain, model)
