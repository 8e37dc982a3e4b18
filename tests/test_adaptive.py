"""Adaptive steps (docs/math.md §12) against independent computations: a Gaussian whose flow is
known in closed form (tolerance proportionality and the solver's order), a hand-computed
controller sequence, denoiser calls counted outside the sampler, and a fine fixed-step RK4 run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stiffviz.adaptive import AdaptiveSteps, PIController
from stiffviz.errors import ParameterError
from stiffviz.sampler import integrate, sample
from stiffviz.solvers import StepResult, get_solver
from stiffviz.trace import Trace

MU, S = 0.3, 0.5  # data N(MU, S²) per coordinate: D(x; σ) = MU + S²/(S² + σ²)(x − MU)


def gaussian_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return MU + S * S / (S * S + sigma * sigma) * (x - MU)


def gaussian_flow(x0: torch.Tensor, sigma0: float, sigma: float) -> torch.Tensor:
    """The exact solution of dx/dσ = (x − D)/σ: x − MU grows like √(S² + σ²)."""
    return MU + (x0 - MU) * math.sqrt((S * S + sigma * sigma) / (S * S + sigma0 * sigma0))


def adaptive_run(denoise, grid, x0, solver: str, rtol: float, atol: float, **kw):
    control = AdaptiveSteps(grid, get_solver(solver), rtol, atol, kw.pop("max_attempts", 100_000), **kw)
    return integrate(denoise, torch.tensor(grid), x0, get_solver(solver), diagnostics=False, control=control)


@pytest.mark.parametrize("solver, order, tolerances", [("heun", 2, (1e-3, 1e-4, 1e-5)), ("bosh3", 3, (1e-3, 1e-4, 1e-5, 1e-6))])
def test_global_error_tracks_the_tolerance_with_the_solvers_order(solver, order, tolerances):
    """Error-per-step control with local extrapolation: the global error is proportional to rtol,
    and with N accepted steps it falls like N^(−order) (so N grows like rtol^(−1/order))."""
    sigma_max, sigma_min = 80.0, 0.002
    x0 = sigma_max * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = gaussian_flow(x0, sigma_max, sigma_min)
    errors, steps = [], []
    for rtol in tolerances:
        x, trace = adaptive_run(gaussian_denoiser, [sigma_max, sigma_min], x0, solver, rtol, 1e-12)
        errors.append(float((x - exact).square().mean().sqrt() / exact.square().mean().sqrt()))
        steps.append(sum(bool(s["accepted"]) for s in trace.steps))
        assert trace.sigmas[0] == sigma_max and trace.sigmas[-1] == sigma_min
    errors, steps, rtols = np.array(errors), np.array(steps), np.array(tolerances)
    assert np.all(np.diff(errors) < 0)
    assert np.all((errors / rtols > 0.1) & (errors / rtols < 5.0)), errors / rtols
    assert abs(np.polyfit(np.log(rtols), np.log(errors), 1)[0] - 1.0) < 0.15
    assert abs(np.polyfit(np.log(steps), np.log(errors), 1)[0] + order) < 0.3


def test_pi_factor_against_hand_computed_values():
    """φ = 0.9·ε^(−0.7/k)·ε_prev^(0.4/k) clipped to [0.2, 5] on acceptance; 0.9·ε^(−1/k) (≥ 0.2) on rejection."""
    pi = PIController(order=2)
    assert pi.factor(0.25) == pytest.approx(0.9 * 0.25**-0.35)  # ε_prev starts at 1
    assert pi.factor(4.0) == pytest.approx(0.9 / 2.0)  # rejected: ε_prev stays 0.25
    assert pi.factor(0.5) == pytest.approx(0.9 * 0.5**-0.35 * 0.25**0.2)
    assert pi.factor(0.0) == 5.0  # clipped above
    assert pi.factor(400.0) == 0.2  # clipped below
    assert pi.factor(float("nan")) == 0.2
    assert PIController(order=3).factor(0.125) == pytest.approx(0.9 * 0.125 ** (-0.7 / 3))


def _step(error: float) -> StepResult:
    """A step from x = 0 whose lower-order solution is 0: with atol = 1, ε = |error|."""
    e = torch.full((4, 2), error, dtype=torch.float64)
    return StepResult(e, e, [], boundary=2.0)


def test_accept_reject_sequence_by_hand():
    control = AdaptiveSteps([1.0, 0.5, 0.01, 0.0], get_solver("heun"), rtol=1e-9, atol=1.0, max_attempts=10, h_init=0.5)
    x = torch.zeros(4, 2, dtype=torch.float64)
    steps = iter(control)
    records = []

    def attempt(error):
        sigma, sigma_next = next(steps)
        record = {}
        accepted = control.accept(record, x, _step(error))
        records.append(record)
        return sigma, sigma_next, accepted

    assert attempt(4.0) == (1.0, pytest.approx(math.exp(-0.5)), False)  # ε = 4 > 1: rejected, h = 0.5·0.45
    h = 0.5 * 0.45
    assert attempt(0.25) == (1.0, pytest.approx(math.exp(-h)), True)
    sigma, h = math.exp(-h), h * 0.9 * 0.25**-0.35
    assert attempt(0.5) == (pytest.approx(sigma), pytest.approx(sigma * math.exp(-h)), True)
    sigma, h = sigma * math.exp(-h), h * 0.9 * 0.5**-0.35 * 0.25**0.2
    assert sigma * math.exp(-h) > 0.01
    assert attempt(1e-3)[1] == pytest.approx(sigma * math.exp(-h))
    assert [r["accepted"] for r in records] == [False, True, True, True]
    assert [r["lte_ratio"] for r in records] == pytest.approx([4.0, 0.25, 0.5, 1e-3])
    while control.sigma > 0.01:  # tiny errors: steps grow until the last one is clipped to σ_end
        assert attempt(1e-6)[2]
    assert control.sigma == 0.01
    assert next(steps) == (0.01, 0.0)  # then the grid's final step to 0, always accepted
    record = {}
    assert control.accept(record, x, StepResult(x, None, [], 2.0)) and record == {"accepted": True}
    assert control.sigmas[-1] == 0.0 and control.sigmas[:2] == [1.0, pytest.approx(math.exp(-0.225))]


def test_the_attempt_cap_names_steps():
    with pytest.raises(ParameterError, match=r"^steps: .*all 3 were used"):
        adaptive_run(gaussian_denoiser, [80.0, 0.002, 0.0], torch.ones(8, 2, dtype=torch.float64), "heun", 1e-6, 1e-9,
                     max_attempts=3)  # fmt: skip


@pytest.mark.parametrize("solver", ["heun", "bosh3"])
def test_nfe_counts_accepted_and_rejected_stages(solver):
    """Calls counted outside the sampler = the trace's nfe = 1 + 2A + R for Heun (a rejected attempt
    reuses its first stage) and 1 + 3(A + R) for Bogacki–Shampine (first same as last)."""
    calls = []

    def counted(x, sigma):
        calls.append(sigma)
        return gaussian_denoiser(x, sigma)

    x0 = 80.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, trace = adaptive_run(counted, [80.0, 0.002, 0.0], x0, solver, 1e-4, 1e-6, h_init=6.0)
    accepted = [bool(s["accepted"]) for s in trace.steps if s["sigma_next"] > 0]
    a, r = accepted.count(True), accepted.count(False)
    assert r >= 1 and trace.steps[0]["accepted"] is False  # h_init = 6 (80 → 0.2 in one step) is rejected
    assert len(calls) == trace.summary["nfe"] == trace.steps[-1]["nfe"]
    assert len(calls) == (1 + 2 * a + r if solver == "heun" else 1 + 3 * (a + r))
    nfe = [s["nfe"] for s in trace.steps]
    assert nfe == sorted(nfe)


def test_samples_match_a_fine_fixed_step_reference_within_the_tolerance():
    """Rings toy (exact denoiser): adaptive Heun and Bogacki–Shampine against RK4 on 160 Karras steps,
    measured in the controller's own scale atol + rtol·|x_ref|."""
    common = dict(batch=32, dtype="float64", diagnostics=False)
    reference, _ = sample("rings", solver="rk4", steps=160, **common)
    rtol, atol = 1e-3, 1e-4
    for solver in ("heun", "bosh3"):
        x, trace = sample("rings", solver=solver, adaptive=True, rtol=rtol, atol=atol, steps=1000, **common)
        assert trace.status == "ok" and trace.sigmas[0] == 80.0 and trace.sigmas[-2:] == pytest.approx([0.002, 0.0])
        scaled = ((x - reference) / (atol + rtol * reference.abs())).square().mean().sqrt()
        assert float(scaled) < 1.0, (solver, float(scaled))


