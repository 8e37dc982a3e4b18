"""A visitor's own 2-D data: the CSV and drawing parsers, the exact denoiser of the points, and the
model living in one session only (the page's handlers, two sessions, an upload through gradio_client)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from gradio_client import Client, handle_file

import app
import browser
import stiffviz
from stiffviz.app import render, ui, userdata
from stiffviz.app.live import GUIDED, UNGUIDED
from stiffviz.app.cost import cost_note
from stiffviz.app.requests import DEFAULTS, INPUTS, available_models
from stiffviz.app.userdata import CANVAS, MAX_POINTS, MAX_UPLOAD_BYTES, USER_DATA, parse_csv, points_from_drawing
from stiffviz.errors import ParameterError
from stiffviz.models.points import H_FLOOR, H_MAX, WEAK_SMOOTHING, point_denoiser
from stiffviz.quality import quality_report

RNG = np.random.default_rng(7)
POINTS = RNG.normal(size=(40, 2)) * [3.0, 0.5] + [10.0, -4.0]  # off-centre and anisotropic, like raw data


def csv_bytes(points: np.ndarray, header: str | None = "x,y", delimiter: str = ",") -> bytes:
    lines = ([header] if header else []) + [f"{x!r}{delimiter}{y!r}" for x, y in points.tolist()]
    return "\n".join(lines).encode()


# ---------------------------------------------------------------- the CSV parser
@pytest.mark.parametrize("header", ["x,y", '"east","north"', None])
@pytest.mark.parametrize("delimiter", [",", ";", "\t", " "])
def test_csv_reads_the_numbers_written(header, delimiter):
    header = header and header.replace(",", delimiter)
    np.testing.assert_array_equal(parse_csv(csv_bytes(POINTS, header, delimiter)), POINTS)


def test_csv_tolerates_a_byte_order_mark_blank_lines_and_spaces():
    text = "\ufeffx, y\n\n 1.5 , -2\r\n3e2,4\n\n"
    np.testing.assert_array_equal(parse_csv(text.encode()), [[1.5, -2.0], [300.0, 4.0]])


TOO_MANY = csv_bytes(np.arange(2 * (MAX_POINTS + 1), dtype=float).reshape(-1, 2))
BAD_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV text file"),
    "not UTF-8": (b"x,y\n1,2\n\xff\xfe,3\n", "not a CSV text file"),
    "NUL bytes": (b"1,2\n3\x00,4\n", "not a CSV text file"),
    "three columns": (b"x,y,z\n1,2,3\n4,5,6\n", "row 2 has 3 columns"),
    "one column": (b"1\n2\n3\n", "row 1 has 1 column;"),
    "a short row": (b"1,2\n3,4\n5\n", "row 3 has 1 column;"),
    "text": (b"x,y\n1,2\n3,abc\n", "row 3, column 2: 'abc' is not a number"),
    "NaN": (b"1,2\nnan,4\n", "row 2, column 1: 'nan' is not finite"),
    "infinity": (b"1,2\n3,-inf\n", "row 2, column 2: '-inf' is not finite"),
    "overflow": (b"1,2\n3,1e999\n", "row 2, column 2: '1e999' is not finite"),
    "too many points": (TOO_MANY, f"has {MAX_POINTS + 1:,} points; at most {MAX_POINTS:,}"),
    "empty": (b"", "is empty"),
    "blank": (b"\n  \n\t\n", "is empty"),
    "header only": (b"x,y\n", "has a header but no points"),
    "too large": (b"1,2\n" * (MAX_UPLOAD_BYTES // 4 + 1), f"at most {MAX_UPLOAD_BYTES:,} bytes"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_gets_a_message_naming_the_problem(case):
    data, message = BAD_FILES[case]
    with pytest.raises(ParameterError, match="^file: ") as err:
        parse_csv(data)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "points, message",
    [(np.array([[1.0, 2.0]]), "has 1 point; a data set needs at least two distinct points"),
     (np.full((30, 2), 3.25), "all 30 points are equal (degenerate"),
     (np.array([[1e12, 5.0], [1e12, 5.0 + 1e-9]]), "all 2 points are equal (degenerate")],
)  # fmt: skip
def test_degenerate_data_is_refused_by_name(points, message):
    with pytest.raises(ParameterError, match="^points: ") as err:
        point_denoiser(points)
    assert message in str(err.value)


@pytest.mark.parametrize("bandwidth", [-0.01, H_MAX + 0.01, math.nan, math.inf, "wide", None])
def test_a_bandwidth_out_of_range_is_refused_by_name(bandwidth):
    with pytest.raises(ParameterError, match=rf"^bandwidth: must be a number in \[0, {H_MAX:g}\]"):
        point_denoiser(POINTS, bandwidth)


def test_points_on_a_line_are_a_data_set():
    line = np.stack([np.linspace(0, 1, 9), np.zeros(9)], 1)
    model = point_denoiser(line)
    assert torch.isfinite(model(torch.randn(5, 2, dtype=torch.float64), 0.3)).all()


# ---------------------------------------------------------------- the denoiser, computed independently
def standardised(points: np.ndarray) -> np.ndarray:
    return (points - points.mean(0)) / points.std(0).mean()


def softmax_mean(points: np.ndarray, x: np.ndarray, variance: float) -> np.ndarray:
    """Σ r_n y_n with r = softmax(−‖x − y_n‖²/(2V)), in numpy."""
    logits = -((x[:, None, :] - points[None]) ** 2).sum(-1) / (2 * variance)
    weights = np.exp(logits - logits.max(1, keepdims=True))
    return (weights / weights.sum(1, keepdims=True)) @ points


def tweedie(points: torch.Tensor, x: torch.Tensor, sigma: float, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """D = x + σ²∇log p_σ by autograd of log p_σ = logsumexp_n(−‖x − y_n‖²/(2V)) − log(2πV N),
    V = σ² + h², and its Jacobian ∂D/∂x by autograd again."""

    def denoise(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True) if not x.requires_grad else x
        variance = sigma**2 + h**2
        log_p = torch.logsumexp(-((x[:, None] - points[None]) ** 2).sum(-1) / (2 * variance), 1)
        log_p = log_p - math.log(2 * math.pi * variance * len(points))
        (score,) = torch.autograd.grad(log_p.sum(), x, create_graph=True)
        return x + sigma**2 * score

    jacobian = torch.stack([torch.autograd.functional.jacobian(denoise, row[None])[0, :, 0] for row in x])
    return denoise(x).detach(), jacobian


@pytest.mark.parametrize("sigma", [0.002, 0.05, 0.7, 80.0])
def test_h0_is_the_empirical_mixture_softmax_mean(sigma):
    model = point_denoiser(POINTS, 0.0)
    y = standardised(POINTS)
    x = np.random.default_rng(1).normal(size=(64, 2)) * max(sigma, 0.1)
    x[:8] = y[:8] + sigma * 0.3  # near the points, where the exact denoiser snaps to them
    got = model(torch.tensor(x), sigma).numpy()
    # exactly the mixture at V = σ² + H_FLOOR² (the module's docstring) ...
    variance = sigma**2 + H_FLOOR**2
    floored = x + sigma**2 / variance * (softmax_mean(y, x, variance) - x)
    np.testing.assert_allclose(got, floored, rtol=1e-9, atol=1e-12)
    # ... which is the bare empirical mixture D = Σ r_n y_n to 10⁻⁴ of σ (the data's spread is 1)
    np.testing.assert_allclose(got, softmax_mean(y, x, sigma**2), rtol=0, atol=1e-4 * sigma)


@pytest.mark.parametrize("h", [0.0, 0.1, 0.6])
@pytest.mark.parametrize("sigma", [0.01, 0.3, 5.0])
def test_the_smoothed_mixture_equals_tweedie_by_autograd(h, sigma):
    model = point_denoiser(POINTS, h)
    y = torch.tensor(standardised(POINTS))
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * (1 + sigma)
    expected, jacobian = tweedie(y, x, sigma, max(h, H_FLOOR))
    torch.testing.assert_close(model(x, sigma), expected, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(model.denoiser_jacobian(x, sigma), jacobian, rtol=1e-7, atol=1e-9)
    weak, _ = tweedie(y, x, sigma, math.hypot(h, WEAK_SMOOTHING))
    torch.testing.assert_close(model.weak(x, sigma), weak, rtol=1e-8, atol=1e-10)


def test_reference_samples_are_the_standardised_points_smoothed_by_h():
    h = 0.2
    model = point_denoiser(POINTS, h)
    draws = model.sample_reference(20_000, torch.Generator().manual_seed(0)).numpy()
    y = standardised(POINTS)
    nearest = np.sqrt(((draws[:, None] - y[None]) ** 2).sum(-1)).min(1)
    assert np.median(nearest) < 1.2 * h * math.sqrt(2 * math.log(2))  # the median of a 2-D Gaussian's radius
    np.testing.assert_allclose(draws.mean(0), y.mean(0), atol=0.02)
    np.testing.assert_allclose(draws.var(0), y.var(0) + h**2, rtol=0.05)


# ---------------------------------------------------------------- drawings
def test_drawn_pixels_become_points_of_the_box():
    image = np.full((4, 8, 4), 255, dtype=np.uint8)  # opaque white
    image[0, 0, :3] = 0  # top left: ink
    image[3, 7, :3] = 10  # bottom right: dark ink
    image[1, 2, :3] = 200  # light grey: not ink
    image[2, 4] = 0  # black but transparent: not ink
    points = points_from_drawing(image)
    np.testing.assert_allclose(points, [[-1 + 1 / 8, 1 - 1 / 4], [1 - 1 / 8, -1 + 1 / 4]])


def test_a_large_drawing_is_subsampled_the_same_way_every_time():
    image = np.zeros((100, 100), dtype=np.uint8)  # greyscale, all ink: 10,000 pixels
    first, again = points_from_drawing(image), points_from_drawing(image)
    assert first.shape == (MAX_POINTS, 2)
    np.testing.assert_array_equal(first, again)
    assert len(np.unique(first, axis=0)) == MAX_POINTS  # distinct pixels
    np.testing.assert_allclose((first + 1) * 50 - 0.5, np.round((first + 1) * 50 - 0.5), atol=1e-9)  # centres


@pytest.mark.parametrize("image", [None, np.full((8, 8, 4), 255, dtype=np.uint8), np.zeros((8, 8, 4))])
def test_an_empty_drawing_is_refused_by_name(image):
    with pytest.raises(ParameterError, match="^drawing: is empty"):
        points_from_drawing(image)


# ---------------------------------------------------------------- the session's own model in the app
def run_values(**changes) -> dict:
    """The run handler's inputs by name: the page's defaults, small and without guidance unless changed."""
    return DEFAULTS | dict(model=USER_DATA, steps=4, batch=64, seed=5, erk_on=False, compare=False) | changes


def final_session(values: dict, user, models=None) -> tuple[list, object]:
    frames = list(ui.run(**values, x_axis="step", user=user, models=models or available_models()))
    return frames, frames[-1][-1]


def test_a_run_on_the_visitors_data_streams_frames_like_the_library(one_thread):
    user = userdata.build(POINTS, 0.05, "a test")
    sizes = render.density_grid.cache_info().currsize, render.data_extent.cache_info().currsize
    frames, session = final_session(run_values(), user)
    assert len(frames) == 4 + 1  # a frame per step and one at the end
    (run,) = session.runs.values()
    assert run.error == "" and run.trace.status == "ok" and len(run.trace.steps) == 4
    settings = dict(solver="heun", steps=4, schedule="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0, batch=64,
                    seed=5, eig=True)  # fmt: skip
    samples, trace = stiffviz.sample(user.model, **settings)
    torch.testing.assert_close(run.samples, samples)
    np.testing.assert_allclose(run.trace.column("stiffness"), trace.column("stiffness"), rtol=1e-6)
    assert np.isfinite(trace.column("eig_max")).all()  # the exact eigenpairs, every step
    assert run.quality == quality_report(user.model, samples, None, 5)  # against its own points
    assert set(run.quality) >= {"swd", "nll", "precision", "recall"}
    views = [frame[1] for frame in frames if isinstance(frame[1], dict) and frame[1].get("value") is not None]
    assert views and all(isinstance(view["value"], go.Figure) for view in views)  # the particle view
    # nothing of the visitor's model stayed in the page's server-wide caches
    assert (render.density_grid.cache_info().currsize, render.data_extent.cache_info().currsize) == sizes


def test_autoguidance_uses_the_smoothed_twin_and_the_limits_are_the_toys(one_thread):
    user = userdata.build(POINTS, 0.0, "a test")
    _, session = final_session(run_values(autoguidance=2.0, compare=True, steps=2), user)
    assert [run.label for run in session.runs.values()] == [GUIDED, UNGUIDED]
    settings = dict(steps=2, batch=64, seed=5, eig=True)
    guided, _ = stiffviz.sample(user.model, autoguidance=2.0, **settings)
    torch.testing.assert_close(session.runs[GUIDED].samples, guided)
    torch.testing.assert_close(session.runs[UNGUIDED].samples, stiffviz.sample(user.model, **settings)[0])
    refused, _ = final_session(run_values(batch=4097), user)
    assert "batch: must be an integer in [1, 4096] for the model your data" in refused[0][0]


def test_sessions_do_not_see_each_others_data(one_thread):
    mine, theirs = userdata.build(POINTS, 0.0, "mine"), userdata.build(-POINTS[:7] * 100, 0.0, "theirs")
    refused, _ = final_session(run_values(), None)  # a session without data: no such model
    offered = refused[0][0].split(", got")[0]
    assert offered.startswith("⚠️ model: must be one of tree") and USER_DATA not in offered
    _, first = final_session(run_values(), mine)
    _, second = final_session(run_values(), theirs)
    _, again = final_session(run_values(), mine)
    y = torch.tensor(standardised(POINTS))
    nearest = lambda samples, data: torch.cdist(samples.double(), data).min(1).values  # noqa: E731
    assert nearest(first.runs["run"].samples, y).max() < 1e-3  # h = 0: the samples are its points
    assert set(first.runs["run"].quality) == {"swd", "precision", "recall"}  # point masses: no density, no NLL
    assert nearest(second.runs["run"].samples, torch.tensor(standardised(-POINTS[:7] * 100))).max() < 1e-3
    torch.testing.assert_close(again.runs["run"].samples, first.runs["run"].samples)


def test_the_dropdown_offers_the_data_in_its_session_only():
    server = available_models()
    state, dropdown, note, session = userdata.load_csv(None, 0.0, server)
    assert note == "⚠️ file: is missing: upload a CSV file of 2-D points"
    updates = ui.on_model_change(USER_DATA, "karras", None, models=server)
    offered = updates[-1].split(", got")[0]
    assert offered.startswith("⚠️ model: must be one of tree") and USER_DATA not in offered
    user = userdata.build(POINTS, 0.1, "a test")
    cls, cfg, autoguidance, steps, batch, eig, *_, schedule, _, note = ui.on_model_change(USER_DATA, "karras", user,
                                                                                      models=server)  # fmt: skip
    assert note == f"Limits for **{USER_DATA}**: at most 200 steps and a batch of 4096."
    assert cls["interactive"] is False and cfg["interactive"] is False and autoguidance["interactive"] is True
    assert eig["value"] is True  # exact eigenpairs
    values = [run_values()[name] for name in INPUTS]  # the estimate under the Run button
    assert ui._cost_note(*values, None, models=server).startswith("⚠️ model: must be one of tree")
    assert ui._cost_note(*values, user, models=server) == cost_note(run_values(), [USER_DATA], lambda _: user.model)


def test_loading_data_selects_it_and_drops_the_runs_of_other_data(tmp_path):
    server = available_models()
    path = tmp_path / "points.csv"
    path.write_bytes(csv_bytes(POINTS))
    user, dropdown, note, session = userdata.load_csv({"path": str(path), "orig_name": "mine.csv"}, 0.25, server)
    assert dropdown["value"] == USER_DATA and dropdown["choices"] == [*server, USER_DATA]
    assert session is None and note.startswith(f"**{USER_DATA}**: 40 points from the file mine.csv")
    np.testing.assert_array_equal(user.points, POINTS)
    assert user.bandwidth == 0.25 and user.model.session_only
    wider = userdata.set_bandwidth(user, 0.5, server)[0]
    assert wider.bandwidth == 0.5 and wider.points is user.points
    *_, note, _ = userdata.set_bandwidth(user, 3.0, server)
    assert note.startswith(f"⚠️ bandwidth: must be a number in [0, {H_MAX:g}], got 3.0")
    path.write_bytes(b"x,y\n1,1\n1,1\n")
    state, dropdown, note, session = userdata.load_csv({"path": str(path)}, 0.0, server)
    assert note.startswith("⚠️ points: all 2 points are equal (degenerate")
    assert all(isinstance(value, type(gr.skip())) for value in (state, dropdown, session))  # nothing changed


def test_a_drawing_becomes_the_sessions_data():
    image = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)  # transparent
    image[100:110, 20:200] = [0, 0, 0, 255]  # a black bar
    user, dropdown, note, _ = userdata.load_drawing({"composite": image, "layers": []}, 0.0, available_models())
    assert len(user.points) == 10 * 180 and "points from the drawing" in note
    *_, note, _ = userdata.load_drawing({"composite": np.zeros((CANVAS, CANVAS, 4))}, 0.0, available_models())
    assert note == "⚠️ drawing: is empty: draw some strokes first"


# ---------------------------------------------------------------- served: uploads through the API
@pytest.fixture(scope="module")
def served():
    """The app as ``app.py`` launches it (its own launch settings), on a free port without blocking."""
    started = []
    launch = gr.Blocks.launch

    def serve(self, **settings):
        started.append((self, settings))
        return launch(self, **settings | dict(server_port=None, prevent_thread_lock=True, quiet=True))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gr.Blocks, "launch", serve)
        assert app.main(["--host", "127.0.0.1"]) == 0
    (blocks, settings), = started
    try:
        yield blocks.local_url, settings
    finally:
        blocks.close()


def test_the_server_refuses_an_upload_over_the_limit(served):
    url, settings = served
    assert settings["max_file_size"] == MAX_UPLOAD_BYTES
    for size, status in ((MAX_UPLOAD_BYTES, 200), (MAX_UPLOAD_BYTES + 1, 413)):
        reply = httpx.post(url.rstrip("/") + "/gradio_api/upload", files={"files": ("p.csv", b"1" * size)})
        assert reply.status_code == status, reply.text
    assert f"maximum allowed size of {MAX_UPLOAD_BYTES} bytes" in reply.text


def test_a_csv_upload_through_the_api_runs_in_that_session_only(served, tmp_path):
    url, _ = served
    good, one, binary = tmp_path / "points.csv", tmp_path / "one.csv", tmp_path / "picture.csv"
    good.write_bytes(csv_bytes(POINTS))
    one.write_bytes(b"x,y\n3,4\n")
    binary.write_bytes(bytes(range(256)))
    visitor, other = Client(url, verbose=False), Client(url, verbose=False)
    _, note = visitor.predict(handle_file(str(binary)), 0.0, api_name="/load_csv")
    assert note == "⚠️ file: is not a CSV text file (it is not UTF-8 text: binary data?)"
    _, note = visitor.predict(handle_file(str(one)), 0.0, api_name="/load_csv")
    assert note == "⚠️ points: has 1 point; a data set needs at least two distinct points"
    _, note = visitor.predict(handle_file(str(good)), 0.0, api_name="/load_csv")
    assert note.startswith(f"**{USER_DATA}**: 40 points from the file points.csv")
    values = run_values(steps=3, batch=32)
    outputs = list(visitor.submit(**values, x_axis="step", api_name="/run"))
    assert len(outputs) == 3 + 1 and "— done" in outputs[-1][0]
    status, *_ = visitor.predict(2, api_name="/scrub")  # the session's model draws the view at step 2
    assert status.startswith("**run**: step 2 of 3")
    exported = visitor.predict(api_name="/export")
    traces = [json.loads(Path(f).read_text()) for f in exported if str(f).endswith(".json")]
    assert [trace["config"]["model"] for trace in traces] == [USER_DATA]
    refused = other.predict(**values, x_axis="step", api_name="/run")  # another session: no such model
    assert refused[0].split(", got")[0].startswith("⚠️ model: must be one of tree")
    assert USER_DATA not in refused[0].split(", got")[0]


# ---------------------------------------------------------------- in the browser
def test_the_page_takes_a_csv_and_a_drawing(tmp_path):
    """Headless Chromium: upload a CSV, the dropdown turns to the data and a run finishes; then a
    stroke on the canvas becomes the data (its pixels, as points)."""
    problem = browser.browser_problem()
    if problem:  # a failure, not a skip: CI must run this test (as tests/test_browser.py)
        pytest.fail(problem, pytrace=False)
    path = tmp_path / "points.csv"
    path.write_bytes(csv_bytes(POINTS))
    note = "document.querySelector('#data-note')?.innerText ?? ''"
    with browser.serving() as url, browser.browser_page() as (page, log):
        browser.open_app(page, url)
        page.get_by_text("Your own 2-D data").click()
        page.locator("#data-file input[type=file]").set_input_files(str(path))
        page.wait_for_function(f"() => ({note}).includes('40 points from the file points.csv')", timeout=60_000)
        page.wait_for_function(f"() => document.querySelector('#model input').value === '{USER_DATA}'")
        browser.wait_idle(page)
        assert f"Limits for {USER_DATA}: at most 200 steps" in page.get_by_text("Limits for").first.inner_text()
        status = browser.run_and_wait(page, runs=2)
        assert GUIDED in status and UNGUIDED in status, status
        assert browser.plot_traces(page, "#view-a") > 0
        page.get_by_role("tab", name="draw").click()
        page.locator("#data-sketch button[aria-label='Brush']").first.click()  # Gradio's sketchpad starts unarmed
        box = page.locator("#data-sketch canvas").first.bounding_box()
        page.mouse.move(box["x"] + 80, box["y"] + 100)
        page.mouse.down()
        for i in range(30):  # a diagonal stroke, inside the drawing area
            page.mouse.move(box["x"] + 80 + 4 * i, box["y"] + 100 + 5 * i, steps=2)
        page.mouse.up()
        page.wait_for_timeout(1000)  # the editor sends its picture once the stroke is done
        page.locator("#use-drawing").click()
        page.wait_for_function(f"() => ({note}).includes('points from the drawing')", timeout=60_000)
        drawn = int(page.locator("#data-note").inner_text().split(": ")[1].split(" points")[0].replace(",", ""))
        assert 100 < drawn <= MAX_POINTS, page.locator("#data-note").inner_text()  # a stroke of about 200 px
        assert not (log.console_errors or log.page_errors), f"errors in the browser:\n{log.report()}"
