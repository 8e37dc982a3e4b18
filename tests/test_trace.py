"""Tests for the trace record and its JSON (``stiffviz.trace/1``) and CSV forms."""

from __future__ import annotations

import copy
import csv
import io
import json
import math

import numpy as np
import pytest

import stiffviz
from stiffviz import ParameterError, Trace

SCHEMA = "stiffviz.trace/1"
STEP_KEYS = ("i", "sigma", "sigma_next", "nfe")
BATCH_FIELDS = ("stein_gamma", "stein_gamma_raw", "stein_gamma_oracle")
PER_SAMPLE_FIELDS = (
    "lte", "lte_ref", "stiffness", "stiffness_z", "stiffness_index", "stiffness_ratio", "eig_max",
    "align_cos_est", "align_cos_true", "align_cos_ref", "align_cos_vhat", "erk_active", "erk_correction",
    "lipschitz",
)  # fmt: skip
BATCH = 8
STEPS = 4


@pytest.fixture(scope="module")
def heun_trace() -> Trace:
    _, trace = stiffviz.sample("moons", solver="heun", steps=STEPS, batch=BATCH, seed=0)
    return trace


@pytest.fixture(scope="module")
def erk_trace() -> Trace:
    _, trace = stiffviz.sample("moons", solver="heun", steps=STEPS, batch=BATCH, seed=0, erk_guid=1.0)
    return trace


def _diagnostics(step: dict) -> list[str]:
    return [k for k in step if k in PER_SAMPLE_FIELDS + BATCH_FIELDS]


def _strict_loads(text: str):
    """json.loads that refuses NaN / Infinity, which are not JSON."""

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _assert_step_equal(a: dict, b: dict):
    assert set(a) == set(b)
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(va, (np.ndarray, list)) or isinstance(vb, (np.ndarray, list)):
            np.testing.assert_array_equal(np.asarray(va, dtype=float), np.asarray(vb, dtype=float))
        elif va is None or vb is None:
            assert va is None and vb is None
        elif isinstance(va, float) and math.isnan(va):
            assert isinstance(vb, float) and math.isnan(vb)
        else:
            assert va == vb, key


def _assert_traces_equal(a: Trace, b: Trace):
    assert a.config == b.config
    assert list(map(float, a.sigmas)) == list(map(float, b.sigmas))
    assert a.status == b.status and a.message == b.message
    assert len(a.steps) == len(b.steps)
    for sa, sb in zip(a.steps, b.steps):
        _assert_step_equal(sa, sb)
    for name in set(a.fields()) | set(b.fields()) | set(STEP_KEYS):
        np.testing.assert_array_equal(a.column(name), b.column(name))


# --------------------------------------------------------------------------- #
# the trace of a small run: what it must contain
# --------------------------------------------------------------------------- #
def test_trace_records_the_run(heun_trace):
    t = heun_trace
    assert t.status == "ok"
    assert t.config["model"] == "moons" and t.config["solver"] == "heun" and t.config["batch"] == BATCH
    # Karras schedule (docs/math.md §1), defaults σ ∈ [0.002, 80], ρ = 7, with the appended 0
    hi, lo = 80.0 ** (1 / 7), 0.002 ** (1 / 7)
    expected = [(hi + i / (STEPS - 1) * (lo - hi)) ** 7 for i in range(STEPS)] + [0.0]
    np.testing.assert_allclose(t.sigmas, expected, rtol=1e-12, atol=0)
    assert len(t.steps) == STEPS
    for i, step in enumerate(t.steps):
        assert step["i"] == i
        assert step["sigma"] == pytest.approx(expected[i], rel=1e-12)
        assert step["sigma_next"] == pytest.approx(expected[i + 1], rel=1e-12)
    # Heun costs 2 evaluations per step and 1 on the final Euler step: 2N − 1 (docs/math.md §2)
    assert [s["nfe"] for s in t.steps] == [2, 4, 6, 7]


