"""A seeded fuzz of the served app's API through gradio_client: every bad call gets a named message.

1,000 calls (seeded, so a failure replays) across /run, /scrub, /redraw, /export, the Learn tab's
two endpoints and /load_csv, each either valid or wrong in exactly one way: one parameter of a
wrong type (text for a number, "false" for a checkbox, a list, nothing), out of its range (just
past a bound, 400 digits, NaN, a fraction for an integer), an unknown choice, extra arguments,
too few values (plain HTTP, as gradio_client fills the defaults view_api shows), or a call to
scrub, redraw or export in a fresh session before any run. A bad call must come back with a
message naming that parameter (or the endpoint, for the count); a valid call must work. Valid
runs are tiny (at most 3 steps, a batch of 8) so the whole fuzz stays within a couple of minutes.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from stiffviz.app import ui
from stiffviz.app.frames import X_AXES
from stiffviz.app.learn import STIFF_DEFAULTS, TEST_DEFAULTS
from stiffviz.app.requests import DEFAULTS, FLAGS, INPUT_RANGES, INPUTS, NO_CLASS, limits_for
from stiffviz.solvers import SOLVERS
from stiffviz.teaching import TEACHING_SOLVERS

CASES = 1000
CHOICES = {"model": ["tree", "moons"], "solver": list(SOLVERS), "schedule": ["karras", "logsnr"], "cls": [NO_CLASS],
           "path": ["edm", "vp", "flow"]}  # fmt: skip
TEXTS = ("prompt", "negative_prompt", "sigmas")  # toys read no text, the σ box no words: only "" is valid
HUGE = 10**400
WRONG_TYPES = ["5", "abc", "", True, False, None, [1], {"a": 1}]


@pytest.fixture(scope="module")
def served(one_thread):
    app = ui.queued(ui.build_app())
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield url, Client(url, verbose=False)
    finally:
        app.close()


def test_the_endpoints_show_named_parameters(served):
    _, client = served
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = {endpoint: [p["parameter_name"] for p in info["parameters"]] for endpoint, info in api.items()}
    assert names["/run"] == [*INPUTS, "x_axis", "colour"]
    assert (names["/scrub"], names["/redraw"], names["/export"]) == (["step", "colour"], ["x_axis"], [])
    assert (names["/recolour"], names["/stiffness_map"]) == (["step", "colour"], ["model", "cls", "log_sigma"])
    assert names["/learn_test_equation"] == list(TEST_DEFAULTS) and names["/learn_stiff_system"] == list(STIFF_DEFAULTS)
    assert not any(name.startswith("param_") for params in names.values() for name in params)


def test_the_readmes_api_example_runs(served, capsys):
    """The README's gradio_client example, run as written against the served app."""
    url, _ = served
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("### The API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'Client("http://127.0.0.1:7860/")' in code and "model=" in code and "steps=8" in code
    namespace: dict = {}
    exec(code.replace("http://127.0.0.1:7860/", url), namespace)
    final = namespace["final"]
    assert final[0].count("done") == 2 and "step 8 of 8" in final[0]  # both runs, named settings applied
    printed = capsys.readouterr().out
    assert "step 4 of 8" in printed and ".trace.json" in printed


def test_every_run_input_has_a_kind_the_fuzz_knows():
    kinds = set(INPUT_RANGES) | set(FLAGS) | set(CHOICES) | set(TEXTS)
    assert set(INPUTS) <= kinds, set(INPUTS) - kinds


def bad_number(rng: random.Random, low: float, high: float, integer: bool):
    values = [*WRONG_TYPES, HUGE, -HUGE, math.nan, math.inf, -math.inf, high + 1, low - 1]
    values += [low + 0.5, str(int(low))] if integer else [str(low)]
    return rng.choice(values)


def valid_run(rng: random.Random, models: list[str]) -> dict:
    values = DEFAULTS | dict(
        model=rng.choice(models), solver=rng.choice(list(SOLVERS)), schedule=rng.choice(["karras", "logsnr"]),
        steps=rng.randint(1, 3), batch=rng.randint(4, 8), seed=rng.randint(0, 2**31 - 1), erk_on=rng.random() < 0.5,
        stein_on=rng.random() < 0.3, eig=rng.random() < 0.3, lte_ref=rng.random() < 0.1,
        lipschitz=rng.random() < 0.1, compare=rng.random() < 0.3, cls=NO_CLASS, path=rng.choice(["edm", "vp", "flow"]),
    )  # fmt: skip
    values["erk_on"] = values["erk_on"] and values["solver"] != "euler_ancestral"  # refused with noise
    values["path"] = "edm" if values["solver"] == "euler_ancestral" else values["path"]  # noise is added in EDM's coordinates
    return values | dict(x_axis=rng.choice(list(X_AXES)))


def bad_run(rng: random.Random, models: list[str]) -> tuple[dict, str]:
    """A valid run with one parameter made wrong: (values, that parameter)."""
    values = valid_run(rng, models)
    name = rng.choice([*INPUTS, "x_axis"])
    if name in INPUT_RANGES:
        low, high, integer = INPUT_RANGES[name]
        limits = limits_for(values["model"])
        high = {"steps": limits.max_steps, "batch": limits.max_batch}.get(name, high)
        value = bad_number(rng, low, high, integer)
    elif name in FLAGS:
        value = rng.choice(["false", "true", "False", 0, 1, 0.0, None, "", [True]])
    elif name in TEXTS:
        value = rng.choice(["a cat", "x" * 501, 5, True, [""], {"text": "a"}])
    else:  # a choice: model, solver, schedule, class, x axis
        value = rng.choice(["bogus", "../../etc/passwd", 3, 3.5, True, ["tree"], "C", "STEP"])
        value = "" if name != "cls" and rng.random() < 0.1 else value  # "" is no class, valid for cls
    return values | {name: value}, name


def message(call) -> str:
    """The status a call shows, or its error's message (a gr.Error or ParameterError's text)."""
    try:
        return call()
    except AppError as err:
        return str(err)


def raw_call(url: str, endpoint: str, data: list):
    """A plain HTTP call (no client filling defaults; NaN and infinity allowed, which gradio_client
    refuses to send): the error's message, or the last outputs when it succeeded."""
    body = json.dumps({"data": data}, allow_nan=True)
    event = httpx.post(f"{url}gradio_api/call/{endpoint}", content=body, headers={"content-type": "application/json"},
                       timeout=60).json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/{endpoint}/{event}", timeout=120).text
    if "event: error" in text:
        return json.loads(text.split("event: error\ndata: ", 1)[1].split("\n", 1)[0])["error"]
    return json.loads(text.rsplit("data: ", 1)[1].split("\n", 1)[0])


def predict(client: Client, url: str, endpoint: str, args: list):
    """The outputs of a call (through plain HTTP where an argument is NaN or infinite), or the error's message."""
    if any(isinstance(a, float) and not math.isfinite(a) for a in args):
        return raw_call(url, endpoint, args)
    try:
        return client.predict(*args, api_name=f"/{endpoint}")
    except AppError as err:
        return str(err)


def first(outputs) -> str:
    return outputs if isinstance(outputs, str) else outputs[0]


def learn_case(rng: random.Random, endpoint: str) -> tuple[list, str | None, tuple[str, ...]]:
    """(arguments, the wrong parameter or None, the names a message may give for it)."""
    if endpoint == "learn_test_equation":
        values = TEST_DEFAULTS | dict(lam_re=rng.uniform(-20, 0), lam_im=rng.uniform(-5, 5), h=rng.uniform(0.01, 0.3),
                                      steps=rng.randint(1, 20), solver=rng.choice(TEACHING_SOLVERS))  # fmt: skip
        ranges = dict(lam_re=[1.0, 2000.0], lam_im=[2000.0], h=[0.0, -1.0, 11.0], steps=[0, 201, 2.5])
        names = dict(lam_re=("lam_re", "lam"), lam_im=("lam_im", "lam"))
    else:
        values = STIFF_DEFAULTS | dict(lam_stiff=rng.uniform(-60, -2), lam_slow=rng.uniform(-1.5, -0.2),
                                       angle_deg=rng.uniform(0, 180), h=rng.uniform(0.005, 0.03),
                                       steps=rng.randint(1, 30), solver=rng.choice(TEACHING_SOLVERS))  # fmt: skip
        ranges = dict(lam_stiff=[-2000.0, 0.0], lam_slow=[1.0, 0.0], h=[0.0, -1.0], steps=[0, 201, 2.5])
        names = {}
    if rng.random() < 0.3:
        return list(values.values()), None, ()
    name = rng.choice(list(values))
    if name == "solver":
        value = rng.choice(["dpm2", "bogus", 3, None, True, ["heun"]])
    else:
        value = rng.choice([*WRONG_TYPES[:6], [1.0], HUGE, math.nan, math.inf, *ranges.get(name, [])])
    return list((values | {name: value}).values()), name, names.get(name, (name,))


def test_fuzz_every_bad_call_gets_a_message_naming_the_parameter(served, tmp_path):
    url, client = served
    rng = random.Random(20240610)
    csv = tmp_path / "points.csv"
    csv.write_text("x,y\n" + "\n".join(f"{math.cos(k / 3):.4f},{math.sin(k / 5):.4f}" for k in range(40)))
    steps_done = None  # the session's finished run (its last step), None before any
    seen = {"valid": 0, "bad": 0}
    endpoints = ["run"] * 5 + ["scrub"] * 3 + ["redraw"] * 2 + ["export", "fresh", "extra", "short", "load_csv"]
    endpoints += ["learn_test_equation", "learn_stiff_system"] * 2
    for case in range(CASES):
        endpoint = rng.choice(endpoints)
        where = f"case {case} ({endpoint})"
        if endpoint == "run" and (steps_done is None or rng.random() < 0.15):  # valid: tiny
            values = valid_run(rng, CHOICES["model"])
            status = client.predict(*[values[n] for n in INPUTS], values["x_axis"], api_name="/run")[0]
            assert "done" in status and "⚠️" not in status, f"{where}: {values} → {status}"
            steps_done, seen["valid"] = values["steps"], seen["valid"] + 1
            continue
        seen["bad"] += 1
        if endpoint in ("scrub", "redraw", "export") and steps_done is None:
            endpoint = "fresh"  # this session has no run yet
        if endpoint == "run":
            values, name = bad_run(rng, CHOICES["model"])
            status = first(predict(client, url, "run", [*[values[n] for n in INPUTS], values["x_axis"], "red"]))
            assert status.startswith(f"⚠️ {name}: "), f"{where}: {name}={values[name]!r} → {status}"
        elif endpoint == "scrub":
            step = rng.choice([steps_done + 1, -1, 0.5, "1", True, None, HUGE, -HUGE, [1], 10**6])
            if rng.random() < 0.25:  # valid
                step, seen["valid"], seen["bad"] = rng.randint(0, steps_done), seen["valid"] + 1, seen["bad"] - 1
                status = client.predict(step, api_name="/scrub")[0]
                assert f"step {step} of" in status, f"{where}: {status}"
                continue
            text = message(lambda: client.predict(step, api_name="/scrub")[0])
            assert text.startswith("step: must be an integer in"), f"{where}: step={step!r} → {text}"
        elif endpoint == "redraw":
            axis = rng.choice(["bogus", "", "sigma", None, 1, True, ["step"]])
            if rng.random() < 0.25:
                axis, seen["valid"], seen["bad"] = rng.choice(list(X_AXES)), seen["valid"] + 1, seen["bad"] - 1
                assert len(client.predict(axis, api_name="/redraw")) >= 1
                continue
            text = message(lambda: client.predict(axis, api_name="/redraw"))
            assert text.startswith("x_axis: must be one of"), f"{where}: x_axis={axis!r} → {text}"
        elif endpoint == "export":
            files = client.predict(api_name="/export")
            assert any(str(f).endswith(".trace.json") for f in files), f"{where}: {files}"
            seen["valid"], seen["bad"] = seen["valid"] + 1, seen["bad"] - 1
        elif endpoint == "fresh":  # a new session: scrub, redraw and export before any run
            client.reset_session()
            steps_done = None
            which, args, name = rng.choice([("/scrub", [rng.randint(0, 3)], "step"), ("/redraw", ["step"], "x_axis"),
                                            ("/export", [], "export")])  # fmt: skip
            text = message(lambda: client.predict(*args, api_name=which))
            assert text.startswith(f"{name}: run the sampler first"), f"{where}: {which} → {text}"
        elif endpoint == "extra":  # gradio_client sends what it is given; the server counts
            which, args = rng.choice([("run", [DEFAULTS[n] for n in INPUTS] + ["step", "red"]), ("scrub", [0, "red"]),
                                      ("redraw", ["step"]), ("export", []), ("learn_test_equation", list(TEST_DEFAULTS.values()))])  # fmt: skip
            extra = rng.randint(1, 3)
            text = message(lambda: client.predict(*args, *[rng.choice([1, "x", None])] * extra, api_name=f"/{which}"))
            assert text.startswith(f"{which}: takes") and text.endswith(f"got {extra} extra"), f"{where}: {text}"
        elif endpoint == "short":  # plain HTTP with values left out
            which, args = rng.choice([("run", [DEFAULTS[n] for n in INPUTS] + ["step", "red"]), ("scrub", [0, "red"]),
                                      ("redraw", ["step"]), ("learn_stiff_system", list(STIFF_DEFAULTS.values()))])  # fmt: skip
            kept = rng.randrange(len(args))
            text = raw_call(url, which, args[:kept])
            assert text.startswith(f"{which}: takes") and "missing" in text, f"{where}: {kept} values → {text}"
        elif endpoint == "load_csv":
            if rng.random() < 0.5:
                file, bandwidth, name = rng.choice(["points.csv", 5, None, True, {"a": 1}]), 0.1, "file"
            else:
                file, bandwidth, name = handle_file(str(csv)), rng.choice([*WRONG_TYPES, HUGE, -HUGE, -1.0, 99.0]), "bandwidth"
            outputs = predict(client, url, "load_csv", [file, bandwidth])
            notes = [o for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs]) if isinstance(o, str)]
            assert any(n.lstrip("⚠️ ").startswith(f"{name}: ") for n in notes), f"{where}: {name} → {outputs}"
        else:  # the Learn tab: its summary says "Not recomputed" and names the parameter
            args, name, names = learn_case(rng, endpoint)
            outputs = predict(client, url, endpoint, args)
            summary = outputs if isinstance(outputs, str) else outputs[-1]
            if name is None:
                assert "Not recomputed" not in summary, f"{where}: {args} → {summary}"
                seen["valid"], seen["bad"] = seen["valid"] + 1, seen["bad"] - 1
            else:
                assert "Not recomputed" in summary and any(f"{n}: " in summary for n in names), \
                    f"{where}: {name}={args} → {summary}"  # fmt: skip
    # Still serving: a valid run works after everything above.
    values = valid_run(rng, ["tree"])
    assert "done" in client.predict(*[values[n] for n in INPUTS], values["x_axis"], api_name="/run")[0]
    assert seen["valid"] + seen["bad"] == CASES and min(seen.values()) > 150, seen
