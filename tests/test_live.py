"""The app's run logic without Gradio: request checks, streaming, comparison, divergence."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import torch

import stiffviz
from stiffviz.app.live import GUIDED, UNGUIDED, pictures, results_rows, step_status, stream_session
from stiffviz.app.requests import (
    DEFAULTS, MAX_PROMPT, Request, available_models, limits_for, nfe_text, parse_request, size_limits,
)  # fmt: skip
from stiffviz.models.base import sigma_per_sample
from stiffviz.schedules import karras
from stiffviz.solvers import SOLVERS, nfe_for

from conftest import linear_drift_model

MODELS = available_models()
FAKE = "fake:text-latent"


class TextLatentModel:
    """A text-conditioned latent model with the contract's attributes, exact in closed form.

    Latents x0 ~ N(μ(c), I) per prompt c, with μ(c) ∈ R⁴ a fixed function of the text, so
    D(x; σ) = (x + σ² μ)/(1 + σ²), the posterior mean E[x0 | x0 + σε = x]. ``decode`` maps
    latents to RGB in [−1, 1]: fast = the first three channels clipped (a "linear preview"),
    VAE = tanh of them upsampled ×2 (a different picture, so tests can tell which one ran).
    It records the prompts ``condition`` encoded and every decode call.
    """

    shape, classes, weak, name = (4, 4, 4), None, None, FAKE
    text_conditioned = latent = True
    parameter_count = 5_000
    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self):
        self.prompts: list[tuple] = []
        self.decodes: list[tuple[bool, int]] = []

    @staticmethod
    def mean(text: str) -> torch.Tensor:
        return torch.tensor([[len(text) / 10, sum(map(ord, text)) % 7 / 3, 0.5, -0.5]])

    def condition(self, prompt=None, negative_prompt=None, **embeddings):
        self.prompts.append((prompt, negative_prompt))
        return self.mean(prompt or ""), self.mean(negative_prompt or "")

    def __call__(self, x, sigma, cond=None):
        mu = (self.mean("") if cond is None else cond).to(x.dtype).view(1, -1, 1, 1)
        s2 = sigma_per_sample(sigma, x).view(-1, 1, 1, 1) ** 2
        return (x + s2 * mu) / (1 + s2)

    def model_sigmas(self, steps: int) -> torch.Tensor:
        if not 1 <= steps <= 100:
            raise stiffviz.ParameterError("steps", "must be in [1, 100] for this model")
        return karras(steps, 0.05, 20.0, 7.0)

    def decode(self, x0: torch.Tensor, fast: bool = False) -> torch.Tensor:
        self.decodes.append((fast, x0.shape[0]))
        rgb = x0[:, :3]
        return rgb.clamp(-1, 1) if fast else torch.tanh(rgb).repeat_interleave(2, 2).repeat_interleave(2, 3)


def fake_request(model: TextLatentModel, **changes):
    return parse_request(DEFAULTS | dict(model=FAKE, batch=4) | changes, [*MODELS, FAKE], lambda name: model)


def request(**changes):
    return parse_request(DEFAULTS | changes, MODELS)


@pytest.mark.parametrize(
    ("changes", "parameter", "limit"),
    [
        (dict(steps=201), "steps", "[1, 200] for the model tree"),
        (dict(model="digits", steps=101), "steps", "[1, 100] for the model digits"),
        (dict(model="digits16", batch=65), "batch", "[1, 64] for the model digits16"),
        (dict(steps=0), "steps", "[1, 200]"),
        (dict(steps=2.5), "steps", "an integer"),
        (dict(batch="many"), "batch", "an integer in [1, 4096] for the model tree"),
        (dict(seed=-1), "seed", "[0, 2147483647]"),
        (dict(cfg=float("nan")), "cfg", "[0, 10]"),
        (dict(autoguidance=11), "autoguidance", "[0, 10]"),
        (dict(sigma_max=1e4), "sigma_max", "[0.1, 500]"),
        (dict(erk_guid=-1), "erk_guid", "[0, 5]"),
        (dict(stein_probes=100), "stein_probes", "[1, 32]"),
        (dict(model="/etc/passwd"), "model", "must be one of tree"),
        (dict(solver="rk45"), "solver", "must be one of euler"),
        (dict(schedule="cosine"), "schedule", "must be one of karras"),
    ],
)
def test_every_input_is_checked_with_its_parameter_and_limit(changes, parameter, limit):
    with pytest.raises(stiffviz.ParameterError) as err:
        request(**changes)
    assert err.value.parameter == parameter
    assert limit in str(err.value)


def test_a_missing_input_is_named():
    values = dict(DEFAULTS)
    del values["rho"]
    with pytest.raises(stiffviz.ParameterError, match="rho"):
        parse_request(values, MODELS)


def test_only_the_servers_models_are_accepted():
    models = available_models("diffusers:/srv/unet", "tree", "diffusers:/srv/unet", "diffusers:hub/id")
    assert models == [*MODELS, "diffusers:/srv/unet", "diffusers:hub/id"]  # in order, once each
    for name in ("diffusers:/elsewhere", "diffusers:other/hub-id"):
        with pytest.raises(stiffviz.ParameterError, match="model: must be one of") as err:
            parse_request(DEFAULTS | dict(model=name), models, lambda name: pytest.fail("nothing is loaded"))
        assert err.value.parameter == "model"


def readme_limits() -> dict[str, tuple[int, int, int]]:
    """The README's table of the built-in models' limits: name → (max steps, max batch, default batch)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = text[text.index("| model | max steps | max batch | default batch |"):].split("\n\n")[0]
    limits = {}
    for line in table.splitlines()[2:]:
        names, *numbers = [cell.strip() for cell in line.strip("|").split("|")]
        if names.startswith("`"):
            for name in names.replace("`", "").split(", "):
                limits[name] = tuple(int(n.replace(",", "")) for n in numbers)
    return limits


