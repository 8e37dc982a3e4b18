"""The app's event handlers as plain functions (no browser, no server)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from conftest import linear_drift_model
from test_live import FAKE, PAGE_DEFAULT_SETTINGS, TextLatentModel

import app
import stiffviz
from stiffviz.app import ui
from stiffviz.app.live import GUIDED, UNGUIDED, stream_session
from stiffviz.app.requests import DEFAULTS, INPUTS, Request, available_models, limits_for, size_limits
from stiffviz.app.plots import CHARTS
from stiffviz.app.render import image_grid

STATUS, VIEW_A, VIEW_B, GALLERY = range(4)
CHART = {name: 4 + k for k, name in enumerate(CHARTS)}
STABILITY, RESULTS, SLIDER, SESSION = range(4 + len(CHARTS), 8 + len(CHARTS))


def inputs(x_axis: str = "step", **changes) -> list:
    values = DEFAULTS | changes
    return [values[name] for name in INPUTS] + [x_axis]


def median_line(figure, name: str) -> np.ndarray:
    (line,) = [t for t in figure.data if t.name == name]
    return np.array(line.y, dtype=float)


def is_skip(output) -> bool:
    return isinstance(output, dict) and output == ui.gr.skip()


def page(frames: list[tuple]) -> list:
    """What the page shows after ``frames``: each output's latest value (a ``gr.skip()`` keeps the one before)."""
    shown = [None] * len(frames[0])
    for frame in frames:
        shown = [old if is_skip(new) else new for old, new in zip(shown, frame)]
    return shown


@pytest.fixture(scope="module")
def default_frames() -> list[tuple]:
    return list(ui.run(*inputs()))


def test_run_streams_a_frame_per_step_for_both_runs(default_frames):
    assert len(default_frames) == 2 * (DEFAULTS["steps"] + 1)
    assert len(default_frames[0]) == ui.OUTPUT_COUNT
    growing = [len(median_line(f[CHART["lte"]], "‖e‖ embedded"))  # one run so far
               for f in default_frames[:DEFAULTS["steps"]]]  # fmt: skip
    assert growing == list(range(1, DEFAULTS["steps"] + 1))
    assert [f[STABILITY] == ui.gr.skip() for f in default_frames] == [True] * (len(default_frames) - 1) + [False]
    sliders = [page(default_frames[: n + 1])[SLIDER] for n in range(len(default_frames))]
    assert [s["interactive"] for s in sliders] == [False] * (len(default_frames) - 1) + [True]
    assert "step 1 of 6" in default_frames[0][STATUS]


def test_frames_send_only_what_changed(default_frames):
    steps = DEFAULTS["steps"]
    guided_end, unguided = default_frames[steps], default_frames[steps + 1 :]
    # The guided run's end changes neither its view nor the charts (its steps were all streamed).
    assert is_skip(guided_end[VIEW_A]) and all(is_skip(guided_end[CHART[c]]) for c in CHARTS)
    assert not is_skip(guided_end[RESULTS]) and [row[0] for row in guided_end[RESULTS]["value"]] == [GUIDED]
    # While the unguided run streams, the finished guided view is not sent again; its own view is.
    assert all(is_skip(f[VIEW_A]) and not is_skip(f[VIEW_B]) for f in unguided[:-1])
    assert all(is_skip(f[GALLERY]) for f in default_frames[1:])  # hidden once, in the first frame
    # Every frame still shows the state of the whole session: the page after it equals a full drawing.
    final = page(default_frames)
    session = final[SESSION]
    for chart, figure in zip(CHARTS, ui.frames.charts(session, "step")):
        assert final[CHART[chart]].to_json() == figure.to_json(), chart
    full_views = ui.frames.views(session, ui._model("tree"), session.steps_done)
    assert [final[v]["value"].to_json() for v in (VIEW_A, VIEW_B)] == [f["value"].to_json() for f in full_views[:2]]


