"""Reduced-precision network weights with a float32 engine, and the CUDA paths (run where CUDA is)."""

from __future__ import annotations

import pytest
import torch

import stiffviz

SETTINGS = dict(steps=8, batch=16, cls=3, seed=0, solver="heun", erk_guid=0.5)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def reference():
    return stiffviz.sample(stiffviz.load_model("digits-unet"), **SETTINGS)


def test_bfloat16_weights_run_the_network_in_bfloat16_and_the_engine_in_float32(reference):
    model = stiffviz.load_model("digits-unet", dtype=torch.bfloat16)
    samples, trace = stiffviz.sample(model, **SETTINGS)
    assert samples.dtype == torch.float32 and trace.status == "ok"
    assert {p.dtype for p in model.network(torch.bfloat16, torch.device("cpu")).parameters()} == {torch.bfloat16}
    difference = (samples - reference[0]).abs()
    assert 0 < difference.max() < 0.1  # bfloat16 rounding (8-bit mantissa) moves the samples, a little
    ratio = trace.step_median("stiffness")[1:] / reference[1].step_median("stiffness")[1:]
    assert abs(ratio - 1).max() < 0.1


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_digits_unet_on_cuda_matches_the_cpu_run(reference, dtype):
    model = stiffviz.load_model("digits-unet", device="cuda", dtype=dtype)
    samples, trace = stiffviz.sample(model, device="cuda", eig=True, eig_method="power", **SETTINGS)
    assert samples.device.type == "cuda" and samples.dtype == torch.float32 and trace.status == "ok"
    tolerance = 1e-3 if dtype == torch.float32 else 0.05
    assert (samples.cpu() - reference[0]).abs().max() < tolerance