def test_diagnostics_not_computed_are_absent_not_zero(heun_trace):
    t = heun_trace
    first, last = t.steps[0], t.steps[-1]
    # step 0 has no secant pair yet: no stiffness of any kind
    for name in ("stiffness", "stiffness_z", "stiffness_index", "align_cos_est"):
        assert first.get(name) is None, name
        assert np.isnan(t.column(name)[0]).all(), name
    # the final step is plain Euler, which has no embedded pair: no LTE estimate
    assert last.get("lte") is None
    assert np.isnan(t.column("lte")[-1]).all()
    # costly diagnostics, guidance and Stein were not requested: absent everywhere
    for name in ("lte_ref", "eig_max", "stiffness_ratio", "align_cos_true", "align_cos_ref", "align_cos_vhat",
                 "erk_active", "erk_correction", "lipschitz", *BATCH_FIELDS):  # fmt: skip
        assert all(s.get(name) is None for s in t.steps), name
        assert name not in t.fields()
        assert np.isnan(t.column(name)).all()
    # the ones that were computed are there, one finite value per sample
    assert t.steps[1]["stiffness"].shape == (BATCH,)
    assert np.isfinite(t.column("stiffness")[1:]).all()
    assert np.isfinite(t.column("lte")[:-1]).all()
    assert t.column("lte").shape == (STEPS, BATCH)
    # and the JSON says so too: absent or null, never 0
    data = _strict_loads(t.to_json())
    assert data["steps"][0].get("stiffness") is None
    assert data["steps"][-1].get("lte") is None


# --------------------------------------------------------------------------- #
# JSON round trip
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("which", ["heun_trace", "erk_trace"])
def test_json_round_trip_text_and_file(which, request, tmp_path):
    t = request.getfixturevalue(which)
    text = t.to_json()
    data = _strict_loads(text)
    assert data["schema"] == SCHEMA
    assert set(data) >= {"schema", "config", "sigmas", "steps", "summary", "status", "message"}
    _assert_traces_equal(Trace.from_json(text), t)
    path = tmp_path / "trace.json"
    assert t.to_json(path) == text
    assert path.read_text() == text
    _assert_traces_equal(Trace.from_json(path), t)  # pathlib.Path
    _assert_traces_equal(Trace.from_json(str(path)), t)  # a path given as text
    if which == "erk_trace":
        erk_steps = [s for s in t.steps if "erk_active" in s]
        assert erk_steps, "ERK-Guid was on: erk_active must be recorded"
        assert 0 not in [s["i"] for s in erk_steps]  # step 0 has no pair, no correction (docs/math.md §4)
        loaded = Trace.from_json(text)
        for s in loaded.steps:
            if "erk_active" in s:
                assert np.asarray(s["erk_active"]).dtype == bool


def test_json_non_finite_values_become_null_and_back(heun_trace):
    t = copy.deepcopy(heun_trace)
    t.steps[1]["lte"] = t.steps[1]["lte"].copy()
    t.steps[1]["lte"][2] = np.nan
    t.steps[2]["stiffness"] = t.steps[2]["stiffness"].copy()
    t.steps[2]["stiffness"][0] = np.inf
    t.steps[1]["stein_gamma"] = float("nan")
    t.steps[2]["stein_gamma"] = 0.75
    t.status, t.message = "diverged", "the state became non-finite at step 2"
    text = t.to_json()
    data = _strict_loads(text)  # strict JSON: no NaN / Infinity tokens
    assert data["steps"][1]["lte"][2] is None
    assert data["steps"][2]["stiffness"][0] is None
    assert data["steps"][1]["stein_gamma"] is None
    assert data["steps"][2]["stein_gamma"] == 0.75
    assert data["status"] == "diverged"
    back = Trace.from_json(text)
    assert back.status == "diverged" and back.message == t.message
    assert np.isnan(back.steps[1]["lte"][2])
    assert np.isnan(back.steps[2]["stiffness"][0])  # ±inf is written as null and reads back as NaN
    np.testing.assert_array_equal(np.delete(back.steps[1]["lte"], 2), np.delete(t.steps[1]["lte"], 2))
    np.testing.assert_array_equal(back.steps[2]["stiffness"][1:], t.steps[2]["stiffness"][1:])
    gamma = back.column("stein_gamma")
    assert gamma.shape == (STEPS,)
    assert np.isnan(gamma[0]) and np.isnan(gamma[1]) and gamma[2] == 0.75 and np.isnan(gamma[3])


