"""The app's explicit σ grid input and its "Rerun with the prescribed schedule" button, as plain
functions (no browser): the box's parsing and named errors, the cost of an explicit grid, and
the button's handler, whose grid then runs at the recorded run's NFE."""

from __future__ import annotations

import pytest

from stiffviz.app import ui
from stiffviz.app.cost import run_passes
from stiffviz.app.live import GUIDED
from stiffviz.app.requests import DEFAULTS, INPUTS, limits_for, parse_request
from stiffviz.models import list_models, load_model
from stiffviz.prescribe import prescribe

TINY = DEFAULTS | dict(batch=64, compare=False, eig=False, erk_on=False)


def request(**changes):
    return parse_request(TINY | changes, list_models())


def numbers(text: str) -> list[float]:
    """The box's text read back here (not by the code under test)."""
    return [float(part) for part in text.split(",")]


def test_an_explicit_grid_replaces_the_schedule_and_the_step_count():
    settings = request(sigmas=" 80, 5 ,0.5, 0.002 ", steps=20).settings
    assert settings["sigmas"] == (80.0, 5.0, 0.5, 0.002) and settings["steps"] == 4
    assert request(sigmas="80, 1, 0").settings["sigmas"] == (80.0, 1.0)  # a final 0 is optional
    assert "sigmas" not in request(sigmas="").settings and "sigmas" not in request(sigmas="  ").settings


@pytest.mark.parametrize("value, words", [
    ("80, 1, x", "must be comma-separated numbers"),
    ("80,,1", "must be comma-separated numbers"),
    ("1, 2", "strictly decreasing"),
    ("80, -1", "> 0"),
    ("80, nan", "finite"),
    ("80, 1e999", "finite"),
    (5, "must be text"),
    (["80", "1"], "must be text"),
    ("1," * 20_000, "at most 20,000 characters"),
])  # fmt: skip
def test_bad_grids_are_named(value, words):
    with pytest.raises(ui.ParameterError, match=words) as err:
        request(sigmas=value)
    assert err.value.parameter == "sigmas"


def test_a_grid_longer_than_the_models_step_limit_is_refused():
    limit = limits_for("digits").max_steps
    grid = ", ".join(str(80.0 / (k + 1)) for k in range(limit + 1))
    with pytest.raises(ui.ParameterError, match=f"1 to {limit} positive levels") as err:
        request(model="digits", sigmas=grid)
    assert err.value.parameter == "sigmas"


def test_the_cost_follows_the_explicit_grid():
    """Heun on N levels and a final step to 0: 2N − 1 calls, whatever the steps slider says."""
    model = load_model("tree")
    for grid, levels in (("80, 0.5, 0.002", 3), ("80, 20, 5, 1, 0.3, 0.1, 0.002", 7)):
        passes = run_passes(model, request(sigmas=grid, steps=40).settings)
        assert passes["sampling"]["call"] == 2 * levels - 1


def run_page(**changes) -> tuple:
    """The page's run with ``changes``: its last frame."""
    values = TINY | changes
    return list(ui.run(*[values[name] for name in INPUTS], "step"))[-1]


@pytest.fixture(scope="module")
def session():
    return run_page(steps=6, erk_on=True, compare=True)[-1]


def test_the_rerun_button_fills_the_box_and_the_rerun_keeps_the_nfe(session):
    recorded = session.runs[GUIDED].trace
    for rule, target in (("lte", 0.8), ("stability", 0.3)):
        text, steps = ui.prescribed(session, rule, target, "tree", "heun")
        grid = numbers(text)
        # the request's own run (ERK-Guid on), not its unguided twin, at full precision
        assert tuple(grid) == prescribe(recorded, rule, target).sigmas
        assert steps == len(grid) == 6 and grid[0] == recorded.sigmas[0] and grid[-1] == recorded.sigmas[-2]
        assert all(a > b for a, b in zip(grid, grid[1:])) and grid != recorded.sigmas[:-1]
        rerun = run_page(steps=steps, erk_on=True, sigmas=text)[-1].runs[GUIDED].trace
        assert rerun.sigmas == [*grid, 0.0]
        assert rerun.summary["nfe"] == recorded.summary["nfe"] == 2 * 6 - 1


def error(call) -> str:
    with pytest.raises(ui.gr.Error) as caught:
        call()
    return caught.value.message


def test_the_rerun_button_names_what_is_wrong(session):
    assert error(lambda: ui.prescribed(None, "lte", 0.8, "tree", "heun")).startswith("prescribe: run the sampler first")
    assert error(lambda: ui.prescribed(session, "fastest", 0.8, "tree", "heun")).startswith("rule: must be one of")
    assert error(lambda: ui.prescribed(session, "stability", 0.0, "tree", "heun")).startswith("target: must be in (0, 1]")
    text = error(lambda: ui.prescribed(session, "lte", 0.8, "tree", "euler"))
    assert text.startswith("prescribe: ") and "solver 'heun'" in text and "solver 'euler'" in text
    assert error(lambda: ui.prescribed(session, "lte", 0.8, "rings", "heun")).startswith("model: the last run sampled 'tree'")


def test_a_run_without_an_embedded_pair_is_refused_for_the_lte_rule_only():
    euler = run_page(solver="euler", steps=5)[-1]
    text = error(lambda: ui.prescribed(euler, "lte", 0.8, "tree", "euler"))
    assert text.startswith("prescribe: ") and "no embedded error estimate" in text
    assert len(numbers(ui.prescribed(euler, "stability", 0.8, "tree", "euler")[0])) == 5
