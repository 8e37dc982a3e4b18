"""SteinDiff against independent computations (docs/math.md §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stiffviz import load_model, sample
from stiffviz.diagnostics.secant import batch_dot
from stiffviz.guidance.stein import SteinDiff, hutchinson_divergence, oracle_coefficient, stein_coefficient
from stiffviz.models import guided_denoiser
from stiffviz.solvers import get_solver
from stiffviz.solvers.base import Evaluator
from stiffviz import ParameterError


def _exact_divergence(u_fn, x):
    """tr(∂u/∂x) per sample by autograd, one backward pass per output coordinate."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        u = u_fn(x)
        return sum(torch.autograd.grad(u[:, k].sum(), x, retain_graph=True)[0][:, k] for k in range(u.shape[1]))


def _candidate(model, solver, sigma, sigma_next):
    evaluate = Evaluator(guided_denoiser(model))
    s = get_solver(solver)
    return lambda y: s.step(evaluate, evaluate(y, sigma), sigma_next, []).x


def test_hutchinson_matches_trace_within_its_variance():
    """Gaussian probes: Var[vᵀAv] = 2‖(A + Aᵀ)/2‖_F², so K probes give a standard error √(2‖S‖²_F/K)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 20, 20, generator=g, dtype=torch.float64)
    x = torch.randn(6, 20, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.einsum("bij,bj->bi", a, x)
    k = 400
    probes = torch.randn(k, 6, 20, generator=g, dtype=torch.float64)
    estimate = hutchinson_divergence(u, x, probes)
    trace = torch.diagonal(a, dim1=1, dim2=2).sum(1)
    sym = 0.5 * (a + a.transpose(1, 2))
    standard_error = torch.sqrt(2 * sym.square().sum((1, 2)) / k)
    assert ((estimate - trace).abs() < 5 * standard_error).all()
    assert ((estimate - trace).abs() > 0).any()  # it is an estimate, not the trace itself


def test_hutchinson_on_a_solver_step_of_a_toy():
    model = load_model("tree")
    step = _candidate(model, "heun", 0.2, 0.1)
    g = torch.Generator().manual_seed(1)
    x = model.sample_reference(256, g) + 0.2 * torch.randn(256, 2, generator=g, dtype=torch.float64)
    exact = _exact_divergence(lambda y: y - step(y), x)
    with torch.enable_grad():
        x_in = x.clone().requires_grad_(True)
        u = x_in - step(x_in)
        jac_rows = [torch.autograd.grad(u[:, j].sum(), x_in, retain_graph=True)[0] for j in range(2)]
        probes = torch.randn(64, 256, 2, generator=g, dtype=torch.float64)
        estimate = hutchinson_divergence(u, x_in, probes)
    jac = torch.stack(jac_rows, 1)
    sym = 0.5 * (jac + jac.transpose(1, 2))
    standard_error = torch.sqrt(2 * sym.square().sum((1, 2)) / 64)
    # The batch mean (what γ uses) is within 5 standard errors of the exact mean divergence.
    assert (estimate.mean() - exact.mean()).abs() < 5 * standard_error.square().mean().sqrt() / math.sqrt(256)


def _coupled(model, n, sigma, alpha=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_star = model.sample_reference(n, g)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x_star, alpha * x_star + sigma * eps, eps


@pytest.mark.parametrize("solver", ["euler", "heun", "dpm2"])
@pytest.mark.parametrize("sigma,sigma_next,alpha", [(1.0, 0.5, 1.0), (0.3, 0.1, 1.0), (1.0, 0.5, 0.8)])
def test_stein_coefficient_matches_oracle_on_forward_coupled_samples(solver, sigma, sigma_next, alpha):
    """Stein's identity E⟨u, ε⟩ = σ E[∇·u] makes γ_Stein and γ* estimate the same number.

    Their difference is a batch mean of s_b = (σ²/α) ∇·u_b − (σ/α)⟨u_b, ε_b⟩ (zero mean) over E‖u‖²;
    the tolerance is 5 standard errors of that mean.
    """
    model = load_model("moons")
    x_star, x, eps = _coupled(model, 20000, sigma, alpha)
    step = _candidate(model, solver, sigma, sigma_next)
    with torch.no_grad():
        u = x - step(x)
    divergence = _exact_divergence(lambda y: y - step(y), x).detach()
    gamma = stein_coefficient(u, x, divergence, sigma, alpha)
    gamma_star = oracle_coefficient(u, x, x_star)
    s = (sigma**2 / alpha) * divergence - (sigma / alpha) * batch_dot(u, eps)
    tolerance = 5 * (s.std() / math.sqrt(len(s))) / batch_dot(u, u).mean()
    assert abs(gamma - gamma_star) < tolerance, (gamma, gamma_star, float(tolerance))


@pytest.mark.parametrize("sigma,sigma_next", [(2.0, 1.0), (0.5, 0.3), (0.1, 0.02)])
def test_euler_with_exact_denoiser_gives_the_closed_form(sigma, sigma_next):
    """u = c (x − D), c = (σ − σ')/σ and E⟨x − D, D − x*⟩ = 0 for the exact D: γ* = σ/(σ − σ')."""
    model = load_model("tree")
    x_star, x, eps = _coupled(model, 40000, sigma, seed=2)
    step = _candidate(model, "euler", sigma, sigma_next)
    with torch.no_grad():
        u = x - step(x)
    closed_form = sigma / (sigma - sigma_next)
    divergence = _exact_divergence(lambda y: y - step(y), x).detach()
    gamma_star = oracle_coefficient(u, x, x_star)
    gamma = stein_coefficient(u, x, divergence, sigma)
    # γ − c = mean(n_b − c‖u_b‖²)/mean(‖u_b‖²) with zero-mean residuals: 5 standard errors of that mean.
    squared = batch_dot(u, u)
    for numerator_terms in (batch_dot(u, x - x_star), sigma**2 * divergence):
        residual = numerator_terms - closed_form * squared
        tolerance = 5 * residual.std() / math.sqrt(len(x)) / squared.mean()
        assert abs(float(numerator_terms.mean() / squared.mean()) - closed_form) < tolerance
    assert gamma == pytest.approx(closed_form, rel=0.05) and gamma_star == pytest.approx(closed_form, rel=0.05)


def test_fixed_gamma_relaxes_the_step_exactly():
    """γ clipped to a constant c: x₁ = x₀ − c (x₀ − T(x₀)) with T the plain Heun step."""
    common = dict(solver="heun", steps=4, batch=32, seed=5, dtype="float64")
    plain_states, stein_states = [], []
    sample("tree", on_step=lambda r, x, d: plain_states.append(x), **common)
    _, trace = sample("tree", on_step=lambda r, x, d: stein_states.append(x), stein=True, stein_gamma_min=2.0,
                      stein_gamma_max=2.0, **common)  # fmt: skip
    x0 = 80.0 * torch.randn((32, 2), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(stein_states[0], x0 - 2.0 * (x0 - plain_states[0]), rtol=1e-12, atol=1e-12)
    assert trace.steps[0]["stein_gamma"] == 2.0 and trace.steps[0]["stein_gamma_raw"] != 2.0
    assert "stein_gamma" not in trace.steps[-1]  # not on the final step to σ = 0


def test_gamma_one_is_the_plain_solver():
    common = dict(solver="dpmpp2m", steps=6, batch=32, seed=5)
    plain, _ = sample("tree", **common)
    stein, trace = sample("tree", stein=True, stein_gamma_min=1.0, stein_gamma_max=1.0, **common)
    assert torch.equal(plain, stein)
    assert all(s["stein_gamma"] == 1.0 for s in trace.steps[:-1])


def test_stein_acts_only_in_its_sigma_range_and_records_raw_and_clipped():
    _, trace = sample("tree", steps=8, batch=64, stein=True, stein_sigma_min=0.05, stein_sigma_max=5.0,
                      stein_gamma_min=0.5, stein_gamma_max=1.5)  # fmt: skip
    for step in trace.steps:
        acts = 0.05 <= step["sigma"] <= 5.0 and step["sigma_next"] > 0
        assert ("stein_gamma" in step) == acts
        if acts:
            assert step["stein_gamma"] == min(max(step["stein_gamma_raw"], 0.5), 1.5)


def test_oracle_in_the_loop_matches_the_closed_form_for_euler():
    """stein_gamma_oracle for an Euler candidate on the tree's exact denoiser ≈ σ_i/(σ_i − σ_{i+1})."""
    _, trace = sample("tree", solver="euler", steps=6, batch=4096, stein_oracle=True, dtype="float64")
    for step in trace.steps[:-1]:
        closed = step["sigma"] / (step["sigma"] - step["sigma_next"])
        assert step["stein_gamma_oracle"] == pytest.approx(closed, rel=0.1)