def test_the_readme_limits_are_what_the_server_enforces():
    documented = readme_limits()
    assert set(documented) == set(MODELS)  # every built-in model, no other
    lookup = functools.lru_cache(stiffviz.load_model)
    for name, (max_steps, max_batch, default_batch) in documented.items():
        def checked(**changes):
            return parse_request(DEFAULTS | dict(model=name, erk_on=False, eig=False) | changes, MODELS, lookup)

        accepted = checked(steps=max_steps, batch=max_batch).settings
        assert (accepted["steps"], accepted["batch"]) == (max_steps, max_batch)
        for parameter, value, limit in (("steps", max_steps + 1, max_steps), ("batch", max_batch + 1, max_batch)):
            with pytest.raises(stiffviz.ParameterError, match=rf"\[1, {limit}\] for the model {name}") as err:
                checked(**(dict(steps=max_steps, batch=max_batch) | {parameter: value}))
            assert err.value.parameter == parameter
        assert limits_for(name).default_batch == default_batch  # what the page's batch slider starts at


def test_size_rule_gives_bigger_models_smaller_limits():
    """max_batch = clamp(⌊2¹⁸/D · min(1, 10⁷/P)⌋, 1, 64), max_steps 100 below 10⁶ parameters, else 50."""
    tiny, cifar, sd = size_limits("a", 50_000, 4 * 8 * 8), size_limits("b", 35_700_000, 3 * 32 * 32), \
        size_limits("c", 860_000_000, 4 * 64 * 64)  # fmt: skip
    assert (tiny.max_steps, tiny.max_batch, tiny.default_batch) == (100, 64, 16)
    assert (cifar.max_steps, cifar.max_batch) == (50, int(2**18 / 3072 * 1e7 / 35.7e6)) == (50, 23)
    assert (sd.max_steps, sd.max_batch, sd.default_batch) == (50, 1, 1)
    for small, big in ((10**5, 10**6), (10**7, 10**8), (10**8, 10**9)):  # more parameters, same state
        assert size_limits("s", small, 3 * 32 * 32).max_batch >= size_limits("b", big, 3 * 32 * 32).max_batch
    assert size_limits("s", 10**8, 3 * 32 * 32).max_batch > size_limits("b", 10**9, 3 * 32 * 32).max_batch
    assert size_limits("s", 10**7, 3 * 16 * 16).max_batch > size_limits("b", 10**7, 3 * 64 * 64).max_batch
    assert size_limits("huge", 10**12, 3 * 1024 * 1024).max_batch == 1  # never below one sample
    model = TextLatentModel()  # limits_for reads parameter_count and shape from the model
    assert limits_for(FAKE, model) == size_limits(FAKE, 5_000, 64)
    model.parameter_count = 10**9
    assert limits_for(FAKE, model) == size_limits(FAKE, 10**9, 64) and limits_for(FAKE, model).max_steps == 50
    with pytest.raises(stiffviz.ParameterError, match=r"steps: must be an integer in \[1, 50\] for the model fake"):
        fake_request(model, steps=51)


