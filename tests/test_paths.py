"""Probability paths (edm, vp, flow): the path denoiser, one ODE in every path, eigenvalues and ρ̂
under the change of variables, native grids, and bad input.

The references are written here from the definitions: σ(t) and s(t) of each path, their
derivatives by autograd, Karras et al.'s drift f = (σ′/σ + s′/s)x − (σ′s/σ)D(x/s; σ), and
the rectified-flow velocity v = (x_t − D(x_t/(1 − t); t/(1 − t)))/t.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stiffviz import ParameterError, load_model, sample
from stiffviz.diagnostics.spectrum import ExactSpectrum, IterativeSpectrum
from stiffviz.models.gmm import GaussianMixtureDenoiser
from stiffviz.models.guided import guided_denoiser
from stiffviz.paths import Path, PathDenoiser

F64 = torch.float64


def sigma_of(path: str, t):
    if path == "flow":
        return t / (1 - t)
    if path == "vp":
        return torch.sqrt(torch.exp(0.5 * 19.9 * t**2 + 0.1 * t) - 1)
    return t


def scale_of(path: str, t):
    if path == "flow":
        return 1 - t
    return 1 / torch.sqrt(1 + sigma_of(path, t) ** 2) if path == "vp" else torch.ones_like(t)


def rates(path: str, t: float) -> tuple[float, float, float, float]:
    """(σ, σ′, s, s′) at t, the derivatives by autograd."""
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    sigma, s = sigma_of(path, tt), scale_of(path, tt.detach())
    d_sigma = torch.autograd.grad(sigma, tt)[0] if path != "edm" else 1.0
    if path == "edm":
        return t, 1.0, 1.0, 0.0
    tt2 = torch.tensor(t, dtype=F64, requires_grad=True)
    d_s = torch.autograd.grad(scale_of(path, tt2), tt2)[0]
    return float(sigma), float(d_sigma), float(s.detach()), float(d_s)


def drift(model, path: str, x: torch.Tensor, t: float) -> torch.Tensor:
    """Karras et al. 2022, Algorithm 1: dx/dt = (σ′/σ + s′/s)·x − (σ′s/σ)·D(x/s; σ)."""
    sigma, d_sigma, s, d_s = rates(path, t)
    return (d_sigma / sigma + d_s / s) * x - (d_sigma * s / sigma) * model(x / s, sigma)


@pytest.fixture(scope="module")
def rings():
    return load_model("rings")


@pytest.mark.parametrize("path", ["edm", "vp", "flow"])
@pytest.mark.parametrize("t", [0.03, 0.4, 0.9])
def test_path_denoiser_is_x_minus_t_times_the_drift(rings, path, t):
    x = torch.randn((32, 2), generator=torch.Generator().manual_seed(1), dtype=F64) * 2
    guided = guided_denoiser(rings)
    got = PathDenoiser(guided, Path(path))(x, t)
    assert torch.allclose(got, x - t * drift(rings, path, x, t), rtol=1e-9, atol=1e-9)
    if path == "flow":  # the closed form: D(x/(1 − t); t/(1 − t)), and v = (x − D̃)/t
        assert torch.allclose(got, rings(x / (1 - t), t / (1 - t)), atol=1e-12)


def test_flow_velocity_at_pure_noise_is_x_minus_the_data_mean():
    """At t → 1 the denoiser returns the data mean, so v = x − E[x0] (a Gaussian with mean m)."""
    m = torch.tensor([[0.7, -0.3]], dtype=F64)
    model = GaussianMixtureDenoiser(m, torch.eye(2, dtype=F64)[None] * 0.2, torch.ones(1))
    x = torch.randn((8, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    t = 1 - 1e-7
    v = (x - PathDenoiser(guided_denoiser(model), Path("flow"))(x, t)) / t
    assert torch.allclose(v, x - m, atol=1e-5)


def test_the_same_exact_solution_in_every_path(rings):
    """A fine RK4 run of the same ODE ends at the same samples whichever coordinates it steps in:
    EDM and flow both end with D at σ_min exactly; VP's last Euler step in its own time leaves a
    residue of order σ_min."""
    out = {p: sample(rings, path=p, solver="rk4", steps=60, batch=32, seed=3, dtype="float64", diagnostics=False)[0]
           for p in ("edm", "vp", "flow")}  # fmt: skip
    assert torch.allclose(out["flow"], out["edm"], atol=1e-6)
    assert torch.allclose(out["vp"], out["edm"], atol=5e-3)
    assert out["edm"].std() > 0.5  # not a collapsed run


def test_euler_on_flow_is_the_diffusers_step(rings):
    """x ← x + (t′ − t)·v from x = t_0·randn(seed), on the flow times t = σ/(1 + σ) of the Karras grid."""
    got, trace = sample(rings, path="flow", solver="euler", steps=6, batch=16, seed=5, dtype="float64")
    sigmas = [(80 ** (1 / 7) + i / 5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(6)]
    times = [s / (1 + s) for s in sigmas] + [0.0]
    assert np.allclose(trace.sigmas, times, rtol=1e-12)
    x = times[0] * torch.randn((16, 2), generator=torch.Generator().manual_seed(5), dtype=F64)
    for t, t_next in zip(times, times[1:]):
        v = (x - rings(x / (1 - t), t / (1 - t))) / t
        x = x + (t_next - t) * v
    assert torch.allclose(got, x, atol=1e-10)
    assert trace.config["path"] == "flow"
    # x_t is affine in t for a frozen D, so flow Euler is EDM's Euler (DDIM) on the mapped grid
    edm, _ = sample(rings, path="edm", solver="euler", steps=6, batch=16, seed=5, dtype="float64")
    assert torch.allclose(got, edm, atol=1e-10)


@pytest.mark.parametrize("path", ["vp", "flow"])
def test_eigenvalues_of_the_path_drift(path):
    """The exact-Jacobian spectrum of the path equals autograd through the drift, and
    σ′·λ_edm(x/s; σ) + s′/s."""
    tree = load_model("tree")
    t = 0.05 if path == "flow" else 0.1
    x = torch.randn((4, 2), generator=torch.Generator().manual_seed(2), dtype=F64) * 0.5
    denoiser = PathDenoiser(guided_denoiser(tree), Path(path))
    values, _ = ExactSpectrum(denoiser.jacobian).eigen(x, t)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda y: drift(tree, path, y[None], t)[0], row) for row in x])
    reference = torch.linalg.eigvalsh(0.5 * (jac + jac.transpose(1, 2)))
    assert torch.allclose(values, reference, rtol=1e-6, atol=1e-6)
    sigma, d_sigma, s, d_s = rates(path, t)
    edm = torch.linalg.eigvalsh(tree.drift_jacobian(x / s, sigma))
    assert torch.allclose(values, d_sigma * edm + d_s / s, rtol=1e-8, atol=1e-8)
    iterative = IterativeSpectrum(denoiser, iterations=60).dominant(x, t)  # through the path's JVP
    largest = values.gather(1, values.abs().argmax(1, keepdim=True))[:, 0]
    assert torch.allclose(iterative.value, largest, rtol=1e-4)


@pytest.mark.parametrize("path", ["edm", "vp", "flow"])
def test_lambda_and_rho_hat_convert_on_an_isotropic_gaussian(path):
    """For data N(0, c²I) the EDM drift is linear with J_edm = σ/(c² + σ²)·I, so on a path
    λ(t) = σ′·σ/(c² + σ²) + s′/s, and ρ̂ (any pair, J ∝ I) is |λ|."""
    c2 = 0.3
    model = GaussianMixtureDenoiser(torch.zeros(1, 2, dtype=F64), c2 * torch.eye(2, dtype=F64)[None], torch.ones(1))
    _, trace = sample(model, path=path, solver="heun", steps=8, batch=8, dtype="float64", eig=True)
    for step in trace.steps[1:-1]:
        sigma, d_sigma, s, d_s = rates(path, step["sigma"])
        expected = d_sigma * sigma / (c2 + sigma**2) + d_s / s
        assert np.allclose(step["eig_max"], expected, rtol=1e-8)
        assert np.allclose(step["stiffness"], abs(expected), rtol=1e-3)  # Δf cancels where λ is small


def test_native_grids():
    _, flow = sample("rings", path="flow", schedule="uniform", shift=3.0, steps=5, batch=4, diagnostics=False)
    t = np.array(flow.sigmas[:-1])
    sigma = t / (1 - t)
    u = (sigma / 3) / (1 + sigma / 3)  # shift multiplies σ by 3; unshifted times are uniform
    assert np.allclose(np.diff(u), np.diff(u)[0]) and np.isclose(sigma[0], 80) and np.isclose(sigma[-1], 0.002)
    _, vp = sample("rings", path="vp", schedule="uniform", steps=5, batch=4, diagnostics=False)
    t = np.array(vp.sigmas[:-1])
    assert np.allclose(np.diff(t), np.diff(t)[0])
    assert np.isclose(float(sigma_of("vp", torch.tensor(t[0]))), 80) and np.isclose(float(sigma_of("vp", torch.tensor(t[-1]))), 0.002)
    _, karras_vp = sample("rings", path="vp", steps=5, batch=4, diagnostics=False)
    assert np.allclose(sigma_of("vp", torch.tensor(karras_vp.sigmas[:-1], dtype=F64)).numpy(),
                       [(80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(5)])  # fmt: skip
    assert vp.config["path"] == "vp" and vp.config["schedule"] == "uniform"


class FlowRings:
    """A natively flow model: D_flow(x_t; t) from the rings toy."""

    path, shape, classes, weak = "flow", (2,), None, None

    def __init__(self):
        self.rings = load_model("rings")

    def __call__(self, x, t, cond=None):
        t = float(t)
        return self.rings(x / (1 - t), t / (1 - t))


def test_a_flow_model_runs_on_its_own_path_and_refuses_others():
    own, trace = sample(FlowRings(), steps=6, batch=16, dtype="float64")
    converted, _ = sample("rings", path="flow", steps=6, batch=16, dtype="float64")
    assert trace.config["path"] == "flow" and torch.allclose(own, converted, atol=1e-12)
    assert torch.equal(sample(FlowRings(), path="flow", steps=6, batch=16, dtype="float64")[0], own)
    with pytest.raises(ParameterError, match="path") as err:
        sample(FlowRings(), path="vp", steps=6, batch=4)
    assert err.value.parameter == "path"


@pytest.mark.parametrize(
    ("settings", "name"),
    [({"path": "ddim"}, "path"), ({"path": "flow", "shift": 3.0}, "shift"), ({"path": "vp", "schedule": "uniform", "shift": 2.0}, "shift"),
     ({"path": "flow", "schedule": "uniform", "shift": 0.0}, "shift"), ({"shift": math.nan}, "shift")],  # fmt: skip
)
def test_bad_path_settings_are_named(settings, name):
    with pytest.raises(ParameterError) as err:
        sample("rings", steps=4, batch=4, **settings)
    assert err.value.parameter == name


def test_the_learn_panel_draws_h_lambda_of_the_gaussian_in_closed_form():
    """Flow coordinates, data N(0, c²I): λ = (t − c²(1 − t))/(c²(1 − t)² + t²), derived by hand from
    J_edm = σ/(c² + σ²), σ′ = 1/(1 − t)², s′/s = −1/(1 − t); and h·λ_edm = h·σ/(c² + σ²)."""
    from stiffviz.app.learn import learn_paths

    figure, summary = learn_paths(steps=10, variance=0.25)
    traces = {trace.name: np.array(trace.y) for trace in figure.data}
    sigma = np.array([(80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(10)])
    t = sigma / (1 + sigma)
    h_t, h_s = np.diff(t), np.diff(sigma)  # the final step to t = 0 is left out
    c2, t = 0.25, t[:-1]
    assert np.allclose(traces["flow: h·λ"], h_t * (t - c2 * (1 - t)) / (c2 * (1 - t) ** 2 + t**2), rtol=1e-9)
    assert np.allclose(traces["edm: h·λ"], h_s * sigma[:-1] / (c2 + sigma[:-1] ** 2), rtol=1e-9)
    assert np.allclose(traces["flow: h·s′/s"], -h_t / (1 - t), rtol=1e-9) and "flow" in summary