def test_unclipped_stein_blows_up_once_the_batch_leaves_the_forward_marginal():
    """docs/math.md §5's warning, made visible: after one γ > 1 jump towards D(x), the batch is far too
    concentrated for x ~ x* + σε, E‖u‖² collapses and the reference-free γ explodes."""
    _, trace = sample("tree", steps=8, batch=512, stein=True, stein_gamma_min=-1e9, stein_gamma_max=1e9, stein_oracle=True)
    raw = [s["stein_gamma_raw"] for s in trace.steps if "stein_gamma_raw" in s]
    oracle = [s["stein_gamma_oracle"] for s in trace.steps if "stein_gamma_oracle" in s]
    assert abs(raw[0] - oracle[0]) < 0.2 * oracle[0]  # step 0 starts from x* + σε: they agree
    assert max(raw[1:]) > 50 * max(oracle)


@pytest.mark.parametrize(
    "settings,parameter",
    [(dict(stein_probes=0), "stein_probes"), (dict(stein_gamma_min=2.0, stein_gamma_max=1.0), "stein_gamma_min"),
     (dict(stein_gamma_max=float("nan")), "stein_gamma_max"), (dict(stein_sigma_min=-1.0), "stein_sigma_min")],
)  # fmt: skip
def test_bad_stein_settings_name_the_parameter(settings, parameter):
    with pytest.raises(ParameterError) as err:
        sample("tree", batch=4, stein=True, **settings)
    assert err.value.parameter == parameter