def test_prompts_are_checked_on_the_server():
    model = TextLatentModel()
    settings = fake_request(model, prompt="a red fox", negative_prompt="blurry", cfg=3.0).settings
    assert (settings["prompt"], settings["negative_prompt"], settings["cfg"]) == ("a red fox", "blurry", 3.0)
    assert fake_request(model, negative_prompt="").settings["negative_prompt"] is None
    assert "prompt" not in request().settings  # models without text take no prompt setting at all
    for changes, parameter in ((dict(prompt="x" * (MAX_PROMPT + 1)), "prompt"),
                               (dict(negative_prompt="y" * (MAX_PROMPT + 1)), "negative_prompt"),
                               (dict(prompt=["a", "list"]), "prompt")):  # fmt: skip
        with pytest.raises(stiffviz.ParameterError, match=f"{parameter}: must be text of at most 500") as err:
            fake_request(model, **changes)
        assert err.value.parameter == parameter
    assert len(fake_request(model, prompt="x" * MAX_PROMPT).settings["prompt"]) == MAX_PROMPT
    for parameter in ("prompt", "negative_prompt"):
        with pytest.raises(stiffviz.ParameterError, match=f"{parameter}: the model tree is not text-conditioned"):
            request(**{parameter: "a cat"})
    assert model.prompts == []  # checking encodes nothing


def test_schedule_model_only_for_models_with_their_own_grid():
    assert fake_request(TextLatentModel(), schedule="model").settings["schedule"] == "model"
    with pytest.raises(stiffviz.ParameterError, match="schedule: must be one of karras, logsnr, uniform, got 'model'"):
        request(schedule="model")


def test_request_turns_switches_into_library_settings():
    off = request(erk_on=False, stein_on=True, cls="B", cfg=2.0).settings
    assert off["erk_guid"] is None and off["stein"] is True and off["cls"] == "B" and off["cfg"] == 2.0
    guided = request(cls="A", cfg=3.0)
    assert guided.unguided()["cfg"] == 1.0 and guided.unguided()["erk_guid"] is None
    assert not request(erk_on=False).has_guidance


def collect(model, settings):
    """Records and states the library's own ``on_step`` hands out, for comparison."""
    states = []
    x, trace = stiffviz.sample(model, on_step=lambda record, x_next, denoised: states.append(x_next.clone()),
                               **settings)  # fmt: skip
    return x, trace, states


def test_streamed_session_is_the_librarys_run_for_both_runs():
    req = request(steps=5, batch=256, cls="A", cfg=1.5)
    frames = []
    for session in stream_session(req):
        run = next(reversed(session.runs.values()))
        frames.append((run.label, len(run.trace.steps), [s.clone() for s in run.states[-1:]]))
    assert [f[:2] for f in frames] == [(GUIDED, k) for k in range(1, 6)] + [(GUIDED, 5)] + \
        [(UNGUIDED, k) for k in range(1, 6)] + [(UNGUIDED, 5)]  # fmt: skip
    for label, settings in ((GUIDED, req.settings), (UNGUIDED, req.unguided())):
        x, trace, states = collect("tree", settings)
        run = session.runs[label]
        assert torch.equal(run.samples, x)
        assert [torch.equal(a, b) for a, b in zip(run.states[1:], states)] == [True] * 5
        for field in ("stiffness", "lte", "align_cos_true", "eig_max"):
            np.testing.assert_array_equal(run.trace.column(field), trace.column(field))
        assert run.quality == stiffviz.quality.quality_report(stiffviz.load_model("tree"), x, "A", 0)
    assert session.runs[GUIDED].quality["swd"] != session.runs[UNGUIDED].quality["swd"]