def test_big_runs_draw_a_subsample_and_fewer_redraws():
    steps, batch = 30, 2048  # 2 × MAX_PARTICLES, and more steps than MAX_REDRAWS: a redraw every 2 steps
    frames = list(ui.run(*inputs(steps=steps, batch=batch, erk_on=False, eig=False, compare=False)))
    assert len(frames) == steps + 1  # a frame per step (the status moves on) and one at the end
    drawn = [k + 1 for k, f in enumerate(frames[:steps]) if not is_skip(f[CHART["lte"]])]
    assert drawn == list(range(1, steps + 1, 2)) and not is_skip(frames[-1][CHART["lte"]])
    assert [k + 1 for k, f in enumerate(frames[:steps]) if not is_skip(f[VIEW_A])] == drawn
    final = page(frames)
    run = final[SESSION].runs["run"]
    heat, lines, dots = final[VIEW_A]["value"].data
    assert np.array_equal(dots.x, run.states[-1][: ui.frames.MAX_PARTICLES, 0].numpy())
    assert np.isnan(np.array(lines.x, dtype=float)).sum() == ui.frames.MAX_PATHS
    assert f"({ui.frames.MAX_PARTICLES:,} of {batch:,} shown)" in final[VIEW_A]["value"].layout.title.text
    # The charts' statistics are over the whole batch.
    lte = run.trace.column("lte")
    assert lte.shape == (steps, batch)
    shown = median_line(final[CHART["lte"]], "‖e‖ embedded")
    np.testing.assert_allclose(shown, np.nanmedian(lte, axis=1), rtol=1e-6)


def test_final_frame_is_the_librarys_run(default_frames):
    final = page(default_frames)
    session = final[SESSION]
    for label, settings in ((GUIDED, PAGE_DEFAULT_SETTINGS), (UNGUIDED, PAGE_DEFAULT_SETTINGS | dict(erk_guid=None))):
        _, trace = stiffviz.sample("tree", **settings)
        stiffness = trace.column("stiffness")
        expected = [np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in stiffness]
        shown = median_line(final[CHART["stiffness"]], f"ρ̂ (secant) · {label}")
        np.testing.assert_allclose(shown, expected, rtol=1e-6)  # float32 in the figure
    rows = final[RESULTS]["value"]
    assert [row[0] for row in rows] == [GUIDED, UNGUIDED]
    assert final[SLIDER]["maximum"] == DEFAULTS["steps"] and final[SLIDER]["interactive"] is True
    assert final[VIEW_A]["visible"] and final[VIEW_B]["visible"] and not final[GALLERY]["visible"]
    assert final[STABILITY].layout.title.text == "Stability region of heun"


def test_scrub_shows_recorded_states_without_recomputing(default_frames, monkeypatch):
    session = default_frames[-1][SESSION]
    assert session.request.settings["batch"] <= ui.frames.MAX_PARTICLES  # every particle is drawn
    monkeypatch.setattr(stiffviz.sampler, "integrate", lambda *a, **k: pytest.fail("scrubbing must not sample"))
    status, view_a, view_b, _, _ = ui.scrub(session, 2)
    assert "step 2 of 6" in status
    particles = view_a["value"].data[-1]
    np.testing.assert_array_equal(np.array(particles.x), session.runs[GUIDED].states[2][:, 0].numpy())
    np.testing.assert_array_equal(np.array(view_b["value"].data[-1].y), session.runs[UNGUIDED].states[2][:, 1].numpy())
    assert "step 6 of 6" in ui.scrub(session, 6)[0]
    with pytest.raises(ui.gr.Error, match=r"step: must be an integer in \[0, 6\] \(the recorded steps\), got 99"):
        ui.scrub(session, 99)  # refused, not clamped
    with pytest.raises(ui.gr.Error, match="step: run the sampler first"):
        ui.scrub(None, 3)


def test_redraw_switches_the_x_axis(default_frames):
    session = default_frames[-1][SESSION]
    charts = ui.redraw(session, "σ (log)")
    assert len(charts) == len(CHARTS) and all(c.layout.xaxis.type == "log" for c in charts)
    xs = np.array(charts[0].data[-1].x if charts[0].data[-1].x is not None else [], dtype=float)
    assert set(xs) <= set(session.runs[UNGUIDED].trace.column("sigma").astype(np.float32))  # float32 in the figure


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(steps=10_000), "steps: must be an integer in [1, 200] for the model tree, got 10000"),
        (dict(batch=0), "batch: must be an integer in [1, 4096] for the model tree, got 0"),
        (dict(model="digits", batch=limits_for("digits").max_batch + 1), "batch: must be an integer in [1, 256] for the model digits"),
        (dict(cfg=float("inf")), "cfg: must be a number in [0, 10]"),
        (dict(sigma_min=5.0, sigma_max=1.0), "sigma_min: must be < sigma_max"),
        (dict(stein_on=True, stein_gamma_min=3.0, stein_gamma_max=1.0), "stein_gamma"),
        (dict(model="rings", cls="A"), "class"),
        (dict(model="../../etc/passwd"), "model: must be one of"),
    ],
)
def test_bad_input_gets_a_message_naming_the_parameter(changes, message):
    frames = list(ui.run(*inputs(**changes)))
    assert message in frames[-1][STATUS]


