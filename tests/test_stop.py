"""Runs stop when nobody watches: Stop, a newer run of the same session, a closed page or a cancel."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
import torch
from gradio_client import Client

import stiffviz
from stiffviz.app import live, ui
from stiffviz.app.live import STOPPED, STOPS, stream_session
from stiffviz.app.requests import DEFAULTS, INPUTS, available_models, parse_request

MODELS = available_models()
LONG = dict(steps=200, batch=4096, solver="euler", erk_on=False, eig=False, compare=False)  # ~200 tree calls at 4,096
WAIT_S = 60.0  # a generous bound for a thread to notice its stop (a step takes well under a second)


@pytest.fixture(autouse=True)
def _one_thread_no_budget(one_thread, monkeypatch):
    monkeypatch.setenv("STIFFVIZ_RUN_BUDGET_S", "1e9")  # the long run is long on purpose (cost.py's cap aside)


class Counting:
    """The tree denoiser, counting its calls and those made after ``stopped`` was set."""

    def __init__(self):
        self.model = stiffviz.load_model("tree")
        self.shape, self.classes, self.name = self.model.shape, self.model.classes, "tree"
        self.calls, self.after_stop = 0, 0
        self.stopped = threading.Event()

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        self.after_stop += self.stopped.is_set()
        return self.model(x, sigma, cond)


def run_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("stiffviz-run", "stiffviz-sampler") and t.is_alive()]


def wait_for(condition, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def request(**changes):
    return parse_request(DEFAULTS | changes, MODELS)


def test_a_stop_ends_the_run_within_one_step():
    model = Counting()
    stop = threading.Event()
    sessions = stream_session(request(solver="heun", steps=40, batch=64, erk_on=False, eig=False), model, stop)
    for session in sessions:
        if len(session.runs["run"].trace.steps) == 3:
            model.stopped.set()
            stop.set()
    run = session.runs["run"]
    assert run.error == STOPPED and len(session.runs) == 1  # the twin never started
    assert model.after_stop <= 2  # Heun: at most the rest of one step's two calls
    assert len(run.trace.steps) < 40 and run.samples is None
    assert wait_for(lambda: not run_threads())


def test_closing_the_stream_stops_the_sampler_thread():
    model = Counting()
    sessions = stream_session(request(solver="heun", steps=200, batch=256, erk_on=False, eig=False), model)
    next(sessions), next(sessions)
    model.stopped.set()
    sessions.close()  # what Gradio does when the page goes or the event is cancelled
    assert wait_for(lambda: not run_threads())
    assert model.after_stop <= 2 * 2  # the step under way and, at most, the one it had queued ahead
    assert model.calls < 2 * 200


def test_a_newer_run_of_the_same_session_stops_the_older():
    class Page:
        session_hash = "same-session"

    values = [(DEFAULTS | LONG)[name] for name in INPUTS]
    older = ui.run(*values, "step", "red", None, Page(), models=MODELS)
    next(older)  # the older run is going
    tiny = [(DEFAULTS | dict(steps=2, batch=8, compare=False))[name] for name in INPUTS]
    newer = list(ui.run(*tiny, "step", "red", None, Page(), models=MODELS))
    assert "done" in newer[-1][0]
    rest = list(older)  # it ends at its next step, saying why
    assert STOPPED in rest[-1][0] and len(rest) < LONG["steps"]
    assert wait_for(lambda: not run_threads()) and len(STOPS) == 0


def test_stop_registry_stops_only_its_session():
    a, b = STOPS.begin("a"), STOPS.begin("b")
    assert STOPS.stop("a") and a.is_set() and not b.is_set()
    STOPS.end("a", a), STOPS.end("b", b)
    assert not STOPS.stop("a") and len(STOPS) == 0


@pytest.fixture(scope="module")
def server():
    app = ui.queued(ui.build_app())
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield app, url
    finally:
        app.close()


def _cpu_seconds(interval: float) -> float:
    start = time.process_time()
    time.sleep(interval)
    return time.process_time() - start


def _steps_counter(monkeypatch) -> list[int]:
    """Count the sampler's steps in the server (it runs in this process)."""
    steps: list[int] = []
    sample = live.sample

    def counted(model, on_step=None, **settings):
        def step(*args):
            steps.append(1)
            on_step(*args)

        return sample(model, on_step=step, **settings)

    monkeypatch.setattr(live, "sample", counted)
    return steps


