"""The diffusers adapter: a tiny random UNet2DModel wrapped as an EDM denoiser.

The independent check is diffusers' own DDIMScheduler: deterministic DDIM (η = 0) and our
Euler sampler on the model's σ grid are the same map, so their samples must agree.
"""

from __future__ import annotations

import sys

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

import stiffviz
from stiffviz.errors import ParameterError
from stiffviz.models.diffusers_adapter import DiffusersDenoiser, load_diffusers
from stiffviz.solvers import get_solver

PREDICTIONS = ("epsilon", "v_prediction")


def tiny_unet(seed: int = 0, num_class_embeds: int | None = None) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=num_class_embeds,
    )  # fmt: skip


def tiny_scheduler(prediction_type: str) -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                         set_alpha_to_one=True, prediction_type=prediction_type)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny UNet's convolutions gain nothing from threads and stall badly on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """Flat folders (UNet + scheduler_config.json side by side), one per prediction type, and
    a class-conditional one in the pipeline layout (unet/, scheduler/)."""
    out = {}
    for prediction in PREDICTIONS:
        folder = tmp_path_factory.mktemp(prediction)
        tiny_unet().save_pretrained(folder, safe_serialization=True)
        tiny_scheduler(prediction).save_pretrained(folder)
        out[prediction] = str(folder)
    pipeline = tmp_path_factory.mktemp("pipeline")
    tiny_unet(seed=1, num_class_embeds=3).save_pretrained(pipeline / "unet", safe_serialization=True)
    tiny_scheduler("epsilon").save_pretrained(pipeline / "scheduler")
    out["pipeline"] = str(pipeline)
    return out


def reference_denoise(model: DiffusersDenoiser, x: torch.Tensor, t: int, labels=None) -> torch.Tensor:
    """x0 the way a VP sampler gets it: call the UNet at integer t on sqrt(ᾱ_t)·x by hand."""
    alpha = model.alphas_cumprod[t].to(x.dtype)
    x_vp = alpha.sqrt() * x
    out = model.unet(x_vp, torch.tensor(t), class_labels=labels).sample
    if model.prediction_type == "epsilon":
        return (x_vp - (1 - alpha).sqrt() * out) / alpha.sqrt()
    return alpha.sqrt() * x_vp - (1 - alpha).sqrt() * out  # v-prediction: x0 = sqrt(ᾱ)x_t − sqrt(1−ᾱ)v


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_attributes(folders, prediction):
    model = load_diffusers(folders[prediction])
    assert model.shape == (1, 8, 8) and model.classes is None and model.weak is None
    assert model.name == "diffusers:" + folders[prediction]
    assert model.prediction_type == prediction
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    alphas = tiny_scheduler(prediction).alphas_cumprod.double()
    assert model.sigma_min == pytest.approx(float(((1 - alphas[0]) / alphas[0]).sqrt()), rel=1e-12)
    assert model.sigma_max == pytest.approx(float(((1 - alphas[-1]) / alphas[-1]).sqrt()), rel=1e-12)
    x = torch.randn(3, 1, 8, 8)
    assert model(x, 2.0).shape == x.shape and model(x, torch.tensor([0.1, 1.0, 50.0])).dtype == torch.float32


def test_sigma_to_t_on_and_between_table(folders):
    model = load_diffusers(folders["epsilon"])
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    assert torch.equal(model.sigma_to_t(model.t_to_sigma(t)), t.double())  # on the table: exact integers
    s = model.t_to_sigma(torch.tensor([500, 501]))
    mid = model.sigma_to_t((s[0] * s[1]).sqrt().reshape(1))  # log-midpoint → t halfway
    assert float(mid) == pytest.approx(500.5, abs=1e-12)
    clamped = model.sigma_to_t(torch.tensor([1e-6, 0.0, 1e6], dtype=torch.float64))
    assert clamped.tolist() == [0.0, 0.0, 999.0]


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_denoiser_matches_direct_unet_call(folders, prediction):
    model = load_diffusers(folders[prediction], dtype=torch.float64)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 5
    for t in (0, 37, 500, 999):
        sigma = float(model.t_to_sigma(torch.tensor(t)))
        expected = reference_denoise(model, x, t)
        torch.testing.assert_close(model(x, sigma), expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(model(x, torch.full((2,), sigma, dtype=torch.float64)), expected, rtol=1e-10, atol=1e-10)
    assert float((expected - x).abs().mean()) > 1e-2  # the random UNet does something


@pytest.mark.parametrize("steps", (7, 10))
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_euler_on_model_grid_is_ddim(folders, prediction, steps):
    """Our Euler on [σ(t_i)] + [0] from sqrt(1 + σ_0²)·x_T equals diffusers' DDIM (η = 0) from x_T."""
    model = load_diffusers(folders[prediction], dtype=torch.float64)
    scheduler = tiny_scheduler(prediction)
    scheduler.set_timesteps(steps)
    # the same table, but DDIM's arithmetic in float64 (its coefficients are float32 otherwise)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.final_alpha_cumprod = scheduler.final_alpha_cumprod.double()
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sample = x_T
    with torch.no_grad():
        for t in scheduler.timesteps:
            sample = scheduler.step(model.unet(sample, t).sample, t, sample, eta=0.0).prev_sample

        sigmas = model.timestep_sigmas(steps)
        assert torch.equal(model.timesteps(steps), scheduler.timesteps)
        assert len(sigmas) == steps and bool((sigmas.diff() < 0).all())
        grid = torch.cat([sigmas, sigmas.new_zeros(1)])
        x = x_T * (1 + sigmas[0] ** 2).sqrt()
        ours, trace = stiffviz.integrate(lambda x, s: model(x, s), grid, x, get_solver("euler"), diagnostics=False)
    assert trace.status == "ok" and trace.steps[-1]["nfe"] == steps
    assert float(sample.abs().max()) > 0.1
    torch.testing.assert_close(ours, sample, rtol=1e-11, atol=1e-11)  # seen: ≤ 4e-13 at |x| ≈ 240


