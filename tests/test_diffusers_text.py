"""Latent, text-conditioned diffusers models: a Stable-Diffusion-like UNet2DConditionModel + VAE +
CLIP, and an SD3-like transformer with two CLIP encoders.

The independent checks are diffusers' own pipelines: ``StableDiffusionPipeline`` and
``StableDiffusion3Pipeline`` loaded from the same folder run their ``__call__`` (prompt, negative
prompt, classifier-free guidance, their scheduler's ``step``) from the same latents, and
``sample(schedule="model", solver="euler", prompt=…, negative_prompt=…, cfg=…)`` must give the
same final latents; their ``encode_prompt`` gives the embeddings passed from Python.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusion3Pipeline, StableDiffusionPipeline
from diffusers_fixtures import build_tiny

import stiffviz
from stiffviz.errors import ParameterError
from stiffviz.models.diffusers import load_diffusers

PROMPT, NEGATIVE, CFG = "the red cat", "a dog", 3.0

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def text_folders(tmp_path_factory) -> dict[str, str]:
    """The two pipeline folders, and the SD-like one without its text encoder and tokenizer."""
    out = {kind: build_tiny(kind, tmp_path_factory.mktemp(kind)) for kind in ("latent-text", "sd3")}
    bare = tmp_path_factory.mktemp("latent-bare")
    shutil.copytree(out["latent-text"], bare, dirs_exist_ok=True)
    for part in ("text_encoder", "tokenizer", "tokenizer_source"):
        shutil.rmtree(bare / part)
    out["latent-bare"] = str(bare)
    return out


def pipeline(kind: str, path: str):
    if kind == "latent-text":
        return StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False,
                                                       local_files_only=True)  # fmt: skip
    return StableDiffusion3Pipeline.from_pretrained(path, text_encoder_3=None, tokenizer_3=None, local_files_only=True)


def count_calls(module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("kind", ["latent-text", "sd3"])
def test_euler_with_prompt_and_cfg_is_the_pipelines_own_call(text_folders, kind):
    model = load_diffusers(text_folders[kind])
    steps, seed = 6, 5
    ours, trace = stiffviz.sample(model, schedule="model", solver="euler", steps=steps, batch=2, seed=seed,
                                  prompt=PROMPT, negative_prompt=NEGATIVE, cfg=CFG)  # fmt: skip
    start = model.model_sigmas(steps)[0] * torch.randn((2, *model.shape), generator=torch.Generator().manual_seed(seed))
    pipe = pipeline(kind, text_folders[kind])
    latents = start / pipe.scheduler.init_noise_sigma if kind == "latent-text" else start  # the pipeline scales its input
    with torch.no_grad():
        expected = pipe([PROMPT] * 2, negative_prompt=[NEGATIVE] * 2, num_inference_steps=steps, guidance_scale=CFG,
                        latents=latents.float(), output_type="latent").images  # fmt: skip
    assert trace.status == "ok" and trace.config["model_calls_per_nfe"] == 2 and trace.steps[-1]["nfe"] == steps
    scale = float(expected.abs().max())
    assert float((ours - start).abs().max()) > 0.1
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * scale)  # seen: ≤ 4e-7 relative
    unguided, _ = stiffviz.sample(model, schedule="model", solver="euler", steps=steps, batch=2, seed=seed, prompt=PROMPT)
    assert float((unguided - ours).abs().max()) > 1e-3 * scale  # the prompt and CFG matter


@pytest.mark.parametrize("kind", ["latent-text", "sd3"])
def test_prompt_embeds_from_python_are_the_prompts(text_folders, kind):
    """Embeddings from the pipeline's encode_prompt (batch 1, expanded inside the call) give the prompt's run."""
    model = load_diffusers(text_folders[kind])
    pipe = pipeline(kind, text_folders[kind])
    if kind == "latent-text":
        embeds, negative = pipe.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt=NEGATIVE)
        given = dict(prompt_embeds=embeds, negative_prompt_embeds=negative)
    else:
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(PROMPT, None, None, device="cpu", negative_prompt=NEGATIVE)
        given = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, pooled_prompt_embeds=pooled,
                     negative_pooled_prompt_embeds=negative_pooled)  # fmt: skip
    settings = dict(schedule="model", solver="heun", steps=3, batch=2, seed=1, cfg=CFG, diagnostics=False)
    from_text, _ = stiffviz.sample(model, prompt=PROMPT, negative_prompt=NEGATIVE, **settings)
    from_embeds, _ = stiffviz.sample(model, **given, **settings)
    torch.testing.assert_close(from_embeds, from_text, rtol=1e-6, atol=1e-6)
    cond, _ = model.condition(**given)
    x, sigma = torch.randn(2, *model.shape), float(model.model_sigmas(3)[1])
    per_sample = type(cond)(cond.embeds.expand(2, -1, -1).clone(), None if cond.pooled is None else cond.pooled.expand(2, -1).clone())
    torch.testing.assert_close(model(x, sigma, cond), model(x, sigma, per_sample))  # batch 1 = batch B of copies


@pytest.mark.parametrize("kind", ["latent-text", "sd3"])
def test_prompts_are_encoded_once_per_run(text_folders, kind):
    model = load_diffusers(text_folders[kind])
    encoders = [model.text.pipeline.text_encoder] + ([model.text.pipeline.text_encoder_2] if kind == "sd3" else [])
    calls = [count_calls(encoder) for encoder in encoders]
    for steps in (2, 4):  # more steps, no more encoding
        before = [c[0] for c in calls]
        stiffviz.sample(model, schedule="model", steps=steps, batch=2, prompt=PROMPT, negative_prompt=NEGATIVE, cfg=CFG)
        assert [c[0] - b for c, b in zip(calls, before)] == [2] * len(calls)  # the prompt and the negative prompt
    before = [c[0] for c in calls]
    stiffviz.sample(model, schedule="model", steps=3, batch=2, prompt=PROMPT, cfg=CFG)  # negative: "" (encoded once, kept)
    stiffviz.sample(model, schedule="model", steps=3, batch=2)  # no prompt: the empty prompt's kept conditioning
    assert [c[0] - b for c, b in zip(calls, before)] == [2] * len(calls)
    x, sigma = torch.randn(2, *model.shape), float(model.model_sigmas(3)[1])
    torch.testing.assert_close(model(x, sigma), model(x, sigma, model.condition(prompt="")[0]))


def test_latent_model_attributes_and_shapes(text_folders):
    model = stiffviz.load_model("diffusers:" + text_folders["latent-text"])
    assert model.latent and model.text_conditioned and model.shape == (4, 8, 8) and model.classes is None
    assert model.path == "edm" and model.prediction_type == "epsilon"
    assert model.parameter_count == sum(p.numel() for p in model.network.parameters())  # the network only
    sd3 = load_diffusers(text_folders["sd3"])
    assert sd3.latent and sd3.text_conditioned and sd3.path == "flow" and sd3.shape == (4, 8, 8)
    for bad in (torch.randn(1, 3, 8, 8), torch.randn(1, 4, 16, 16)):
        with pytest.raises(ParameterError) as error:
            model(bad, 1.0)
        assert error.value.parameter == "x" and "(batch, 4, 8, 8)" in str(error.value)
        with pytest.raises(ParameterError) as error:
            model.decode(bad)
        assert error.value.parameter == "x0"
    with pytest.raises(ParameterError) as error:
        model(torch.randn(1, 4, 8, 8), 1.0, 2)
    assert error.value.parameter == "class"
    with pytest.raises(ParameterError) as error:
        stiffviz.sample(model, schedule="model", steps=2, batch=1, cls=1)
    assert error.value.parameter == "class"


@pytest.mark.parametrize("kind", ["latent-text", "sd3"])
def test_decode_is_the_vae_and_fast_decode_correlates(text_folders, kind):
    model = load_diffusers(text_folders[kind])
    vae = AutoencoderKL.from_pretrained(text_folders[kind], subfolder="vae", local_files_only=True, use_safetensors=True)
    c, shift = vae.config.scaling_factor, vae.config.shift_factor or 0.0
    x0 = torch.randn(10, *model.shape, generator=torch.Generator().manual_seed(42))  # not the fit's latents (seed 0)
    with torch.no_grad():
        expected = vae.decode(x0 / c + shift).sample.clamp(-1, 1)
    images = model.decode(x0)
    assert images.shape == (10, 3, 16, 16) and images.dtype == torch.float32
    torch.testing.assert_close(images, expected, rtol=1e-5, atol=1e-5)
    fast = model.decode(x0, fast=True)
    assert fast.shape == images.shape and float(fast.abs().max()) <= 1.0
    assert torch.equal(fast[..., ::2, ::2], fast[..., 1::2, 1::2])  # nearest-upsampled latent pixels
    target = torch.nn.functional.avg_pool2d(images, 2).flatten()
    prediction = fast[..., ::2, ::2].flatten()
    assert float(torch.corrcoef(torch.stack([prediction, target]))[0, 1]) > 0.3  # seen ≈ 0.6
    assert float(((prediction - target) ** 2).mean()) < float(((target - target.mean()) ** 2).mean())  # beats the mean


def test_without_text_encoders_prompts_are_refused_and_embeddings_accepted(text_folders):
    model = load_diffusers(text_folders["latent-bare"])
    full = load_diffusers(text_folders["latent-text"])
    assert model.text_conditioned and model.latent
    with pytest.raises(ParameterError, match="prompt_embeds") as error:
        stiffviz.sample(model, schedule="model", steps=2, batch=1, prompt=PROMPT)
    assert error.value.parameter == "prompt"
    with pytest.raises(ParameterError) as error:
        model(torch.randn(1, *model.shape), 1.0)  # the empty prompt needs a text encoder too
    assert error.value.parameter == "prompt"
    cond, uncond = full.condition(prompt=PROMPT, negative_prompt=NEGATIVE)
    settings = dict(schedule="model", steps=3, batch=2, cfg=CFG, diagnostics=False)
    ours, trace = stiffviz.sample(model, prompt_embeds=cond.embeds, negative_prompt_embeds=uncond.embeds, **settings)
    reference, _ = stiffviz.sample(full, prompt=PROMPT, negative_prompt=NEGATIVE, **settings)
    assert trace.status == "ok"
    torch.testing.assert_close(ours, reference)
    with pytest.raises(ParameterError) as error:
        model.condition(prompt_embeds=torch.randn(1, 8, 7))  # the UNet's cross-attention dimension is 16
    assert error.value.parameter == "prompt_embeds" and "16" in str(error.value)
    with pytest.raises(ParameterError) as error:
        model.condition(prompt_embeds=cond.embeds, pooled_prompt_embeds=torch.randn(1, 16))
    assert error.value.parameter == "pooled_prompt_embeds"


def test_sd3_needs_pooled_embeddings_with_its_prompt_embeds(text_folders):
    model = load_diffusers(text_folders["sd3"])
    cond, _ = model.condition(prompt=PROMPT)
    with pytest.raises(ParameterError) as error:
        model.condition(prompt_embeds=cond.embeds)
    assert error.value.parameter == "pooled_prompt_embeds"
    with pytest.raises(ParameterError) as error:
        model(torch.randn(3, *model.shape), 0.5, type(cond)(cond.embeds.expand(2, -1, -1), cond.pooled))
    assert error.value.parameter == "prompt_embeds"
