"""ZeroGPU with a fake ``spaces`` module: only compact events cross, figures are drawn outside,
the GPU time asked for is computed from the request."""

from __future__ import annotations

import pickle
import sys
import threading
import types

import plotly.graph_objects as go
import pytest

from stiffviz.app import gpu, ui
from stiffviz.app.live import GUIDED, KEEP_SAMPLES, UNGUIDED, Session
from stiffviz.app.requests import DEFAULTS, INPUTS, available_models, parse_request

DEFAULT_TOTAL_BYTES = 1_500_000  # the default example: everything that crosses, both runs
DEFAULT_YIELD_BYTES = 150_000  # the default example: one step's event (a batch of 1,024)
TOP_YIELD_BYTES = 400_000  # a batch of 4,096 with the default diagnostics: one step's event
ARGUMENT_BYTES = 10_000


class FakeSpaces(types.ModuleType):
    """``spaces`` whose GPU decorator pickles the arguments and every yielded value, as ZeroGPU
    does between its processes, and records their sizes, the duration asked for and the threads
    that ran inside the GPU function."""

    def __init__(self):
        super().__init__("spaces")
        self.durations: list[float] = []
        self.arguments: list[int] = []
        self.yields: list[int] = []
        self.values: list = []
        self.inside: set[str] = set()

    def GPU(self, duration):  # noqa: N802 - the spaces API
        def decorate(task):
            def handler(*args):
                self.durations.append(duration(*args))
                self.arguments.append(len(pickle.dumps(args)))
                args = pickle.loads(pickle.dumps(args))
                self.inside.add(threading.current_thread().name)
                events = task(*args)
                try:
                    for value in events:
                        data = pickle.dumps(value)
                        self.yields.append(len(data))
                        self.values.append(value)
                        yield pickle.loads(data)
                finally:
                    events.close()

            return handler

        return decorate


@pytest.fixture
def spaces(monkeypatch):
    monkeypatch.setenv("STIFFVIZ_RUN_BUDGET_S", "1e9")  # what crosses is the question here, not cost.py's cap
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    drawn: list[str] = []
    init = go.Figure.__init__

    def figure(self, *args, **kwargs):
        drawn.append(threading.current_thread().name)
        init(self, *args, **kwargs)

    monkeypatch.setattr(go.Figure, "__init__", figure)
    fake.drawn = drawn
    return fake


def run(**changes) -> list:
    settings = DEFAULTS | changes
    return list(ui.run(*[settings[name] for name in INPUTS], "step"))


def test_the_default_run_crosses_in_compact_events_and_draws_outside(spaces):
    frames = run()
    session = frames[-1][-1]
    assert isinstance(session, Session) and set(session.runs) == {GUIDED, UNGUIDED}  # ERK-Guid on: compared
    assert all(run.done and not run.error for run in session.runs.values())
    assert len(spaces.durations) == 1 and spaces.arguments[0] < ARGUMENT_BYTES
    assert max(spaces.yields) < DEFAULT_YIELD_BYTES and sum(spaces.yields) < DEFAULT_TOTAL_BYTES
    kinds = {type(v) for event in spaces.values for v in event}
    assert not any(issubclass(kind, (go.Figure, Session)) for kind in kinds)
    assert spaces.drawn and not spaces.inside & set(spaces.drawn) and "stiffviz-sampler" not in spaces.drawn
    # The page got the library's run all the same: every sample, and the trace of every step.
    steps = DEFAULTS["steps"]
    for run_ in session.runs.values():
        assert len(run_.trace.steps) == steps and run_.samples.shape == (DEFAULTS["batch"], 2)


def test_a_top_batch_keeps_its_events_bounded(spaces):
    frames = run(batch=4096, steps=3, compare=False)
    (run_,) = frames[-1][-1].runs.values()
    assert run_.samples.shape[0] == 4096 and run_.trace.column("lte").shape == (3, 4096)  # the whole batch
    assert [len(s) for s in run_.states] == [KEEP_SAMPLES] * 4  # the kept states
    assert max(spaces.yields) < TOP_YIELD_BYTES


def test_the_duration_follows_the_request(spaces):
    models = available_models()
    model = ui._model("tree")
    asked = {}
    for name, changes in {"short": dict(steps=6), "long": dict(steps=60), "alone": dict(steps=60, compare=False),
                          "cfg": dict(steps=60, compare=False, cfg=2.0)}.items():  # fmt: skip
        asked[name] = gpu.duration(parse_request(DEFAULTS | changes, models), "tree", ui._model)
    assert gpu.OVERHEAD_S < asked["short"] < asked["long"]
    assert asked["alone"] < asked["long"] and asked["alone"] < asked["cfg"]  # compare adds the twin, CFG a call
    assert ui._model("tree") is model  # looked up in the server's cache, not loaded again


def test_without_spaces_the_run_samples_in_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert gpu.events(parse_request(DEFAULTS, available_models()), "tree", ui._model) is None
    frames = run(steps=2, compare=False)
    assert all(run_.samples is not None for run_ in frames[-1][-1].runs.values())

