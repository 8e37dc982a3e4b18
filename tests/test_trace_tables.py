"""Tests for the tidy tables of a trace: ``Trace.to_pandas()`` and ``Trace.to_parquet()``.

Every value of the table is checked against the trace's own step records, read by a plain loop
over (step, sample) here, independent of the column-wise code in stiffviz/trace_tables.py.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest

import stiffviz
from stiffviz import Trace
from stiffviz.trace import PER_SAMPLE_FIELDS

BATCH = 6


@pytest.fixture(scope="module")
def erk_trace() -> Trace:
    """ERK-Guid: erk_active (bool) exists on some steps only, lte not on the last step."""
    _, trace = stiffviz.sample("tree", steps=5, batch=BATCH, seed=1, erk_guid=0.5)
    return trace


@pytest.fixture(scope="module")
def adaptive_trace() -> Trace:
    """Adaptive steps: the batch fields accepted (bool, every step) and lte_ratio."""
    _, trace = stiffviz.sample("tree", solver="heun", steps=64, batch=BATCH, seed=2, adaptive=True, rtol=0.05, atol=0.05)
    return trace


@pytest.fixture(scope="module")
def churn_trace() -> Trace:
    """Churn: the batch field sigma_hat, broadcast over the samples."""
    _, trace = stiffviz.sample("moons", steps=5, batch=BATCH, seed=0, churn=2.0)
    return trace


def _expected(step: dict, name: str, b: int):
    """The value the table should hold for one (step, sample) cell, straight from the step record."""
    value = step.get(name)
    if value is None:
        return None
    if name in PER_SAMPLE_FIELDS:
        value = value[b]
    return value.item() if isinstance(value, np.generic) else value


def _assert_table_matches(trace: Trace, df: pd.DataFrame) -> None:
    fields = trace.fields()
    assert fields, "the fixture should record diagnostics"
    assert list(df.columns) == ["i", "sample", "sigma", "sigma_next", "nfe", "stability_boundary", *fields]
    assert len(df) == len(trace.steps) * BATCH
    records = df.to_dict("records")
    row = 0
    for step in trace.steps:
        for b in range(BATCH):
            got = records[row]
            assert got["i"] == step["i"] and got["sample"] == b and got["nfe"] == step["nfe"]
            assert got["sigma"] == step["sigma"] and got["sigma_next"] == step["sigma_next"]
            assert got["stability_boundary"] == step["stability_boundary"]
            for name in fields:
                want, value = _expected(step, name, b), got[name]
                if want is None:
                    assert value is None or pd.isna(value), (name, step["i"], b, value)
                elif isinstance(want, (bool, np.bool_)):
                    assert value is not None and not pd.isna(value) and bool(value) == bool(want), (name, step["i"], b)
                elif math.isnan(want):
                    assert math.isnan(value), (name, step["i"], b)
                else:
                    assert value == want, (name, step["i"], b, value, want)
            row += 1


@pytest.mark.parametrize("name", ["erk_trace", "adaptive_trace", "churn_trace"])
def test_to_pandas_has_one_row_per_step_and_sample_with_the_traces_values(name, request):
    trace = request.getfixturevalue(name)
    _assert_table_matches(trace, trace.to_pandas())


def test_to_pandas_column_types(erk_trace, adaptive_trace, churn_trace):
    df = erk_trace.to_pandas()
    for col in ("i", "sample", "nfe"):
        assert df[col].dtype == np.int64
    for col in ("sigma", "sigma_next", "lte", "stiffness", "erk_correction"):
        assert df[col].dtype == np.float64
    # erk_active is absent on the first and last steps: nullable boolean with <NA> there
    assert df["erk_active"].dtype == "boolean"
    first = df[df["i"] == erk_trace.steps[0]["i"]]
    assert first["erk_active"].isna().all()
    assert df["erk_active"].notna().any()
    # accepted is on every adaptive step: a plain bool column
    adaptive = adaptive_trace.to_pandas()
    assert adaptive["accepted"].dtype == np.bool_
    assert adaptive["lte_ratio"].dtype == np.float64
    # a batch field repeats over the step's samples
    churn = churn_trace.to_pandas()
    per_step = churn.groupby("i")["sigma_hat"].nunique(dropna=False)
    assert (per_step == 1).all()


def test_empty_trace_gives_an_empty_table():
    trace = Trace(config={"batch": 3}, sigmas=[1.0, 0.0])
    df = trace.to_pandas()
    assert len(df) == 0 and list(df.columns) == ["i", "sample", "sigma", "sigma_next", "nfe"]


@pytest.mark.parametrize("name", ["erk_trace", "adaptive_trace", "churn_trace"])
def test_parquet_round_trip_equals_to_pandas(name, request, tmp_path):
    trace = request.getfixturevalue(name)
    path = trace.to_parquet(tmp_path / "trace.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), trace.to_pandas())


def test_missing_pyarrow_says_how_to_install(erk_trace, tmp_path, monkeypatch):
    for module in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install stiffviz\[sweep\]") as info:
        erk_trace.to_parquet(tmp_path / "t.parquet")
    assert "pyarrow" in str(info.value)
    assert not (tmp_path / "t.parquet").exists()


def test_missing_pandas_says_how_to_install(erk_trace, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pandas.*pip install stiffviz\[sweep\]"):
        erk_trace.to_pandas()
