"""The sampling loop: determinism, the noise contract, diagnostics, divergence and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import linear_drift_model
from stiffviz import ParameterError, integrate, sample
from stiffviz.models import CallableDenoiser
from stiffviz.schedules import karras
from stiffviz.solvers import get_solver


def test_same_seed_same_samples_and_noise_contract():
    a, _ = sample("moons", steps=1, batch=16, seed=7)
    b, _ = sample("moons", steps=1, batch=16, seed=7)
    c, _ = sample("moons", steps=1, batch=16, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # One step to σ = 0 returns D(x_0) for x_0 = σ_max · randn(seed) drawn on the CPU.
    from stiffviz import load_model

    model = load_model("moons")
    x0 = 80.0 * torch.randn((16, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float32)
    assert torch.allclose(a, model(x0, 80.0), atol=1e-6)


def test_float32_close_to_float64_from_the_same_start():
    """Same start state in both precisions (randn itself differs between dtypes, by the noise contract)."""
    from stiffviz import load_model

    model = load_model("tree")
    x0 = 80.0 * torch.randn((64, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = {}
    for dtype in (torch.float32, torch.float64):
        with torch.no_grad():
            out[dtype], _ = integrate(lambda x, s: model(x, s), karras(16), x0.to(dtype), get_solver("heun"))
    assert out[torch.float32].dtype == torch.float32
    assert torch.allclose(out[torch.float32].double(), out[torch.float64], atol=1e-3)


def test_diagnostics_do_not_change_the_trajectory():
    on, trace_on = sample("tree", steps=12, batch=32, seed=2, erk_guid=0.75)
    off, trace_off = sample("tree", steps=12, batch=32, seed=2, erk_guid=0.75, diagnostics=False)
    assert torch.equal(on, off)
    assert "lte" in trace_on.fields() and "lte" not in trace_off.fields()
    assert "erk_correction" in trace_off.fields()  # ERK-Guid still records what it did


def test_secant_stiffness_is_exact_on_a_linear_drift():
    """f = A x with A = λI: Δf = λΔx, so ρ̂ = |λ|·‖Δx‖/(‖Δx‖ + 1e−8) and z = |h| ρ̂ at every pair."""
    lam = -3.0
    model = linear_drift_model(lam * torch.eye(2, dtype=torch.float64))
    sigmas = torch.tensor([4.0, 3.0, 2.5, 2.0, 1.5], dtype=torch.float64)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for solver in ("heun", "dpm2", "dpmpp2m", "euler", "bosh3"):
        _, trace = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver(solver))
        rows = [s for s in trace.steps if "stiffness" in s]
        assert rows, solver
        for step in rows:
            assert np.allclose(step["stiffness"], abs(lam), rtol=1e-6), solver
            h = step["sigma"] - step["sigma_next"]
            assert np.allclose(step["stiffness_z"], h * abs(lam), rtol=1e-6)
            assert np.allclose(step["stiffness_index"], h * abs(lam) / step["stability_boundary"], rtol=1e-6)


def test_lte_estimate_aligns_with_the_stiff_direction_of_a_linear_problem():
    """f = A x, A = diag(−200, −1): Heun's error e = h²/2 · A² x (+ O(h³)) points along the stiff axis."""
    model = linear_drift_model(torch.diag(torch.tensor([-200.0, -1.0], dtype=torch.float64)))
    sigmas = torch.tensor([1.0, 0.995, 0.99], dtype=torch.float64)
    x0 = torch.ones(3, 2, dtype=torch.float64)
    _, trace = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver("heun"))
    step = trace.steps[1]
    assert (step["align_cos_est"] > 0.99).all()


def test_on_step_streams_every_step():
    seen = []
    x, trace = sample("tree", steps=6, batch=8, on_step=lambda record, x, d: seen.append((record["i"], x.shape, d.shape)))
    assert [s[0] for s in seen] == list(range(6))
    assert all(s[1] == (8, 2) and s[2] == (8, 2) for s in seen)


def test_diverging_run_keeps_trace_up_to_the_step():
    """A drift that doubles the state each step overflows float32 after ~128 steps and stops there."""

    def exploding(x, sigma):
        return x - sigma.view(-1, 1) * (-1.0 / 0.01) * x  # f = −100 x with |h| = 0.02 → growth factor 3 per Euler step

    model = CallableDenoiser(exploding, shape=(2,))
    sigmas = torch.tensor([10.0 - 0.02 * k for k in range(200)] + [0.0], dtype=torch.float64)
    x0 = torch.ones(4, 2)
    x, trace = integrate(lambda x, s: model(x, s), sigmas, x0, get_solver("euler"))
    assert trace.status == "diverged"
    last = trace.steps[-1]["i"]
    assert 0 < last < 199 and len(trace.steps) == last + 1
    assert f"step {last}" in trace.message
    assert torch.isfinite(x).all() and x.abs().max() > 1e30
    # x_k = 3^k overflows float32 (3.4e38) at k = 81; D = (1 + 100σ)x ≤ 1001x overflows from k ≈ 74.
    assert math.log(3.4028e38 / 1001) / math.log(3) - 1 <= last <= math.log(3.4028e38) / math.log(3)
    trace.to_json()  # non-finite diagnostics still serialise (as null)


@pytest.mark.parametrize(
    "settings,parameter",
    [
        (dict(solver="rk45"), "solver"),
        (dict(steps=0), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(batch=0), "batch"),
        (dict(sigma_min=80.0, sigma_max=1.0), "sigma_min"),
        (dict(sigma_min=-1.0), "sigma_min"),
        (dict(cfg=float("nan"), cls=0), "cfg"),
        (dict(autoguidance=float("inf")), "autoguidance"),
        (dict(erk_guid=float("nan")), "erk_guid"),
        (dict(erk_guid=-1.0), "erk_guid"),
        (dict(schedule="cosine"), "schedule"),
        (dict(dtype="float16"), "dtype"),
        (dict(cls=5), "class"),
        (dict(cfg=3.0), "cfg"),
        (dict(device="tpu:0"), "device"),
        (dict(device="not a device"), "device"),
    ],
)
def test_bad_input_names_the_parameter(settings, parameter):
    with pytest.raises(ParameterError) as err:
        sample("tree", batch=settings.pop("batch", 4), **settings)
    assert err.value.parameter == parameter
    assert parameter in str(err.value)


def test_unknown_model_names_the_parameter():
    with pytest.raises(ParameterError, match="model"):
        sample("nonexistent")


def test_summary_reports_medians_of_the_trace():
    _, trace = sample("tree", steps=10, batch=32)
    per_step = trace.step_median("stiffness")
    assert trace.summary["median_stiffness"] == pytest.approx(np.median(per_step[np.isfinite(per_step)]))
    assert trace.summary["nfe"] == 19 and trace.status == "ok"
    assert np.allclose(trace.sigmas, karras(10).numpy())
