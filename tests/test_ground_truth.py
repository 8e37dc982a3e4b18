"""Jacobian ground truth against independent computations (docs/math.md §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import linear_drift_model
from stiffviz import integrate, load_model, sample
from stiffviz.diagnostics.ground_truth import DiagnosticOptions
from stiffviz.diagnostics.lipschitz import lipschitz_constant
from stiffviz.diagnostics.reference import fine_solution
from stiffviz.diagnostics.spectrum import ExactSpectrum, IterativeSpectrum, lanczos_ritz_values
from stiffviz.models import guided_denoiser
from stiffviz.solvers import get_solver
from stiffviz.solvers.base import Evaluator


def _noisy(model, n, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    return model.sample_reference(n, g) + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _batch_jacobian(fn, x):
    """(B, d, d) per-sample Jacobians of a row-wise map by reverse-mode autograd, one pass per output.

    Rows do not interact, so ∂(Σ_b fn(x)_{b,k})/∂x_b is row k of sample b's Jacobian.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        rows = [torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)[0] for k in range(out.shape[1])]
    return torch.stack(rows, 1)


def _autograd_drift_jacobian(denoise, x, sigma):
    """(B, d, d) Jacobian of f = (x − D)/σ per sample."""
    return _batch_jacobian(lambda y: (y - denoise(y, sigma)) / sigma, x)


def _eigh_dominant(j):
    values, vectors = torch.linalg.eigh(0.5 * (j + j.transpose(1, 2)))
    k = values.abs().argmax(1)
    rows = torch.arange(len(k))
    ordered = values.abs().sort(1, descending=True).values
    return values[rows, k], vectors[rows, :, k], ordered[:, 1] / ordered[:, 0]


