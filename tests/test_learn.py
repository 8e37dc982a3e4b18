"""The Learn tab's handlers as plain functions, its figures, and the tab built inside a Blocks."""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest

from stiffviz import teaching
from stiffviz.app.learn import STIFF_DEFAULTS, TEST_DEFAULTS, build_learn_tab, learn_stiff_system, learn_test_equation


def test_defaults_show_heun_just_outside_its_region():
    *figures, text = learn_test_equation(**TEST_DEFAULTS)
    assert all(isinstance(f, go.Figure) for f in figures)
    assert "z = hλ = -2.1" in text and "unstable" in text and "1.105" in text  # 1 − 2.1 + 2.1²/2


def test_stiff_defaults_are_stable_and_aligned():
    *figures, text = learn_stiff_system(**STIFF_DEFAULTS)
    assert len(figures) == 4 and all(isinstance(f, go.Figure) for f in figures)
    assert "hλ_stiff = -1.8" in text and "**stable**" in text and "0.82" in text  # 1 − 1.8 + 1.8²/2
    # the sweep: turned to v_slow at the smallest h, on v_stiff beyond the boundary
    assert "same duration T = 1.8" in text and "is 0.000 at h|λ_stiff| = 0.12, 1.000 at 2.18" in text


def test_sweep_figure_draws_the_sweep_with_boundary_and_chosen_h():
    sw = teaching.alignment_sweep(-40.0, -1.0, math.radians(30), 0.045, 40, "heun")
    *_, sweep, _ = learn_stiff_system(-40.0, -1.0, 30.0, 0.045, 40, "heun")
    by_name = {t.name: t for t in sweep.data if t.name}
    median = by_name["exact LTE: median over the run"]
    assert np.allclose(np.array(median.x, dtype=float), sw.z) and np.allclose(np.array(median.y, dtype=float), sw.median_exact)
    assert np.allclose(np.array(by_name["exact LTE: last step"].y, dtype=float), sw.last_exact)
    assert np.allclose(np.array(by_name["embedded e: median over the run"].y, dtype=float), sw.median_estimate)
    assert list(by_name["stability boundary 2"].x) == [2.0, 2.0]
    assert np.allclose(np.array(by_name["chosen h|λ_stiff| = 1.8"].x, dtype=float), 1.8)
    (marks,) = [t for t in sweep.data if not t.name]
    assert np.allclose(np.array(marks.x, dtype=float), 1.8)
    assert np.allclose(np.array(marks.y, dtype=float)[:2], [sw.median_exact[sw.chosen], sw.last_exact[sw.chosen]])
    assert sweep.layout.uirevision and sweep.layout.xaxis.title.text == "h|λ_stiff|"
    *_, rk4, _ = learn_stiff_system(-40.0, -1.0, 30.0, 0.045, 40, "rk4")  # no pair: exact error only
    assert not any(t.name and t.name.startswith("embedded") for t in rk4.data)


@pytest.mark.parametrize("change,parameter,limit", [
    (dict(lam_re=float("nan")), "lam_re", "finite"),
    (dict(lam_im=None), "lam_im", "number"),
    (dict(h=0.0), "h", "(0, 10]"),
    (dict(h=-1.0), "h", "(0, 10]"),
    (dict(steps=1000), "steps", "[1, 200]"),
    (dict(solver="dpm2"), "solver", "euler, heun, bosh3, rk4"),
    (dict(solver="unknown"), "solver", "euler, heun, bosh3, rk4"),
])  # fmt: skip
def test_test_equation_handler_names_the_parameter_and_keeps_the_figures(change, parameter, limit):
    *figures, text = learn_test_equation(**(TEST_DEFAULTS | change))
    assert f"{parameter}:" in text and limit in text
    assert not any(isinstance(f, go.Figure) for f in figures)  # gr.skip(): the previous figures stay


