"""Sweep pictures (stiffviz.app.sweep_plots, ``plot-sweep``, the Sweeps tab), checked against
independent pandas and plain-Python computations on a made-up table and on the shipped folder."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stiffviz.app import sweep_plots
from stiffviz.app.sweep_tab import SHIPPED, defaults, sweep_figures, sweep_folder
from stiffviz.cli import main
from stiffviz.errors import ParameterError


def made_up() -> pd.DataFrame:
    """3 steps × ERK-Guid off/0.5/1 × SteinDiff off/on × 3 seeds, random measures, a few bad cells."""
    rng = np.random.default_rng(7)
    rows = []
    for steps in (4, 6, 8):
        for erk in (None, 0.5, 1.0):
            for stein in (False, True):
                for seed in range(3):
                    k = len(rows)
                    status = "diverged" if k % 11 == 5 else "failed" if k % 13 == 4 else "ok"
                    rows.append(dict(model="tree", steps=steps, erk_guid=erk, stein=stein, seed=seed, eig=seed == 0,
                                     cell_id=f"{k:016x}", status=status, message="", nfe=2 * steps - 1 + (2 if stein else 0),
                                     wall_time_s=0.1, swd=float(rng.random()) if status == "ok" else float("nan"),
                                     recall=float(rng.random())))  # fmt: skip
    return pd.DataFrame(rows)


def test_heatmap_cells_are_the_pivot_of_ok_rows():
    table = made_up()
    for metric in ("swd", "recall"):
        got = sweep_plots.heatmap_table(table, metric, "steps", "erk_guid")
        ok = table[(table["status"] == "ok") & table[metric].notna()].copy()
        ok["erk_guid"] = ok["erk_guid"].astype(object).where(ok["erk_guid"].notna(), "off")
        want = ok.pivot_table(index="erk_guid", columns="steps", values=metric, aggfunc="mean")
        assert got.shape == (3, 3)
        for y in want.index:
            for x in want.columns:
                assert got.loc[y, x] == pytest.approx(want.loc[y, x], rel=1e-12)
        figure = sweep_plots.heatmap_figure(table, metric, "steps", "erk_guid")
        np.testing.assert_allclose(np.asarray(figure.data[0].z, dtype=float), got.to_numpy())
        assert "mean over erk_guid" not in figure.layout.title.text and "mean over stein, seed, eig" in figure.layout.title.text


def test_heatmap_names_bad_inputs():
    table = made_up()
    for kwargs, name in ((dict(metric="swdd", x="steps", y="seed"), "metric"), (dict(metric="swd", x="stepz", y="seed"), "x"),
                         (dict(metric="swd", x="steps", y="erk"), "y"), (dict(metric="model", x="steps", y="seed"), "metric")):
        with pytest.raises(ParameterError) as err:
            sweep_plots.heatmap_figure(table, **kwargs)
        assert err.value.parameter == name and repr(kwargs[name]) in str(err.value)


def independent_front(table: pd.DataFrame, metric: str, higher: bool) -> dict[tuple[str, int], tuple[float, bool]]:
    """Per (method, nfe): the mean of ok rows over seeds, and whether it beats every point of fewer NFE."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in table.to_dict("records"):
        if row["status"] != "ok" or not math.isfinite(row[metric]):
            continue
        parts = [f"erk_guid={row['erk_guid']:g}"] if pd.notna(row["erk_guid"]) else []
        parts += ["stein"] if row["stein"] else []
        groups.setdefault((", ".join(parts) or "baseline", row["nfe"]), []).append(row[metric])
    means = {key: sum(v) / len(v) for key, v in groups.items()}
    out = {}
    for (method, nfe), value in means.items():
        earlier = [v for (m, n), v in means.items() if m == method and n < nfe]
        out[(method, nfe)] = (value, all((value > v) if higher else (value < v) for v in earlier))
    return out


def test_pareto_front_matches_an_independent_computation():
    table = made_up()
    for metric, higher in (("swd", False), ("recall", True)):
        got = sweep_plots.pareto_table(table, metric)
        want = independent_front(table, metric, higher)
        assert len(got) == len(want) == 6 * 3
        for row in got.to_dict("records"):
            value, front = want[(row["method"], row["nfe"])]
            assert row[metric] == pytest.approx(value, rel=1e-12) and row["front"] == front
        assert got["front"].any() and not got["front"].all()
        figure = sweep_plots.pareto_figure(table, metric)
        assert sorted(t.name for t in figure.data) == sorted(set(got["method"]))


