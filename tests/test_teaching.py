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


# ------------------------------------------------------------------ the sweep over h
def eigen_lte(solver, lam_stiff, lam_slow, angle, h, steps, x0=(1.0, 1.0)):
    """Without any stepping: ℓ_n = (e^{hM} − R(hM)) y_n with y_n = R(hM)^n y_0, in the eigenbasis of
    numpy's ``eigh`` (R the Taylor polynomial). Returns |cos(ℓ_n, v_stiff)|, ‖ℓ_n‖/‖y_n‖ and the
    eigen-components (n, 2) of y_n, columns in ``eigh``'s order, and that order's stiff column."""
    _, values, vectors = eigen(lam_stiff, lam_slow, angle)
    z = h * values
    r = taylor_r(solver, z).real
    y = r ** np.arange(steps)[:, None] * (vectors.T @ np.asarray(x0, dtype=float))
    lte = (np.exp(z) - r) * y
    stiff = int(np.argmin(values))
    cos = np.abs(lte[:, stiff]) / np.linalg.norm(lte, axis=1)
    return cos, np.linalg.norm(lte, axis=1) / np.linalg.norm(y, axis=1), y, stiff, z


ROUNDING = 1e-10  # ‖ℓ_n‖/‖y_n‖ below this: the measured direction is float64 rounding of y_n, not ℓ_n


