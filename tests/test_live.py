"""The app's run logic without Gradio: request checks, streaming, comparison, divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stiffviz
from stiffviz.live import (
    DEFAULTS, GUIDED, INPUTS, UNGUIDED, ModelLimits, available_models, limits_for, nfe_text, parse_request,
    results_rows, step_status, stream_session,
)  # fmt: skip
from stiffviz.solvers import nfe_for

from conftest import linear_drift_model

MODELS = available_models()


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


def test_only_the_servers_diffusers_model_is_accepted():
    models = available_models("diffusers:/srv/unet")
    assert models[-1] == "diffusers:/srv/unet" and limits_for(models[-1]).max_batch < limits_for("tree").max_batch
    with pytest.raises(stiffviz.ParameterError, match="model"):
        parse_request(DEFAULTS | dict(model="diffusers:/elsewhere"), models)


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
    assert run.preview(4) is run.states[4] and len(run.previews) == 4


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


def test_an_error_in_the_run_ends_the_session_with_its_message():
    req = request(model="rings", cls="A", erk_on=False)
    sessions = list(stream_session(req))
    assert len(sessions) == 1 and "class" in sessions[0].runs["run"].error
    assert "stopped: class" in step_status(sessions[0])


def test_results_rows_report_both_runs():
    *_, session = stream_session(request(steps=4, batch=128))
    header, rows = results_rows(session)
    assert header[:5] == ["run", "status", "steps", "NFE", "wall time (s)"] and {"swd", "nll"} <= set(header)
    assert [row[0] for row in rows] == [GUIDED, UNGUIDED]
    assert [row[3] for row in rows] == [nfe_for("heun", 4)] * 2


def test_nfe_text_counts_guidance_calls():
    assert f"NFE = {nfe_for('bosh3', 10)}" in nfe_text("bosh3", 10)
    assert "× 3 model calls" in nfe_text("heun", 8, cfg=2.0, autoguidance=1.5)
    assert nfe_text("heun", "lots") == "NFE: —"


def test_limits_are_ordered_sensibly():
    for name in MODELS:
        limits = limits_for(name)
        assert isinstance(limits, ModelLimits) and 1 <= limits.default_batch <= limits.max_batch
    assert set(INPUTS) == set(DEFAULTS)