def test_a_diverging_run_shows_its_steps_and_where_it_stopped(monkeypatch):
    model = linear_drift_model(torch.diag(torch.tensor([1e5, 1.0])))
    model.sample_reference = lambda n, generator, cond=None: torch.randn(n, 2, generator=generator)
    model.log_prob = lambda x, sigma, cond=None: -0.5 * (x**2).sum(1)
    monkeypatch.setattr(ui, "_model", lambda name: model)
    frames = list(ui.run(*inputs(solver="euler", steps=40, erk_on=False, eig=False), models=["tree"]))
    final = page(frames)
    trace = final[SESSION].runs["run"].trace
    assert trace.status == "diverged" and 0 < len(trace.steps) < 40
    assert "diverged" in final[STATUS] and f"non-finite at step {len(trace.steps) - 1}" in final[STATUS]
    assert len(median_line(final[CHART["stiffness"]], "ρ̂ (secant)")) == len(trace.steps)
    assert final[SLIDER]["maximum"] == len(trace.steps) - 1


def test_image_models_show_state_and_preview_grids():
    frames = list(ui.run(*inputs(model="digits", batch=4, steps=3, cls="7", erk_on=False, compare=False)))
    final = page(frames)
    gallery = final[GALLERY]["value"]
    assert final[GALLERY]["visible"] and not final[VIEW_A]["visible"]
    assert [caption.split(" · ")[1].split(" ")[0] for _, caption in gallery] == ["x", "x0"]
    session = final[SESSION]
    run = session.runs["run"]
    np.testing.assert_array_equal(gallery[0][0], stiffviz.app.render.image_grid(run.samples))
    np.testing.assert_array_equal(gallery[1][0], stiffviz.app.render.image_grid(run.samples))  # x0 preview at σ = 0
    _, _, _, scrubbed, kept = ui.scrub(session, 1)
    np.testing.assert_array_equal(scrubbed["value"][1][0], stiffviz.app.render.image_grid(run.previews[1]))
    assert kept is session and "Latent model" not in final[STATUS]


def test_export_writes_the_runs_files(default_frames, tmp_path):
    paths = ui.export(default_frames[-1][SESSION])
    names = [p.rsplit("/", 1)[-1] for p in paths]
    assert sum(n.endswith(".trace.json") for n in names) == 2 and sum(n.endswith(".html") for n in names) == 1
    session = default_frames[-1][SESSION]
    (guided_json,) = [p for p in paths if p.endswith("guidance-on.trace.json")]
    loaded = stiffviz.Trace.from_json(guided_json)
    np.testing.assert_array_equal(loaded.column("lte"), session.runs[GUIDED].trace.column("lte"))
    assert json.loads(open(guided_json).read())["config"]["erk_guid"] == DEFAULTS["erk_guid"]
    with pytest.raises(ui.gr.Error, match="export: run the sampler first"):
        ui.export(None)
    failed = list(stream_session(Request("rings", PAGE_DEFAULT_SETTINGS | dict(cls="A"), False)))[-1]  # the sampler refuses
    with pytest.raises(ui.gr.Error, match="export: no run finished.*class"):
        ui.export(failed)