@pytest.mark.parametrize("solver", teaching.TEACHING_SOLVERS)
@pytest.mark.parametrize("lam_stiff,lam_slow,degrees,h,steps", [
    (-40.0, -1.0, 30, 0.045, 40), (-40.0, -1.0, 30, 0.01, 80), (-10.0, -5.0, 10, 0.1, 30), (-200.0, -2.0, 70, 0.005, 100),
])  # fmt: skip
def test_sweep_matches_the_eigen_closed_form(solver, lam_stiff, lam_slow, degrees, h, steps):
    """Every row's median and last-step |cos(ℓ_n, v_stiff)| against numpy's eigh and R(z), wherever
    the LTE is above rounding (rk4 with small h is not: its slow error there is ~1e−17‖y‖)."""
    angle = math.radians(degrees)
    sw = teaching.alignment_sweep(lam_stiff, lam_slow, angle, h, steps, solver)
    assert sw.boundary == get_solver(solver).stability_boundary and sw.message == ""
    assert np.allclose(sw.steps * sw.h, steps * h, rtol=1e-12) and np.allclose(sw.z, -lam_stiff * sw.h)
    assert np.all(np.diff(sw.z) > 0) and sw.z[-1] <= 1.1 * sw.boundary + 1e-9
    compared = 0
    for k, (hk, nk) in enumerate(zip(sw.h, sw.steps)):
        cos, rel, *_ = eigen_lte(solver, lam_stiff, lam_slow, angle, hk, nk)
        middle = np.argsort(cos)[[(nk - 1) // 2, nk // 2]]
        if rel[middle].min() > ROUNDING:
            assert sw.median_exact[k] == pytest.approx(np.median(cos), abs=1e-5)
            compared += 1
        if rel[-1] > ROUNDING:
            assert sw.last_exact[k] == pytest.approx(cos[-1], abs=1e-5)
            compared += 1
    assert compared >= len(sw.z) // 2  # at least a quarter of all values are checked (rk4, λ ratio 100: 22 of 82)


def test_heun_sweep_estimate_matches_half_h_m_squared_closed_form():
    """Heun's e_n = (hM)² y_n / 2: eigen-components z² R(z)^n c_0 / 2."""
    angle = math.radians(30)
    sw = teaching.alignment_sweep(-40.0, -1.0, angle, 0.045, 40, "heun")
    for k, (hk, nk) in enumerate(zip(sw.h, sw.steps)):
        _, _, y, stiff, z = eigen_lte("heun", -40.0, -1.0, angle, hk, nk)
        estimate = z**2 / 2 * y
        cos = np.abs(estimate[:, stiff]) / np.linalg.norm(estimate, axis=1)
        assert sw.median_estimate[k] == pytest.approx(np.median(cos), abs=1e-6)
        assert sw.last_estimate[k] == pytest.approx(cos[-1], abs=1e-6)


@pytest.mark.parametrize("solver", teaching.TEACHING_SOLVERS)
def test_sweep_row_of_the_chosen_h_is_the_stiff_system_run(solver):
    """Same h and steps, so the same values (up to rounding: the sweep steps y' = (hM)y with step 1;
    rk4's slow error at h|λ_stiff| = 1.8 is ~1e−9‖y‖, so its direction carries ~1e−7 of rounding)."""
    angle = math.radians(30)
    sw = teaching.alignment_sweep(-40.0, -1.0, angle, 0.045, 40, solver)
    ex = teaching.stiff_system(-40.0, -1.0, angle, 0.045, 40, solver)
    k = sw.chosen
    assert sw.steps[k] == 40 and sw.h[k] == 0.045 and sw.z_chosen == pytest.approx(1.8)
    assert sw.median_exact[k] == pytest.approx(np.median(ex.cos_exact), abs=1e-6)
    assert sw.last_exact[k] == pytest.approx(ex.cos_exact[-1], abs=1e-6)
    if ex.cos_estimate is None:
        assert sw.median_estimate is None and sw.last_estimate is None
    else:
        assert sw.median_estimate[k] == pytest.approx(np.median(ex.cos_estimate), abs=1e-6)
        assert sw.last_estimate[k] == pytest.approx(ex.cos_estimate[-1], abs=1e-6)


@pytest.mark.parametrize("solver", teaching.TEACHING_SOLVERS)
def test_with_the_default_lambdas_the_error_turns_to_v_stiff_towards_the_boundary(solver):
    """The claim of the Learn tab's text, for λ_stiff = −40, λ_slow = −1 over T = 40 × 0.045: with
    small h the error has turned to v_slow (median and last |cos| < 0.01 at h|λ_stiff| ≈ 0.5; at the
    smallest, 0.12, < 0.05: rk4's slow error there is at rounding level), and for h|λ_stiff| in
    [0.9, 1] × boundary it stays on v_stiff (median and last step > 0.99)."""
    sw = teaching.alignment_sweep(-40.0, -1.0, math.radians(30), 0.045, 40, solver)
    near = (sw.z >= 0.9 * sw.boundary) & (sw.z <= sw.boundary)
    half = np.argmin(np.abs(sw.z - 0.5))
    assert sw.z[0] == pytest.approx(0.12) and near.sum() >= 3 and abs(sw.z[half] - 0.5) < 0.05
    assert sw.median_exact[0] < 0.05 and sw.median_exact[half] < 0.01 and sw.last_exact[half] < 0.01
    assert sw.median_exact[near].min() > 0.99 and sw.last_exact[near].min() > 0.99
    assert np.all(sw.median_exact[sw.z > sw.boundary] > 0.99)  # beyond: the stiff mode grows
    if solver != "rk4":  # the turn is monotone in h|λ_stiff| (rk4's small-h values are rounding)
        assert np.diff(sw.median_exact).min() > -1e-4 and np.diff(sw.last_exact).min() > -1e-4


def test_with_a_fixed_number_of_steps_small_h_ends_before_the_turn():
    """Why the sweep keeps the duration: with N = 40 steps fixed (closed form), h|λ_stiff| = 0.05 ends
    at t = 0.05 before the stiff part of the error has decayed (|cos| ≈ 1), while h|λ_stiff| = 1 has turned."""
    angle = math.radians(30)
    small, *_ = eigen_lte("heun", -40.0, -1.0, angle, 0.05 / 40, 40)
    middle, *_ = eigen_lte("heun", -40.0, -1.0, angle, 1.0 / 40, 40)
    assert small[-1] > 0.99 and middle[-1] < 1e-3


def test_sweep_range_follows_the_duration_and_leaves_out_a_chosen_h_beyond_it():
    short = teaching.alignment_sweep(-40.0, -1.0, 0.5, 0.001, 5, "heun")  # T|λ| = 0.2: N from 5 down to 1
    assert list(short.steps) == [5, 4, 3, 2, 1] and short.chosen == 0 and short.z[-1] == pytest.approx(0.2)
    beyond = teaching.alignment_sweep(-40.0, -1.0, 0.5, 0.1, 20, "rk4")  # h|λ| = 4 > 1.1 × 2.785
    assert beyond.chosen is None and beyond.z_chosen == pytest.approx(4.0) and beyond.z.max() <= 1.1 * 2.7853
    assert np.all(np.isfinite(beyond.median_exact)) and beyond.steps.max() <= teaching.SWEEP_MAX_STEPS


def test_sweep_refuses_what_stiff_system_refuses():
    with pytest.raises(ParameterError) as info:
        teaching.alignment_sweep(**(STIFF | dict(h=0.5)))
    assert info.value.parameter == "h"
    with pytest.raises(ParameterError) as info:
        teaching.alignment_sweep(**STIFF, points=1)
    assert info.value.parameter == "points"


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
    """Why dpm2 is not offered: its step on y' = λy is 1 + z + c_i z² with c_i = √σ_i/(√σ_i + √σ_{i+1}),
    which depends on σ (written out here from the midpoint σ_mid = √(σ_i σ_{i+1})), not its nominal R(z) (c = ½)."""
    import torch

    from stiffviz.sampler import integrate

    lam, h = -10.0, 0.15
    sigmas = 1.0 + h * torch.arange(5, -1, -1, dtype=torch.float64)
    states = [torch.ones(1, 1, dtype=torch.float64)]
    integrate(lambda x, s: x + s * lam * x, sigmas, states[0], get_solver("dpm2"), diagnostics=False,
              on_step=lambda r, x, d: states.append(x))  # fmt: skip
    y = torch.cat(states).flatten().numpy()
    s = sigmas.numpy()
    z = (s[1:] - s[:-1]) * -lam  # D = x + σλx gives the drift f = (x − D)/σ = −λx, stepped over h = σ_{i+1} − σ_i
    c = np.sqrt(s[:-1]) / (np.sqrt(s[:-1]) + np.sqrt(s[1:]))
    np.testing.assert_allclose(y[1:] / y[:-1], 1 + z + c * z**2, rtol=1e-12)
    assert np.all(np.diff(c) > 0) and np.all((0.5 < c) & (c < 1))  # σ-dependent, never the nominal ½
    nominal = get_solver("dpm2").amplification(z)
    np.testing.assert_allclose(nominal, np.abs(1 + z + z**2 / 2), rtol=1e-12)
    assert np.all(np.abs(np.abs(y[1:] / y[:-1]) - nominal) > 1e-3)