def test_shipped_folder_through_the_tab_handler():
    table = sweep_plots.load_results(SHIPPED)
    assert set(table["status"]) == {"ok"} and {"swd", "recall", "nfe", "cell_id"} <= set(table.columns)
    assert sorted(table["steps"].unique()) == [4, 6, 8, 16] and sorted(table["seed"].unique()) == [0, 1]
    metric, x, y = defaults(table)
    assert (metric, x, y) == ("swd", "steps", "erk_guid")
    heat, front, points, note = sweep_figures(SHIPPED, metric, x, y)
    want = table.assign(erk_guid=table["erk_guid"].astype(object).where(table["erk_guid"].notna(), "off"))
    want = want.pivot_table(index="erk_guid", columns="steps", values="swd", aggfunc="mean")
    np.testing.assert_allclose(np.asarray(heat.data[0].z, dtype=float), want.to_numpy(), rtol=1e-12)
    # the 12 methods of benchmarks/findings_sweep.yaml (11 README rows and the SteinDiff [1, 1] control), 4 NFE each
    assert len(front.data) == 12 and len(points) == 48
    assert "baseline" in set(points["method"]) and f"**{len(table)}** cells" in note
    for name, args in (("metric", ("nll2", x, y)), ("y", (metric, x, "w_stiff")), ("x", (metric, None, y))):
        with pytest.raises(ParameterError) as err:
            sweep_figures(SHIPPED, *args)
        assert err.value.parameter == name
    with pytest.raises(ParameterError) as err:
        sweep_folder("/nonexistent/sweep")
    assert err.value.parameter == "sweep"


def test_plot_sweep_cli(tmp_path, capsys, monkeypatch):
    made_up().to_csv(tmp_path / "results.csv", index=False)
    assert main(["plot-sweep", str(tmp_path), "--metric", "recall", "--x", "steps", "--y", "stein", "--no-png"]) == 0
    html = (tmp_path / "heatmap-recall.html").read_text()
    assert "plotly" in html and (tmp_path / "pareto-recall.html").is_file()
    assert main(["plot-sweep", str(tmp_path), "--metric", "sw"]) == 2
    assert "metric" in capsys.readouterr().err
    assert main(["plot-sweep", str(tmp_path / "nothing"), "--metric", "swd"]) == 2
    assert "dir" in capsys.readouterr().err
    monkeypatch.setenv("STIFFVIZ_CHROMIUM", str(tmp_path / "no-chromium"))
    assert main(["plot-sweep", str(tmp_path), "--metric", "swd", "--x", "steps", "--y", "erk_guid"]) == 3
    err = capsys.readouterr().err
    assert "Chromium" in err and "no-chromium" in err and (tmp_path / "heatmap-swd.html").is_file()


def test_plot_sweep_png(tmp_path):
    """The PNGs, rendered in headless Chromium (as CI's browser test, a failure when it is missing)."""
    problem = None
    try:
        sweep_plots.chromium()
    except RuntimeError as err:
        problem = str(err)
    assert problem is None, problem
    written = sweep_plots.plot_sweep(SHIPPED, "recall", "steps", "stein_gamma_max", out=tmp_path)
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert sorted(p.name for p in written) == ["heatmap-recall.html", "heatmap-recall.png", "pareto-recall.html",
                                               "pareto-recall.png"]  # fmt: skip


def test_findings_spec_is_the_readme_grid():
    """benchmarks/findings_sweep.yaml expands to each findings row (presets.FINDINGS and the
    SteinDiff [1, 1] control) once at each of FINDINGS_STEPS, on FINDINGS_BASE's settings."""
    from benchmarks.findings import SPEC, label_of, rows_for, spec_cells
    from stiffviz.app.presets import FINDINGS_BASE, FINDINGS_STEPS

    cells = spec_cells(FINDINGS_BASE["batch"], FINDINGS_BASE["seed"], list(FINDINGS_STEPS))
    rows = rows_for()
    got = sorted((label_of(cell, rows), cell["steps"]) for cell in cells)
    assert got == sorted((label, steps) for label in rows for steps in FINDINGS_STEPS)
    for cell in cells:
        label = label_of(cell, rows)
        assert all(cell[k] == v for k, v in (FINDINGS_BASE | rows[label]).items()), label
    from stiffviz.sweep import make_cells

    assert make_cells(str(SPEC)) == cells  # the spec file as stiffviz.sweep(spec=…) and the CLI read it
    with pytest.raises(ParameterError) as err:  # a typo in one grid of a list spec is named
        make_cells([{"steps": [4]}, {"steps": [4], "erk_giud": [1.0]}])
    assert err.value.parameter == "erk_giud"