@pytest.mark.parametrize("name", ["tree", "rings", "moons", "swissroll"])
@pytest.mark.parametrize("sigma", [0.02, 0.3, 3.0])
def test_exact_spectrum_matches_eigh_of_autograd_jacobian(name, sigma):
    model = load_model(name)
    denoise = guided_denoiser(model)
    x = _noisy(model, 24, sigma, seed=3)
    value, vector, _ = _eigh_dominant(_autograd_drift_jacobian(denoise, x, sigma))
    exact = ExactSpectrum(denoise.jacobian).dominant(x, sigma)
    assert torch.allclose(exact.value, value, rtol=1e-8, atol=1e-10)
    assert torch.allclose((exact.vector * vector).sum(1).abs(), torch.ones(24, dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize("name", ["tree", "rings", "moons", "swissroll"])
@pytest.mark.parametrize("sigma", [0.02, 0.3])
def test_power_iteration_matches_eigh_of_autograd_jacobian(name, sigma):
    """Where the spectral gap allows convergence (at large σ, J ≈ I/σ is nearly isotropic)."""
    model = load_model(name)
    denoise = guided_denoiser(model)
    x = _noisy(model, 24, sigma, seed=3)
    value, vector, gap = _eigh_dominant(_autograd_drift_jacobian(denoise, x, sigma))
    power = IterativeSpectrum(denoise, iterations=300).dominant(x, sigma)
    converged = gap < 0.9  # |λ₂/λ₁|^300 < 2e-14: power iteration must have converged there
    assert converged.sum() >= 12
    assert torch.allclose(power.value[converged], value[converged], rtol=1e-6)
    cos = (power.vector * vector).sum(1).abs()
    assert (cos[converged] > 1 - 1e-6).all()


def test_power_iteration_warm_start_from_the_eigenvector_is_exact():
    model = load_model("tree")
    denoise = guided_denoiser(model)
    x = _noisy(model, 8, 0.1, seed=4)
    value, vector, _ = _eigh_dominant(_autograd_drift_jacobian(denoise, x, 0.1))
    one_step = IterativeSpectrum(denoise, iterations=1).dominant(x, 0.1, start=vector)
    assert torch.allclose(one_step.value, value, rtol=1e-9)
    assert ((one_step.vector * vector).sum(1) > 1 - 1e-9).all()  # sign kept towards the start


def test_stiffness_ratio_exact_and_lanczos_match_eigh():
    model = load_model("tree")
    denoise = guided_denoiser(model, 1, cfg=2.0)
    x = _noisy(model, 16, 0.05, seed=5)
    eigenvalues = torch.linalg.eigvalsh(_autograd_drift_jacobian(denoise, x, 0.05)).abs()
    expected = eigenvalues.amax(1) / eigenvalues.amin(1)
    assert torch.allclose(ExactSpectrum(denoise.jacobian).stiffness_ratio(x, 0.05), expected, rtol=1e-8)
    # d = 2: two Lanczos steps span the space, so the Ritz values are the eigenvalues.
    assert torch.allclose(IterativeSpectrum(denoise, lanczos_iterations=2).stiffness_ratio(x, 0.05), expected, rtol=1e-6)


def test_lanczos_extreme_ritz_values_on_a_larger_symmetric_matrix():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(3, 30, 30, generator=g, dtype=torch.float64))
    spectrum = torch.linspace(1, 100, 30, dtype=torch.float64) ** 1.5
    a = q @ torch.diag_embed(spectrum.expand(3, 30)) @ q.transpose(1, 2)
    matvec = lambda v: torch.einsum("bij,bj->bi", a, v)  # noqa: E731
    full = lanczos_ritz_values(matvec, torch.randn(3, 30, generator=g, dtype=torch.float64), 30)
    assert torch.allclose(full, spectrum.expand(3, 30), rtol=1e-8)
    few = lanczos_ritz_values(matvec, torch.randn(3, 30, generator=g, dtype=torch.float64), 12)
    assert torch.allclose(few[:, -1], spectrum[-1].expand(3), rtol=1e-3)  # the largest converges first
    assert (few[:, 0] >= spectrum[0] - 1e-9).all()  # Ritz values lie inside the spectrum


def test_power_and_exact_agree_along_a_sampling_run():
    """The same trajectory (diagnostics never move it), eig_max by JVP power iteration vs analytic."""
    common = dict(solver="heun", steps=8, batch=64, seed=2, dtype="float64", eig=True)
    _, exact = sample("tree", eig_method="exact", **common)
    _, power = sample("tree", eig_method="power", eig_iterations=60, lanczos_iterations=2, **common)
    stiff = exact.column("sigma") < 2.0  # at large σ, J ≈ I/σ has no gap for power iteration to use
    a, b = exact.column("eig_max")[stiff], power.column("eig_max")[stiff]
    relative = np.abs(a - b) / np.abs(a)
    assert np.median(relative) < 1e-6 and np.mean(relative < 1e-3) > 0.9
    assert np.allclose(exact.column("stiffness_ratio"), power.column("stiffness_ratio"), rtol=1e-5)


@pytest.mark.parametrize("ratio", [1000.0, 100.0, 10.0, 3.0, 1.5])
def test_lte_aligns_with_the_stiff_eigenvector_and_fades_with_the_ratio(ratio):
    """f = A x, A = −Q diag(λ, 1) Qᵀ: Heun's error is e = (h²/2) A² x, so at x = Q(1, 1)ᵀ
    |cos(e, v₁)| = λ²/√(λ⁴ + 1) exactly; the stiffness ratio is λ."""
    angle = 0.3
    q = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    a = -q @ torch.diag(torch.tensor([ratio, 1.0], dtype=torch.float64)) @ q.T
    model = linear_drift_model(a)
    x0 = (q @ torch.ones(2, dtype=torch.float64)).expand(3, 2).clone()
    h = 0.5 / ratio
    sigmas = torch.tensor([1.0, 1.0 - h, 1.0 - 2 * h], dtype=torch.float64)
    options = DiagnosticOptions(eig=True, eig_method="power", eig_iterations=80, lanczos_iterations=2, lte_ref=True)
    _, trace = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver("heun"), diagnostics=options)
    step = trace.steps[0]
    expected = ratio**2 / math.sqrt(ratio**4 + 1)
    assert np.allclose(step["align_cos_true"], expected, rtol=1e-9)
    assert np.allclose(step["stiffness_ratio"], ratio, rtol=1e-6)
    assert np.allclose(np.abs(step["eig_max"]), ratio, rtol=1e-9)
    if ratio >= 100:
        assert (step["align_cos_true"] > 0.99).all() and (step["align_cos_ref"] > 0.99).all()


