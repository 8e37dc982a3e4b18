"""The engine's side of user models: flow-matching time, the model's own grid, text conditioning,
and the Jacobian-vector product's fallback (docs/math.md §9–§10)."""

from __future__ import annotations

import math

import pytest
import torch

import stiffviz
from stiffviz import ParameterError
from stiffviz.diagnostics.autodiff import jvp, vjp_jvp
from stiffviz.schedules import karras

DATA_STD = 0.5  # Gaussian data N(0, s² I): every quantity below has a closed form


class GaussianFlow:
    """A flow-matching model of N(0, s² I) data: x_t = (1 − t)·x0 + t·ε, so
    E[x0 | x_t] = (1 − t)s² / ((1 − t)²s² + t²) · x_t, defined at t = 1 (pure noise) too."""

    shape, classes, weak, path, name = (3,), None, None, "flow", "gaussian-flow"

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, x, t, cond=None):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1)
        self.calls.append(float(t.flatten()[0]))
        s2 = DATA_STD**2
        return (1 - t) * s2 / ((1 - t) ** 2 * s2 + t**2) * x

    def model_sigmas(self, steps: int) -> torch.Tensor:
        if not 1 <= steps <= 100:
            raise ParameterError("steps", "must lie in [1, 100]")
        return torch.cat([torch.linspace(1.0, 0.05, steps, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])


def exact_flow_solution(x_t: torch.Tensor, t: float, t_end: float) -> torch.Tensor:
    """The probability-flow ODE of Gaussian data in flow time: x_t scales with sqrt((1 − t)²s² + t²)."""
    scale = lambda u: math.sqrt((1 - u) ** 2 * DATA_STD**2 + u**2)  # noqa: E731
    return x_t * scale(t_end) / scale(t)


def test_flow_model_on_its_own_grid_starts_from_plain_noise_and_follows_the_exact_flow():
    model = GaussianFlow()
    samples, trace = stiffviz.sample(model, schedule="model", steps=60, batch=5, seed=3, solver="rk4", dtype="float64")
    noise = torch.randn((5, 3), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert trace.sigmas[0] == 1.0 and trace.config["path"] == "flow"
    assert model.calls[0] == 1.0  # the first call is at pure noise, t = 1
    # up to the last positive t the fine solver follows the closed form; the final step returns D_flow
    t_last = trace.sigmas[-2]
    x_last = exact_flow_solution(noise, 1.0, t_last)
    expected = model(x_last, t_last)
    torch.testing.assert_close(samples, expected, rtol=1e-6, atol=1e-8)


def test_flow_model_on_a_sigma_schedule_uses_t_equal_sigma_over_one_plus_sigma():
    model = GaussianFlow()
    _, trace = stiffviz.sample(model, steps=8, batch=4, seed=0, solver="heun")
    sigmas = karras(8)
    expected = (sigmas / (1 + sigmas)).tolist()
    assert trace.sigmas == pytest.approx(expected, rel=1e-12)


def test_flow_and_edm_coordinates_reach_the_same_samples_with_a_fine_solver():
    """One ODE, two coordinate systems (x_t = (1 − t)·x_edm): RK4 in each lands on the same samples."""
    flow = GaussianFlow()
    edm = stiffviz.models.CallableDenoiser(lambda x, s: DATA_STD**2 / (DATA_STD**2 + s.reshape(-1, 1) ** 2) * x, (3,))
    settings = dict(steps=80, batch=6, seed=1, solver="rk4", dtype="float64", sigma_max=20.0)
    x_flow, _ = stiffviz.sample(flow, **settings)
    x_edm, _ = stiffviz.sample(edm, **settings)
    torch.testing.assert_close(x_flow, x_edm, rtol=1e-5, atol=1e-7)


def test_model_schedule_needs_a_model_grid():
    with pytest.raises(ParameterError, match="schedule.*own scheduler"):
        stiffviz.sample("tree", schedule="model", steps=4, batch=2)
    with pytest.raises(ParameterError, match="^steps"):
        stiffviz.sample(GaussianFlow(), schedule="model", steps=101, batch=2)


class TextModel:
    """A text-conditioned denoiser whose conditioning is a number: D = x·c/(1 + σ²) with
    c the 'embedding' of the prompt (its length + 1; the empty prompt gives 1)."""

    shape, classes, weak, text_conditioned, name = (2,), None, None, True, "text"

    def __init__(self):
        self.encoded: list[str] = []

    def encode(self, prompt: str) -> float:
        self.encoded.append(prompt)
        return len(prompt) + 1.0

    def condition(self, prompt=None, negative_prompt=None, prompt_embeds=None, negative_prompt_embeds=None, **_):
        cond = prompt_embeds if prompt_embeds is not None else self.encode(prompt or "")
        uncond = negative_prompt_embeds if negative_prompt_embeds is not None else self.encode(negative_prompt or "")
        return cond, uncond

    def __call__(self, x, sigma, cond=None):
        c = 1.0 if cond is None else cond
        return x * c / (1 + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1) ** 2)


def test_prompts_are_encoded_once_per_run_and_cfg_runs_against_the_negative_prompt():
    model = TextModel()
    settings = dict(steps=3, batch=2, seed=0, solver="euler", sigma_max=2.0)
    x, trace = stiffviz.sample(model, prompt="a cat", negative_prompt="dog", cfg=3.0, **settings)
    assert model.encoded == ["a cat", "dog"]
    assert trace.config["prompt"] == "a cat" and trace.config["model_calls_per_nfe"] == 2
    # D_w = D_c + (w − 1)(D_c − D_u) with c = 6 (prompt) and u = 4 (negative): the same as c_w = 6 + 2·(6 − 4) = 10
    x_embeds, _ = stiffviz.sample(model, prompt_embeds=10.0, **settings)
    torch.testing.assert_close(x, x_embeds)


def test_prompt_errors_name_the_parameter():
    with pytest.raises(ParameterError, match="^prompt: tree is not text-conditioned"):
        stiffviz.sample("tree", prompt="a tree", steps=2, batch=2)
    with pytest.raises(ParameterError, match="^class"):
        stiffviz.sample(TextModel(), cls=1, steps=2, batch=2)
    with pytest.raises(ParameterError, match="^cfg"):
        stiffviz.sample(TextModel(), cfg=2.0, steps=2, batch=2)
    with pytest.raises(ParameterError, match="^prompt: must be text"):
        stiffviz.sample(TextModel(), prompt=3, steps=2, batch=2)


def _tanh_layer(seed: int = 0):
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda x: torch.tanh(x @ weight.T)


def test_vjp_based_jvp_equals_forward_mode_and_the_analytic_jacobian():
    fn = _tanh_layer()
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    analytic = (1 - torch.tanh(x @ weight.T) ** 2) * (v @ weight.T)  # J v = diag(1 − tanh²(Wx)) W v
    torch.testing.assert_close(vjp_jvp(fn, x, v), analytic)
    torch.testing.assert_close(jvp(fn, x, v), analytic)


class _NoForwardMode(torch.autograd.Function):
    """tanh with a backward rule only: forward-mode autodiff raises on it, as on some network kernels."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


def test_jvp_falls_back_to_the_vjp_product_where_forward_mode_is_missing():
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    v = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    fn = lambda y: _NoForwardMode.apply(y) * 2.0  # noqa: E731
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.func.jvp(fn, (x,), (v,))
    torch.testing.assert_close(jvp(fn, x, v), 2.0 * (1 - torch.tanh(x) ** 2) * v)
