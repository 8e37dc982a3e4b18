"""stiffviz.kdiffusion against k-diffusion's OWN sampling code (k-diffusion==0.1.1.post1).

k-diffusion's package ``__init__`` imports torchvision and training tools, so
``k_diffusion/sampling.py`` (and ``external.py`` for its model wrappers) are loaded by path
under a bare package module, with a minimal ``k_diffusion.utils`` of our own holding the one
helper they call (``append_dims``) and stubs for ``torchsde``/``torchdiffeq``/``scipy`` where
those are not installed (only k-diffusion's adaptive and SDE samplers use them).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import stiffviz
from stiffviz import ParameterError, Trace
from stiffviz import kdiffusion as skd
from stiffviz.diagnostics.ground_truth import DiagnosticOptions

SAMPLERS = {"sample_euler": "euler", "sample_heun": "heun", "sample_dpm_2": "dpm2", "sample_dpmpp_2m": "dpmpp2m"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """x with trailing singleton dimensions up to ``target_dims`` (what sampling.py needs of utils)."""
    if target_dims < x.ndim:
        raise ValueError(f"input has {x.ndim} dims, more than target_dims = {target_dims}")
    return x[(...,) + (None,) * (target_dims - x.ndim)]


def _load_by_path(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kd() -> types.SimpleNamespace:
    """k-diffusion's ``sampling`` and ``external`` modules, without its package ``__init__``."""
    spec = importlib.util.find_spec("k_diffusion")
    assert spec is not None, "k-diffusion is not installed: python -m pip install --no-deps k-diffusion==0.1.1.post1"
    root = Path(next(iter(spec.submodule_search_locations)))
    names = ["k_diffusion", "k_diffusion.utils", "k_diffusion.sampling", "k_diffusion.external"]
    package = types.ModuleType("k_diffusion")
    package.__path__ = [str(root)]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = _append_dims
    package.utils = utils
    stubs = {}
    for missing, attribute in (("torchsde", None), ("torchdiffeq", "odeint"), ("scipy", "integrate")):
        if importlib.util.find_spec(missing) is None:
            stubs[missing] = types.ModuleType(missing)
            if attribute:
                setattr(stubs[missing], attribute, None)
    saved = {name: sys.modules.get(name) for name in names + list(stubs)}  # restored afterwards; real imports stay
    sys.modules.update({"k_diffusion": package, "k_diffusion.utils": utils, **stubs})
    try:
        package.sampling = _load_by_path("k_diffusion.sampling", root / "sampling.py")
        package.external = _load_by_path("k_diffusion.external", root / "external.py")
        yield types.SimpleNamespace(sampling=package.sampling, external=package.external)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def models() -> dict:
    return {"tree": stiffviz.load_model("tree", dtype=torch.float64),
            "digits-unet": stiffviz.load_model("digits-unet", dtype=torch.float64)}  # fmt: skip


def _grid(kd, ends_at_zero: bool) -> torch.Tensor:
    sigmas = kd.sampling.get_sigmas_karras(7, 0.002, 80.0).double()  # 7 levels and the appended 0
    return sigmas if ends_at_zero else sigmas[:-1]