def test_class_conditional_pipeline_layout(folders):
    model = load_diffusers(folders["pipeline"], dtype=torch.float64)
    assert model.classes == ("0", "1", "2")
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    sigma = float(model.t_to_sigma(torch.tensor(250)))
    for cond in (1, "2", torch.tensor([0, 2])):
        labels = torch.as_tensor(int(cond) if isinstance(cond, str) else cond).expand(2)
        torch.testing.assert_close(model(x, sigma, cond), reference_denoise(model, x, 250, labels), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(model(x, sigma, 0), model(x, sigma, 1))
    with pytest.raises(ParameterError) as error:
        model(x, sigma)
    assert error.value.parameter == "class"
    with pytest.raises(ParameterError):
        model(x, sigma, 3)


def test_unconditional_rejects_a_class(folders):
    model = load_diffusers(folders["epsilon"])
    with pytest.raises(ParameterError) as error:
        model(torch.randn(1, 1, 8, 8), 1.0, 0)
    assert error.value.parameter == "class"


def test_safetensors_are_loaded_without_unpickling(folders, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called although safetensors weights exist")

    monkeypatch.setattr(torch, "load", no_pickle)
    load_diffusers(folders["epsilon"])


def test_sample_runs_with_diagnostics(folders):
    model = load_diffusers(folders["v_prediction"])
    x, trace = stiffviz.sample(model, solver="heun", steps=4, batch=2, sigma_min=model.sigma_min, sigma_max=model.sigma_max)
    assert x.shape == (2, 1, 8, 8) and trace.status == "ok" and bool(torch.isfinite(x).all())
    assert trace.config["model"] == model.name and "stiffness" in trace.steps[1]


def test_load_model_routes_diffusers_paths(folders):
    model = stiffviz.load_model("diffusers:" + folders["epsilon"])
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    direct = load_diffusers(folders["epsilon"])
    assert model.name == direct.name and torch.equal(model(x, 1.0), direct(x, 1.0))


def test_missing_diffusers_says_what_to_install(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `from diffusers import …` now raises ImportError
    with pytest.raises(ParameterError) as error:
        load_diffusers(folders["epsilon"])
    assert error.value.parameter == "model" and "pip install diffusers" in str(error.value)


def test_bad_paths(tmp_path, folders):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ParameterError) as error:
        load_diffusers(missing)
    assert error.value.parameter == "model" and missing in str(error.value)
    with pytest.raises(ParameterError) as error:  # a folder with no model in it
        load_diffusers(str(tmp_path))
    assert error.value.parameter == "model" and str(tmp_path) in str(error.value)
    no_scheduler = tmp_path / "unet_only"
    tiny_unet().save_pretrained(no_scheduler, safe_serialization=True)
    with pytest.raises(ParameterError, match="scheduler_config.json"):
        load_diffusers(str(no_scheduler))


def test_unsupported_prediction_type(tmp_path):
    tiny_unet().save_pretrained(tmp_path, safe_serialization=True)
    tiny_scheduler("sample").save_pretrained(tmp_path)
    with pytest.raises(ParameterError, match="prediction_type") as error:
        load_diffusers(str(tmp_path))
    assert error.value.parameter == "model"


def test_timestep_sigmas_range(folders):
    model = load_diffusers(folders["epsilon"])
    with pytest.raises(ParameterError) as error:
        model.timestep_sigmas(0)
    assert error.value.parameter == "steps"
    sigmas = model.timestep_sigmas(1000)
    assert float(sigmas[0]) == model.sigma_max and float(sigmas[-1]) == model.sigma_min


def test_the_app_offers_the_servers_diffusers_model_and_runs_it(folders, monkeypatch):
    """``python app.py --diffusers PATH`` adds the folder to the models; the page runs it like any other."""
    import app
    from stiffviz import ui
    from stiffviz.live import DEFAULTS, INPUTS

    built = []
    monkeypatch.setattr(app, "build_app", lambda model=None: built.append(model) or ui.build_app(model))
    monkeypatch.setattr(ui.gr.Blocks, "launch", lambda self, **kwargs: None)
    app.main(["--diffusers", folders["epsilon"]])
    name = f"diffusers:{folders['epsilon']}"
    assert built == [name]
    settings = DEFAULTS | dict(model=name, steps=3, batch=2, erk_on=False, eig=False, compare=False)
    final = list(ui.run(*[settings[n] for n in INPUTS], "step", models=ui.available_models(name)))[-1]
    run = final[-1].runs["run"]
    samples, _ = stiffviz.sample(load_diffusers(folders["epsilon"]), **final[-1].request.settings)
    torch.testing.assert_close(run.samples, samples)
    assert final[3]["visible"] and len(final[3]["value"]) == 2  # state and x0 preview grids
