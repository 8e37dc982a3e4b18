"""The Ray backend: a local Ray cluster gives the local backend's rows; bad addresses and a
missing Ray are named before any cell runs; CUDA cells ask Ray for a GPU."""

from __future__ import annotations

import json
import socket
import sys
from types import SimpleNamespace

import pandas
import pytest
import ray
import torch

from stiffviz.errors import ParameterError
from stiffviz.sweep import make_cells, run_sweep
from stiffviz.sweep import ray_backend

GRID = {"steps": [4, 8], "erk_guid": [0.0, 0.5], "seeds": [0, 1], "batch": 256}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module (its start-up is a few seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:  # a port just freed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_rows_equal_local_rows(cluster, tmp_path):
    cells = make_cells(**GRID)
    assert len(cells) == 8
    local = run_sweep(cells, backend="local", workers=2, out=tmp_path / "local", metrics=True, progress=False)
    remote = run_sweep(cells, backend="ray", workers=2, out=tmp_path / "ray", metrics=True, progress=False)
    assert (remote["status"] == "ok").all() and len(remote) == 8
    assert list(remote["cell_id"]) == list(local["cell_id"])
    numeric = [c for c in local.columns if pandas.api.types.is_numeric_dtype(local[c]) and c != "wall_time_s"]
    assert {"nfe", "steps", "seed", "erk_guid", "median_stiffness", "swd", "nll"} <= set(numeric)
    pandas.testing.assert_frame_equal(remote[numeric], local[numeric], check_exact=True)
    assert list(remote["nfe"]) == [7, 7, 7, 7, 15, 15, 15, 15]  # Heun: 2 calls a step, one at the last
    # the table and the traces the driver wrote from the tasks' replies
    written = pandas.read_parquet(tmp_path / "ray" / "results.parquet")
    assert set(written["cell_id"]) == set(local["cell_id"])
    for cid in local["cell_id"]:
        a = json.loads((tmp_path / "local" / "traces" / f"{cid}.json").read_text())
        b = json.loads((tmp_path / "ray" / "traces" / f"{cid}.json").read_text())
        a["summary"].pop("wall_time_s"), b["summary"].pop("wall_time_s")
        assert a["sigmas"] == b["sigmas"] and a["summary"] == b["summary"] and a["summary"]["nfe"] in (7, 15)
    assert cluster.is_initialized()  # a session the caller holds is used, not shut down


def test_unreachable_address_is_named_before_any_cell(cluster):
    rows: list[dict] = []
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ParameterError) as err:
        ray_backend.run_cells(make_cells(steps=4), on_row=rows.append, address=address)
    assert err.value.parameter == "ray_address" and address in str(err.value)
    assert rows == []
    with pytest.raises(ParameterError, match="ray_address"):
        ray_backend.check_address("ray://127.0.0.1:notaport")


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ParameterError, match=r"pip install stiffviz\[sweep\]"):
        ray_backend.run_cells(make_cells(steps=4))


class _FakeRay:
    """Just enough of ray to see what each task asks for, running tasks inline."""

    def __init__(self):
        self.asked: list[dict] = []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 4.0, "GPU": 1.0}

    def remote(self, **_):
        fake = self

        def wrap(fn):
            def options(**kw):
                fake.asked.append(kw)
                return SimpleNamespace(remote=lambda *a: fn(*a))

            return SimpleNamespace(options=options)

        return wrap

    def wait(self, pending, num_returns=1):
        return pending[:num_returns], pending[num_returns:]

    def get(self, ref):
        return ref


def test_cuda_cells_ask_for_a_gpu_and_threads_follow_workers(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setattr(ray_backend, "import_ray", lambda: fake)
    monkeypatch.setattr(ray_backend, "run_cell", lambda cell, metrics, trace_dir: {"cell_id": str(cell["device"])})
    cells = [{"device": "cuda"}, {"device": "cpu"}, {"device": "cuda:0"}, {"device": None}]
    rows: list[dict] = []
    threads = torch.get_num_threads()
    try:
        ray_backend.run_cells(cells, workers=2, on_row=rows.append)
    finally:
        torch.set_num_threads(threads)  # the inline tasks set this process's threads
    assert [a["num_gpus"] for a in fake.asked] == [1, 0, 1, 0]
    assert {a["num_cpus"] for a in fake.asked} == {2}  # 4 cluster CPUs // 2 workers
    assert [r["cell_id"] for r in rows] == ["cuda", "cpu", "cuda:0", "None"]
