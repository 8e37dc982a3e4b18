"""Stochastic samplers (docs/math.md §11): EDM's churn and Euler ancestral.

The states are checked against k-diffusion's own ``sample_heun(s_churn=…)``, ``sample_euler``,
``sample_dpm_2`` and ``sample_euler_ancestral`` drawing the same ε (k-diffusion's global RNG seeded
as stiffviz's noise generator, or one shared ``noise_sampler``); the diagnostics of the
deterministic part against a step recomputed here from the exact tree denoiser.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_kdiffusion import kd, models  # noqa: F401  (k-diffusion's modules and the float64 models)

import stiffviz
from stiffviz import ParameterError, Trace
from stiffviz import kdiffusion as skd
from stiffviz.sampler import initial_noise
from stiffviz.solvers import nfe_for
from stiffviz.stochastic import NOISE_SEED_OFFSET

SEED = 3


def _grid(kd, steps: int = 8) -> torch.Tensor:
    return kd.sampling.get_sigmas_karras(steps, 0.002, 80.0).double()


def _start(model, sigmas: torch.Tensor, batch: int = 16) -> torch.Tensor:
    return torch.randn((batch, *model.shape), generator=torch.Generator().manual_seed(11), dtype=torch.float64) * sigmas[0]


def _theirs(kd, sampler: str, *args, **kwargs):
    """k-diffusion's sampler with its global RNG seeded as stiffviz's noise generator (CPU: the same ε)."""
    calls = []
    torch.manual_seed(SEED + NOISE_SEED_OFFSET)
    x = getattr(kd.sampling, sampler)(*args, callback=calls.append, disable=True, **kwargs)
    return x, calls


@pytest.mark.parametrize("sampler", ["sample_heun", "sample_euler", "sample_dpm_2"])
@pytest.mark.parametrize("churn", [dict(s_churn=4.0), dict(s_churn=40.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.007)],
                         ids=["everywhere", "in-range"])  # fmt: skip
def test_churn_matches_kdiffusion(kd, models, sampler, churn):
    model, sigmas = models["tree"], _grid(kd)
    x = _start(model, sigmas)
    expected, theirs = _theirs(kd, sampler, model, x, sigmas, extra_args={"cond": 1}, **churn)
    ours = []
    got, trace = getattr(skd, sampler)(model, x, sigmas, extra_args={"cond": 1}, callback=ours.append, disable=True,
                                       seed=SEED, return_trace=True, **churn)  # fmt: skip
    assert (got - expected).abs().max() <= 1e-9
    assert len(ours) == len(theirs) == len(trace.steps)
    churned = 0
    for a, b in zip(theirs, ours):
        assert float(b["sigma_hat"]) == pytest.approx(float(a["sigma_hat"]), rel=1e-12)
        assert (b["x"] - a["x"]).abs().max() <= 1e-9 and (b["denoised"] - a["denoised"]).abs().max() <= 1e-9
        churned += float(a["sigma_hat"]) > float(a["sigma"])
        assert b["diagnostics"]["sigma_hat"] == pytest.approx(float(a["sigma_hat"]), rel=1e-12)
    assert 0 < churned < len(theirs) if "s_tmin" in churn else churned == len(theirs)


@pytest.mark.parametrize("eta,s_noise", [(1.0, 1.0), (0.5, 0.9), (0.0, 1.0)])
def test_euler_ancestral_matches_kdiffusion(kd, models, eta, s_noise):
    model, sigmas = models["tree"], _grid(kd)
    x = _start(model, sigmas)
    expected, theirs = _theirs(kd, "sample_euler_ancestral", model, x, sigmas, eta=eta, s_noise=s_noise)
    ours = []
    got, trace = skd.sample_euler_ancestral(model, x, sigmas, eta=eta, s_noise=s_noise, callback=ours.append,
                                            disable=True, seed=SEED, return_trace=True)  # fmt: skip
    assert (got - expected).abs().max() <= 1e-9
    for a, b in zip(theirs, ours):
        assert (b["x"] - a["x"]).abs().max() <= 1e-9 and (b["denoised"] - a["denoised"]).abs().max() <= 1e-9
    assert trace.config["solver"] == "euler_ancestral" and trace.summary["nfe"] == nfe_for("euler_ancestral", len(sigmas) - 1)
    if eta == 0.0:  # no noise: plain Euler
        assert torch.equal(got, kd.sampling.sample_euler(model, x, sigmas, disable=True))


def test_a_shared_noise_sampler_reaches_both(kd, models):
    """Any ``noise_sampler(σ, σ_next)`` (k-diffusion's convention): both samplers consume the same list."""
    model, sigmas = models["tree"], _grid(kd)
    x = _start(model, sigmas)
    draws = [torch.randn(x.shape, generator=torch.Generator().manual_seed(k), dtype=x.dtype) for k in range(len(sigmas))]

    def sampler_over(queue):
        return lambda sigma, sigma_next: queue.pop(0)

    expected = kd.sampling.sample_euler_ancestral(model, x, sigmas, noise_sampler=sampler_over(list(draws)), disable=True)
    got = skd.sample_euler_ancestral(model, x, sigmas, noise_sampler=sampler_over(list(draws)), disable=True)
    assert (got - expected).abs().max() <= 1e-9


def _edm_stochastic_heun(model, x, sigmas, churn, eps):
    """EDM's Algorithm 2 written out here, with ε_i = eps[i]."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        sigma_hat = sigma * (1 + min(churn / n, math.sqrt(2) - 1))
        x = x + math.sqrt(sigma_hat**2 - sigma**2) * eps[i]
        d = (x - model(x, sigma_hat * x.new_ones(len(x)))) / sigma_hat
        x_euler = x + (sigma_next - sigma_hat) * d
        if sigma_next > 0:
            d_next = (x_euler - model(x_euler, sigma_next * x.new_ones(len(x)))) / sigma_next
            x_euler = x + (sigma_next - sigma_hat) * (d + d_next) / 2
        x = x_euler
    return x


def test_sample_api_is_edm_algorithm_2_and_a_seed_reproduces_it():
    settings = dict(steps=6, batch=32, seed=SEED, churn=5.0, dtype="float64")
    got, trace = stiffviz.sample("tree", **settings)
    again, _ = stiffviz.sample("tree", **settings)
    other, _ = stiffviz.sample("tree", **(settings | {"seed": SEED + 1}))
    assert torch.equal(got, again) and not torch.allclose(got, other)
    model = stiffviz.load_model("tree", dtype=torch.float64)
    sigmas = torch.tensor(trace.sigmas, dtype=torch.float64)
    x = initial_noise(model.shape, 32, SEED, float(sigmas[0]), torch.float64, "cpu")
    generator = torch.Generator().manual_seed(SEED + NOISE_SEED_OFFSET)
    eps = [torch.randn(x.shape, generator=generator, dtype=x.dtype) for _ in range(len(sigmas) - 1)]
    assert (got - _edm_stochastic_heun(model, x, sigmas, 5.0, eps)).abs().max() <= 1e-9
    assert trace.summary["nfe"] == nfe_for("heun", 6)  # churn costs no model call
    assert trace.config["churn"] == 5.0 and trace.config["s_tmax"] is None


def test_churn_outside_its_range_is_the_deterministic_sampler():
    plain, plain_trace = stiffviz.sample("tree", steps=6, batch=32, seed=SEED, solver="bosh3")
    same, trace = stiffviz.sample("tree", steps=6, batch=32, seed=SEED, solver="bosh3", churn=10.0, s_tmin=100.0)
    assert torch.equal(plain, same)
    assert trace.summary["nfe"] == plain_trace.summary["nfe"]  # first-same-as-last reuse survives
    assert [s["sigma_hat"] for s in trace.steps] == [s["sigma"] for s in trace.steps]


def test_diagnostics_are_those_of_the_step_from_sigma_hat():
    """ρ̂, z, ‖e‖ of a churned Heun step: its own pair (x̂, x^E) and h = σ̂ − σ_{i+1}; λ₁ (exact) at (x̂, σ̂).
    x̂ is rebuilt here from Algorithm 2 and the seeded ε."""
    steps, churn, states = 5, 3.0, []
    _, trace = stiffviz.sample("tree", steps=steps, batch=8, seed=SEED, churn=churn, dtype="float64", eig=True,
                               on_step=lambda record, x, denoised: states.append(x))  # fmt: skip
    model = stiffviz.load_model("tree", dtype=torch.float64)
    x = initial_noise(model.shape, 8, SEED, trace.sigmas[0], torch.float64, "cpu")
    generator = torch.Generator().manual_seed(SEED + NOISE_SEED_OFFSET)
    for step, x_next in zip(trace.steps[:-1], states):
        sigma, sigma_next = step["sigma"], step["sigma_next"]
        sigma_hat = sigma * (1 + min(churn / steps, math.sqrt(2) - 1))
        x_hat = x + math.sqrt(sigma_hat**2 - sigma**2) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        assert step["sigma_hat"] == pytest.approx(sigma_hat, rel=1e-12)
        ones = x_hat.new_ones(len(x_hat))
        f_hat = (x_hat - model(x_hat, sigma_hat * ones)) / sigma_hat
        x_euler = x_hat + (sigma_next - sigma_hat) * f_hat
        f_euler = (x_euler - model(x_euler, sigma_next * ones)) / sigma_next
        x_heun = x_hat + (sigma_next - sigma_hat) * (f_hat + f_euler) / 2
        rho = (f_euler - f_hat).norm(dim=1) / ((x_euler - x_hat).norm(dim=1) + 1e-8)
        np.testing.assert_allclose(step["stiffness"], rho.numpy(), rtol=1e-9)
        np.testing.assert_allclose(step["stiffness_z"], (sigma_hat - sigma_next) * rho.numpy(), rtol=1e-9)
        np.testing.assert_allclose(step["lte"], (x_heun - x_euler).norm(dim=1).numpy(), rtol=1e-9)
        jacobian = torch.stack([torch.autograd.functional.jacobian(
            lambda y: (y - model(y[None], sigma_hat * y.new_ones(1))[0]) / sigma_hat, row) for row in x_hat])  # fmt: skip
        lam = torch.linalg.eigvalsh((jacobian + jacobian.transpose(1, 2)) / 2).abs().max(dim=1).values
        np.testing.assert_allclose(np.abs(step["eig_max"]), lam.numpy(), rtol=1e-9)  # λ₁ keeps its sign
        assert (x_next - x_heun).abs().max() <= 1e-12
        x = x_next


def test_ancestral_levels_and_diagnostics(kd, models):
    """σ_down = σ_{i+1}²/σ_i and σ_up² = σ_{i+1}² − σ_down² for η = 1; z = (σ_i − σ_down)·ρ̂."""
    model, sigmas = models["tree"], _grid(kd, 6)
    _, trace = skd.sample_euler_ancestral(model, _start(model, sigmas, 8), sigmas, disable=True, return_trace=True)
    for step in trace.steps[:-1]:
        s, s_next = step["sigma"], step["sigma_next"]
        assert step["sigma_down"] == pytest.approx(s_next**2 / s, rel=1e-12)
        assert step["sigma_up"] == pytest.approx(math.sqrt(s_next**2 - (s_next**2 / s) ** 2), rel=1e-12)
        if "stiffness" in step:
            np.testing.assert_allclose(step["stiffness_z"], (s - step["sigma_down"]) * step["stiffness"], rtol=1e-12)
    assert trace.steps[-1]["sigma_down"] == 0.0 and trace.steps[-1]["sigma_up"] == 0.0


def test_stochastic_fields_survive_json_and_csv():
    _, trace = stiffviz.sample("tree", steps=4, batch=3, churn=2.0)
    loaded = Trace.from_json(trace.to_json())
    np.testing.assert_array_equal(loaded.column("sigma_hat"), trace.column("sigma_hat"))
    header, *rows = trace.to_csv().splitlines()
    assert "sigma_hat" in header.split(",") and len(rows) == 4 * 3
    _, ancestral = stiffviz.sample("tree", steps=4, batch=3, solver="euler_ancestral")
    loaded = Trace.from_json(ancestral.to_json())
    for name in ("sigma_down", "sigma_up"):
        np.testing.assert_array_equal(loaded.column(name), ancestral.column(name))
        assert name in ancestral.to_csv().splitlines()[0].split(",")


def test_steindiff_with_churn_at_gamma_one_is_plain_churn():
    """SteinDiff is defined on the deterministic part; γ clipped to 1 gives the churned sampler back."""
    settings = dict(steps=5, batch=16, seed=SEED, churn=3.0)
    plain, _ = stiffviz.sample("tree", **settings)
    stein, trace = stiffviz.sample("tree", stein=True, stein_gamma_min=1.0, stein_gamma_max=1.0, **settings)
    assert torch.allclose(plain, stein, atol=1e-5)
    assert all(np.isfinite(s["stein_gamma_raw"]) for s in trace.steps[:-1])


@pytest.mark.parametrize("settings,parameter", [
    (dict(churn=-1.0), "churn"), (dict(churn=1e4), "churn"), (dict(churn=math.nan), "churn"),
    (dict(churn=1.0, s_noise=0.0), "s_noise"), (dict(churn=1.0, s_noise=-1.0), "s_noise"),
    (dict(churn=1.0, s_tmin=5.0, s_tmax=1.0), "s_tmin"), (dict(s_tmin=-1.0), "s_tmin"),
    (dict(churn=1.0, erk_guid=1.0), "erk_guid"), (dict(solver="euler_ancestral", erk_guid=1.0), "erk_guid"),
    (dict(churn=1.0, path="vp"), "path"), (dict(solver="euler_ancestral", path="flow"), "path"),
])  # fmt: skip
def test_bad_settings_are_named(settings, parameter):
    with pytest.raises(ParameterError) as error:
        stiffviz.sample("tree", steps=4, batch=2, **settings)
    assert error.value.parameter == parameter


def test_bad_eta_and_erk_in_the_dropins_are_named(kd, models):
    model, sigmas = models["tree"], _grid(kd, 4)
    with pytest.raises(ParameterError) as error:
        skd.sample_euler_ancestral(model, _start(model, sigmas), sigmas, eta=-0.5, disable=True)
    assert error.value.parameter == "eta"
    with pytest.raises(ParameterError) as error:
        skd.sample_heun(model, _start(model, sigmas), sigmas, s_churn=1.0, erk_guid=1.0, disable=True)
    assert error.value.parameter == "erk_guid"


def test_cli_flags(capsys):
    from stiffviz.cli import main

    assert main(["sample", "--steps", "3", "--batch", "8", "--churn", "2", "--s-tmax", "50", "--s-noise", "1.003"]) == 0
    assert "sigma_hat" in capsys.readouterr().out
    assert main(["sample", "--steps", "3", "--batch", "8", "--solver", "euler_ancestral"]) == 0
    assert "sigma_down" in capsys.readouterr().out
    for args, name in ((["--s-noise", "0"], "s_noise"), (["--churn", "-1"], "churn"),
                       (["--s-tmin", "5", "--s-tmax", "1"], "s_tmin"), (["--churn", "1", "--erk-guid", "1"], "erk_guid")):  # fmt: skip
        assert main(["sample", *args]) == 2
        assert capsys.readouterr().err.startswith(f"error: {name}:")