def test_alignment_fades_as_stiffness_falls_on_a_sampled_linear_problem():
    """The same statement on random states: median |cos(e, v₁)| decreases with the ratio."""
    medians = []
    for ratio in (200.0, 20.0, 4.0, 1.5):
        a = -torch.diag(torch.tensor([ratio, 1.0], dtype=torch.float64))
        model = linear_drift_model(a)
        x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        h = 0.5 / ratio
        sigmas = torch.tensor([1.0, 1.0 - h], dtype=torch.float64)
        _, trace = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver("heun"),
                             diagnostics=DiagnosticOptions(eig=True, eig_method="power"))  # fmt: skip
        medians.append(np.median(trace.steps[0]["align_cos_true"]))
    assert medians[0] > 0.99 and all(a > b for a, b in zip(medians, medians[1:])), medians


def test_reference_solution_matches_matrix_exponential():
    """x_ref on f = A x is exp((σ_{i+1} − σ_i) A) x_i; lte_ref = ‖x^H − x_ref‖."""
    a = torch.tensor([[-30.0, 4.0], [4.0, -2.0]], dtype=torch.float64)
    model = linear_drift_model(a)
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    h = -0.04
    exact = x0 @ torch.linalg.matrix_exp(h * a).T
    fine = fine_solution(Evaluator(lambda x, s: model(x, s)), x0, 1.0, 1.0 + h, substeps=32)
    # RK4's local error (|h|λ/32)⁵/120 ≈ 6e-10 per sub-step, 32 of them: about 2e-8.
    assert torch.allclose(fine, exact, rtol=1e-7, atol=1e-9)
    sigmas = torch.tensor([1.0, 1.0 + h], dtype=torch.float64)
    x1, trace = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver("heun"),
                          diagnostics=DiagnosticOptions(lte_ref=True))  # fmt: skip
    # The same ~1e-7 reference error, now relative to ‖e*‖ ≈ 0.1–0.5.
    assert np.allclose(trace.steps[0]["lte_ref"], (x1 - exact).norm(dim=1).numpy(), rtol=1e-5)


def test_lipschitz_matches_exact_spectral_norm_of_the_step_map():
    model = load_model("tree")
    denoise = guided_denoiser(model)
    evaluate = Evaluator(denoise)
    heun = get_solver("heun")
    step_map = lambda y: heun.step(evaluate, evaluate(y, 0.3), 0.15, []).x  # noqa: E731
    x = _noisy(model, 16, 0.3, seed=6)
    jac = _batch_jacobian(step_map, x)
    singular = torch.linalg.svdvals(jac)
    estimate = lipschitz_constant(step_map, x, torch.ones_like(x), iterations=100)
    converged = singular[:, 1] / singular[:, 0] < 0.9
    assert converged.sum() >= 8
    assert torch.allclose(estimate.value[converged], singular[converged, 0], rtol=1e-8)
    assert (estimate.value <= singular[:, 0] * (1 + 1e-9)).all()  # never above the true norm


def test_lipschitz_in_the_loop_is_the_stability_function_on_a_linear_problem():
    """Heun on f = A x: T(x) = R(hA) x with R(z) = 1 + z + z²/2, so L = max_j |R(hλ_j)|."""
    lams = torch.tensor([-60.0, -2.0], dtype=torch.float64)
    model = linear_drift_model(torch.diag(lams))
    h = -0.04
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    _, trace = integrate(lambda x, s: model(x, s), torch.tensor([1.0, 1.0 + h], dtype=torch.float64), x0,
                         get_solver("heun"), diagnostics=DiagnosticOptions(lipschitz=True, lipschitz_iterations=50))  # fmt: skip
    z = h * lams
    expected = (1 + z + z**2 / 2).abs().max().item()
    assert expected > 1  # hλ = 2.4 lies outside Heun's stability interval: the map expands
    assert np.allclose(trace.steps[0]["lipschitz"], expected, rtol=1e-9)