def test_model_change_sets_classes_guidance_and_limits():
    cls, cfg, autoguidance, steps, batch, eig, prompt, negative, schedule, path, note = ui.on_model_change("digits-unet")
    assert cls["choices"] == ["(none)", *map(str, range(10))] and cfg["interactive"] and autoguidance["interactive"]
    assert steps["maximum"] == limits_for("digits-unet").max_steps and batch["maximum"] == 64
    assert eig["value"] is False and "64 steps" in note  # no analytic Jacobian: power iteration is costly
    assert prompt["visible"] is False and negative["visible"] is False and schedule["choices"] == ["karras", "logsnr", "uniform"]
    assert path["choices"] == ["edm", "vp", "flow"] and path["value"] == "edm"
    cls, cfg, *_ = ui.on_model_change("rings")
    assert cls["interactive"] is False and cfg["interactive"] is False
    assert ui.on_model_change("rings", "logsnr")[8]["value"] == "logsnr"  # a valid choice is kept
    assert "model" in ui.on_model_change("nonsense")[-1]


@pytest.fixture
def fake(monkeypatch):
    """The text-conditioned latent model served as FAKE (``ui._model`` hands it out)."""
    model, real = TextLatentModel(), ui._model
    monkeypatch.setattr(ui, "_model", lambda name: model if name == FAKE else real(name))
    return model


def test_model_change_shows_the_prompt_and_model_schedule_for_a_text_model(fake):
    models = [*available_models(), FAKE]
    cls, cfg, _, steps, batch, _, prompt, negative, schedule, _, note = ui.on_model_change(FAKE, "karras", models=models)
    assert prompt["visible"] is True and negative["visible"] is True and cls["interactive"] is False
    assert cfg["interactive"] is True and cfg["value"] == ui.TEXT_CFG
    assert schedule["choices"] == ["karras", "logsnr", "uniform", "model"] and schedule["value"] == "model"
    limits = size_limits(FAKE, fake.parameter_count, 64)
    assert steps["maximum"] == limits.max_steps and batch["maximum"] == limits.max_batch
    assert f"{limits.max_steps} steps" in note
    prompt, negative, schedule = ui.on_model_change("tree", "model", models=models)[6:9]
    assert prompt["visible"] is False and negative["visible"] is False and schedule["value"] == "karras"
    refused = ui.on_model_change("diffusers:/some/folder", models=models)
    assert refused[-1].startswith("⚠️ model: must be one of") and refused[:-1] == (ui.gr.skip(),) * 10


def test_a_prompted_latent_run_reaches_the_model_and_shows_decoded_pictures(fake):
    models = [*available_models(), FAKE]
    settings = dict(model=FAKE, prompt="a red fox", negative_prompt="blurry", cfg=3.0, steps=3, batch=2,
                    schedule="model", erk_on=False, eig=False, compare=False)  # fmt: skip
    frames = []
    for frame in ui.run(*inputs(**settings), models=models):
        frames.append((frame, fake.decodes[:]))
        fake.decodes.clear()
    session = frames[-1][0][SESSION]
    run = session.runs[GUIDED]  # CFG on, compare off: the guided run alone
    assert fake.prompts == [("a red fox", "blurry")]  # the prompt reached the model, encoded once
    expected, trace = stiffviz.sample(fake, **PAGE_DEFAULT_SETTINGS | dict(
        prompt="a red fox", negative_prompt="blurry", cfg=3.0, steps=3, batch=2, schedule="model", erk_guid=None, eig=False))
    torch.testing.assert_close(run.samples, expected, rtol=0, atol=0)
    assert trace.config["prompt"] == "a red fox" and trace.config["negative_prompt"] == "blurry"
    # Streaming: the cheap projection of x_k and D(x_k); the end: the VAE (pictures ×2 the latent size).
    # The x0 preview while streaming is the newest estimate D(x_{k−1}; σ_{k−1}).
    assert [decodes for _, decodes in frames] == [[(True, 2)] * 2] * 3 + [[(False, 2)] * 2]
    for (frame, _), k in zip(frames, (1, 2, 3, 3)):
        (state, _), (preview, caption) = frame[GALLERY]["value"]
        fast = frame is not frames[-1][0]
        np.testing.assert_array_equal(state, image_grid(fake.decode(run.states[k], fast=fast)))
        np.testing.assert_array_equal(preview, image_grid(fake.decode(run.previews[k - 1], fast=fast)))
        assert f"σ = {run.sigma(k - 1):.3g}" in caption
        assert "Latent model" in frame[STATUS] and "4×4×4" in frame[STATUS]
    scrubbed, decodes = [], []
    for k in (1, 2, 1, 2, 3):  # scrubbing back and forth decodes each picture once, with the VAE
        fake.decodes.clear()
        status, _, _, gallery, kept = ui.scrub(session, k)
        decodes += fake.decodes
        scrubbed.append(gallery["value"][0][0])
        assert f"step {k} of 3" in status and "Latent model" in status and kept is session
    assert decodes == [(False, 2)] * 3  # x₁, D(x₁), x₂: x₃ and D(x₂) were decoded at the run's end
    for picture, k in zip(scrubbed, (1, 2, 1, 2, 3)):
        np.testing.assert_array_equal(picture, image_grid(fake.decode(run.states[k])))


