"""Concurrent runs give exactly the results they give alone, every diagnostic included.

torch.func.jvp keeps its forward-mode state in process-wide globals; without the lock in
stiffviz.diagnostics.autodiff, two threads inside it at once raise, or silently switch the
network to the VJP-based fallback for good (different values).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from stiffviz import load_model, sample
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