def test_trace_round_trip_and_rejected_steps_leave_the_state(tmp_path):
    states = []
    x0 = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    control = AdaptiveSteps([80.0, 0.002, 0.0], get_solver("heun"), 1e-3, 1e-5, 1000, h_init=6.0)
    _, trace = integrate(gaussian_denoiser, torch.tensor([80.0, 0.002, 0.0]), x0, get_solver("heun"), control=control,
                         on_step=lambda record, x, denoised: states.append(x.clone()))  # fmt: skip
    assert len(states) == len(trace.steps)
    previous = x0
    for record, state in zip(trace.steps, states):
        assert torch.equal(state, previous) == (not record["accepted"])
        previous = state
    loaded = Trace.from_json(trace.to_json(tmp_path / "t.json"))
    assert [s["accepted"] for s in loaded.steps] == [s["accepted"] for s in trace.steps]
    assert loaded.sigmas == trace.sigmas == control.sigmas
    header, *rows = [line.split(",") for line in trace.to_csv().splitlines()]
    column = header.index("accepted")
    assert [float(row[column]) for row in rows[::8]] == [float(s["accepted"]) for s in trace.steps]


@pytest.mark.parametrize("settings, parameter", [
    (dict(rtol=0.0), "rtol"), (dict(atol=-1e-3), "atol"), (dict(rtol=float("nan")), "rtol"),
    (dict(adaptive=True, solver="euler"), "solver"), (dict(adaptive=True, solver="dpmpp2m"), "solver"),
    (dict(adaptive=True, erk_guid=1.0), "erk_guid"), (dict(adaptive=True, stein=True), "stein"),
    (dict(adaptive=True, steps=1), "steps"),
])  # fmt: skip
def test_bad_settings_are_named(settings, parameter):
    with pytest.raises(ParameterError) as err:
        sample("tree", batch=4, **settings)
    assert err.value.parameter == parameter


