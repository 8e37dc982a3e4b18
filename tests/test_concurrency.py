"""Concurrent runs give exactly the results they give alone, every diagnostic included, in
threads of one process and through the served app (8 gradio_client clients × 5 runs).

torch.func.jvp keeps its forward-mode state in process-wide globals; without the lock in
stiffviz.diagnostics.autodiff, two threads inside it at once raise, or silently switch the
network to the VJP-based fallback for good (different values).
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import torch
from gradio_client import Client

from stiffviz import load_model, sample
from stiffviz.app import ui
from stiffviz.app.frames import X_AXES
from stiffviz.app.requests import DEFAULTS, INPUTS
from stiffviz.diagnostics import autodiff

pytestmark = pytest.mark.usefixtures("one_thread")

EVERY_DIAGNOSTIC = dict(eig=True, eig_method="power", eig_iterations=4, lanczos_iterations=2, lte_ref=True,
                        lte_ref_substeps=4, lipschitz=True, lipschitz_iterations=4, stein=True, stein_probes=3,
                        erk_guid=1.0)  # fmt: skip
RUNS = {  # model, settings: each one differs, so a mix-up between threads shows
    "tree heun": ("tree", dict(solver="heun", steps=4, batch=48, seed=1, **EVERY_DIAGNOSTIC)),
    "tree dpm2 cfg": ("tree", dict(solver="dpm2", steps=3, batch=32, seed=2, cls="B", cfg=2.0, **EVERY_DIAGNOSTIC)),
    "moons bosh3": ("moons", dict(solver="bosh3", steps=3, batch=40, seed=3, **EVERY_DIAGNOSTIC)),
    "digits-unet euler": ("digits-unet", dict(solver="euler", steps=3, batch=2, seed=4, cls="7", **EVERY_DIAGNOSTIC)),
}  # fmt: skip
FIELDS = ("eig_max", "stiffness_ratio", "lte_ref", "lipschitz", "stein_gamma", "erk_correction", "stiffness")


def _run(name: str, settings: dict) -> dict[str, np.ndarray]:
    samples, trace = sample(load_model(name), **settings)
    result = {"samples": samples.numpy()}
    for field in FIELDS:
        result[field] = np.array([np.asarray(step.get(field, np.nan), dtype=float) for step in trace.steps],
                                 dtype=object)  # fmt: skip
    return result


def _same(a: dict, b: dict) -> bool:
    if not np.array_equal(a["samples"], b["samples"]):
        return False
    return all(np.array_equal(np.asarray(x, float), np.asarray(y, float), equal_nan=True)
               for field in FIELDS for x, y in zip(a[field], b[field]))  # fmt: skip


def test_concurrent_runs_of_every_diagnostic_equal_their_runs_alone():
    alone = {key: _run(*spec) for key, spec in RUNS.items()}
    assert not list(autodiff._FORWARD_MODE_FAILED), "forward mode works on these models alone"
    results: dict[tuple[str, int], dict] = {}
    errors: list[str] = []
    barrier = threading.Barrier(2 * len(RUNS))

    def worker(key: str, copy: int) -> None:
        barrier.wait()
        try:
            results[key, copy] = _run(*RUNS[key])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(f"{key}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=worker, args=(key, copy)) for key in RUNS for copy in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not list(autodiff._FORWARD_MODE_FAILED), "a race made forward mode look unsupported"
    different = [key for (key, _), result in results.items() if not _same(result, alone[key])]
    assert not different, f"results differ from the runs alone: {different}"


def test_forward_mode_lock_is_reentrant():
    x, v = torch.randn(3), torch.randn(3)
    inner = lambda y: autodiff.jvp(torch.sin, y, v) * y  # noqa: E731 - a JVP inside a JVP
    jv = autodiff.jvp(inner, x, v)
    expected = torch.func.jvp(lambda y: torch.func.jvp(torch.sin, (y,), (v,))[1] * y, (x,), (v,))[1]
    assert torch.equal(jv, expected)


# ---------------------------------------------------------------- through the served app
CLIENTS, RUNS_EACH = 8, 5
REQUESTS = [  # small and fast, each different; every diagnostic and guidance method somewhere
    dict(model="tree", solver="heun", steps=4, batch=64, eig=True, compare=True),
    dict(model="tree", solver="euler", steps=5, batch=32, cls="A", cfg=2.0, erk_on=False, eig=False, compare=True),
    dict(model="moons", solver="dpm2", steps=3, batch=48, lipschitz=True, eig=False, compare=False),
    dict(model="tree", solver="bosh3", steps=3, batch=32, stein_on=True, stein_probes=3, eig=False, compare=True),
    dict(model="rings", solver="heun", steps=3, batch=40, lte_ref=True, erk_on=False, eig=False, compare=False),
    dict(model="digits", solver="euler", steps=4, batch=8, cls="3", cfg=1.5, eig=False, compare=False),
    dict(model="digits-unet", solver="heun", steps=2, batch=4, eig=False, lipschitz=True, erk_on=False, compare=False),
    dict(model="swissroll", solver="dpmpp2m", steps=5, batch=64, autoguidance=1.5, eig=True, compare=True),
    dict(model="tree", solver="rk4", steps=2, batch=16, lipschitz=True, eig=False, compare=True),
    dict(model="moons", solver="heun", steps=6, batch=100, stein_on=True, eig=True, seed=7, compare=True),
]  # fmt: skip
TIMES = re.compile(r"\d+\.\d+ s\b")  # wall times in the status lines: the only values that may differ


def _final(outputs: list) -> list:
    """Each output's last value sent (a bare update changes nothing), wall times taken out."""
    final: list = [None] * len(outputs[0])
    for frame in outputs:
        for i, value in enumerate(frame):
            if value != {"__type__": "update"}:
                final[i] = value
    for i, value in enumerate(final):
        if isinstance(value, str):
            final[i] = TIMES.sub("… s", value)
        elif isinstance(value, dict) and "headers" in value:
            table = value.get("value", value)
            wall = table["headers"].index("wall time (s)")
            final[i] = [table["headers"]] + [row[:wall] + row[wall + 1 :] for row in table["data"]]
    return final


@pytest.fixture(scope="module")
def served():
    app = ui.queued(ui.build_app())
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        app.close()


def _values(index: int) -> list:
    values = DEFAULTS | REQUESTS[index]
    return [values[name] for name in INPUTS] + [list(X_AXES)[index % len(X_AXES)]]


def _submit(client: Client, index: int) -> list:
    job = client.submit(*_values(index), api_name="/run")
    job.result()
    return _final(job.outputs())


def test_eight_clients_at_once_get_what_each_request_gets_alone(served):
    results: dict[tuple[int, int], list] = {}
    errors: list[str] = []

    def client_runs(c: int) -> None:
        client = Client(served, verbose=False)
        for r in range(RUNS_EACH):
            index = (c * RUNS_EACH + r) % len(REQUESTS)
            try:
                results[c, r] = [index, _submit(client, index)]
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(f"client {c} run {r} (request {index}): {type(err).__name__}: {err}")

    threads = [threading.Thread(target=client_runs, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == CLIENTS * RUNS_EACH
    alone_client = Client(served, verbose=False)
    alone = {index: _submit(alone_client, index) for index in range(len(REQUESTS))}
    for index, final in alone.items():
        assert "done" in final[0] and "⚠️" not in final[0], (REQUESTS[index], final[0])
    different = [(key, REQUESTS[index]) for key, (index, final) in results.items() if final != alone[index]]
    assert not different
