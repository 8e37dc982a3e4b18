"""Tests for the noise-level schedules (docs/math.md §1), with every value recomputed here."""

from __future__ import annotations

import math

import pytest
import torch

from stiffviz import ParameterError
from stiffviz.schedules import karras, logsnr, make_schedule

NAN, INF = float("nan"), float("inf")


def _karras_by_hand(i: int, n: int, sigma_min: float, sigma_max: float, rho: float) -> float:
    """σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, docs/math.md §1."""
    hi, lo = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return (hi + i / (n - 1) * (lo - hi)) ** rho


def _assert_schedule_shape(s: torch.Tensor, steps: int, sigma_min: float, sigma_max: float):
    assert s.dtype == torch.float64
    assert s.shape == (steps + 1,)
    assert float(s[-1]) == 0.0  # appended σ_N = 0
    assert float(s[0]) == pytest.approx(sigma_max, rel=1e-14)
    assert float(s[-2]) == pytest.approx(sigma_min if steps > 1 else sigma_max, rel=1e-12)
    assert bool((s[1:] < s[:-1]).all()), "must be strictly decreasing"
    assert bool((s[:-1] > 0).all())


@pytest.mark.parametrize("steps", [2, 3, 8, 32])
@pytest.mark.parametrize("sigma_min,sigma_max,rho", [(0.002, 80.0, 7.0), (0.01, 10.0, 3.0), (0.05, 2.0, 1.0)])
def test_karras_formula_and_endpoints(steps, sigma_min, sigma_max, rho):
    s = karras(steps, sigma_min, sigma_max, rho)
    _assert_schedule_shape(s, steps, sigma_min, sigma_max)
    for i in range(steps):
        assert float(s[i]) == pytest.approx(_karras_by_hand(i, steps, sigma_min, sigma_max, rho), rel=1e-12)


def test_karras_defaults_are_edm():
    s = karras(18)
    _assert_schedule_shape(s, 18, 0.002, 80.0)
    assert float(s[9]) == pytest.approx(_karras_by_hand(9, 18, 0.002, 80.0, 7.0), rel=1e-12)
    assert torch.equal(make_schedule("karras", 18), s)


def test_karras_rho_changes_the_spacing():
    a, b = karras(10, 0.002, 80.0, 7.0), karras(10, 0.002, 80.0, 3.0)
    assert float(a[0]) == pytest.approx(float(b[0]), rel=1e-14)
    assert float(a[-2]) == pytest.approx(float(b[-2]), rel=1e-12)
    # larger ρ spends more steps at low noise: every interior level is lower
    assert bool((a[1:-2] < b[1:-2]).all())
    assert float(a[4]) == pytest.approx(_karras_by_hand(4, 10, 0.002, 80.0, 7.0), rel=1e-12)
    assert float(b[4]) == pytest.approx(_karras_by_hand(4, 10, 0.002, 80.0, 3.0), rel=1e-12)
    # ρ = 1 is linear in σ
    lin = karras(6, 0.5, 3.0, 1.0)
    torch.testing.assert_close(lin[:-1], torch.linspace(3.0, 0.5, 6, dtype=torch.float64), rtol=1e-13, atol=0)
    # ρ → ∞ tends to uniform in log σ: (a^{1/ρ} + t(b^{1/ρ} − a^{1/ρ}))^ρ → a^{1−t} b^t
    big = karras(7, 0.002, 80.0, 1e5)
    geometric = torch.tensor([80.0 ** (1 - t / 6) * 0.002 ** (t / 6) for t in range(7)], dtype=torch.float64)
    torch.testing.assert_close(big[:-1], geometric, rtol=1e-3, atol=0)


@pytest.mark.parametrize("steps", [2, 5, 16])
@pytest.mark.parametrize("sigma_min,sigma_max", [(0.002, 80.0), (0.1, 5.0)])
def test_logsnr_is_uniform_in_log_sigma(steps, sigma_min, sigma_max):
    s = logsnr(steps, sigma_min, sigma_max)
    _assert_schedule_shape(s, steps, sigma_min, sigma_max)
    log_s = s[:-1].log()
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    expected = [hi + i / (steps - 1) * (lo - hi) for i in range(steps)]
    torch.testing.assert_close(log_s, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    gaps = log_s[1:] - log_s[:-1]
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=0, atol=1e-12)
    assert torch.equal(make_schedule("logsnr", steps, sigma_min, sigma_max), s)


@pytest.mark.parametrize("name", ["karras", "logsnr"])
def test_single_step_is_sigma_max_then_zero(name):
    s = make_schedule(name, 1, 0.002, 80.0)
    assert s.dtype == torch.float64
    assert s.tolist() == [80.0, 0.0]


def test_logsnr_ignores_rho():
    assert torch.equal(make_schedule("logsnr", 9, rho=2.0), make_schedule("logsnr", 9, rho=7.0))


@pytest.mark.parametrize("name", ["karras", "logsnr"])
@pytest.mark.parametrize(
    "kwargs,parameter",
    [
        pytest.param(dict(steps=0), "steps", id="steps=0"),
        pytest.param(dict(steps=-3), "steps", id="steps=-3"),
        pytest.param(dict(steps=2.5), "steps", id="steps=2.5"),
        pytest.param(dict(steps=NAN), "steps", id="steps=nan"),
        pytest.param(dict(steps=INF), "steps", id="steps=inf"),
        pytest.param(dict(sigma_min=80.0, sigma_max=80.0), "sigma_min", id="sigma_min=sigma_max"),
        pytest.param(dict(sigma_min=90.0, sigma_max=80.0), "sigma_min", id="sigma_min>sigma_max"),
        pytest.param(dict(sigma_min=0.0), "sigma_min", id="sigma_min=0"),
        pytest.param(dict(sigma_min=-1.0), "sigma_min", id="sigma_min<0"),
        pytest.param(dict(sigma_min=NAN), "sigma_min", id="sigma_min=nan"),
        pytest.param(dict(sigma_max=NAN), "sigma_max", id="sigma_max=nan"),
        pytest.param(dict(sigma_max=INF), "sigma_max", id="sigma_max=inf"),
    ],
)
def test_bad_inputs_name_the_parameter(name, kwargs, parameter):
    args = dict(steps=8, sigma_min=0.002, sigma_max=80.0) | kwargs
    with pytest.raises(ParameterError) as err:
        make_schedule(name, **args)
    assert err.value.parameter == parameter
    assert parameter in str(err.value)


@pytest.mark.parametrize("rho", [0.0, -2.0, NAN, INF])
def test_bad_rho(rho):
    with pytest.raises(ParameterError) as err:
        karras(8, rho=rho)
    assert err.value.parameter == "rho"


def test_unknown_schedule():
    with pytest.raises(ParameterError) as err:
        make_schedule("linear", 8)
    assert err.value.parameter == "schedule"
    assert "karras" in str(err.value) and "logsnr" in str(err.value)
