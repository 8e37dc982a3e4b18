"""DEIS (tAB) against quantities computed here independently: Gauss–Legendre quadrature of the
Lagrange basis, the classical Adams–Bashforth rows, a hand-written tAB loop, the closed-form
solution of a Gaussian-data ODE, and the roots of the characteristic polynomial."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stiffviz import sample
from stiffviz.models import guided_denoiser, load_model
from stiffviz.sampler import integrate
from stiffviz.schedules import karras
from stiffviz.solvers import get_solver, nfe_for
from stiffviz.solvers.base import Evaluator, StepResult
from stiffviz.solvers.deis import adams_bashforth_weights

STEPS, BATCH, SEED = 10, 64, 5
GAUSS_U, GAUSS_W = np.polynomial.legendre.leggauss(12)  # exact for polynomials of degree ≤ 23


def quadrature_weights(sigmas: list[float], a: float, b: float) -> np.ndarray:
    """∫_a^b Π_{k≠j} (s − σ_k)/(σ_j − σ_k) ds by Gauss–Legendre, basis written out as a product."""
    s = 0.5 * (b - a) * GAUSS_U + 0.5 * (a + b)
    out = []
    for j, sj in enumerate(sigmas):
        basis = np.ones_like(s)
        for k, sk in enumerate(sigmas):
            if k != j:
                basis *= (s - sk) / (sj - sk)
        out.append(0.5 * (b - a) * np.sum(GAUSS_W * basis))
    return np.array(out)


def test_weights_are_the_classical_adams_bashforth_rows_on_equal_steps():
    rows = {1: [1], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}
    for r, row in rows.items():
        assert np.allclose(adams_bashforth_weights(-np.arange(r)), row, rtol=0, atol=1e-13)


def test_weights_match_quadrature_of_the_lagrange_basis_on_uneven_nodes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sigmas = np.sort(rng.uniform(0.1, 80.0, size=5))[::-1]  # σ_{i−3} > … > σ_i > σ_{i+1}
        sigma, sigma_next, past = sigmas[3], sigmas[4], sigmas[:4][::-1]  # past[0] = σ_i
        h = sigma_next - sigma
        ours = h * adams_bashforth_weights((past - sigma) / h)
        assert np.allclose(ours, quadrature_weights(list(past), sigma, sigma_next), rtol=1e-10, atol=1e-12)


def reference_deis(D, sigmas: list[float], x: torch.Tensor, w_stiff: float = 0.0, w_con: float = 0.5):
    """A hand-written tAB loop (order min(i + 1, 4), weights by quadrature in σ), with ERK-Guid's
    consecutive-pair correction added with the plus sign; returns the final state and ‖e_i‖."""
    xs, fs, ss, errors = [], [], [], []
    for s, sn in zip(sigmas[:-1], sigmas[1:]):
        f = (x - D(x, s)) / s
        if sn == 0:
            return x - s * f, errors
        xs.insert(0, x), fs.insert(0, f), ss.insert(0, s)
        del xs[4:], fs[4:], ss[4:]
        w = quadrature_weights(ss, s, sn)
        x_new = x + sum(float(wj) * fj for wj, fj in zip(w, fs))
        if len(ss) > 1:
            w_low = quadrature_weights(ss[:-1], s, sn)
            x_low = x + sum(float(wj) * fj for wj, fj in zip(w_low, fs))
            errors.append((x_new - x_low).norm(dim=1))
            dx, df, h = x - xs[1], f - fs[1], ss[1] - s
            rho = df.norm(dim=1) / (dx.norm(dim=1) + 1e-8)
            v = df / (df.norm(dim=1, keepdim=True) + 1e-8)
            gain = h * (rho > w_con).double() * (w_stiff * h * rho) ** 2 * (f * v).sum(1)
            x_new = x_new + gain[:, None] * v
        x = x_new
    return x, errors


@pytest.mark.parametrize("denoise_to_zero", [True, False])
@pytest.mark.parametrize("w_stiff", [0.0, 0.75])
def test_deis_matches_a_hand_written_tab_loop(denoise_to_zero, w_stiff):
    model = load_model("tree")
    D = guided_denoiser(model, None, 1.0, 1.0)
    sigmas = karras(STEPS).tolist()
    sigmas = sigmas if denoise_to_zero else sigmas[:-1]
    x0 = sigmas[0] * torch.randn((BATCH, 2), generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
    with torch.no_grad():
        expected, errors = reference_deis(D, sigmas, x0, w_stiff, 0.1)
        x, trace = sample("tree", solver="deis", steps=STEPS, batch=BATCH, seed=SEED, dtype="float64",
                          erk_guid=w_stiff or None, erk_con=0.1, denoise_to_zero=denoise_to_zero)  # fmt: skip
    assert torch.allclose(x, expected, rtol=1e-9, atol=1e-11)
    lte = [torch.as_tensor(s["lte"]) for s in trace.steps if "lte" in s]
    assert len(lte) == len(errors) and all(torch.allclose(a, b, rtol=1e-7, atol=1e-12) for a, b in zip(lte, errors))
    assert trace.summary["nfe"] == nfe_for("deis", STEPS, denoise_to_zero) == STEPS - (not denoise_to_zero)
    if w_stiff:
        plain, _ = reference_deis(D, sigmas, x0)
        assert (x - plain).norm() > 1e-6
        assert [s["i"] for s in trace.steps if "erk_active" in s] == list(range(1, STEPS - 1))


# dx/dσ = σ x/(s² + σ²) for data N(0, s²): D(x; σ) = s² x/(s² + σ²), x(σ) = x(σ0) √((s² + σ²)/(s² + σ0²)).
S2, SIGMA0, SIGMA1 = 0.5, 1.0, 0.1


def gaussian_denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return S2 * x / (S2 + sigma**2)


def exact(x0: torch.Tensor, sigma: float) -> torch.Tensor:
    return x0 * math.sqrt((S2 + sigma**2) / (S2 + SIGMA0**2))


def _orders(errors: list[float]) -> np.ndarray:
    return np.log2(np.array(errors[:-1]) / np.array(errors[1:]))


def test_with_exact_starting_values_the_method_is_fourth_order():
    """Started from the exact states at the first four levels, tAB3 is Adams–Bashforth 4: error ∝ h⁴."""
    x0 = torch.ones(1, 1, dtype=torch.float64)
    errors = []
    for n in (64, 128, 256, 512):
        grid = np.linspace(SIGMA0, SIGMA1, n + 1)
        evaluate, solver, history = Evaluator(gaussian_denoise), get_solver("deis"), []
        for s in grid[:3]:  # exact past stages, as a multistep method's starting values
            history.append(StepResult(exact(x0, s), None, [evaluate(exact(x0, s), float(s))], 1.0))
        x = exact(x0, grid[3])
        for s, sn in zip(grid[3:-1], grid[4:]):
            step = solver.step(evaluate, evaluate(x, float(s)), float(sn), history)
            history = [*history[-2:], step]
            x = step.x
        errors.append(float((x - exact(x0, SIGMA1)).abs()))
    assert np.all(np.abs(_orders(errors) - 4) < 0.15), _orders(errors)


def test_the_warm_up_keeps_the_global_order_at_two():
    """The authors' warm-up (Euler, AB2, AB3, then AB4) leaves the first step's O(h²) error in place."""
    x0 = torch.full((1, 1), SIGMA0, dtype=torch.float64)
    errors = []
    for n in (64, 128, 256, 512):
        grid = torch.linspace(SIGMA0, SIGMA1, n + 1, dtype=torch.float64)
        x, _ = integrate(gaussian_denoise, grid, x0, get_solver("deis"), diagnostics=False)
        errors.append(float((x - exact(x0, SIGMA1)).abs()))
    assert np.all(np.abs(_orders(errors) - 2) < 0.1), _orders(errors)


def _largest_root(coefficients_of_z: list[float], z: float) -> float:
    """Largest |ζ| of ζ^r − ζ^{r−1} − z Σ β_j ζ^{r−1−j} = 0, by numpy.roots."""
    r = len(coefficients_of_z)
    poly = np.zeros(r + 1)
    poly[0], poly[1] = 1.0, -1.0
    poly[1:] -= z * np.array(coefficients_of_z)
    return float(np.abs(np.roots(poly)).max())


def test_stability_boundary_and_growth_factor_from_the_characteristic_roots():
    rows = {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12], 4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}
    scan = np.linspace(1e-4, 2.5, 25_000)
    for r, row in rows.items():
        stable = np.array([_largest_root(row, -x) <= 1 + 1e-9 for x in scan])
        boundary = scan[np.argmin(stable)]  # first unstable point
        assert boundary == pytest.approx(get_solver("deis").__class__(r).stability_boundary, abs=2e-4)
    solver = get_solver("deis")
    z = np.array([-0.2, -0.29, -0.31, -1.0, 0.1, -0.1 + 0.2j])
    expected = [float(np.abs(np.roots([1, -1 - zi * 55 / 24, zi * 59 / 24, -zi * 37 / 24, zi * 9 / 24])).max()) for zi in z]
    assert np.allclose(solver.amplification(z), expected, rtol=1e-10)


def test_steps_report_the_boundary_of_their_order():
    _, trace = sample("tree", solver="deis", steps=6, batch=8)
    assert [s["stability_boundary"] for s in trace.steps[:5]] == pytest.approx([2.0, 1.0, 6 / 11, 0.3, 0.3])
