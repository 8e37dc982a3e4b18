"""CallableDenoiser: k-diffusion-convention models ``fn(x, sigma, **extra_args)`` through every solver.

The model is the exact denoiser of Gaussian data x0 ~ N(0, diag(s²)) (docs/math.md §1):
D(x; σ) = x·s²/(s² + σ²), so the drift f = (x − D)/σ = x·σ/(s² + σ²) has the diagonal
Jacobian J = diag(σ/(s_k² + σ²)) and the dominant eigenvalue max_k σ/(s_k² + σ²).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stiffviz import ParameterError, sample
from stiffviz.models import CallableDenoiser
from stiffviz.schedules import make_schedule
from stiffviz.solvers import SOLVERS

VARIANCE = torch.tensor([0.01, 0.5, 2.0, 8.0], dtype=torch.float64).view(1, 2, 2)  # s_k², shape (C, H, W)
SHAPE = (1, 2, 2)

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor, *, variance: torch.Tensor) -> torch.Tensor:
    """D = x·s²/(s² + σ²), written the k-diffusion way: σ is a (B,) tensor, reshaped to broadcast."""
    assert isinstance(sigma, torch.Tensor) and sigma.shape == (x.shape[0],), sigma
    assert sigma.dtype == x.dtype and sigma.device == x.device
    s = sigma.view(-1, 1, 1, 1)
    v = variance.to(x.dtype)
    return x * v / (v + s * s)


def eig_closed_form(sigma: float) -> float:
    return float((sigma / (VARIANCE + sigma**2)).max())


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_every_solver_and_diagnostic_with_a_kdiffusion_model(solver):
    steps = 4
    model = CallableDenoiser(gaussian_denoiser, SHAPE, extra_args={"variance": VARIANCE})
    x, trace = sample(model, solver=solver, steps=steps, batch=3, dtype="float64", sigma_max=1.0,
                      eig=True, eig_iterations=60, lte_ref=True, lipschitz=True, lipschitz_iterations=30, stein=True)  # fmt: skip
    assert x.shape == (3, *SHAPE) and x.dtype == torch.float64 and torch.isfinite(x).all()
    assert trace.status == "ok" and len(trace.steps) == steps
    sigmas = make_schedule("karras", steps, 0.002, 1.0, 7.0).tolist()
    for record, sigma, sigma_next in zip(trace.steps, sigmas, sigmas[1:]):
        np.testing.assert_allclose(record["eig_max"], eig_closed_form(sigma), rtol=1e-6)
        assert np.all(np.isfinite(record["lipschitz"])) and np.all(record["lipschitz"] > 0)
        if sigma_next > 0:
            assert np.all(np.isfinite(record["lte_ref"])) and "stein_gamma" in record
    if solver == "euler":  # T_γ(x) = x((1 − γ) + γ(1 + h λ_k)) per coordinate: L = max_k of its modulus
        _, plain = sample(model, solver=solver, steps=steps, batch=3, dtype="float64", sigma_max=1.0,
                          lipschitz=True, lipschitz_iterations=30)  # fmt: skip
        for stein_record, record, sigma, sigma_next in zip(trace.steps[:-1], plain.steps, sigmas, sigmas[1:]):
            factor = 1 + (sigma_next - sigma) * (sigma / (VARIANCE + sigma**2))
            np.testing.assert_allclose(record["lipschitz"], float(factor.abs().max()), rtol=1e-6)
            gamma = stein_record["stein_gamma"]
            # Power iteration bounds L from below (its warm start may sit on a stale axis when γ flips the order).
            assert np.all(stein_record["lipschitz"] <= float(((1 - gamma) + gamma * factor).abs().max()) * (1 + 1e-9))
    last = trace.steps[-1]  # the step to σ = 0 is D itself: L = max_k s_k²/(s_k² + σ²)
    np.testing.assert_allclose(last["lipschitz"], float((VARIANCE / (VARIANCE + sigmas[-2] ** 2)).max()), rtol=1e-6)


def test_sigma_reaches_fn_as_a_batch_tensor_in_x_dtype():
    seen = []
    model = CallableDenoiser(lambda x, sigma: seen.append(sigma) or x, SHAPE)
    x = torch.zeros(5, *SHAPE, dtype=torch.float64)
    for sigma in (2.5, torch.tensor(2.5, dtype=torch.float32), torch.full((5,), 2.5, dtype=torch.float32)):
        model(x, sigma)
    for sigma in seen:
        assert sigma.shape == (5,) and sigma.dtype == torch.float64 and torch.equal(sigma, torch.full((5,), 2.5, dtype=torch.float64))
        assert sigma.is_contiguous() and sigma.stride() == (1,)
        sigma.view(-1, 1, 1, 1)
    with pytest.raises(ParameterError, match="sigma"):
        model(x, torch.ones(4))


def test_extra_args_are_keywords_on_every_call_and_cond_is_kept():
    calls = []

    def fn(x, sigma, cond=None, *, scale):
        calls.append((cond, scale))
        return scale * x

    x = torch.ones(2, *SHAPE)
    conditional = CallableDenoiser(fn, SHAPE, takes_cond=True, extra_args={"scale": 3.0})
    assert torch.equal(conditional(x, 1.0, cond=7), 3.0 * x) and calls == [(7, 3.0)]
    plain = CallableDenoiser(lambda x, sigma, *, scale: scale * x, SHAPE, extra_args={"scale": 0.5})
    assert torch.equal(plain(x, 1.0), 0.5 * x)
    with pytest.raises(ParameterError, match="cond"):
        plain(x, 1.0, cond=1)
    # The extra argument really changes the run: another variance, another sample.
    other = CallableDenoiser(gaussian_denoiser, SHAPE, extra_args={"variance": 2 * VARIANCE})
    same = CallableDenoiser(gaussian_denoiser, SHAPE, extra_args={"variance": VARIANCE})
    a, _ = sample(same, solver="heun", steps=3, batch=2, dtype="float64")
    b, _ = sample(other, solver="heun", steps=3, batch=2, dtype="float64")
    assert not torch.allclose(a, b)
