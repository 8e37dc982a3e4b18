"""End to end: the app served on localhost, called through its API with gradio_client."""

from __future__ import annotations

import base64
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from gradio_client import Client

import stiffviz
from stiffviz.app import ui
from stiffviz.app.live import GUIDED, UNGUIDED
from stiffviz.app.requests import DEFAULTS, INPUTS

SETTINGS = DEFAULTS | dict(steps=5, batch=256, seed=3)
# The same as stiffviz.sample settings, written out (not built by the app's parse_request).
GUIDED_SETTINGS = dict(
    solver="heun", steps=5, batch=256, seed=3, schedule="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0, cls=None,
    cfg=1.0, autoguidance=1.0, erk_guid=1.0, erk_con=0.1, stein=False, stein_probes=5, stein_gamma_min=1.0,
    stein_gamma_max=3.0, stein_sigma_max=500.0, eig=True, lte_ref=False, lipschitz=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def client():
    app = ui.queued(ui.build_app())
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        app.close()


def figure(output) -> go.Figure:
    value = output["value"] if "value" in output else output
    return go.Figure(json.loads(value["plot"]), skip_invalid=True)


def decode(values) -> np.ndarray:
    """Plotly's JSON sends numeric arrays as base64 typed arrays: {"dtype": "f8", "bdata": …}."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).astype(float)
    return np.array(values, dtype=float)


def page(outputs: list) -> list:
    """What the page shows after the streamed ``outputs``: an output sent as a bare update (``gr.skip()``,
    unchanged since the frame before) keeps its previous value."""
    shown = list(outputs[0])
    for frame in outputs[1:]:
        shown = [old if new == {"__type__": "update"} else new for old, new in zip(shown, frame)]
    return shown


def medians(fig, name: str) -> np.ndarray:
    (line,) = [t for t in fig.data if t.name == name]
    return decode(line.y)


@pytest.mark.filterwarnings("ignore:All-NaN slice")  # steps without a value (step 0's ρ̂) are NaN, as drawn
def test_run_endpoint_streams_the_librarys_run(client):
    job = client.submit(*[SETTINGS[n] for n in INPUTS], "step", api_name="/run")
    outputs = list(job)
    steps = SETTINGS["steps"]
    assert len(outputs) == 2 * (steps + 1)  # a frame per step and one at the end, for each run
    expected = {label: stiffviz.sample("tree", **settings)[1] for label, settings in
                ((GUIDED, GUIDED_SETTINGS), (UNGUIDED, GUIDED_SETTINGS | dict(erk_guid=None)))}
    for k, frame in enumerate(outputs[:steps]):  # the guided run growing, step by step
        shown = medians(figure(frame[5]), "‖e‖ embedded")  # one run so far: no run label
        # float32 typed arrays ({"dtype": "f4", "bdata": …}): 7 significant digits
        np.testing.assert_allclose(shown, np.nanmedian(expected[GUIDED].column("lte")[: k + 1], axis=1), rtol=1e-6)
    final = page(outputs)
    for label, trace in expected.items():
        shown = medians(figure(final[4]), f"ρ̂ (secant) · {label}")
        np.testing.assert_allclose(shown, np.nanmedian(trace.column("stiffness"), axis=1), rtol=1e-6)
    assert "done" in final[0] and final[-1]["maximum"] == steps
    table = final[-2]["value"]
    assert [row[0] for row in table["data"]] == [GUIDED, UNGUIDED]
    nfe = table["headers"].index("NFE")
    assert [row[nfe] for row in table["data"]] == [expected[GUIDED].summary["nfe"]] * 2

    files = client.predict(api_name="/export")  # the same session: its runs' trace files
    (guided,) = [f for f in files if f.endswith("guidance-on.trace.json")]
    loaded = stiffviz.Trace.from_json(guided)
    for field in ("stiffness", "lte", "eig_max", "align_cos_true"):
        np.testing.assert_array_equal(loaded.column(field), expected[GUIDED].column(field))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(batch=10**6), "batch: must be an integer in [1, 4096] for the model tree, got 1000000"),
        (dict(model="diffusers:/srv/any-folder"), "model: must be one of tree"),  # the page never names a path
        (dict(prompt="a cat"), "prompt: the model tree is not text-conditioned"),
        (dict(schedule="model"), "schedule: must be one of karras, logsnr, uniform, got 'model'"),
    ],
)
def test_run_endpoint_rejects_bad_input_with_a_message(client, changes, message):
    outputs = client.predict(*[(SETTINGS | changes)[n] for n in INPUTS], "step", api_name="/run")
    assert message in outputs[0]


def test_learn_endpoint_names_the_parameter_beyond_the_sliders(client):
    """An API caller can send values the sliders never would; the tab's own check answers."""
    *_, summary = client.predict(-10.0, 0.0, 0.21, 5000, "heun", api_name="/learn_test_equation")
    assert "steps" in summary and "200" in summary
    *_, summary = client.predict(-10.0, 0.0, 0.21, 20, "heun", api_name="/learn_test_equation")
    assert "z = hλ = -2.1" in summary.replace("−", "-")
