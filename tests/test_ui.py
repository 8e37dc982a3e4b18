"""The app's event handlers as plain functions (no browser, no server)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from conftest import linear_drift_model

import stiffviz
from stiffviz import ui
from stiffviz.live import DEFAULTS, GUIDED, INPUTS, UNGUIDED, limits_for
from stiffviz.plots import CHARTS

STATUS, VIEW_A, VIEW_B, GALLERY = range(4)
CHART = {name: 4 + k for k, name in enumerate(CHARTS)}
STABILITY, RESULTS, SLIDER, SESSION = range(4 + len(CHARTS), 8 + len(CHARTS))


def inputs(x_axis: str = "step", **changes) -> list:
    values = DEFAULTS | changes
    return [values[name] for name in INPUTS] + [x_axis]


def median_line(figure, name: str) -> np.ndarray:
    (line,) = [t for t in figure.data if t.name == name]
    return np.array(line.y, dtype=float)


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
    assert [f[SLIDER]["interactive"] for f in default_frames] == [False] * (len(default_frames) - 1) + [True]
    assert "step 1 of 6" in default_frames[0][STATUS]


def test_final_frame_is_the_librarys_run(default_frames):
    final = default_frames[-1]
    session = final[SESSION]
    request = session.request
    for label, settings in ((GUIDED, request.settings), (UNGUIDED, request.unguided())):
        _, trace = stiffviz.sample("tree", **settings)
        stiffness = trace.column("stiffness")
        expected = [np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in stiffness]
        shown = median_line(final[CHART["stiffness"]], f"ρ̂ (secant) · {label}")
        np.testing.assert_allclose(shown, expected, rtol=1e-12)
    rows = final[RESULTS]["value"]
    assert [row[0] for row in rows] == [GUIDED, UNGUIDED]
    assert final[SLIDER]["maximum"] == DEFAULTS["steps"] and final[SLIDER]["interactive"] is True
    assert final[VIEW_A]["visible"] and final[VIEW_B]["visible"] and not final[GALLERY]["visible"]
    assert final[STABILITY].layout.title.text == "Stability region of heun"


def test_scrub_shows_recorded_states_without_recomputing(default_frames, monkeypatch):
    session = default_frames[-1][SESSION]
    monkeypatch.setattr(stiffviz.sampler, "integrate", lambda *a, **k: pytest.fail("scrubbing must not sample"))
    status, view_a, view_b, _ = ui.scrub(session, 2)
    assert "step 2 of 6" in status
    particles = view_a["value"].data[-1]
    np.testing.assert_array_equal(np.array(particles.x), session.runs[GUIDED].states[2][:, 0].numpy())
    np.testing.assert_array_equal(np.array(view_b["value"].data[-1].y), session.runs[UNGUIDED].states[2][:, 1].numpy())
    assert "step 6 of 6" in ui.scrub(session, 99)[0]  # clamped to the last step
    assert ui.scrub(None, 3) == (ui.gr.skip(),) * 4


def test_redraw_switches_the_x_axis(default_frames):
    session = default_frames[-1][SESSION]
    charts = ui.redraw(session, "σ (log)")
    assert len(charts) == len(CHARTS) and all(c.layout.xaxis.type == "log" for c in charts)
    xs = np.array(charts[0].data[-1].x if charts[0].data[-1].x is not None else [], dtype=float)
    assert set(xs) <= set(session.runs[UNGUIDED].trace.column("sigma"))


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
    final = frames[-1]
    trace = final[SESSION].runs["run"].trace
    assert trace.status == "diverged" and 0 < len(trace.steps) < 40
    assert "diverged" in final[STATUS] and f"non-finite at step {len(trace.steps) - 1}" in final[STATUS]
    assert len(median_line(final[CHART["stiffness"]], "ρ̂ (secant)")) == len(trace.steps)
    assert final[SLIDER]["maximum"] == len(trace.steps) - 1


def test_image_models_show_state_and_preview_grids():
    frames = list(ui.run(*inputs(model="digits", batch=4, steps=3, cls="7", erk_on=False, compare=False)))
    final = frames[-1]
    gallery = final[GALLERY]["value"]
    assert final[GALLERY]["visible"] and not final[VIEW_A]["visible"]
    assert [caption.split(" · ")[1].split(" ")[0] for _, caption in gallery] == ["x", "x0"]
    session = final[SESSION]
    run = session.runs["run"]
    np.testing.assert_array_equal(gallery[0][0], stiffviz.render.image_grid(run.samples))
    np.testing.assert_array_equal(gallery[1][0], stiffviz.render.image_grid(run.samples))  # x0 preview at σ = 0
    _, _, _, scrubbed = ui.scrub(session, 1)
    np.testing.assert_array_equal(scrubbed["value"][1][0], stiffviz.render.image_grid(run.previews[1]))


def test_export_writes_the_runs_files(default_frames, tmp_path):
    paths = ui.export(default_frames[-1][SESSION])
    names = [p.rsplit("/", 1)[-1] for p in paths]
    assert sum(n.endswith(".trace.json") for n in names) == 2 and sum(n.endswith(".html") for n in names) == 1
    session = default_frames[-1][SESSION]
    (guided_json,) = [p for p in paths if p.endswith("guidance-on.trace.json")]
    loaded = stiffviz.Trace.from_json(guided_json)
    np.testing.assert_array_equal(loaded.column("lte"), session.runs[GUIDED].trace.column("lte"))
    assert json.loads(open(guided_json).read())["config"]["erk_guid"] == DEFAULTS["erk_guid"]
    with pytest.raises(ui.gr.Error, match="Run the sampler first"):
        ui.export(None)
    failed = list(ui.run(*inputs(model="rings", cls="A")))[-1][SESSION]  # stopped by an error: no samples
    with pytest.raises(ui.gr.Error, match="No run finished.*class"):
        ui.export(failed)


def test_model_change_sets_classes_guidance_and_limits():
    cls, cfg, autoguidance, steps, batch, eig, note = ui.on_model_change("digits-unet")
    assert cls["choices"] == ["(none)", *map(str, range(10))] and cfg["interactive"] and autoguidance["interactive"]
    assert steps["maximum"] == limits_for("digits-unet").max_steps and batch["maximum"] == 64
    assert eig["value"] is False and "64 steps" in note  # no analytic Jacobian: power iteration is costly
    cls, cfg, *_ = ui.on_model_change("rings")
    assert cls["interactive"] is False and cfg["interactive"] is False
    assert "model" in ui.on_model_change("nonsense")[-1]


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
