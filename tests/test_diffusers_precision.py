"""diffusers models with float16/bfloat16 weights, and autodiff through their networks.

Reduced precision: only the network runs in float16/bfloat16; the engine's state and every
diagnostic stay float32, and the samples stay close to the float32 model's. Autodiff: the
Jacobian-vector product the diagnostics use (``stiffviz.diagnostics.autodiff.jvp``) must agree
with autograd's vector-Jacobian product (⟨u, J v⟩ = ⟨Jᵀu, v⟩) and with central differences, on
every network class, and every costly diagnostic must run on every family.
"""

from __future__ import annotations

import pytest
import torch
from diffusers_fixtures import KINDS, build_tiny
from torch.autograd import forward_ad

import stiffviz
from stiffviz.diagnostics import autodiff
from stiffviz.models.diffusers import load_diffusers
from stiffviz.models.diffusers.networks import differentiated

REDUCED = (torch.bfloat16, torch.float16)
PIXEL_KINDS = ("ddim", "euler", "edm", "flow-unet")
PROMPT = "the red cat"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def every_kind(tmp_path_factory) -> dict[str, str]:
    return {kind: build_tiny(kind, tmp_path_factory.mktemp(kind)) for kind in KINDS}


def text_settings(model) -> dict:
    return {"prompt": PROMPT, "cfg": 2.0} if model.text_conditioned else {}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("dtype", REDUCED, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_reduced_precision_weights_keep_the_engine_in_float32(every_kind, kind, dtype):
    reference_model = load_diffusers(every_kind[kind])
    model = load_diffusers(every_kind[kind], dtype=dtype)
    assert model.dtype == dtype and all(p.dtype == dtype for p in model.network.parameters())
    settings = dict(schedule="model", solver="heun", steps=4, batch=2, **text_settings(model))
    samples, trace = stiffviz.sample(model, **settings)
    reference, _ = stiffviz.sample(reference_model, **settings)
    assert samples.dtype == torch.float32 and trace.status == "ok" and bool(torch.isfinite(samples).all())
    assert relative_error(samples, reference) < 2e-2  # seen ≤ 5e-3 (bfloat16), ≤ 7e-4 (float16)
    assert 0 < relative_error(samples, reference)  # the network did run in reduced precision
    x = torch.randn(2, *model.shape, dtype=torch.float64)
    assert model(x, 0.5).dtype == torch.float64  # the output comes back in the caller's dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", REDUCED, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_reduced_precision_on_cuda(every_kind, kind, dtype):
    model = load_diffusers(every_kind[kind], device="cuda", dtype=dtype)
    assert model.network.device.type == "cuda"
    settings = dict(schedule="model", solver="heun", steps=4, batch=2, **text_settings(model))
    samples, trace = stiffviz.sample(model, **settings)
    reference, _ = stiffviz.sample(load_diffusers(every_kind[kind]), **settings)
    assert samples.device.type == "cuda" and samples.dtype == torch.float32 and trace.status == "ok"
    assert relative_error(samples.cpu(), reference) < 2e-2
    if model.latent:
        assert model.decode(samples).device.type == "cuda" and model.decode(samples, fast=True).shape[1] == 3


@pytest.mark.parametrize("kind", KINDS)
def test_the_jvp_agrees_with_autograd_and_central_differences(every_kind, kind):
    model = load_diffusers(every_kind[kind], dtype=torch.float64)
    cond = model.condition(prompt=PROMPT)[0] if model.text_conditioned else None
    sigma = float(model.model_sigmas(4)[1])
    generator = torch.Generator().manual_seed(0)
    x, v, u = (torch.randn((2, *model.shape), generator=generator, dtype=torch.float64) for _ in range(3))
    x = x * sigma

    def denoise(y):
        return model(y, sigma, cond)

    jv = autodiff.jvp(denoise, x, v, key=model)
    with torch.enable_grad():
        x_grad = x.clone().requires_grad_(True)
        (jtu,) = torch.autograd.grad(denoise(x_grad), x_grad, grad_outputs=u)
    assert float((u * jv).sum()) == pytest.approx(float((jtu * v).sum()), rel=1e-8)
    h = 1e-5 * float(x.abs().max())
    with torch.no_grad():
        central = (denoise(x + h * v) - denoise(x - h * v)) / (2 * h)
    assert relative_error(jv, central) < 1e-5
    if model.network.__class__.__name__ != "UNet2DModel":  # forward mode gets through attention on the math backend
        assert model not in autodiff._FORWARD_MODE_FAILED


def test_only_differentiated_calls_leave_the_fused_attention():
    x = torch.randn(3)
    with torch.no_grad():
        assert not differentiated(x)
    assert not differentiated(x)  # grad mode on, but nothing tracks x
    seen = []
    torch.func.jvp(lambda y: seen.append(differentiated(y)) or y, (x,), (x,))
    with torch.enable_grad():
        seen.append(differentiated(x.clone().requires_grad_(True)))
    with forward_ad.dual_level():
        seen.append(differentiated(forward_ad.make_dual(x, x)))
    assert seen == [True, True, True]


@pytest.mark.parametrize("kind", KINDS)
def test_costly_diagnostics_run_on_every_family(every_kind, kind):
    model = load_diffusers(every_kind[kind])
    prompt = {"prompt": PROMPT} if model.text_conditioned else {}
    samples, trace = stiffviz.sample(model, schedule="model", steps=3, batch=2, eig=True, eig_method="power", eig_iterations=2,
                                     lanczos_iterations=2, lte_ref=True, lte_ref_substeps=2, lipschitz=True, lipschitz_iterations=1,
                                     stein=True, stein_probes=1, **prompt)  # fmt: skip
    assert trace.status == "ok" and bool(torch.isfinite(samples).all())
    for record in trace.steps[:-1]:  # the step to σ = 0 has no reference LTE
        names = ("eig_max", "lte_ref", "lipschitz") + (("stiffness",) if record["i"] > 0 else ())  # a secant needs a step behind
        for name in names:
            assert bool(torch.isfinite(torch.as_tensor(record[name])).all()), (name, record["i"])