# --------------------------------------------------------------------------- #
# CSV
# --------------------------------------------------------------------------- #
def test_csv_one_row_per_step_and_sample(heun_trace, tmp_path):
    t = copy.deepcopy(heun_trace)
    t.steps[2]["stein_gamma"] = 1.25  # one batch field, on one step only
    text = t.to_csv()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    diagnostics = [f for f in PER_SAMPLE_FIELDS + BATCH_FIELDS if any(f in s for s in t.steps)]
    assert header[:5] == ["step", "sample", "sigma", "sigma_next", "nfe"]
    assert sorted(header[5:]) == sorted(diagnostics)
    assert len(body) == STEPS * BATCH
    col = {name: header.index(name) for name in header}
    seen = set()
    for r in body:
        i, b = int(r[col["step"]]), int(r[col["sample"]])
        seen.add((i, b))
        step = t.steps[i]
        assert float(r[col["sigma"]]) == step["sigma"]
        assert float(r[col["sigma_next"]]) == step["sigma_next"]
        assert int(r[col["nfe"]]) == step["nfe"]
        for name in diagnostics:
            cell = r[col[name]]
            value = step.get(name)
            if value is None:
                assert cell == "", (i, b, name)  # absent: empty, never 0
            else:
                expected = float(value) if name in BATCH_FIELDS else float(np.asarray(value)[b])
                assert float(cell) == expected, (i, b, name)
    assert seen == {(i, b) for i in range(STEPS) for b in range(BATCH)}
    # the batch field appears on every sample's row of its step, and only there
    stein = [r[col["stein_gamma"]] for r in body]
    assert stein == ["1.25" if int(r[col["step"]]) == 2 else "" for r in body]
    path = tmp_path / "trace.csv"
    assert t.to_csv(path) == text and path.read_bytes().decode() == text  # bytes: csv ends rows with \r\n


# --------------------------------------------------------------------------- #
# malformed files
# --------------------------------------------------------------------------- #
def _valid_dict(trace: Trace) -> dict:
    return json.loads(trace.to_json())


def _assert_bad(source):
    with pytest.raises(ParameterError) as err:
        Trace.from_json(source)
    assert err.value.parameter == "trace"
    assert str(err.value).startswith("trace")


def test_bad_files_raise_parameter_error(heun_trace, tmp_path):
    not_json = tmp_path / "not.json"
    not_json.write_text("this is not JSON")
    _assert_bad(not_json)
    _assert_bad(str(not_json))
    _assert_bad("{not json")
    _assert_bad(tmp_path / "missing.json")
    _assert_bad(str(tmp_path / "missing.json"))
    _assert_bad(tmp_path)  # a directory

    wrong = _valid_dict(heun_trace) | {"schema": "stiffviz.trace/0"}
    _assert_bad(json.dumps(wrong))
    no_schema = _valid_dict(heun_trace)
    del no_schema["schema"]
    _assert_bad(json.dumps(no_schema))
    _assert_bad(json.dumps([1, 2, 3]))  # JSON, but not an object
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2, 3]")
    _assert_bad(listing)


@pytest.mark.parametrize("key", ["config", "sigmas", "steps", "status"])
def test_missing_top_level_key(heun_trace, key):
    data = _valid_dict(heun_trace)
    del data[key]
    _assert_bad(json.dumps(data))


@pytest.mark.parametrize("key", STEP_KEYS)
def test_missing_step_field(heun_trace, key, tmp_path):
    data = _valid_dict(heun_trace)
    del data["steps"][2][key]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    _assert_bad(path)


def test_steps_not_a_list(heun_trace):
    data = _valid_dict(heun_trace)
    data["steps"] = 5
    _assert_bad(json.dumps(data))


def test_step_not_an_object(heun_trace):
    data = _valid_dict(heun_trace)
    data["steps"][1] = 7
    _assert_bad(json.dumps(data))


def test_optional_keys_may_be_missing(heun_trace):
    """summary and message are optional: a minimal valid file loads."""
    data = _valid_dict(heun_trace)
    del data["summary"], data["message"]
    t = Trace.from_json(json.dumps(data))
    assert t.summary == {} and t.message == ""
    np.testing.assert_array_equal(t.column("lte"), heun_trace.column("lte"))


def test_shipped_example_trace_loads():
    """stiffviz/data/example-tree-heun8-erk.json is what the README points newcomers to."""
    from pathlib import Path

    trace = Trace.from_json(Path(stiffviz.__file__).parent / "data" / "example-tree-heun8-erk.json")
    assert trace.config["model"] == "tree" and trace.config["erk_guid"] == 0.5
    assert len(trace.steps) == trace.config["steps"] == 8
    assert trace.column("stiffness").shape == (8, 64)