@pytest.mark.parametrize("solver, per_attempt", [("heun", 2), ("bosh3", 3)])
def test_cost_estimate_is_an_upper_bound_from_the_attempt_cap(solver, per_attempt):
    """The app counts ``steps`` attempts of full cost plus the step to 0: 1 + per_attempt·steps passes,
    at least what a run (rejected attempts included) makes, and what the NFE note shows."""
    from stiffviz import load_model
    from stiffviz.app.cost import run_passes
    from stiffviz.app.requests import nfe_text

    model, steps = load_model("rings"), 40
    bound = run_passes(model, dict(solver=solver, steps=steps, adaptive=True, rtol=0.01, atol=0.001))
    assert bound["sampling"]["call"] == 1 + per_attempt * steps
    assert nfe_text(solver, steps, adaptive=True) == f"**NFE ≤ {1 + per_attempt * steps}**"
    _, trace = sample(model, solver=solver, steps=steps, adaptive=True, rtol=0.01, atol=0.001, batch=16)
    assert trace.summary["nfe"] <= bound["sampling"]["call"]


def test_charts_draw_rejected_attempts_hollow():
    from stiffviz.app.live import RunRecord
    from stiffviz.app.plots import trace_figure

    x0 = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    control = AdaptiveSteps([80.0, 0.002, 0.0], get_solver("heun"), 1e-3, 1e-5, 1000, h_init=6.0)
    _, trace = integrate(gaussian_denoiser, torch.tensor([80.0, 0.002, 0.0]), x0, get_solver("heun"), control=control)
    rejected = [not s["accepted"] for s in trace.steps]
    assert any(rejected)
    figure = trace_figure("lte", {"run": trace})
    median = next(t for t in figure.data if t.name == "‖e‖ embedded")
    assert [s == "circle-open" for s in median.marker.symbol] == rejected
    assert "hollow markers: rejected" in figure.layout.title.text
    assert any((t.name or "").startswith("ε scaled") for t in figure.data)
    run = RunRecord("run", trace)  # a rejected attempt leaves the state at its σ
    k = rejected.index(True) + 1
    assert run.sigma(k) == trace.steps[k - 1]["sigma"] != trace.steps[k - 1]["sigma_next"]