def test_a_prompt_for_a_model_without_text_is_refused():
    frames = list(ui.run(*inputs(prompt="a cat")))
    assert len(frames) == 1 and "prompt: the model tree is not text-conditioned" in frames[0][STATUS]
    frames = list(ui.run(*inputs(prompt="a" * 501)))
    assert "prompt: must be text of at most 500 characters" in frames[0][STATUS]


def test_app_serves_its_models_loaded_once_at_start(monkeypatch, capsys):
    loads, built = [], []
    monkeypatch.setattr(ui, "load_model", lambda name, device=None: loads.append(name) or TextLatentModel())
    monkeypatch.setattr(app, "queued", lambda blocks: built.append(blocks) or blocks)
    monkeypatch.setattr(ui.gr.Blocks, "launch", lambda self, **kwargs: None)
    ui._model.cache_clear()
    try:
        assert app.main(["--model", FAKE, "--model", "tree"]) == 0
        # every offered model is loaded (and timed for the cost estimate) once, at start-up; tree only once
        assert sorted(loads) == sorted(available_models(FAKE))
        (dropdown,) = [b for b in built[0].blocks.values() if getattr(b, "elem_id", None) == "model"]
        assert [value for _, value in dropdown.choices] == [*available_models(), FAKE]
        list(ui.run(*inputs(model=FAKE, prompt="owl", batch=2, steps=2, eig=False), models=available_models(FAKE)))
        ui.on_model_change(FAKE, models=available_models(FAKE))
        assert sorted(loads) == sorted(available_models(FAKE))  # requests reuse the loaded models
    finally:
        ui._model.cache_clear()


