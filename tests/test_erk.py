"""ERK-Guid against an independent re-implementation of docs/math.md §4, written out here."""

from __future__ import annotations

import math

import pytest
import torch

from stiffviz import load_model, sample
from stiffviz.models import guided_denoiser
from stiffviz.schedules import karras

STEPS, BATCH, SEED = 8, 64, 3


def _correction(x, f, dx, df, h, w_stiff, w_con):
    """h · β · z² · ⟨f, v̂⟩ · v̂ with ρ̂ = ‖Δf‖/(‖Δx‖+1e−8), v̂ = Δf/(‖Δf‖+1e−8), z = w·h·ρ̂."""
    rho = df.norm(dim=1) / (dx.norm(dim=1) + 1e-8)
    v = df / (df.norm(dim=1, keepdim=True) + 1e-8)
    z = w_stiff * h * rho
    beta = (rho > w_con).to(x.dtype)
    return (h * beta * z**2 * (f * v).sum(1))[:, None] * v, rho


def reference_run(solver, D, sigmas, x, w_stiff, w_con):
    """The three variants of the authors' code: Heun (lagged), DPM-Solver-2 (within), 2M (consecutive)."""
    sig = sigmas.tolist()
    lagged = None  # (x^E_i, f(x^E_i)) from the previous Heun step
    previous = None  # (x_{i−1}, f_{i−1}, D_{i−1}, σ_{i−1})
    for s, sn in zip(sig[:-1], sig[1:]):
        d = D(x, s)
        f = (x - d) / s
        if sn == 0:
            return x + (sn - s) * f
        if solver == "heun":
            x_e = x + (sn - s) * f
            f_e = (x_e - D(x_e, sn)) / sn
            x_new = x + (sn - s) * (f + f_e) / 2
            if lagged is not None:
                x_new = x_new - _correction(x, f, x - lagged[0], f - lagged[1], s - sn, w_stiff, w_con)[0]
            lagged = (x_e, f_e)
        elif solver == "dpm2":
            s_mid = math.sqrt(s * sn)
            x_mid = x + (s_mid - s) * f
            f_mid = (x_mid - D(x_mid, s_mid)) / s_mid
            x_new = x + (sn - s) * f_mid
            x_new = x_new - _correction(x, f, x - x_mid, f - f_mid, s - sn, w_stiff, w_con)[0]
        elif solver == "dpmpp2m":
            h_t = math.log(s / sn)
            d_tilde = d
            if previous is not None:
                r = math.log(previous[3] / s) / h_t
                d_tilde = d + (d - previous[2]) / (2 * r)
            x_new = (sn / s) * x + (1 - math.exp(-h_t)) * d_tilde
            if previous is not None:
                x_new = x_new + _correction(x, f, x - previous[0], f - previous[1], previous[3] - s, w_stiff, w_con)[0]
            previous = (x, f, d, s)
        x = x_new
    return x


