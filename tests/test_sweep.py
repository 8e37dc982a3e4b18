"""Sweeps (stiffviz.sweep and ``python -m stiffviz sweep``): the grid, rows equal to independent
runs, resumption, failing cells, bad input before any cell runs, the CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import stiffviz
from stiffviz import ParameterError, Trace
from stiffviz.cli import build_parser
from stiffviz.sweep import MAX_CELLS, cell_id, expand_grid, make_cells, results
from stiffviz.sweep import local
from stiffviz.sweep.cli import options_from_args

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(batch=64)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stiffviz", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture
def count_cells(monkeypatch):
    """Counts the cells run_cell runs in this process (one worker runs in-process)."""
    ran: list[dict] = []
    original = results.run_cell

    def counting(cell, metrics=False, trace_dir=None):
        ran.append(cell)
        return original(cell, metrics, trace_dir)

    monkeypatch.setattr(results, "run_cell", counting)
    return ran


def test_grid_is_the_full_product_in_order():
    cells = expand_grid({"steps": [4, 8], "erk_guid": [0, 0.5], "seeds": [0, 1]})
    assert len(cells) == 8
    assert cells == [{"steps": s, "erk_guid": w, "seed": seed} for s in (4, 8) for w in (0, 0.5) for seed in (0, 1)]
    assert expand_grid({"seed": "0:8"}) == [{"seed": s} for s in range(8)]
    args = build_parser().parse_args(["sweep", "--steps", "4,8", "--erk-guid", "0,0.5", "--seeds", "0,1"])
    cli_cells = make_cells(None, **options_from_args(args))
    py_cells = make_cells(steps=[4, 8], erk_guid=[0, 0.5], seeds=[0, 1])
    assert len(cli_cells) == 8 and {cell_id(c) for c in cli_cells} == {cell_id(c) for c in py_cells}
    assert len({cell_id(c) for c in py_cells}) == 8
    assert cell_id({"steps": 4, "seed": 0}) == cell_id({"seed": 0.0, "steps": 4.0})  # order and int/float aside


def test_rows_equal_independent_sample_runs(tmp_path):
    frame = stiffviz.sweep(steps=[4, 8], erk_guid=[0, 0.5], seeds=[0, 1], workers=2, out=tmp_path, progress=False, **SMALL)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 8
    assert list(zip(frame.steps, frame.erk_guid, frame.seed)) == [(s, w, seed) for s in (4, 8) for w in (0, 0.5) for seed in (0, 1)]
    for row in frame.itertuples():
        _, trace = stiffviz.sample("tree", steps=row.steps, erk_guid=row.erk_guid, seed=row.seed, **SMALL)
        assert row.status == "ok" and row.nfe == trace.summary["nfe"]
        for key in ("median_stiffness", "median_stiffness_z", "median_lte"):
            assert getattr(row, key) == pytest.approx(trace.summary[key], rel=1e-5), key
        saved = Trace.from_json(tmp_path / "traces" / f"{row.cell_id}.json")
        assert saved.config["steps"] == row.steps and saved.summary["nfe"] == row.nfe
    assert saved.sigmas == pytest.approx(trace.sigmas)
    on_disk = pd.read_parquet(tmp_path / "results.parquet").set_index("cell_id").loc[frame.cell_id]
    assert list(on_disk.median_lte) == pytest.approx(list(frame.median_lte))
    assert len(pd.read_csv(tmp_path / "results.csv")) == 8


def test_metrics_add_the_quality_measures():
    frame = stiffviz.sweep(steps=8, batch=256, metrics=True, workers=1, progress=False)
    model = stiffviz.load_model("tree")
    samples, _ = stiffviz.sample(model, steps=8, batch=256)
    from stiffviz.quality import quality_report

    expected = quality_report(model, samples, None, 0)
    assert expected and all(frame.iloc[0][k] == pytest.approx(v) for k, v in expected.items() if v is not None)


def test_resumption_runs_only_new_cells(tmp_path, count_cells, capsys):
    first = stiffviz.sweep(steps=4, seeds=[0, 1], workers=1, out=tmp_path, progress=False, **SMALL)
    assert len(count_cells) == 2
    again = stiffviz.sweep(steps=4, seeds="0:3", workers=1, out=tmp_path, progress=True, **SMALL)
    assert len(count_cells) == 3 and count_cells[-1]["seed"] == 2  # only the new seed ran
    assert "1/1" in capsys.readouterr().err  # the bar counts the cells left to run
    assert list(again.seed) == [0, 1, 2] and list(again.cell_id[:2]) == list(first.cell_id)
    stiffviz.sweep(steps=4, seeds="0:3", workers=1, out=tmp_path, progress=False, **SMALL)
    assert len(count_cells) == 3  # nothing new
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 3


def test_interrupted_sweep_keeps_finished_cells_and_resumes(tmp_path, monkeypatch):
    original, calls = results.run_cell, []

    def interrupt_second(cell, metrics=False, trace_dir=None):
        calls.append(cell["seed"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(cell, metrics, trace_dir)

    monkeypatch.setattr(results, "run_cell", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        stiffviz.sweep(steps=4, seeds=[0, 1, 2], workers=1, out=tmp_path, progress=False, **SMALL)
    assert list(pd.read_parquet(tmp_path / "results.parquet").seed) == [0]  # written though interrupted
    frame = stiffviz.sweep(steps=4, seeds=[0, 1, 2], workers=1, out=tmp_path, progress=False, **SMALL)
    assert calls == [0, 1, 1, 2] and list(frame.status) == ["ok"] * 3


def test_failing_and_diverging_cells_get_rows_and_the_others_go_on(tmp_path):
    frame = stiffviz.sweep(solver=["euler", "heun"], adaptive=True, steps=200, workers=2, out=tmp_path, progress=False, **SMALL)
    failed, ok = frame.iloc[0], frame.iloc[1]
    assert failed.status == "failed" and "solver" in failed.message and "adaptive" in failed.message
    assert ok.status == "ok" and ok.nfe > 0
    assert not (tmp_path / "traces" / f"{failed.cell_id}.json").exists()
    frame = stiffviz.sweep(solver="euler", steps=1, sigma_max=[1e30, 80.0], workers=1, progress=False, **SMALL)
    assert list(frame.status) == ["diverged", "ok"] and "non-finite" in frame.message[0]


@pytest.mark.parametrize("options, name, words", [
    (dict(steps=[]), "steps", "empty"),
    (dict(stepz=[4, 8]), "stepz", "'steps'"),
    (dict(steps=list(range(1, 101)), seeds=range(101)), "grid", str(MAX_CELLS)),
    (dict(seeds="5:2"), "seeds", "empty"),
    (dict(workers=0, steps=4), "workers", "≥ 1"),
    (dict(backend="spark", steps=4), "backend", "local, ray"),
])  # fmt: skip
def test_bad_input_is_named_before_any_cell_runs(options, name, words, monkeypatch):
    monkeypatch.setattr(local, "run_cells", lambda *a, **k: pytest.fail("a cell ran"))
    with pytest.raises(ParameterError) as err:
        stiffviz.sweep(progress=False, **options)
    assert err.value.parameter == name and words in str(err.value)


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_spec_file_typo_is_named(tmp_path, suffix, monkeypatch):
    monkeypatch.setattr(local, "run_cells", lambda *a, **k: pytest.fail("a cell ran"))
    data = {"steps": [4, 8], "erk_giud": [0, 0.5]}
    spec = tmp_path / f"spec.{suffix}"
    spec.write_text(json.dumps(data) if suffix == "json" else "steps: [4, 8]\nerk_giud: [0, 0.5]\n")
    with pytest.raises(ParameterError) as err:
        stiffviz.sweep(spec, progress=False)
    assert err.value.parameter == "erk_giud" and "'erk_guid'" in str(err.value)


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "sweep"
    done = run_cli("sweep", "--steps", "4,8", "--erk-guid", "0,0.5", "--seeds", "0:2", "--batch", "64",
                   "--workers", "2", "--out", str(out), "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert sorted(zip(frame.steps, frame.erk_guid, frame.seed)) == [(s, w, seed) for s in (4, 8) for w in (0, 0.5) for seed in (0, 1)]
    assert set(frame.status) == {"ok"} and len(pd.read_csv(out / "results.csv")) == 8
    assert sorted(p.stem for p in (out / "traces").glob("*.json")) == sorted(frame.cell_id)
    assert "8 cells: 8 ok" in done.stdout
    expected = stiffviz.sweep(steps=[4, 8], erk_guid=[0, 0.5], seeds=[0, 1], workers=1, progress=False, **SMALL)
    assert set(expected.cell_id) == set(frame.cell_id)  # the CLI's cells are the Python API's
    spec = tmp_path / "spec.yaml"
    spec.write_text("erk_guid: [0, 0.5]\nseeds: '0:2'\nbatch: 64\n")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "traces").iterdir()}
    again = run_cli("sweep", "--spec", str(spec), "--steps", "4,8", "--out", str(out), "--no-progress")
    assert again.returncode == 0 and "8 cells: 8 ok" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "traces").iterdir()} == mtimes  # resumed: nothing ran again
    spec.write_text("erk_giud: [0, 0.5]\n")
    typo = run_cli("sweep", "--spec", str(spec), "--out", str(tmp_path / "typo"))
    assert typo.returncode == 2 and "erk_giud" in typo.stderr and "erk_guid" in typo.stderr
    assert not (tmp_path / "typo").exists()
    unknown = run_cli("sweep", "--stepz", "4")
    assert unknown.returncode == 2 and "--stepz" in unknown.stderr
