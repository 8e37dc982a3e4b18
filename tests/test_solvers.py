"""Solvers against theory: convergence orders, embedded error estimates, stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import linear_drift_model
from stiffviz import integrate, load_model
from stiffviz.solvers import get_solver, nfe_for
from stiffviz.solvers.base import Stage


def _denoise(model):
    return lambda x, sigma: model(x, sigma)


def _start(model, n=64, sigma=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return model.sample_reference(n, g) + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _solve(model, solver, x, sigmas):
    with torch.no_grad():
        out, trace = integrate(_denoise(model), sigmas, x, get_solver(solver), diagnostics=False)
    assert trace.status == "ok"
    return out


@pytest.fixture(scope="module")
def moons_reference():
    """Start states at σ = 2 and their RK4 solution at σ = 0.5 with 2,048 steps."""
    model = load_model("moons")
    x = _start(model)
    return model, x, _solve(model, "rk4", x, torch.linspace(2.0, 0.5, 2049, dtype=torch.float64))


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("bosh3", 3), ("dpm2", 2), ("dpmpp2m", 2)])
def test_convergence_order_matches_theory(solver, order, moons_reference):
    """Global error at σ = 0.5 from σ = 2 on the moons toy, halving the step: ratio → 2^order."""
    model, x, reference = moons_reference
    errors = []
    for steps in (8, 16, 32, 64):
        sigmas = torch.linspace(2.0, 0.5, steps + 1, dtype=torch.float64)
        errors.append((_solve(model, solver, x, sigmas) - reference).norm().item())
    observed = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert abs(observed[-1] - order) < 0.25, (solver, errors, observed)


def _one_step(model, solver, x, sigma, sigma_next):
    evaluate = lambda y, s: Stage(y, s, model(y, s), (y - model(y, s)) / s)  # noqa: E731
    return get_solver(solver).step(evaluate, evaluate(x, sigma), sigma_next, [])


@pytest.mark.parametrize("solver", ["heun", "bosh3", "dpm2"])
def test_embedded_error_estimates_true_local_error(solver):
    """e = x_high − x_low ≈ x_true − x_low (the low-order solution's local error), better as h → 0."""
    model = load_model("moons")
    x = _start(model, n=32, sigma=1.0)
    mismatch = []
    for h in (0.2, 0.1, 0.05):
        with torch.no_grad():
            step = _one_step(model, solver, x, 1.0, 1.0 - h)
            fine = _solve(model, "rk4", x, torch.linspace(1.0, 1.0 - h, 257, dtype=torch.float64))
        x_low = step.x - step.error
        true_error = fine - x_low
        mismatch.append(((step.error - true_error).norm() / true_error.norm()).item())
        cos = torch.nn.functional.cosine_similarity(step.error, true_error, dim=1)
        assert cos.median() > 0.95
    assert mismatch[-1] < 0.15, mismatch
    assert mismatch[0] > mismatch[1] > mismatch[2], mismatch


def test_dpmpp2m_matches_independent_exponential_integrator():
    """DPM-Solver++(2M) written out from Lu et al. (data prediction, λ = −log σ, α = 1)."""
    model = load_model("rings")
    x0 = _start(model, n=16, sigma=5.0)
    sigmas = torch.tensor([5.0, 2.5, 1.0, 0.4, 0.1, 0.0], dtype=torch.float64)
    x, previous_d, previous_lambda = x0.clone(), None, None
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d = model(x, s)
        if s_next == 0:
            x = d
            break
        lam, lam_next = -math.log(s), -math.log(s_next)
        h = lam_next - lam
        if previous_d is None:
            d_tilde = d
        else:
            r = (lam - previous_lambda) / h
            d_tilde = d + (d - previous_d) / (2 * r)
        x = (s_next / s) * x - (math.exp(-h) - 1.0) * d_tilde
        previous_d, previous_lambda = d, lam
    assert torch.allclose(_solve(model, "dpmpp2m", x0, sigmas), x, atol=1e-12)


def test_dpm2_matches_midpoint_in_log_sigma():
    model = load_model("rings")
    x0 = _start(model, n=16, sigma=5.0)
    sigmas = torch.tensor([5.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    x = x0.clone()
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        f = (x - model(x, s)) / s
        if s_next == 0:
            x = x + (s_next - s) * f
            continue
        s_mid = math.exp(0.5 * (math.log(s) + math.log(s_next)))
        x_mid = x + (s_mid - s) * f
        x = x + (s_next - s) * (x_mid - model(x_mid, s_mid)) / s_mid
    assert torch.allclose(_solve(model, "dpm2", x0, sigmas), x, atol=1e-12)


@pytest.mark.parametrize(
    "solver,polynomial",
    [("euler", [1, 1]), ("heun", [1, 1, 1 / 2]), ("bosh3", [1, 1, 1 / 2, 1 / 6]), ("rk4", [1, 1, 1 / 2, 1 / 6, 1 / 24])],
)
def test_stability_function_is_taylor_polynomial(solver, polynomial):
    """An explicit RK method of order p = s ≤ 4 has R(z) = Σ_{m ≤ p} z^m/m! (bosh3: order 3, 4 stages, b₄ = 0)."""
    z = np.array([-2.3 + 0.7j, -0.5, 1j, -1 - 1j])
    expected = np.abs(np.polynomial.polynomial.polyval(z, polynomial))
    assert np.allclose(get_solver(solver).amplification(z), expected)


@pytest.mark.parametrize("solver,boundary", [("euler", 2.0), ("heun", 2.0), ("bosh3", 2.5127), ("rk4", 2.7853), ("dpmpp2m", 1.0)])
def test_real_axis_stability_boundary(solver, boundary):
    s = get_solver(solver)
    assert s.stability_boundary == pytest.approx(boundary, abs=1e-3)
    assert s.amplification(np.array([-0.98 * boundary]))[0] <= 1 + 1e-9
    assert s.amplification(np.array([-1.02 * boundary]))[0] > 1


@pytest.mark.parametrize("solver", ["euler", "heun", "bosh3"])
def test_linear_problem_is_stable_exactly_inside_the_boundary(solver):
    """y' = λy with fixed hλ: the numerical solution decays inside the boundary and grows outside."""
    lam = 50.0  # f = λx with h < 0, so hλ < 0
    model = linear_drift_model(torch.tensor([[lam]], dtype=torch.float64))
    boundary = get_solver(solver).stability_boundary
    x0 = torch.ones(1, 1, dtype=torch.float64)
    for factor, grows in ((0.95, False), (1.05, True)):
        h = factor * boundary / lam
        sigmas = torch.tensor([10.0 - k * h for k in range(41)], dtype=torch.float64)
        with torch.no_grad():
            x, _ = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver(solver), diagnostics=False)
        assert (x.abs().item() > 1) == grows, (factor, x.item())


def test_dpm2_step_reports_its_own_boundary():
    """R(z) = 1 + z + c z² with c = √σ_i/(√σ_i + √σ_{i+1}): boundary 1/c."""
    model = load_model("moons")
    x = _start(model, n=4)
    step = _one_step(model, "dpm2", x, 2.0, 0.5)
    c = math.sqrt(2.0) / (math.sqrt(2.0) + math.sqrt(0.5))
    assert step.boundary == pytest.approx(1 / c)


@pytest.mark.parametrize("solver,steps,nfe", [("euler", 8, 8), ("heun", 32, 63), ("dpm2", 8, 15), ("dpmpp2m", 8, 8), ("bosh3", 8, 22)])
def test_nfe_counts(solver, steps, nfe):
    from stiffviz import sample

    _, trace = sample("moons", solver=solver, steps=steps, batch=4)
    assert trace.summary["nfe"] == nfe == nfe_for(solver, steps)
    assert [s["nfe"] for s in trace.steps] == sorted(s["nfe"] for s in trace.steps)


@pytest.mark.parametrize("c", [0.125, 0.5, 0.6180339887, 0.99])
def test_midpoint_closed_form_boundary_equals_the_scanned_one(c):
    """DPM-Solver-2's per-step tableau states 1/c; the generic scan of |R(−x)| ≤ 1 must agree."""
    from dataclasses import replace

    from stiffviz.solvers.tableau import midpoint_tableau

    closed = midpoint_tableau(c)
    scanned = replace(closed, known_boundary=None)
    assert closed.stability_boundary == pytest.approx(1 / c)
    assert scanned.stability_boundary == pytest.approx(1 / c, abs=1e-6)