def test_initial_state_and_preview_are_what_the_first_step_used():
    """Euler's first step is x₁ = x₀ + (σ₁ − σ₀)(x₀ − D(x₀; σ₀))/σ₀: it pins down x₀ and D(x₀)."""
    req = request(solver="euler", steps=4, batch=64, erk_on=False, compare=False, eig=False)
    *_, session = stream_session(req)
    run = session.runs["run"]
    model = stiffviz.load_model("tree")
    sigma0, sigma1 = run.sigma(0), run.sigma(1)
    torch.testing.assert_close(run.previews[0], model(run.states[0], sigma0))
    torch.testing.assert_close(run.states[1], run.states[0] + (sigma1 - sigma0) * (run.states[0] - run.previews[0]) / sigma0)
    assert torch.equal(run.preview(4), run.states[4]) and len(run.previews) == 4  # the step to σ = 0 returns D(x₃)
    assert [run.preview_index(k) for k in range(5)] == [0, 1, 2, 3, 3]


def test_a_diverging_run_keeps_its_steps_and_says_where():
    model = linear_drift_model(torch.diag(torch.tensor([1e5, 1.0])))
    req = request(solver="euler", steps=40, batch=8, erk_on=False, compare=True, eig=False)
    *_, session = stream_session(req, model)
    run = session.runs["run"]
    assert run.trace.status == "diverged" and 0 < len(run.trace.steps) < 40
    assert len(run.states) == len(run.trace.steps)  # x₀ … x_{n−1}: the non-finite state is not kept
    assert all(bool(torch.isfinite(x).all()) for x in run.states)
    text = step_status(session)
    assert "diverged" in text and f"non-finite at step {len(run.trace.steps) - 1}" in text
    # The status shows the last state kept, x_i of the failing step i: the same step number as the message.
    failing = run.trace.steps[-1]
    assert f"step {failing['i']} of 40, σ = {failing['sigma']:.4g}" in text
    assert f"at step {failing['i']} (sigma {failing['sigma']:.4g} -> " in text
    assert session.steps_done == failing["i"] == len(run.states) - 1


def test_after_a_divergence_the_comparison_run_can_be_scrubbed_to_its_end_and_no_quality_is_faked():
    """SteinDiff with γ = −10 blows the tree's guided run up (step 42 of 60); its unguided twin finishes."""
    req = request(steps=60, batch=16, erk_on=False, stein_on=True, stein_gamma_min=-10.0, stein_gamma_max=-10.0,
                  eig=False)  # fmt: skip
    *_, session = stream_session(req)
    guided, unguided = session.runs[GUIDED], session.runs[UNGUIDED]
    assert guided.trace.status == "diverged" and unguided.trace.status == "ok"
    i = guided.trace.steps[-1]["i"]
    assert 0 < i < 59 and len(unguided.states) == 61
    assert session.steps_done == 60  # the slider reaches the longest run's last step
    for k in (10, i, i + 1, 60):  # each run at min(k, its last step)
        lines = step_status(session, k).split("\n\n")
        assert lines[0].startswith(f"**{GUIDED}**: step {min(k, i)} of 60, σ = {guided.sigma(min(k, i)):.4g}")
        assert lines[1].startswith(f"**{UNGUIDED}**: step {k} of 60, σ = {unguided.sigma(k):.4g}")
    # A diverged run's last finite state is no sample: its measures are "n/a", with the reason.
    assert guided.quality == {} and bool(torch.isfinite(guided.samples).all())
    header, rows = results_rows(session)
    assert header == ["run", "status", "steps", "NFE", "wall time (s)", "nll", "precision", "recall", "swd", "note"]
    by_run = {row[0]: dict(zip(header, row)) for row in rows}
    assert [by_run[GUIDED][m] for m in ("nll", "precision", "recall", "swd")] == ["n/a"] * 4
    assert by_run[GUIDED]["status"] == "diverged" and by_run[GUIDED]["steps"] == i
    assert "diverged" in by_run[GUIDED]["note"] and "not measured" in by_run[GUIDED]["note"]
    expected = stiffviz.quality.quality_report(stiffviz.load_model("tree"), unguided.samples, None, 0)
    assert [by_run[UNGUIDED][m] for m in ("nll", "precision", "recall", "swd")] == \
        [round(expected[m], 4) for m in ("nll", "precision", "recall", "swd")]  # fmt: skip
    assert by_run[UNGUIDED]["note"] == "" and by_run[UNGUIDED]["steps"] == 60