def _setup(cfg=1.0, autoguidance=1.0, cls=None):
    model = load_model("tree")
    denoise = guided_denoiser(model, cls, cfg, autoguidance)
    sigmas = karras(STEPS)
    x0 = sigmas[0].item() * torch.randn((BATCH, 2), generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
    return denoise, sigmas, x0


@pytest.mark.parametrize("solver", ["heun", "dpm2", "dpmpp2m"])
@pytest.mark.parametrize("w_stiff,w_con", [(0.5, 0.5), (2.0, 0.0)])
def test_erk_guid_matches_independent_implementation(solver, w_stiff, w_con):
    denoise, sigmas, x0 = _setup()
    with torch.no_grad():
        expected = reference_run(solver, denoise, sigmas, x0, w_stiff, w_con)
        plain = reference_run(solver, denoise, sigmas, x0, 0.0, w_con)
        x, trace = sample("tree", solver=solver, steps=STEPS, batch=BATCH, seed=SEED, dtype="float64",
                          erk_guid=w_stiff, erk_con=w_con)  # fmt: skip
    # Strong corrections amplify rounding differences (the two codes sum in different orders).
    assert torch.allclose(x, expected, rtol=1e-8, atol=1e-10)
    assert (x - plain).norm() > 1e-6  # the correction did something


def test_erk_guid_composes_with_cfg_and_autoguidance():
    denoise, sigmas, x0 = _setup(cfg=2.0, autoguidance=1.5, cls=1)
    with torch.no_grad():
        expected = reference_run("heun", denoise, sigmas, x0, 1.0, 0.5)
        x, trace = sample("tree", solver="heun", steps=STEPS, batch=BATCH, seed=SEED, dtype="float64",
                          erk_guid=1.0, erk_con=0.5, cls=1, cfg=2.0, autoguidance=1.5)  # fmt: skip
    assert torch.allclose(x, expected, rtol=1e-10, atol=1e-12)
    assert trace.config["model_calls_per_nfe"] == 3


@pytest.mark.parametrize("solver", ["heun", "dpm2", "dpmpp2m", "deis", "euler", "bosh3"])
def test_w_stiff_zero_is_plain_solver_exactly(solver):
    plain, _ = sample("tree", solver=solver, steps=STEPS, batch=BATCH, seed=SEED)
    guided, trace = sample("tree", solver=solver, steps=STEPS, batch=BATCH, seed=SEED, erk_guid=0.0)
    assert torch.equal(plain, guided)
    corrections = [s["erk_correction"] for s in trace.steps if "erk_correction" in s]
    assert corrections and all((c == 0).all() for c in corrections)


def test_erk_is_not_applied_on_first_or_final_step():
    _, trace = sample("tree", solver="heun", steps=STEPS, batch=BATCH, seed=SEED, erk_guid=1.0, erk_con=0.0)
    flagged = [s["i"] for s in trace.steps if "erk_active" in s]
    assert flagged == list(range(1, STEPS - 1))
    assert all(s["erk_active"].all() for s in trace.steps if "erk_active" in s)  # w_con = 0: every ρ̂ > 0


def test_erk_threshold_switches_correction_off():
    """With w_con above every ρ̂, β = 0 everywhere and the run equals plain Heun."""
    plain, _ = sample("tree", solver="heun", steps=STEPS, batch=BATCH, seed=SEED)
    guided, trace = sample("tree", solver="heun", steps=STEPS, batch=BATCH, seed=SEED, erk_guid=2.0, erk_con=1e12)
    assert torch.equal(plain, guided)
    assert not any(s["erk_active"].any() for s in trace.steps if "erk_active" in s)


@pytest.mark.parametrize("steps,w_con", [(4, 0.1), (8, 0.1), (9, 0.3), (16, 0.3), (17, 0.5), (32, 0.5)])
def test_w_con_defaults_to_the_authors_value_for_the_step_count(steps, w_con):
    """The authors' reproduction script: w_con 0.1 at 8 steps, 0.3 at 16, 0.5 at 32; the trace records it."""
    model = load_model("tree")
    sigmas = karras(steps)
    x0 = sigmas[0].item() * torch.randn((BATCH, 2), generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
    with torch.no_grad():
        expected = reference_run("heun", guided_denoiser(model, None, 1.0, 1.0), sigmas, x0, 1.0, w_con)
        x, trace = sample("tree", steps=steps, batch=BATCH, seed=SEED, dtype="float64", erk_guid=1.0)
    assert trace.config["erk_con"] == w_con
    assert torch.allclose(x, expected, rtol=1e-8, atol=1e-10)


def test_dpm2_is_corrected_from_step_0():
    """The within-step pair exists on step 0, and the authors' DPM-Solver-2 corrects it there."""
    _, trace = sample("tree", solver="dpm2", steps=STEPS, batch=BATCH, seed=SEED, erk_guid=1.0, erk_con=0.0)
    assert [s["i"] for s in trace.steps if "erk_active" in s] == list(range(STEPS - 1))
    assert (trace.steps[0]["erk_correction"] > 0).any()


@pytest.mark.parametrize("solver", ["heun", "dpm2"])
def test_without_denoise_to_zero_the_grid_ends_at_sigma_min_and_the_last_step_is_corrected(solver):
    """The authors' diff-sampler: N = steps levels, N − 1 steps, no final denoise; every pair corrects."""
    denoise, sigmas, x0 = _setup()
    with torch.no_grad():
        expected = reference_run(solver, denoise, sigmas[:-1], x0, 1.0, 0.1)
        x, trace = sample("tree", solver=solver, steps=STEPS, batch=BATCH, seed=SEED, dtype="float64",
                          erk_guid=1.0, denoise_to_zero=False)  # fmt: skip
    assert torch.allclose(x, expected, rtol=1e-8, atol=1e-10)
    assert trace.sigmas == pytest.approx(sigmas[:-1].tolist()) and trace.sigmas[-1] == pytest.approx(0.002)
    assert trace.summary["nfe"] == 2 * (STEPS - 1)
    first = 0 if solver == "dpm2" else 1
    assert [s["i"] for s in trace.steps if "erk_active" in s] == list(range(first, STEPS - 1))


def test_kdiffusion_drop_ins_take_w_con_by_the_steps_of_sigmas():
    from stiffviz.kdiffusion import sample_heun

    model = load_model("tree")
    D = lambda x, sigma: model(x, sigma[0].item())  # noqa: E731
    for steps, w_con in ((8, 0.1), (12, 0.3)):
        sigmas = karras(steps)  # steps + 1 levels, the last 0: k-diffusion's convention
        x0 = sigmas[0] * torch.randn((BATCH, 2), generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
        traces: list = []
        x = sample_heun(D, x0, sigmas, disable=True, erk_guid=1.0, trace=traces)
        with torch.no_grad():
            expected = reference_run("heun", guided_denoiser(model, None, 1.0, 1.0), sigmas, x0, 1.0, w_con)
        assert traces[0].config["erk_con"] == w_con
        assert torch.allclose(x, expected, rtol=1e-8, atol=1e-10)