@pytest.mark.parametrize("change,parameter,limit", [
    (dict(angle_deg=float("nan")), "angle_deg", "finite"),
    (dict(lam_stiff="abc"), "lam_stiff", "number"),
    (dict(lam_stiff=-0.5), "lam_stiff", "more negative"),
    (dict(h=0.0), "h", "(0, 10]"),
    (dict(h=1.0), "h", "≤ 10"),
    (dict(steps=0), "steps", "[1, 200]"),
    (dict(solver="dpmpp2m"), "solver", "euler, heun"),
])  # fmt: skip
def test_stiff_handler_names_the_parameter(change, parameter, limit):
    *figures, text = learn_stiff_system(**(STIFF_DEFAULTS | change))
    assert f"{parameter}:" in text and limit in text
    assert len(figures) == 4 and not any(isinstance(f, go.Figure) for f in figures)


def _region_value(fig: go.Figure, z: complex) -> float:
    region = fig.data[0]
    re, im = np.array(region.x), np.array(region.y)
    return np.array(region.z)[np.argmin(np.abs(im - z.imag)), np.argmin(np.abs(re - z.real))]


@pytest.mark.parametrize("lam,h,solver", [(-10.0, 0.21, "heun"), (-10.0, 0.19, "heun"), (-1 + 3j, 0.5, "rk4"),
                                          (8j, 0.2, "euler")])  # fmt: skip
def test_stability_view_puts_z_where_the_region_says_stable_or_not(lam, h, solver):
    _, _, stability, _ = learn_test_equation(complex(lam).real, complex(lam).imag, h, 10, solver)
    (point,) = [t for t in stability.data if t.name == "z = hλ"]
    z = complex(point.x[0], point.y[0])
    assert z == pytest.approx(h * lam)
    assert _region_value(stability, z) == float(abs(teaching.test_equation(lam, h, 1, solver).amplification) <= 1)


def test_figures_draw_the_example_numbers():
    ex = teaching.stiff_system(-40.0, -1.0, math.radians(30), 0.045, 40, "heun")
    phase, alignment, _, _, _ = learn_stiff_system(-40.0, -1.0, 30.0, 0.045, 40, "heun")
    (numerical,) = [t for t in phase.data if t.name and t.name.startswith("heun")]
    assert np.allclose(np.array(numerical.x, dtype=float), ex.y[:, 0])
    (arrows,) = [t for t in phase.data if t.name and t.name.startswith("exact LTE")]
    scale = float(arrows.name.split("×")[1])
    x, y = np.array(arrows.x, dtype=float), np.array(arrows.y, dtype=float)
    drawn = np.column_stack([x[1::3] - x[0::3], y[1::3] - y[0::3]])
    assert np.allclose(drawn / scale, ex.lte_exact, rtol=2e-3, atol=1e-12)  # the legend's scale (3 digits) is the one drawn
    cosines = [t for t in alignment.data if t.name.startswith("|cos")]
    assert np.allclose(np.array(cosines[0].y, dtype=float), ex.cos_exact)
    assert all(f.layout.uirevision for f in learn_test_equation(**TEST_DEFAULTS)[:3])


def test_tab_builds_inside_blocks_with_learn_ids_and_initial_figures():
    with gr.Blocks() as demo:
        with gr.Tab("Learn"):
            build_learn_tab()
    ids = [b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)]
    assert ids and all(i.startswith("learn-") for i in ids)
    plots = [b for b in demo.blocks.values() if isinstance(b, gr.Plot)]
    assert len(plots) == 8 and all(p.value is not None for p in plots)
    assert {"learn-stiff-sweep", "learn-stiff-stability", "learn-stiff-phase-plane", "learn-test-growth-per-step", "learn-paths"} <= set(ids)
    (stiff,) = [d for d in demo.fns.values() if d.api_name == "learn_stiff_system"]
    assert [o._id for o in stiff.outputs][:4] == [p._id for p in plots[3:7]]  # the four figures, then the summary
    assert len(stiff.outputs) == 5 and isinstance(stiff.outputs[4], gr.Markdown)
    names = {d.api_name for d in demo.fns.values()}
    assert {"learn_test_equation", "learn_stiff_system"} <= names