def _start(model, sigmas: torch.Tensor, batch: int = 3) -> torch.Tensor:
    noise = torch.randn((batch, *model.shape), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return noise * sigmas[0]


def _run_both(kd, sampler: str, model, x, sigmas, extra_args, **options):
    theirs, ours = [], []
    expected = getattr(kd.sampling, sampler)(model, x, sigmas, extra_args=extra_args, callback=theirs.append, disable=True)
    got, trace = getattr(skd, sampler)(model, x, sigmas, extra_args=extra_args, callback=ours.append, disable=True,
                                       return_trace=True, **options)  # fmt: skip
    return expected, got, trace, theirs, ours


def _expected_fields(solver: str, i: int, sigma_next: float) -> set[str]:
    """Which cheap diagnostics a step has (docs/math.md §3): the secant pair needs the previous
    step (lagged, consecutive) or a second stage (within); ‖e‖ needs an embedded pair."""
    last = sigma_next == 0.0
    fields = set()
    if (solver == "dpm2" and not last) or (solver != "dpm2" and i > 0):
        fields.add("stiffness")
    if not last and (solver in ("heun", "dpm2") or (solver == "dpmpp2m" and i > 0)):
        fields.add("lte")
    return fields


@pytest.mark.parametrize("ends_at_zero", [True, False], ids=["karras+0", "no-trailing-0"])
@pytest.mark.parametrize("model_name", ["tree", "digits-unet"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_same_state_and_callbacks_as_kdiffusion(kd, models, sampler, model_name, ends_at_zero):
    model, sigmas = models[model_name], _grid(kd, ends_at_zero)
    x = _start(model, sigmas)
    expected, got, trace, theirs, ours = _run_both(kd, sampler, model, x, sigmas, {"cond": 1})
    assert got.dtype == torch.float64 and got.shape == x.shape
    assert (got - expected).abs().max() <= 1e-6
    assert len(ours) == len(theirs) == len(sigmas) - 1 == len(trace.steps)
    solver = SAMPLERS[sampler]
    for i, (a, b) in enumerate(zip(theirs, ours)):
        assert b["i"] == a["i"] == i
        assert float(b["sigma"]) == float(a["sigma"]) == float(b["sigma_hat"]) == float(a["sigma_hat"])
        assert (b["x"] - a["x"]).abs().max() <= 1e-6 and (b["denoised"] - a["denoised"]).abs().max() <= 1e-6
        record = b["diagnostics"]
        assert record is trace.steps[i] and record["sigma"] == float(sigmas[i])
        present = {"stiffness", "lte"} & set(record)
        assert present == _expected_fields(solver, i, float(sigmas[i + 1])), (i, present)
        for name in present:
            assert record[name].shape == (x.shape[0],) and np.all(np.isfinite(record[name]))
        if solver in ("euler", "dpmpp2m") and i > 0:  # consecutive pair: ρ̂ = ‖f_i − f_{i−1}‖/‖x_i − x_{i−1}‖
            drift = [(d["x"] - d["denoised"]) / float(d["sigma"]) for d in (theirs[i], theirs[i - 1])]
            rho = (drift[0] - drift[1]).flatten(1).norm(dim=1) / ((theirs[i]["x"] - theirs[i - 1]["x"]).flatten(1).norm(dim=1) + 1e-8)
            np.testing.assert_allclose(record["stiffness"], rho.numpy(), rtol=1e-6)


def test_float32_sigmas_as_get_sigmas_karras_returns_them(kd, models):
    """k-diffusion computes step coefficients in the sigmas' dtype; at float32 the states still agree to 1e-6."""
    model = models["digits-unet"]
    sigmas = kd.sampling.get_sigmas_karras(7, 0.002, 80.0)
    assert sigmas.dtype == torch.float32
    x = _start(model, sigmas.double())
    for sampler in SAMPLERS:
        expected, got, *_ = _run_both(kd, sampler, model, x, sigmas, {"cond": 2})
        assert (got - expected).abs().max() <= 1e-6, sampler


def test_erk_guid_changes_the_run_and_the_trace_records_it(kd, models):
    model, sigmas = models["tree"], _grid(kd, True)
    x = _start(model, sigmas, batch=16)
    plain = kd.sampling.sample_heun(model, x, sigmas, extra_args={"cond": 0}, disable=True)
    traces: list[Trace] = []
    guided = skd.sample_heun(model, x, sigmas, extra_args={"cond": 0}, disable=True, erk_guid=1.0, erk_con=0.0, trace=traces)
    assert isinstance(guided, torch.Tensor) and len(traces) == 1
    assert (guided - plain).abs().max() > 1e-3
    config = traces[0].config
    assert config["erk_guid"] == 1.0 and config["erk_con"] == 0.0 and config["solver"] == "heun"
    assert config["sampler"] == "stiffviz.kdiffusion.sample_heun" and config["batch"] == 16
    assert any(np.any(step.get("erk_active", False)) for step in traces[0].steps)
    Trace.from_json(traces[0].to_json())  # the trace serialises and loads back


def test_kdiffusion_wrapper_class_with_costly_diagnostics(kd):
    """k-diffusion's own VDenoiser around a small v-model, with an extra argument, eig and lte_ref on."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1).double()

    class VModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x, t, *, scale):
            return scale * torch.tanh(self.conv(x)) + t.view(-1, 1, 1, 1) * x

    model = kd.external.VDenoiser(VModel())
    sigmas = kd.sampling.get_sigmas_karras(5, 0.01, 10.0).double()
    x = torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigmas[0]
    expected = kd.sampling.sample_dpm_2(model, x, sigmas, extra_args={"scale": 0.3}, disable=True)
    options = DiagnosticOptions(eig=True, eig_iterations=4, lanczos_iterations=2, lte_ref=True, lte_ref_substeps=4)
    got, trace = skd.sample_dpm_2(model, x, sigmas, extra_args={"scale": 0.3}, disable=True, diagnostics=options,
                                  return_trace=True)  # fmt: skip
    assert (got - expected).abs().max() <= 1e-6
    assert trace.config["model"] == "VDenoiser" and trace.config["eig"] and trace.config["lte_ref"]
    assert all(np.all(np.isfinite(step["eig_max"])) for step in trace.steps)
    assert all(np.all(step["lte_ref"] >= 0) for step in trace.steps[:-1])


def _gaussian(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact denoiser of N(0, I) data, D = x/(1 + σ²): cheap for the costly diagnostics."""
    return x / (1 + sigma.view(-1, 1) ** 2)


def test_diagnostic_options_and_return_forms(kd):
    sigmas = _grid(kd, True)
    x = torch.randn((3, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    off, trace = skd.sample_euler(_gaussian, x, sigmas, disable=True, diagnostics=False, return_trace=True)
    assert torch.equal(off, skd.sample_euler(_gaussian, x, sigmas, disable=True))
    assert trace.fields() == [] and trace.config["model"] == "_gaussian"
    options = DiagnosticOptions(diagnostics=True, lipschitz=True, lipschitz_iterations=3)
    _, trace = skd.sample_euler(_gaussian, x, sigmas, disable=True, diagnostics=options, eig=True, return_trace=True)
    assert {"stiffness", "lipschitz", "eig_max"} <= set(trace.fields()) and trace.config["lipschitz_iterations"] == 3
    # J = σ/(1 + σ²) I for the drift f = (x − D)/σ = xσ/(1 + σ²) (docs/math.md §3)
    expected = [s / (1 + s * s) for s in sigmas[:-1].tolist()]
    np.testing.assert_allclose(trace.step_median("eig_max"), expected, rtol=1e-9)


def test_extra_args_reach_the_model_on_every_call(kd):
    calls = []

    def model(x, sigma, *, shift):
        assert sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        calls.append(shift)
        return x / (1 + sigma.view(-1, 1) ** 2) + shift

    sigmas = kd.sampling.get_sigmas_karras(4, 0.1, 5.0).double()
    x = torch.ones((2, 3), dtype=torch.float64) * 5.0
    for shift in (0.0, 0.5):
        expected = kd.sampling.sample_heun(model, x, sigmas, extra_args={"shift": shift}, disable=True)
        calls.clear()
        got = skd.sample_heun(model, x, sigmas, extra_args={"shift": shift}, disable=True)
        assert calls == [shift] * (2 * 4 - 1)  # Heun: two calls a step, one on the step to 0
        assert (got - expected).abs().max() <= 1e-12


def test_progress_bar_follows_disable(kd, models, capsys):
    model, sigmas = models["tree"], _grid(kd, True)
    x = _start(model, sigmas)
    skd.sample_dpmpp_2m(model, x, sigmas, disable=False)
    assert "7/7" in capsys.readouterr().err
    skd.sample_dpmpp_2m(model, x, sigmas, disable=True)
    assert capsys.readouterr().err == ""


def test_without_tqdm_one_warning_and_no_bar(kd, models, monkeypatch, capsys):
    model, sigmas = models["tree"], _grid(kd, True)
    x = _start(model, sigmas)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes `from tqdm.auto import tqdm` fail
    with pytest.warns(UserWarning, match=r"pip install 'stiffviz\[kdiffusion\]'") as caught:
        got = skd.sample_euler(model, x, sigmas, disable=False)
    assert len(caught) == 1 and capsys.readouterr().err == ""
    assert torch.equal(got, kd.sampling.sample_euler(model, x, sigmas, disable=True))


@pytest.mark.parametrize("sampler", ["sample_euler", "sample_heun", "sample_dpm_2"])
def test_negative_churn_is_refused(kd, models, sampler):
    model, sigmas = models["tree"], _grid(kd, True)
    with pytest.raises(ParameterError, match=r"\[0, 1000\]") as error:
        getattr(skd, sampler)(model, _start(model, sigmas), sigmas, s_churn=-0.5, disable=True)
    assert error.value.parameter == "s_churn" and "s_churn" in str(error.value)


@pytest.mark.parametrize("bad,parameter", [(dict(sigmas=torch.tensor([1.0, 2.0, 0.0])), "sigmas"),
                                           (dict(trace="file.json"), "trace"), (dict(stein=True), "stein"),
                                           (dict(erk_guid=math.nan), "erk_guid"), (dict(seed=-1), "seed")])  # fmt: skip
def test_bad_input_names_the_parameter(kd, models, bad, parameter):
    model, sigmas = models["tree"], _grid(kd, True)
    arguments = dict(sigmas=sigmas, disable=True) | bad
    with pytest.raises(ParameterError) as error:
        skd.sample_heun(model, _start(model, sigmas), **arguments)
    assert error.value.parameter == parameter


def test_a_diverging_run_warns_and_keeps_the_trace(kd):
    sigmas = torch.linspace(10.0, 1.0, 40)

    def exploding(x, sigma):  # f = −1000 x: Euler with |h| ≈ 0.23 grows ×230 a step
        return x + 1000.0 * sigma.view(-1, 1) * x

    traces = []
    with pytest.warns(UserWarning, match="non-finite"):
        x = skd.sample_euler(exploding, torch.ones((2, 2)), sigmas, disable=True, trace=traces)
    assert torch.isfinite(x).all() and traces[0].status == "diverged"