def _served_at_once(url: str) -> None:
    tiny = DEFAULTS | dict(steps=2, batch=8, compare=False)
    result = Client(url, verbose=False).predict(*[tiny[n] for n in INPUTS], "step", api_name="/run")
    assert "done" in result[0]


def test_a_closed_connection_stops_the_run_and_the_cpu_goes_idle(server, monkeypatch):
    app, url = server
    steps = _steps_counter(monkeypatch)
    fn_index = next(i for i, fn in app.fns.items() if fn.api_name == "run")
    session_hash = uuid.uuid4().hex[:11]
    values = [(DEFAULTS | LONG)[n] for n in INPUTS] + ["step", "red", None]  # the x axis, the particle colour, the user-data state
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        joined = http.post("gradio_api/queue/join", json=dict(data=values, fn_index=fn_index, trigger_id=None,
                                                              session_hash=session_hash, event_data=None))  # fmt: skip
        assert joined.status_code == 200, joined.text
        with http.stream("GET", "gradio_api/queue/data", params=dict(session_hash=session_hash)) as stream:
            for line in stream.iter_lines():  # read until the run streams its first frames, then hang up
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                    break
    assert wait_for(lambda: steps and not run_threads())
    assert len(steps) < LONG["steps"]  # it ended before its end
    assert _cpu_seconds(2.0) < 0.5  # idle: nothing computes for the page that went
    _served_at_once(url)


def test_a_cancelled_job_stops_the_run(server, monkeypatch):
    _, url = server
    steps = _steps_counter(monkeypatch)
    client = Client(url, verbose=False)
    job = client.submit(*[(DEFAULTS | LONG)[n] for n in INPUTS], "step", api_name="/run")
    assert wait_for(lambda: len(steps) >= 2)
    job.cancel()  # what the Stop button's cancels= does for the page
    assert wait_for(lambda: not run_threads())
    assert len(steps) < LONG["steps"]
    _served_at_once(url)


def test_a_served_newer_run_of_the_same_session_stops_the_older(server, monkeypatch):
    """Through the server: Gradio hands ``run`` the browser session (its ``gr.Request``), so a second
    run joined with the same session hash stops the first, which ends before its 200 steps."""
    app, url = server
    steps = _steps_counter(monkeypatch)
    fn_index = next(i for i, fn in app.fns.items() if fn.api_name == "run")
    session_hash = uuid.uuid4().hex[:11]
    long = [(DEFAULTS | LONG)[n] for n in INPUTS] + ["step", "red", None]
    tiny = [(DEFAULTS | dict(steps=2, batch=8, compare=False))[n] for n in INPUTS] + ["step", "red", None]
    statuses: list[str] = []
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        for values in (long, tiny):
            joined = http.post("gradio_api/queue/join", json=dict(data=values, fn_index=fn_index, trigger_id=None,
                                                                  session_hash=session_hash, event_data=None))  # fmt: skip
            assert joined.status_code == 200, joined.text
            if values is long:
                assert wait_for(lambda: len(steps) >= 2)
        with http.stream("GET", "gradio_api/queue/data", params=dict(session_hash=session_hash)) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    statuses.append(message["output"]["data"][0] if message.get("success") else "")
                    if len(statuses) == 2:
                        break
    assert wait_for(lambda: not run_threads())
    assert len(steps) < LONG["steps"] + 2
    assert any(STOPPED in status for status in statuses), statuses
