"""diffusers models in pixel space: every scheduler family against the scheduler's own loop.

The independent check is diffusers itself: Euler on ``model.model_sigmas(N)`` through
``stiffviz.sample(schedule="model")`` must reproduce the scheduler's own ``step()`` loop
(``set_timesteps``, ``scale_model_input``, the network, ``scheduler.step``) from the same initial
state, and the network must receive the scheduler's own timesteps. Tiny random UNets are built
locally (tests/diffusers_fixtures.py) and loaded back through ``load_model("diffusers:" + path)``.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from diffusers import DDIMScheduler, LMSDiscreteScheduler, PNDMScheduler
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

import stiffviz
from stiffviz.errors import ParameterError
from stiffviz.models.diffusers import load_diffusers
from stiffviz.models.diffusers.schedulers import SUPPORTED

from diffusers_fixtures import build_tiny, tiny_unet

# (fixture kind, scheduler config overrides, how the reference loop runs)
CASES = {
    "ddpm": ("ddpm", {}, "ddim"),  # DDPM's ODE: deterministic DDIM (η = 0) from its config
    "ddim-epsilon": ("ddim", {}, "ddim"),
    "ddim-v": ("ddim", {"prediction_type": "v_prediction"}, "ddim"),
    "ddim-sample": ("ddim", {"prediction_type": "sample"}, "ddim"),
    "ddim-trailing": ("ddim", {"timestep_spacing": "trailing", "steps_offset": 0}, "ddim"),  # with N | T (module docstring)
    "ddim-clip": ("ddim", {"clip_sample": True, "clip_sample_range": 2.0}, "ddim-clipped"),
    "euler-epsilon": ("euler", {}, "euler"),
    "euler-v": ("euler", {"prediction_type": "v_prediction"}, "euler"),
    "euler-leading": ("euler", {"timestep_spacing": "leading", "steps_offset": 1}, "euler"),
    "euler-karras": ("euler", {"use_karras_sigmas": True}, "euler"),
    "euler-sigma-min": ("euler", {"final_sigmas_type": "sigma_min"}, "euler-last-x0"),
    "edm-epsilon": ("edm", {}, "euler"),
    "edm-v": ("edm", {"prediction_type": "v_prediction"}, "euler"),
    "edm-exponential": ("edm", {"sigma_schedule": "exponential"}, "euler"),
    "flow-shift": ("flow-unet", {"shift": 3.0}, "flow"),
    "flow-dynamic": ("flow-unet", {"use_dynamic_shifting": True, "base_image_seq_len": 16, "max_image_seq_len": 256}, "flow"),
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, str]:
    """One flat folder per case, a class-conditional pipeline-layout folder (unet/ + scheduler/,
    no model_index.json) and a UNet without a scheduler."""
    out = {name: build_tiny(kind, tmp_path_factory.mktemp(name), **config) for name, (kind, config, _) in CASES.items()}
    pipeline = tmp_path_factory.mktemp("class-pipeline")
    tiny_unet(seed=1, num_class_embeds=3).save_pretrained(pipeline / "unet", safe_serialization=True)
    DDIMScheduler(clip_sample=False).save_pretrained(pipeline / "scheduler")
    out["class-pipeline"] = str(pipeline)
    unet_only = tmp_path_factory.mktemp("unet-only")
    tiny_unet().save_pretrained(unet_only, safe_serialization=True)
    out["unet-only"] = str(unet_only)
    return out


def network_timesteps(model) -> list[torch.Tensor]:
    """A hook that records the timestep the diffusers network receives at every call."""
    seen = []
    model.network.register_forward_pre_hook(lambda module, args, kwargs: seen.append(torch.as_tensor(args[1]).flatten()[0].clone()),
                                            with_kwargs=True)  # fmt: skip
    return seen


def scheduler_loop(model, steps: int, x: torch.Tensor, how: str) -> tuple[torch.Tensor, list[float]]:
    """diffusers' own deterministic loop from ``x`` (in the scheduler's coordinates): the final
    state and the timesteps the network received."""
    config = dict(model.scheduler.config)
    if how.startswith("ddim"):
        scheduler = DDIMScheduler.from_config(config)
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()  # the same table, DDIM's arithmetic in float64
        scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.double()
    else:
        scheduler = type(model.scheduler).from_config(config)
    kwargs = {"mu": calculate_shift(64, config["base_image_seq_len"], config["max_image_seq_len"], config["base_shift"],
                                    config["max_shift"])} if config.get("use_dynamic_shifting") else {}  # fmt: skip
    scheduler.set_timesteps(steps, **kwargs)
    timesteps = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            x_in = x if how == "flow" else scheduler.scale_model_input(x, t)
            out = model.network(x_in.to(model.dtype), t).sample.to(x.dtype)
            timesteps.append(float(t))
            if how.startswith("ddim"):
                step = scheduler.step(out, t, x, eta=0.0, use_clipped_model_output=how == "ddim-clipped")
            else:
                step = scheduler.step(out, t, x)
            x = step.pred_original_sample if how == "euler-last-x0" and len(timesteps) == steps else step.prev_sample
    return x, timesteps


@pytest.mark.parametrize("case", list(CASES))
def test_euler_on_the_model_grid_is_the_schedulers_own_loop(folders, case):
    """sample(schedule="model", solver="euler") = the scheduler's step() loop, same timesteps."""
    how = CASES[case][2]
    model = load_diffusers(folders[case], dtype=torch.float64)
    steps, seed = (8 if case == "ddim-trailing" else 7), 3  # DDIM jumps t → t − T//N: the grid's next t only when N | T
    grid = model.model_sigmas(steps)
    timesteps = network_timesteps(model)
    ours, trace = stiffviz.sample(model, schedule="model", solver="euler", steps=steps, batch=2, seed=seed, dtype="float64")
    timesteps = list(timesteps)  # ours only
    start = grid[0] * torch.randn((2, *model.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if how.startswith("ddim"):
        start = start / (1 + grid[0] ** 2).sqrt()  # the VP latent x_T = x_edm / sqrt(1 + σ_0²)
    expected, expected_timesteps = scheduler_loop(model, steps, start, how)
    assert trace.status == "ok" and trace.steps[-1]["nfe"] == steps and trace.config["path"] == model.path
    torch.testing.assert_close(torch.stack(timesteps).double(), torch.tensor(expected_timesteps, dtype=torch.float64),
                               rtol=1e-6, atol=1e-4)  # fmt: skip
    scale = float(expected.abs().max())
    assert scale > 0.1 and float((ours - start).abs().max()) > 0.1  # the random network does something
    torch.testing.assert_close(ours, expected.double(), rtol=1e-5, atol=1e-5 * scale)  # seen: ≤ 2e-7 relative


@pytest.mark.parametrize("case", ["ddpm", "euler-epsilon", "edm-v", "flow-shift"])
def test_model_sigmas_are_the_schedulers_grid(folders, case):
    model = load_diffusers(folders[case])
    for steps in (1, 5, 12):
        grid = model.model_sigmas(steps)
        assert grid.dtype == torch.float64 and len(grid) == steps + 1 and float(grid[-1]) == 0.0
        assert bool((grid.diff() < 0).all())
    scheduler = type(model.scheduler).from_config(model.scheduler.config)
    scheduler.set_timesteps(12)
    if model.path == "flow":
        torch.testing.assert_close(grid, scheduler.sigmas.double(), rtol=0, atol=0)
        assert float(grid[0]) == 1.0
    elif hasattr(scheduler, "sigmas"):
        torch.testing.assert_close(grid[:-1], scheduler.sigmas[:-1].double(), rtol=0, atol=0)
    else:  # VP: σ at the scheduler's timesteps
        alphas = scheduler.alphas_cumprod.double()[scheduler.timesteps]
        torch.testing.assert_close(grid[:-1], ((1 - alphas) / alphas).sqrt(), rtol=1e-15, atol=0)
    for bad in (0, -1, 10**6, 2.5, True):
        with pytest.raises(ParameterError) as error:
            model.model_sigmas(bad)
        assert error.value.parameter == "steps"


def test_dynamic_shift_mu_is_the_sd3_pipelines(folders):
    model = load_diffusers(folders["flow-dynamic"])
    config = model.scheduler.config
    assert model.family.mu == pytest.approx(calculate_shift(8 * 8, config.base_image_seq_len, config.max_image_seq_len,
                                                            config.base_shift, config.max_shift), rel=1e-12)  # fmt: skip


@pytest.mark.parametrize("case", ["ddim-epsilon", "euler-v", "edm-epsilon", "flow-shift"])
def test_attributes(folders, case):
    model = stiffviz.load_model("diffusers:" + folders[case])
    assert model.shape == (1, 8, 8) and model.classes is None and model.weak is None
    assert model.name == "diffusers:" + folders[case]
    assert model.path == ("flow" if case.startswith("flow") else "edm")
    assert model.prediction_type == {"ddim-epsilon": "epsilon", "euler-v": "v_prediction", "edm-epsilon": "epsilon",
                                     "flow-shift": "flow"}[case]  # fmt: skip
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.parameter_count == sum(p.numel() for p in model.network.parameters()) > 1000
    assert not model.text_conditioned and not model.latent
    assert type(model.scheduler).__name__ in SUPPORTED
    x = torch.randn(3, 1, 8, 8)
    assert model(x, 2.0 if model.path == "edm" else 0.5).shape == x.shape
    assert model(x, torch.tensor([0.1, 0.5, 0.9])).dtype == torch.float32


def test_vp_denoiser_matches_a_direct_network_call(folders):
    """D(x; σ_t) at a table entry = x0 from the UNet called at integer t on sqrt(ᾱ_t)·x, by hand."""
    for case in ("ddim-epsilon", "ddim-v"):
        model = load_diffusers(folders[case], dtype=torch.float64)
        alphas = model.scheduler.alphas_cumprod.double()
        x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 5
        for t in (0, 37, 500, 999):
            a = alphas[t]
            x_vp = a.sqrt() * x
            out = model.network(x_vp, torch.tensor(t)).sample
            expected = (x_vp - (1 - a).sqrt() * out) / a.sqrt() if case == "ddim-epsilon" else a.sqrt() * x_vp - (1 - a).sqrt() * out
            torch.testing.assert_close(model(x, float(((1 - a) / a).sqrt())), expected, rtol=1e-10, atol=1e-10)


def test_class_conditional_pipeline_layout(folders):
    model = load_diffusers(folders["class-pipeline"], dtype=torch.float64)
    assert model.classes == ("0", "1", "2")
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    sigma = float(model.model_sigmas(4)[1])
    for cond, labels in ((1, [1, 1]), ("2", [2, 2]), (torch.tensor([0, 2]), [0, 2])):
        x_in, t = model.family.network_input(x, torch.full((2,), sigma, dtype=torch.float64))
        out = model.network(x_in, t.float(), class_labels=torch.tensor(labels)).sample
        torch.testing.assert_close(model(x, sigma, cond), x - sigma * out, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(model(x, sigma, 0), model(x, sigma, 1))
    with pytest.raises(ParameterError) as error:
        model(x, sigma)
    assert error.value.parameter == "class"
    samples, trace = stiffviz.sample(model, schedule="model", steps=3, batch=2, cls=1)
    assert trace.status == "ok" and samples.shape == (2, 1, 8, 8)
    with pytest.raises(ParameterError) as error:  # a class-label UNet has no unconditional D_u for CFG
        stiffviz.sample(model, schedule="model", steps=3, batch=2, cls=1, cfg=2.0)
    assert error.value.parameter == "class"


def test_refusals_name_the_parameter_and_what_is_allowed(folders, tmp_path):
    model = load_diffusers(folders["ddim-epsilon"])
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(ParameterError) as error:
        model(x, 1.0, 0)
    assert error.value.parameter == "class"
    for bad in (torch.randn(1, 1, 4, 4), torch.randn(1, 8, 8), torch.randn(1, 2, 8, 8)):
        with pytest.raises(ParameterError, match=r"\(batch, 1, 8, 8\)") as error:
            model(bad, 1.0)
        assert error.value.parameter == "x"
    with pytest.raises(ParameterError) as error:
        stiffviz.sample(model, schedule="model", steps=2, batch=1, prompt="a cat")
    assert error.value.parameter == "prompt"
    with pytest.raises(ParameterError) as error:
        model.condition(prompt="a cat")
    assert error.value.parameter == "prompt" and "not text-conditioned" in str(error.value)
    with pytest.raises(ParameterError) as error:
        model.decode(x)
    assert error.value.parameter == "model"


@pytest.mark.parametrize("scheduler", [PNDMScheduler, LMSDiscreteScheduler], ids=lambda s: s.__name__)
def test_unsupported_scheduler_is_named_with_the_supported_ones(tmp_path, scheduler):
    path = build_tiny("ddim", tmp_path, scheduler=scheduler())
    with pytest.raises(ParameterError) as error:
        load_diffusers(path)
    message = str(error.value)
    assert error.value.parameter == "model" and scheduler.__name__ in message
    assert all(name in message for name in SUPPORTED)


@pytest.mark.parametrize(("kind", "config", "named"), [
    ("edm", {"prediction_type": "sample"}, "'sample'"),
    ("ddim", {"prediction_type": "x0"}, "'x0'"),
    ("ddim", {"thresholding": True}, "thresholding"),
    ("euler", {"timestep_type": "continuous", "prediction_type": "v_prediction"}, "timestep_type"),
    ("euler", {"interpolation_type": "log_linear"}, "interpolation_type"),
    ("flow-unet", {"stochastic_sampling": True}, "stochastic_sampling"),
    ("flow-unet", {"invert_sigmas": True}, "invert_sigmas"),
])  # fmt: skip
def test_unsupported_prediction_type_or_option_is_refused(tmp_path, kind, config, named):
    path = build_tiny(kind, tmp_path, **config)
    with pytest.raises(ParameterError, match=named) as error:
        load_diffusers(path)
    assert error.value.parameter == "model"
    if named.startswith("'"):
        assert "epsilon" in str(error.value)  # lists what is supported


def test_bad_folders(tmp_path, folders):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ParameterError, match="no such folder") as error:
        load_diffusers(missing)
    assert error.value.parameter == "model" and missing in str(error.value)
    with pytest.raises(ParameterError) as error:  # a folder with no model in it
        load_diffusers(str(tmp_path))
    assert error.value.parameter == "model" and str(tmp_path) in str(error.value)
    with pytest.raises(ParameterError, match="scheduler_config.json") as error:
        load_diffusers(folders["unet-only"])
    assert error.value.parameter == "model"
    pipeline = tmp_path / "pipeline"
    (pipeline / "scheduler").mkdir(parents=True)
    (pipeline / "model_index.json").write_text("{}")
    with pytest.raises(ParameterError, match="unet/ or transformer/"):
        load_diffusers(str(pipeline))


def test_unknown_network_class(tmp_path):
    path = build_tiny("ddim", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for name in ("UNet1DModel", "NotADiffusersClass"):
        (tmp_path / "config.json").write_text(json.dumps(config | {"_class_name": name}))
        with pytest.raises(ParameterError, match=name) as error:
            load_diffusers(path)
        assert error.value.parameter == "model" and "UNet2DModel" in str(error.value)


def test_a_hub_id_is_looked_up_on_the_hub(monkeypatch):
    import huggingface_hub

    asked = []

    def offline(repo, *args, **kwargs):
        asked.append(repo)
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
    with pytest.raises(ParameterError, match="offline") as error:
        load_diffusers("someone/some-model")
    assert asked == ["someone/some-model"] and error.value.parameter == "model"


def test_safetensors_are_loaded_without_unpickling(folders, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called although safetensors weights exist")

    monkeypatch.setattr(torch, "load", no_pickle)
    load_diffusers(folders["ddim-epsilon"])
    load_diffusers(folders["class-pipeline"])


def test_load_model_routes_diffusers_specs(folders):
    model = stiffviz.load_model("diffusers:" + folders["edm-epsilon"])
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    direct = load_diffusers(folders["edm-epsilon"])
    assert model.name == direct.name and torch.equal(model(x, 1.0), direct(x, 1.0))


def test_missing_diffusers_says_what_to_install(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    with pytest.raises(ParameterError) as error:
        load_diffusers(folders["ddim-epsilon"])
    assert error.value.parameter == "model" and "pip install diffusers" in str(error.value)


def test_a_unet_with_learned_variance_gives_its_first_half(tmp_path):
    """DDPM's learned-variance UNets output [ε̂, variance]: D uses ε̂ only."""
    path = build_tiny("ddpm", tmp_path, network={"out_channels": 2}, variance_type="learned_range")
    model = load_diffusers(path, dtype=torch.float64)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    sigma = float(model.model_sigmas(3)[1])
    x_in, t = model.family.network_input(x, torch.full((2,), sigma, dtype=torch.float64))
    eps = model.network(x_in, t.float()).sample[:, :1]
    torch.testing.assert_close(model(x, sigma), x - sigma * eps, rtol=1e-12, atol=1e-12)


def test_sample_runs_with_the_default_schedule_too(folders):
    """A σ schedule (Karras) on a VP model, and its mapped t's on a flow model, run as well."""
    for case in ("ddim-v", "flow-shift"):
        model = load_diffusers(folders[case])
        x, trace = stiffviz.sample(model, solver="heun", steps=4, batch=2, sigma_max=model.sigma_max if case == "ddim-v" else 80.0)
        assert x.shape == (2, 1, 8, 8) and trace.status == "ok" and bool(torch.isfinite(x).all())
        assert "stiffness" in trace.steps[1]

