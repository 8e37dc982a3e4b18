"""The API's checks without a server: no silent coercion, named messages, the argument count."""

from __future__ import annotations

import types

import gradio as gr
import pytest

from stiffviz import ParameterError
from stiffviz.app import api, ui
from stiffviz.app.requests import DEFAULTS, FLAGS, INPUTS, available_models, parse_request

MODELS = available_models()
TINY = DEFAULTS | dict(steps=1, batch=4, compare=False, eig=False, erk_on=False)


def refused(**changes) -> ParameterError:
    with pytest.raises(ParameterError) as err:
        parse_request(TINY | changes, MODELS)
    return err.value


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, ""])
def test_a_checkbox_takes_only_true_or_false(name, value):
    """bool("false") is True: the text "false" once switched the option on."""
    err = refused(**{name: value})
    assert err.parameter == name and str(err).startswith(f"{name}: must be true or false (a checkbox), got {value!r}")


def test_true_and_false_reach_the_settings_as_given():
    for value in (True, False):
        request = parse_request(TINY | dict(erk_on=value, stein_on=value, eig=value, compare=value), MODELS)
        assert request.settings["stein"] is value and request.settings["eig"] is value and request.compare is value
        assert (request.settings["erk_guid"] is not None) is value


def test_a_class_is_one_of_the_models_names_never_truncated():
    err = refused(model="digits", cls=3.5)  # int(3.5) once made it class 3
    assert str(err) == "cls: must be one of (none), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, got 3.5"
    assert refused(model="digits", cls=3).parameter == "cls"  # the page sends the name "3"
    assert "no classes" in str(refused(model="rings", cls="A"))
    assert parse_request(TINY | dict(model="digits", cls="3"), MODELS).settings["cls"] == "3"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(seed=10**400), "seed: must be an integer in [0, 2147483647], got an integer of 401 digits"),
        (dict(cfg=-(10**400)), "cfg: must be a number in [0, 10], got an integer of 401 digits"),
        (dict(batch=10**5000), "batch: must be an integer in [1, 4096] for the model tree, got an integer of over"),
        (dict(steps=2.5), "steps: must be an integer in [1, 200] for the model tree, got 2.5"),
        (dict(steps="5"), "steps: must be an integer in [1, 200] for the model tree, got '5' (text)"),
        (dict(steps=True), "steps: must be an integer in [1, 200] for the model tree, got True"),
        (dict(cfg=None), "cfg: must be a number in [0, 10], got None"),
        (dict(rho=[7.0]), "rho: must be a number in [0.5, 20], got [7.0] (a list)"),
        (dict(solver=["heun"]), "solver: must be one of euler"),
        (dict(model=1), "model: must be one of tree"),
        (dict(prompt=5), "prompt: must be text of at most 500 characters, got 5"),
    ],
)
def test_wrong_types_and_huge_numbers_are_refused_by_name(changes, message):
    assert str(refused(**changes)).startswith(message)


def test_a_whole_float_is_the_integer_it_equals():
    request = parse_request(TINY | dict(steps=3.0, seed=7.0), MODELS)
    assert request.settings["steps"] == 3 and type(request.settings["steps"]) is int and request.settings["seed"] == 7


def test_run_refuses_an_unknown_x_axis_and_names_it():
    values = [TINY[name] for name in INPUTS]
    frames = list(ui.run(*values, "sigma"))  # once drawn against step without a word
    assert len(frames) == 1 and frames[0][0] == "⚠️ x_axis: must be one of step, σ (log), got 'sigma' (text)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ui.scrub(None, 2), "step: run the sampler first"),
        (lambda: ui.redraw(None, "step"), "x_axis: run the sampler first"),
        (lambda: ui.export(None), "export: run the sampler first"),
        (lambda: ui.redraw(None, "bogus"), "x_axis: must be one of step, σ (log), got 'bogus'"),
    ],
)
def test_scrub_redraw_and_export_before_a_run_name_what_is_missing(call, message):
    with pytest.raises(gr.Error) as err:
        call()
    assert err.value.message.startswith(message)


def test_scrub_refuses_a_step_outside_the_recorded_ones():
    session = list(ui.run(*[TINY[name] for name in INPUTS], "step"))[-1][-1]
    for step in (2, -1, 0.5, "1", True, 10**400):
        with pytest.raises(gr.Error) as err:
            ui.scrub(session, step)
        assert err.value.message.startswith("step: must be an integer in [0, 1] (the recorded steps), got ")
    assert "step 1 of 1" in ui.scrub(session, 1)[0]


def block_fn(names: list[str | None], stateful: list[bool], api_name: str = "run"):
    inputs = [types.SimpleNamespace(stateful=s, label=f"label {i}") for i, s in enumerate(stateful)]
    return types.SimpleNamespace(inputs=inputs, input_parameter_names=names, api_name=api_name, name=api_name)


def test_the_argument_count_is_named_for_extra_and_missing_values():
    fn = block_fn(["session", "step", "user"], [True, False, True], "scrub")
    assert api.count_message(fn, 3) is None  # gradio_client sends a placeholder for each gr.State
    assert api.count_message(fn, 5) == "scrub: takes 1 argument (step), got 2 extra"
    assert api.count_message(fn, 0) == "scrub: takes 1 argument (step); missing step"
    fn = block_fn(["a", None, "c"], [False, False, False], "learn")
    assert api.count_message(fn, 1) == "learn: takes 3 arguments (a, label 1, c); missing label 1, c"
    assert api.count_message(fn, 2) == "learn: takes 3 arguments (a, label 1, c); missing c"