@pytest.mark.parametrize("batch", [1, 3])
def test_a_batch_too_small_for_a_measure_keeps_the_run_and_says_what_is_not_available(batch):
    *_, session = stream_session(request(steps=3, batch=batch, erk_on=False, eig=False, compare=False))
    run = session.runs["run"]
    assert run.samples.shape == (batch, 2) and run.trace.status == "ok"
    x, _ = stiffviz.sample("tree", **request(steps=3, batch=batch, erk_on=False, eig=False).settings)
    assert torch.equal(run.samples, x)
    header, rows = results_rows(session)
    row = dict(zip(header, rows[0]))
    assert row["precision"] == row["recall"] == "n/a"
    expected = stiffviz.quality.quality_report(stiffviz.load_model("tree"), x, None, 0)
    assert (row["swd"], row["nll"]) == (round(expected["swd"], 4), round(expected["nll"], 4))
    assert row["note"] == f"precision and recall need at least 4 samples; the run has {batch}"


def test_an_error_in_the_run_ends_the_session_with_its_message():
    checked = request(model="rings", erk_on=False)
    req = Request(checked.model, checked.settings | dict(cls="A"), checked.compare)  # refused by the sampler itself
    sessions = list(stream_session(req))
    assert len(sessions) == 1 and "class" in sessions[0].runs["run"].error
    assert "stopped: class" in step_status(sessions[0])


def test_results_rows_report_both_runs():
    *_, session = stream_session(request(steps=4, batch=128))
    header, rows = results_rows(session)
    assert header[:5] == ["run", "status", "steps", "NFE", "wall time (s)"] and {"swd", "nll"} <= set(header)
    assert [row[0] for row in rows] == [GUIDED, UNGUIDED]
    assert [row[3] for row in rows] == [nfe_for("heun", 4)] * 2


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_nfe_text_is_the_number_of_model_calls_a_run_makes(solver, steps, monkeypatch):
    """The page's NFE line against the calls a run makes, counted at the model (the tree and its weak twin)."""
    model = stiffviz.load_model("tree")
    calls = []
    call = type(model).__call__
    monkeypatch.setattr(type(model), "__call__", lambda self, *a, **k: calls.append(self.name) or call(self, *a, **k))
    stiffviz.sample(model, solver=solver, steps=steps, batch=4)
    text = nfe_text(solver, steps)
    assert text == f"**NFE = {len(calls)}**" and set(calls) == {"tree"}
    calls.clear()
    stiffviz.sample(model, solver=solver, steps=steps, batch=4, cls="A", cfg=2.0, autoguidance=1.5)
    nfe = int(re.search(r"NFE = (\d+)", text).group(1))
    assert calls.count("tree") == 2 * nfe and calls.count("tree-weak") == nfe  # conditional, unconditional, weak
    assert nfe_text(solver, steps, cfg=2.0, autoguidance=1.5) == f"{text} × 3 model calls per evaluation (guidance)"
    assert nfe_text(solver, steps, cfg=2.0) == f"{text} × 2 model calls per evaluation (guidance)"


def test_nfe_text_of_a_value_that_is_no_step_count():
    assert nfe_text("heun", "lots") == nfe_text("heun", None) == nfe_text("nope", 5) == "NFE: —"


# The page's values as stiffviz.sample keyword settings, written out (not built by parse_request).
PAGE_DEFAULT_SETTINGS = dict(
    solver="heun", steps=6, batch=1024, seed=0, schedule="karras", path="edm", sigma_min=0.002, sigma_max=80.0, rho=7.0,
    cls=None, cfg=1.0, autoguidance=1.0, erk_guid=1.0, erk_con=0.1, stein=False, stein_probes=5,
    stein_gamma_min=1.0, stein_gamma_max=3.0, stein_sigma_max=500.0, eig=True, lte_ref=False, lipschitz=False,
    denoise_to_zero=True, churn=0.0, s_tmin=0.0, s_tmax=500.0, s_noise=1.0, adaptive=False, rtol=0.05, atol=0.0078,
)  # fmt: skip


