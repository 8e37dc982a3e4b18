"""The Learn tab's examples against closed forms: R(z) as a truncated exponential, eigen-decompositions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import stiffviz.teaching as teaching  # module import: pytest would collect teaching.test_equation
from stiffviz.errors import ParameterError
from stiffviz.solvers import get_solver

# Explicit RK methods with s = p ≤ 4 stages (Bogacki–Shampine: its 4th stage has weight 0) have
# R(z) = Σ_{k≤p} z^k/k!: the Taylor polynomial of e^z, written here independently of the tableaux.
ORDER = {"euler": 1, "heun": 2, "bosh3": 3, "rk4": 4}


def taylor_r(solver: str, z):
    return sum(np.asarray(z, dtype=complex) ** k / math.factorial(k) for k in range(ORDER[solver] + 1))


@pytest.mark.parametrize("solver", teaching.TEACHING_SOLVERS)
@pytest.mark.parametrize("lam,h", [(-1.0, 0.5), (-10.0, 0.21), (-3 + 4j, 0.3), (-0.5 + 6j, 0.4), (8j, 0.1)])
def test_measured_growth_is_the_stability_function(solver, lam, h):
    """|y_{n+1}/y_n| from the stepping loop equals |R(hλ)|, by the tableau and by the Taylor formula."""
    ex = teaching.test_equation(lam, h, 25, solver)
    assert ex.z == pytest.approx(h * lam)
    assert ex.amplification == pytest.approx(abs(taylor_r(solver, h * lam)), rel=1e-12)
    assert np.allclose(ex.growth, ex.amplification, rtol=1e-9, atol=0)
    assert ex.stable == (abs(taylor_r(solver, h * lam)) <= 1)
    assert ex.exact_growth == pytest.approx(math.exp(h * complex(lam).real))


def test_complex_state_is_the_power_of_r():
    """y_n = R(z)^n y0 as a complex number (phase included), not only in modulus."""
    lam, h, y0 = -2 + 5j, 0.1, 0.5 - 1j
    ex = teaching.test_equation(lam, h, 30, "heun", y0=y0)
    assert np.allclose(ex.y, y0 * taylor_r("heun", h * lam) ** np.arange(31), rtol=1e-11)
    assert np.allclose(ex.y_exact, y0 * np.exp(lam * h * np.arange(31)), rtol=1e-11)


def test_euler_with_lambda_minus_one_and_h_tenth_gives_powers_of_nine_tenths():
    ex = teaching.test_equation(-1.0, 0.1, 40, "euler")
    assert np.allclose(ex.t, 0.1 * np.arange(41), atol=1e-12)
    assert np.allclose(ex.y.real, 0.9 ** np.arange(41), rtol=1e-12, atol=0)
    assert np.all(ex.y.imag == 0)


@pytest.mark.parametrize("solver", teaching.TEACHING_SOLVERS)
def test_global_error_converges_with_the_solver_order(solver):
    """Error at t = 2 for N, 2N, 4N steps: log2 of successive ratios is the order."""
    lam = -1 + 2j
    errors = []
    for steps in (50, 100, 200):
        ex = teaching.test_equation(lam, 2.0 / steps, steps, solver)
        errors.append(abs(ex.y[-1] - np.exp(lam * 2.0)))
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.allclose(observed, ORDER[solver], atol=0.15), observed


def test_sampler_secant_estimate_recovers_h_abs_lambda():
    """For λ = a + ib the drift is |λ| times a rotation, so ρ̂ = ‖Λ Δx‖/‖Δx‖ = |λ| (up to the
    estimator's 1e−8 added to ‖Δx‖, here ~1e−4, hence rtol 1e−5)."""
    ex = teaching.test_equation(-3 + 4j, 0.1, 10, "heun")
    assert np.isnan(ex.secant_z[0])  # Heun's lagged pair starts at step 1
    assert np.allclose(ex.secant_z[1:], 0.5, rtol=1e-5)


def test_overflow_stops_the_run_with_a_message():
    ex = teaching.test_equation(-100.0, 0.1, 200, "rk4")  # |R(-10)| ≈ 291 per step
    assert "overflowed" in ex.message and len(ex.t) == len(ex.y) < 201
    assert np.all(np.isfinite(ex.y)) and np.allclose(ex.growth, abs(taylor_r("rk4", -10.0)), rtol=1e-9)


# ------------------------------------------------------------------ the stiff system
def eigen(lam_stiff, lam_slow, angle):
    """M and its eigen-decomposition from numpy (independent of the rotation the code builds)."""
    c, s = math.cos(angle), math.sin(angle)
    v_stiff, v_slow = np.array([c, s]), np.array([-s, c])
    matrix = lam_stiff * np.outer(v_stiff, v_stiff) + lam_slow * np.outer(v_slow, v_slow)
    values, vectors = np.linalg.eigh(matrix)
    return matrix, values, vectors


def in_basis(vectors, diagonal, y):
    """V diag(d) Vᵀ y for rows y."""
    return (vectors @ (diagonal[:, None] * (vectors.T @ np.atleast_2d(y).T))).T


@pytest.mark.parametrize("solver", teaching.TEACHING_SOLVERS)
def test_states_and_exact_lte_match_the_eigen_closed_form(solver):
    """y_n = V R(hΛ)^n Vᵀ y0,  y(t) = V e^{tΛ} Vᵀ y0,  ℓ_n = V (e^{hΛ} − R(hΛ)) Vᵀ y_n."""
    lam_stiff, lam_slow, angle, h, steps, x0 = -40.0, -1.0, 0.4, 0.03, 25, (1.0, -0.5)
    ex = teaching.stiff_system(lam_stiff, lam_slow, angle, h, steps, solver, x0=x0)
    matrix, values, vectors = eigen(lam_stiff, lam_slow, angle)
    assert np.allclose(ex.matrix, matrix, atol=1e-12)
    r = taylor_r(solver, h * values).real
    n = np.arange(steps + 1)
    assert np.allclose(ex.y, np.array([in_basis(vectors, r**k, x0)[0] for k in n]), rtol=1e-10, atol=1e-13)
    assert np.allclose(ex.y_exact, np.array([in_basis(vectors, np.exp(values * h * k), x0)[0] for k in n]), atol=1e-12)
    expected = in_basis(vectors, np.exp(h * values) - r, ex.y[:-1])
    assert np.allclose(ex.lte_exact, expected, rtol=1e-8, atol=1e-14)
    assert np.allclose(ex.v_stiff @ ex.v_slow, 0) and abs(ex.v_stiff @ vectors[:, 0]) == pytest.approx(1)


def closed_form_alignment(solver, lam_stiff, lam_slow, angle, h, steps, x0):
    """|cos(ℓ_n, v_stiff)| with no stepping at all: in eigen-coordinates ℓ_n has components
    (e^{z} − R(z)) R(z)^n c0 for z = hλ_stiff and hλ_slow, c0 the coordinates of x0."""
    c, s = math.cos(angle), math.sin(angle)
    c0 = np.array([c * x0[0] + s * x0[1], -s * x0[0] + c * x0[1]])
    z = h * np.array([lam_stiff, lam_slow])
    r = taylor_r(solver, z).real
    components = (np.exp(z) - r) * r ** np.arange(steps)[:, None] * c0
    return np.abs(components[:, 0]) / np.linalg.norm(components, axis=1)


@pytest.mark.parametrize("solver,h,steps", [("heun", 0.0475, 40), ("heun", 0.005, 200), ("bosh3", 0.01, 80),
                                           ("euler", 0.02, 60)])  # fmt: skip
def test_alignment_matches_its_closed_form(solver, h, steps):
    ex = teaching.stiff_system(-40.0, -1.0, math.radians(30), h, steps, solver)
    expected = closed_form_alignment(solver, -40.0, -1.0, math.radians(30), h, steps, (1.0, 1.0))
    assert np.allclose(ex.cos_exact, expected, atol=1e-6)


def test_near_the_boundary_the_error_stays_on_the_stiff_direction_and_with_small_h_it_turns():
    """Heun, h|λ_stiff| = 1.9: |R| = 0.905 barely damps the stiff mode and |e^z − R(z)| = 0.76,
    so ℓ_n stays on v_stiff. h|λ_stiff| = 0.2: the stiff mode dies (0.82^n) and ℓ_n turns to v_slow."""
    near = teaching.stiff_system(-40.0, -1.0, math.radians(30), 0.0475, 40, "heun")
    assert near.cos_exact.min() > 0.99 and near.cos_estimate.min() > 0.99
    small = teaching.stiff_system(-40.0, -1.0, math.radians(30), 0.005, 200, "heun")
    assert small.cos_exact[0] > 0.99 and small.cos_exact[-1] < 1e-6 and small.cos_estimate[-1] < 1e-6


def test_heun_embedded_estimate_is_half_h_m_squared_y():
    """Heun–Euler: e_n = (R_heun − R_euler)(hM) y_n = (hM)² y_n / 2."""
    ex = teaching.stiff_system(-40.0, -1.0, 0.7, 0.02, 20, "heun")
    hm = ex.h * eigen(-40.0, -1.0, 0.7)[0]
    assert np.allclose(ex.lte_estimate, (ex.y[:-1] @ (hm @ hm).T) / 2, rtol=1e-9, atol=1e-15)


def test_heun_exact_lte_tends_to_h_m_over_three_times_the_estimate():
    """ℓ_n = (hM)³y_n/6 + O(h⁴) = (hM/3) e_n + O(h⁴): the relative gap shrinks like h, and the
    directions agree as h → 0 (the estimate itself is the Euler predictor's error, order h²)."""
    gaps, angles = [], []
    for h in (0.004, 0.002, 0.001):
        ex = teaching.stiff_system(-40.0, -1.0, 0.7, h, 5, "heun")
        predicted = ex.lte_estimate @ (h * ex.matrix / 3).T
        gaps.append(np.max(np.linalg.norm(ex.lte_exact - predicted, axis=1) / np.linalg.norm(ex.lte_exact, axis=1)))
        norms = np.linalg.norm(ex.lte_exact, axis=1) * np.linalg.norm(predicted, axis=1)
        cos = np.sum(ex.lte_exact * predicted, axis=1) / norms
        angles.append(np.max(np.arccos(np.clip(cos, -1, 1))))
    assert gaps[-1] < 0.02 and np.allclose(np.array(gaps[:-1]) / np.array(gaps[1:]), 2, rtol=0.15)
    assert angles[-1] < angles[0] and angles[-1] < 1e-3


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_solvers_without_a_pair_have_no_estimate(solver):
    ex = teaching.stiff_system(-40.0, -1.0, 0.3, 0.02, 10, solver)
    assert ex.lte_estimate is None and ex.cos_estimate is None and ex.cos_exact.shape == (10,)


def test_mode_amplifications_and_stability():
    ex = teaching.stiff_system(-40.0, -1.0, 0.3, 0.055, 10, "heun")
    assert ex.z_stiff == pytest.approx(-2.2) and ex.amplification_stiff == pytest.approx(1 - 2.2 + 2.2**2 / 2)
    assert not ex.stable and teaching.stiff_system(-40.0, -1.0, 0.3, 0.045, 10, "heun").stable


# ------------------------------------------------------------------ input checks
SCALAR = dict(lam=-1.0, h=0.1, steps=10, solver="heun")
STIFF = dict(lam_stiff=-40.0, lam_slow=-1.0, angle=0.5, h=0.04, steps=10, solver="heun")


@pytest.mark.parametrize("change,parameter,limit", [
    (dict(lam=float("nan")), "lam", "finite"),
    (dict(lam=complex(1, 1)), "lam", "≤ 0"),
    (dict(lam=-2000.0), "lam", "1000"),
    (dict(h=0.0), "h", "(0, 10]"),
    (dict(h=-0.1), "h", "(0, 10]"),
    (dict(h=float("inf")), "h", "finite"),
    (dict(h=None), "h", "number"),
    (dict(lam=-100.0, h=0.2), "h", "≤ 10"),
    (dict(steps=0), "steps", "[1, 200]"),
    (dict(steps=201), "steps", "[1, 200]"),
    (dict(steps=2.5), "steps", "integer"),
    (dict(solver="dpm2"), "solver", "euler, heun, bosh3, rk4"),
    (dict(solver="nope"), "solver", "euler, heun, bosh3, rk4"),
    (dict(y0=0), "y0", "non-zero"),
])  # fmt: skip
def test_test_equation_refuses_bad_input(change, parameter, limit):
    with pytest.raises(ParameterError) as info:
        teaching.test_equation(**(SCALAR | change))
    assert info.value.parameter == parameter and limit in str(info.value)


@pytest.mark.parametrize("change,parameter,limit", [
    (dict(lam_slow=0.0), "lam_slow", "< 0"),
    (dict(lam_stiff=-0.5), "lam_stiff", "more negative"),
    (dict(lam_stiff=-5000.0), "lam_stiff", "1000"),
    (dict(angle=float("nan")), "angle", "finite"),
    (dict(h=0.5), "h", "≤ 10"),
    (dict(steps=1000), "steps", "[1, 200]"),
    (dict(x0=(0.0, 0.0)), "x0", "(0, 0)"),
    (dict(x0=(1.0,)), "x0", "2 components"),
    (dict(solver="dpmpp2m"), "solver", "euler, heun"),
])  # fmt: skip
def test_stiff_system_refuses_bad_input(change, parameter, limit):
    with pytest.raises(ParameterError) as info:
        teaching.stiff_system(**(STIFF | change))
    assert info.value.parameter == parameter and limit in str(info.value)


def test_excluded_dpm_solvers_really_break_the_identity():
    """Why dpm2 is not offered: its step on y' = λy depends on σ, so growth ≠ its nominal |R(z)|."""
    import torch

    from stiffviz.sampler import integrate

    lam, h = -10.0, 0.15
    sigmas = 1.0 + h * torch.arange(5, -1, -1, dtype=torch.float64)
    states = [torch.ones(1, 1, dtype=torch.float64)]
    integrate(lambda x, s: x + s * lam * x, sigmas, states[0], get_solver("dpm2"), diagnostics=False,
              on_step=lambda r, x, d: states.append(x))  # fmt: skip
    y = torch.cat(states).flatten().numpy()
    nominal = get_solver("dpm2").amplification(np.array(h * lam))
    assert not np.allclose(np.abs(y[1:] / y[:-1]), nominal, rtol=1e-3)
