"""Plotly figures show the recorded numbers: medians, quartile bands, overlays, stability view."""

from __future__ import annotations

import numpy as np
import pytest

from stiffviz import sample
from stiffviz.app.plots import CHARTS, compact, stability_figure, trace_figure


@pytest.fixture(scope="module")
def runs():
    _, plain = sample("tree", steps=8, batch=128, seed=1, eig=True, lte_ref=True, lipschitz=True, stein=True)
    _, guided = sample("tree", steps=8, batch=128, seed=1, erk_guid=0.75, eig=True)
    return {"off": plain, "ERK-Guid": guided}


def _named(fig, prefix):
    return [t for t in fig.data if t.name and t.name.startswith(prefix)]


def test_median_lines_are_the_trace_medians(runs):
    fig = trace_figure("lte", {"off": runs["off"]})
    (line,) = _named(fig, "‖e‖ embedded")
    assert np.allclose(np.array(line.y, dtype=float), runs["off"].step_median("lte"), equal_nan=True)


def test_figures_carry_float32_unless_a_value_would_overflow(runs):
    fig = trace_figure("lte", {"off": runs["off"]})
    assert {t.y.dtype for t in fig.data} == {np.dtype(np.float32)}
    assert compact([1.0, np.nan, np.inf]).dtype == np.float32
    big = compact([1.0, 1e300, np.nan])
    assert big.dtype == np.float64 and big[1] == 1e300


def test_band_holds_the_middle_half_of_the_samples(runs):
    trace = runs["off"]
    fig = trace_figure("stiffness", {"off": trace})
    column = trace.column("stiffness")
    bands = [t for t in fig.data if t.fill == "tonexty"]
    upper = [fig.data[k - 1] for k, t in enumerate(fig.data) if t.fill == "tonexty"]
    low, high = np.array(bands[0].y, dtype=float), np.array(upper[0].y, dtype=float)
    for row in range(column.shape[0]):
        values = column[row][np.isfinite(column[row])]
        if values.size:
            inside = np.mean((values >= low[row]) & (values <= high[row]))
            assert 0.45 <= inside <= 0.6


def test_two_runs_are_overlaid_and_labelled(runs):
    fig = trace_figure("alignment", runs, x_axis="sigma")
    assert _named(fig, "|cos(e, v₁)| · off") and _named(fig, "|cos(e, v₁)| · ERK-Guid")
    assert fig.layout.xaxis.type == "log" and fig.layout.uirevision == "alignment"


def test_every_chart_draws_what_was_recorded(runs):
    for chart, fields in CHARTS.items():
        fig = trace_figure(chart, {"off": runs["off"]})
        recorded = [name for field, name in fields if field in runs["off"].fields()]
        assert recorded and all(_named(fig, name) for name in recorded), chart
    stein = trace_figure("stein", {"off": runs["off"]})
    (applied,) = _named(stein, "γ applied")
    assert np.allclose(np.array(applied.y, dtype=float), runs["off"].column("stein_gamma"), equal_nan=True)


def test_stiffness_chart_draws_the_stability_boundary(runs):
    fig = trace_figure("stiffness", {"off": runs["off"]})
    (boundary,) = _named(fig, "stability boundary")
    assert np.allclose(np.array(boundary.y, dtype=float), 2.0)


def test_stability_region_and_step_points(runs):
    trace = runs["off"]
    fig = stability_figure("heun", trace)
    region = fig.data[0]
    re, im = np.array(region.x), np.array(region.y)
    stable = np.array(region.z)
    row = np.argmin(np.abs(im))  # Im z = 0: Heun is stable exactly for Re z ∈ [−2, 0]
    for z, expected in ((-1.9, 1.0), (-2.1, 0.0), (-0.5, 1.0), (0.5, 0.0)):
        assert stable[row, np.argmin(np.abs(re - z))] == expected
    points = fig.data[1]
    h = trace.column("sigma_next") - trace.column("sigma")
    expected = h * np.array([np.median(v) for v in trace.column("eig_max")])
    assert np.allclose(np.array(points.x, dtype=float), expected[np.isfinite(expected)])


def test_stability_view_overlays_runs_and_widens_to_every_step(runs):
    fig = stability_figure("euler", runs)
    markers = [t for t in fig.data if t.type == "scatter"]
    assert [t.name.rsplit(" · ", 1)[1] for t in markers] == ["off", "ERK-Guid"]
    farthest = max(np.abs(np.array(t.x, dtype=float)).max() for t in markers)
    assert fig.layout.xaxis.range[0] <= -min(farthest, 50.0) and fig.layout.xaxis.range[0] <= -4.0


def test_unknown_chart_is_refused(runs):
    with pytest.raises(ValueError, match="chart"):
        trace_figure("energy", runs)


def test_a_chart_with_nothing_recorded_says_what_to_turn_on(runs):
    empty = trace_figure("lipschitz", {"ERK-Guid": runs["ERK-Guid"]})
    assert not empty.data and "turn on the Lipschitz diagnostic" in empty.layout.annotations[0].text
    assert not trace_figure("lipschitz", {"off": runs["off"]}).layout.annotations
