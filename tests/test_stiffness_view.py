"""The stiffness map view, the particles' colour option and the report's map (plain functions, no browser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stiffviz import load_model, sample
from stiffviz.app import frames, ui
from stiffviz.app.report import RunResult, html_report
from stiffviz.app.requests import DEFAULTS, INPUTS, NO_CLASS
from stiffviz.app.stiffness_view import LOG_SIGMA, VIEW_RESOLUTION

VIEW_A, VIEW_B, GALLERY, SESSION = 1, 2, 3, -1


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def tree():
    return load_model("tree")


def _decoded(heatmap) -> np.ndarray:
    """log₁₀ ρ back from the map's 8-bit levels and its colour bar's decade ticks."""
    ticks = np.asarray(heatmap.colorbar.tickvals, dtype=float)
    decades = np.array([int(t.split("<sup>")[1].split("<")[0]) for t in heatmap.colorbar.ticktext])
    per_level = (decades[-1] - decades[0]) / (ticks[-1] - ticks[0])
    return decades[0] + (np.asarray(heatmap.z, dtype=float) - ticks[0]) * per_level


def test_the_view_draws_the_exact_spectral_radius(tree):
    map_fig, segment_fig, note = ui.stiffness("tree", NO_CLASS, -1.5)
    heatmap = map_fig.data[0]
    levels = np.asarray(heatmap.z)
    assert levels.dtype == np.uint8 and levels.shape == (VIEW_RESOLUTION, VIEW_RESOLUTION)  # bounded bytes
    axis = np.asarray(heatmap.x, dtype=np.float64)
    assert np.asarray(heatmap.x).dtype == np.float32 and np.array_equal(heatmap.x, heatmap.y)
    # a few grid points against the symmetric drift Jacobian −σ∇²log p_σ (the model's Hessian, not ∂D/∂x)
    rows, cols = np.array([3, 40, 60, 90, 117]), np.array([100, 7, 60, 33, 64])
    points = torch.tensor(np.stack([axis[cols], axis[rows]], 1), dtype=torch.float64)
    sigma = 10**-1.5
    rho = torch.linalg.eigvalsh(tree.drift_jacobian(points, sigma)).abs().amax(1).numpy()
    decoded = _decoded(heatmap)[rows, cols]
    top = np.log10(rho).max()
    visible = np.log10(rho) > top - 5.5  # inside the colour span (the map's top may be higher)
    assert np.allclose(decoded[visible], np.log10(rho[visible]), atol=0.03)  # a level is 6/255 decade
    # the centres drawn are the mixture's; the segments panel shows the flip in the note's words
    assert len(map_fig.data[1].x) == tree.n_components
    assert "**tree** at σ = 0.0316" in note and "changes sign" in note and "keeps one sign" in note
    assert {t.name for t in segment_fig.data} >= {"across", "along"}


def test_the_view_takes_the_class_and_checks_its_inputs(tree):
    map_fig, _, _ = ui.stiffness("tree", "A", LOG_SIGMA[2])
    assert len(map_fig.data[1].x) == tree.n_components // 2  # class A's centres only
    for args, name in ((("tree", NO_CLASS, LOG_SIGMA[1] + 1), "log_sigma"), (("tree", "C", -1.0), "cls"),
                       (("nope", NO_CLASS, -1.0), "model"), (("tree", NO_CLASS, "x"), "log_sigma")):  # fmt: skip
        with pytest.raises(ui.gr.Error) as refused:
            ui.stiffness(*args)
        assert refused.value.message.startswith(f"{name}: ")


def test_the_view_says_plainly_when_a_model_has_no_map():
    map_fig, segment_fig, note = ui.stiffness("digits", NO_CLASS, -1.0)
    assert map_fig is None and segment_fig is None
    assert "needs a 2-D model with an exact Jacobian" in note and "**digits**" in note


@pytest.fixture(scope="module")
def session():
    values = DEFAULTS | dict(steps=4, batch=48, compare=False, eig=False)
    *_, last = ui.run(*[values[name] for name in INPUTS], "step")
    return last[SESSION]


def _markers(figure):
    return [t for t in figure.data if t.name == "particles"][0].marker


def test_particles_are_red_by_default(session):
    (run,) = session.runs.values()
    marker = _markers(frames.particles(run, load_model("tree")))
    assert marker.color == "#d62728"


@pytest.mark.parametrize("colour, field", [("ρ̂ (per sample)", "stiffness"), ("stiffness index", "stiffness_index")])
def test_particles_take_their_own_value_at_the_shown_step(session, colour, field):
    (run,) = session.runs.values()
    tree = load_model("tree")
    for k in (2, 4):  # x_k takes the record of step k − 1, which reached it (the final state: the last step's)
        view_a = ui.scrub(session, k, None, colour)[VIEW_A]["value"]
        expected = np.log10(np.asarray(run.trace.steps[k - 1][field], dtype=float))
        assert np.allclose(np.asarray(_markers(view_a).color, dtype=float), expected, rtol=1e-6)
        assert f"colour: {colour} of step {k - 1}, which reached it" in view_a.layout.title.text
    recoloured = ui.recolour(session, 3, colour)[0]["value"]
    assert np.allclose(np.asarray(_markers(recoloured).color, dtype=float),
                       np.log10(np.asarray(run.trace.steps[2][field], dtype=float)), rtol=1e-6)  # fmt: skip
    assert (_markers(recoloured).cmid == 0) == (field == "stiffness_index")  # the index diverges at 1
    # x_0 has no step before it, and Heun's step 0 has no secant pair: no colours, and the title says so
    for k in (0, 1):
        plain = ui.recolour(session, k, colour)[0]["value"]
        assert _markers(plain).color == "#d62728" and f"no {colour} recorded" in plain.layout.title.text


def test_the_colour_option_is_checked_and_needs_a_run():
    with pytest.raises(ui.gr.Error, match="colour: must be one of"):
        ui.recolour(None, 0, "green")
    with pytest.raises(ui.gr.Error, match="colour: run the sampler first"):
        ui.recolour(None, 0, "stiffness index")
    (message,) = list(ui.run(*[DEFAULTS[name] for name in INPUTS], "step", "green"))
    assert message[0] == "⚠️ colour: must be one of red, ρ̂ (per sample), stiffness index, got 'green' (text)"


def test_the_report_has_the_map_for_a_2d_run_only(tree):
    samples, trace = sample(tree, steps=4, batch=32, seed=0)
    report = html_report({"run": RunResult(trace, samples)}, tree)
    index = [float(np.median(s["stiffness_index"])) for s in trace.steps if "stiffness_index" in s]
    sigma = [s["sigma"] for s in trace.steps if "stiffness_index" in s][int(np.argmax(index))]
    assert f"Stiffness map at σ = {sigma:.3g} (the run&#x27;s step with the largest median stiffness index)" in report
    assert "spectral radius of the drift Jacobian" in report and "a thin branch" in report
    digits = load_model("digits")
    samples, trace = sample(digits, steps=2, batch=2, seed=0)
    assert "Stiffness map" not in html_report({"run": RunResult(trace, samples)}, digits)