def test_stein_oracle_needs_reference_samples():
    from stiffviz.models import CallableDenoiser

    model = CallableDenoiser(lambda x, s: 0.5 * x, shape=(2,))
    with pytest.raises(ParameterError, match="stein_oracle"):
        sample(model, batch=4, steps=2, stein_oracle=True)


@pytest.mark.parametrize("solver", ["euler", "heun", "bosh3", "dpm2", "dpmpp2m"])
def test_every_combination_runs(solver):
    """SteinDiff with ERK-Guid, CFG and Autoguidance together, every costly diagnostic on."""
    x, trace = sample("tree", solver=solver, steps=4, batch=32, cls="A", cfg=1.5, autoguidance=1.5, erk_guid=0.5,
                      stein=True, eig=True, lte_ref=True, lipschitz=True, stein_oracle=True)  # fmt: skip
    assert trace.status == "ok" and torch.isfinite(x).all()
    expected = {"stiffness", "eig_max", "stiffness_ratio", "lte_ref", "lipschitz", "stein_gamma", "stein_gamma_raw",
                "stein_gamma_oracle", "erk_active"}  # fmt: skip
    assert expected <= set(trace.fields())
    trace.to_json()


def test_ground_truth_diagnostics_never_move_a_stein_run():
    """Diagnostics draw from their own generator, so turning them on leaves the trajectory alone."""
    common = dict(steps=6, batch=128, seed=3, stein=True, stein_gamma_min=-1e6, stein_gamma_max=1e6)  # no clip hides γ
    plain, _ = sample("tree", **common)
    watched, trace = sample("tree", stein_oracle=True, eig=True, eig_method="power", lipschitz=True, **common)
    assert torch.equal(plain, watched)