def test_app_stops_with_the_message_when_a_model_fails_to_load(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(ui.gr.Blocks, "launch", lambda self, **kwargs: pytest.fail("must not serve"))
    assert app.main(["--model", "not-a-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model: must be one of tree") and "Traceback" not in err
    monkeypatch.setenv("STIFFVIZ_MODELS", f"diffusers:{tmp_path / 'missing'}")
    assert app.main([]) == 2
    assert capsys.readouterr().err.startswith("error: model: diffusers:SPEC must be a local folder or a Hub id")


def test_app_reads_specs_from_the_command_line_or_the_environment(capsys):
    env = {"STIFFVIZ_MODELS": "diffusers:/srv/a, moons\ndiffusers:org/model,,", "STIFFVIZ_DIFFUSERS": "/srv/old"}
    assert app.server_models([], [], env) == ["diffusers:/srv/a", "moons", "diffusers:org/model", "diffusers:/srv/old"]
    assert "deprecated" in capsys.readouterr().err
    assert app.server_models(["diffusers:/x"], [], env) == ["diffusers:/x"]  # the command line wins
    assert app.server_models([], ["/y"], {}) == ["diffusers:/y"] and "--model diffusers:PATH" in capsys.readouterr().err
    assert app.server_models([], [], {}) == []


def test_gpu_wrapper_is_the_identity_without_spaces_and_zerogpu_with_it(monkeypatch):
    def handler():
        yield 1

    monkeypatch.setitem(sys.modules, "spaces", None)  # not importable
    assert ui._gpu(handler) is handler
    wrapped = []
    spaces = types.ModuleType("spaces")
    spaces.GPU = lambda fn: wrapped.append(fn) or "on ZeroGPU"
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    assert ui._gpu(handler) == "on ZeroGPU" and wrapped == [handler]


def test_app_runs_a_served_diffusers_text_latent_model_like_the_library(tmp_path, monkeypatch):
    """``app.py --model diffusers:FOLDER`` with a tiny Stable-Diffusion-like folder (random weights)."""
    from diffusers_fixtures import build_tiny

    spec = "diffusers:" + build_tiny("latent-text", tmp_path / "tiny-sd")
    built = []
    monkeypatch.setattr(app, "queued", lambda blocks: built.append(blocks) or blocks)
    monkeypatch.setattr(ui.gr.Blocks, "launch", lambda self, **kwargs: None)
    try:
        assert app.main(["--model", spec]) == 0
        (dropdown,) = [b for b in built[0].blocks.values() if getattr(b, "elem_id", None) == "model"]
        assert [value for _, value in dropdown.choices][-1] == spec
        prompt, _, schedule = ui.on_model_change(spec, models=available_models(spec))[6:9]
        assert prompt["visible"] and schedule["value"] == "model"
        same = dict(prompt="a red fox", negative_prompt="blurry", cfg=3.0, steps=3, batch=2, schedule="model")
        final = page(list(ui.run(*inputs(model=spec, erk_on=False, eig=False, compare=False, **same),
                                 models=available_models(spec))))  # fmt: skip
        run = final[SESSION].runs[GUIDED]
        model = stiffviz.load_model(spec)
        expected, trace = stiffviz.sample(model, solver="heun", seed=0, **same)  # the page's default solver and seed
        torch.testing.assert_close(run.samples, expected)
        np.testing.assert_allclose(run.trace.sigmas, trace.sigmas, rtol=0, atol=0)
        state, preview = final[GALLERY]["value"]
        np.testing.assert_array_equal(state[0], image_grid(model.decode(run.samples)))  # the VAE's RGB picture
        assert not np.array_equal(state[0], image_grid(run.samples)) and "Latent model" in final[STATUS]
    finally:
        ui._model.cache_clear()


def test_after_a_divergence_the_slider_reaches_the_comparison_runs_end():
    """SteinDiff with γ = −10 blows the guided run up part-way; its unguided twin runs all 60 steps,
    and scrubbing shows each run at min(k, its own last step)."""
    changes = dict(steps=60, batch=16, erk_on=False, stein_on=True, stein_gamma_min=-10.0, stein_gamma_max=-10.0,
                   eig=False)  # fmt: skip
    final = page(list(ui.run(*inputs(**changes))))
    session = final[SESSION]
    guided, unguided = session.runs[GUIDED], session.runs[UNGUIDED]
    last = guided.trace.steps[-1]["i"]  # the failing step: x_last is the guided run's last finite state
    assert guided.trace.status == "diverged" and 0 < last < 59 and unguided.trace.status == "ok"
    assert final[SLIDER]["maximum"] == 60
    for k in (last - 1, 60):
        status, view_a, view_b, _, _ = ui.scrub(session, k)
        assert f"**{GUIDED}**: step {min(k, last)} of 60" in status and f"**{UNGUIDED}**: step {k} of 60" in status
        np.testing.assert_array_equal(np.array(view_a["value"].data[-1].x), guided.states[min(k, last)][:, 0].numpy())
        np.testing.assert_array_equal(np.array(view_b["value"].data[-1].x), unguided.states[k][:, 0].numpy())
    rows = {row[0]: row for row in final[RESULTS]["value"]}
    assert "n/a" in rows[GUIDED] and "n/a" not in rows[UNGUIDED]


@pytest.mark.parametrize("solver, churn, adaptive, erk_off, stein_off", [
    ("heun", 0.0, False, False, False),
    ("euler_ancestral", 0.0, False, True, False),
    ("heun", 2.0, False, True, False),
    ("heun", 0.0, True, True, True),
])  # fmt: skip
def test_a_sampler_that_refuses_guidance_turns_its_checkbox_off_and_then_the_run_is_accepted(
        solver, churn, adaptive, erk_off, stein_off):  # fmt: skip
    erk, stein = ui._guidance_allowed(solver, churn, adaptive)
    assert (erk.get("value") is False) is erk_off and (stein.get("value") is False) is stein_off
    page = DEFAULTS | dict(solver=solver, churn=churn, adaptive=adaptive, steps=12, stein_on=True,
                           erk_on=erk.get("value", True), batch=64)  # fmt: skip
    page["stein_on"] = stein.get("value", True)
    frames = list(ui.run(*[page[name] for name in INPUTS], "step", models=available_models()))
    assert "⚠️" not in str(frames[-1][0]), frames[-1][0]
