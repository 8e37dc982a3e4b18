"""The quality–NFE front (docs/math.md §13): the numbers shipped in assets/pareto.json keep the
same NFE for every schedule and mark the front that a separate computation here finds, and the
figure draws what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stiffviz.app.pareto_plot import pareto_figure

SAVED = Path(__file__).resolve().parents[1] / "assets" / "pareto.json"


@pytest.fixture(scope="module")
def saved() -> dict:
    return json.loads(SAVED.read_text())


def non_dominated(rows: list[dict]) -> set[tuple[int, str]]:
    """(steps, schedule) of the points with no other point at ≤ NFE and a strictly lower SWD."""
    points = [r for r in rows if r["swd"] is not None]
    return {(r["steps"], r["schedule"]) for r in points
            if not any(o["nfe"] <= r["nfe"] and o["swd"] < r["swd"] for o in points)}  # fmt: skip


def test_every_schedule_runs_at_heuns_nfe_and_the_front_is_the_non_dominated_set(saved):
    assert set(saved["models"]) == {"tree", "rings", "digits"}
    for name, model in saved["models"].items():
        rows = model["rows"]
        assert {r["schedule"] for r in rows} == set(saved["schedules"])
        assert all(r["nfe"] == 2 * r["steps"] - 1 for r in rows), name  # Heun: N steps, the last one Euler
        marked = {(r["steps"], r["schedule"]) for r in rows if r["front"]}
        assert marked == non_dominated(rows) and marked, name


def test_the_figure_draws_each_schedule_and_rings_the_front(saved):
    figure = pareto_figure(saved)
    models, schedules = list(saved["models"]), saved["schedules"]
    assert len(figure.data) == len(models) * len(schedules) * 2  # SWD and recall per schedule and model
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis2.type == "log"  # SWD row
    ringed = set()
    for trace in figure.data:
        column = (int(trace.xaxis[1:] or 1) - 1) % len(models)
        widths = trace.marker.line.width
        assert list(trace.x) == sorted(trace.x)
        ringed |= {(models[column], trace.legendgroup, x) for x, w in zip(trace.x, widths) if w}
    expected = {(name, r["schedule"], r["nfe"]) for name, m in saved["models"].items() for r in m["rows"] if r["front"]}
    assert ringed == expected