def test_page_values_become_these_library_settings():
    default = request()
    assert (default.model, default.settings, default.compare) == ("tree", PAGE_DEFAULT_SETTINGS, True)
    assert default.unguided() == PAGE_DEFAULT_SETTINGS | dict(erk_guid=None)
    changed = request(model="moons", solver="rk4", steps=12, batch=100, seed=9, schedule="logsnr", sigma_min=0.01,
                      sigma_max=20.0, rho=3.0, erk_on=False, erk_guid=2.0, erk_con=0.1, stein_on=True,
                      stein_probes=3, stein_gamma_min=0.5, stein_gamma_max=2.0, stein_sigma_max=5.0, eig=False,
                      lte_ref=True, lipschitz=True, compare=False, path="flow", denoise_to_zero=False, rtol=0.02,
                      atol=0.001)  # fmt: skip
    expected = dict(solver="rk4", steps=12, batch=100, seed=9, schedule="logsnr", path="flow", sigma_min=0.01, sigma_max=20.0,
                    rho=3.0, cls=None, cfg=1.0, autoguidance=1.0, erk_guid=None, erk_con=0.1, stein=True,
                    stein_probes=3, stein_gamma_min=0.5, stein_gamma_max=2.0, stein_sigma_max=5.0, eig=False,
                    lte_ref=True, lipschitz=True, denoise_to_zero=False, churn=0.0, s_tmin=0.0, s_tmax=500.0,
                    s_noise=1.0, adaptive=False, rtol=0.02, atol=0.001)  # fmt: skip
    assert (changed.model, changed.settings, changed.compare) == ("moons", expected, False)
    assert changed.unguided() == expected | dict(stein=False)
    guided = request(cls="B", cfg=2.5, autoguidance=1.5)
    assert guided.settings == PAGE_DEFAULT_SETTINGS | dict(cls="B", cfg=2.5, autoguidance=1.5)
    assert guided.unguided() == PAGE_DEFAULT_SETTINGS | dict(cls="B", erk_guid=None)


def test_a_prompted_latent_session_is_the_librarys_run_with_fast_then_vae_pictures():
    model = TextLatentModel()
    req = fake_request(model, prompt="a red fox", cfg=2.0, steps=4, batch=3, schedule="model", erk_on=False, eig=False)
    previews = []
    for session in stream_session(req, model):
        run = next(reversed(session.runs.values()))
        k = len(run.states) - 1
        model.decodes.clear()
        state, preview = pictures(run, model, k, vae=run.done)
        previews.append((run.label, run.done, model.decodes[:], state.shape))
    # Streaming frames use the cheap projection; the ends of the runs use the VAE (×2 pictures).
    assert [p[:3] for p in previews if not p[1]] == [(GUIDED, False, [(True, 3)] * 2)] * 4 + \
        [(UNGUIDED, False, [(True, 3)] * 2)] * 4  # fmt: skip
    assert [p[2] for p in previews if p[1]] == [[(False, 3)] * 2] * 2
    assert {p[3] for p in previews} == {torch.Size([3, 3, 4, 4]), torch.Size([3, 3, 8, 8])}
    assert model.prompts == [("a red fox", None)] * 2  # encoded once per run, guided and unguided
    for label, settings in ((GUIDED, req.settings), (UNGUIDED, req.unguided())):
        x, trace = stiffviz.sample(model, **settings)
        assert torch.equal(session.runs[label].samples, x)
        np.testing.assert_array_equal(session.runs[label].trace.column("stiffness"), trace.column("stiffness"))
    np.testing.assert_allclose(session.runs[GUIDED].trace.sigmas, model.model_sigmas(4).tolist())
    # The prompt moves the samples: the latents' channel means follow μ(prompt) (CFG pushes past it).
    other = fake_request(model, prompt="", cfg=2.0, steps=4, batch=3, schedule="model", erk_on=False, eig=False,
                         compare=False)  # fmt: skip
    *_, plain = stream_session(other, model)
    assert not torch.allclose(plain.runs[GUIDED].samples, session.runs[GUIDED].samples)


def test_vae_pictures_are_decoded_once_per_state():
    model = TextLatentModel()
    req = fake_request(model, prompt="owl", steps=3, batch=2, compare=False, erk_on=False, eig=False)
    *_, session = stream_session(req, model)
    run = session.runs["run"]
    model.decodes.clear()
    first = [pictures(run, model, k, vae=True) for k in (1, 2, 1, 3, 2, 1)]
    assert model.decodes == [(False, 2)] * 5  # x₁, D(x₁), x₂, D(x₂), x₃ (its preview is D(x₂)): once each
    torch.testing.assert_close(first[0][0], model.decode(run.states[1]))
    torch.testing.assert_close(first[0][1], model.decode(run.previews[1]))
    assert first[0][0] is first[2][0]
