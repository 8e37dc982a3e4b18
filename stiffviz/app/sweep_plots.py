"""Pictures of a sweep's results table (``stiffviz.sweep``, ``python -m stiffviz plot-sweep DIR``).

* :func:`heatmap_figure`: a quality measure over two chosen options. Only cells with status
  "ok" count; every other option (seeds, methods, …) is **averaged** over: each heatmap cell is
  the mean of the measure over all ok rows with that (x, y) pair (:func:`heatmap_table`), and
  its hover text gives how many rows it averages.
* :func:`pareto_figure`: measure against NFE per method. A method is one combination of the
  options that vary across the sweep other than ``steps``, ``seed`` and ``batch`` (or the
  table's own ``method`` column when it has one). Rows of the same method and NFE are averaged
  over seeds first; a point is on its method's front when no other point of the same method
  has NFE as low or lower and a better measure (:func:`pareto_table`). Front points are ringed.

Measures where higher is better (``HIGHER_BETTER``) are handled as such; all others are
lower-is-better (SWD, NLL, FD). :func:`write_png` renders a figure in headless Chromium (the
route ``.ci/pareto_png.py`` uses), since Plotly's own PNG export needs Kaleido.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ..config import SampleConfig
from ..errors import ParameterError
from .plots import COLOURS, TEMPLATE

HIGHER_BETTER = frozenset({"precision", "recall", "accuracy", "coverage", "density"})
# Columns a results table carries that are not options of the run (contract of stiffviz.sweep's rows).
NOT_OPTIONS = frozenset({"cell_id", "status", "message", "nfe", "wall_time_s", "method"})
NFE_OPTIONS = ("steps", "seed", "batch")  # what moves a method along its NFE axis, or repeats it
# Options that only record diagnostics (the samples do not move) or place the run: not part of a method.
RECORD_ONLY = ("diagnostics", "eig", "eig_method", "eig_iterations", "lanczos_iterations", "lte_ref",
               "lte_ref_substeps", "lipschitz", "lipschitz_iterations", "stein_oracle", "device")  # fmt: skip
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def load_results(folder: str | os.PathLike) -> pd.DataFrame:
    """The results table of a sweep folder: ``results.parquet``, or ``results.csv`` without pyarrow."""
    folder = Path(folder)
    parquet, csv = folder / "results.parquet", folder / "results.csv"
    if not parquet.is_file() and not csv.is_file():
        raise ParameterError("dir", f"must be a sweep folder with results.parquet or results.csv, got {folder}")
    if parquet.is_file():
        try:
            return pd.read_parquet(parquet)
        except ImportError:
            if not csv.is_file():
                raise ParameterError("dir", "reading results.parquet needs pyarrow: pip install stiffviz[sweep]")
    return pd.read_csv(csv)


def measures(table: pd.DataFrame) -> list[str]:
    """The numeric columns of ``table`` that are results, not options: quality measures and summary keys."""
    return [c for c in table.columns if c not in NOT_OPTIONS and c not in options(table)
            and pd.api.types.is_numeric_dtype(table[c])]  # fmt: skip


def options(table: pd.DataFrame) -> list[str]:
    """The option columns of ``table``: those before ``cell_id`` (the row layout of ``run_cell``),
    or, without ``cell_id``, every column that is not a known result."""
    columns = list(table.columns)
    if "cell_id" in columns:
        return [c for c in columns[: columns.index("cell_id")] if c not in NOT_OPTIONS]
    return [c for c in columns if c not in NOT_OPTIONS]


def _check(table: pd.DataFrame, metric: str, names: dict[str, str]) -> None:
    """ParameterError naming ``metric`` or an option (``names``: parameter name -> column) not in ``table``."""
    if metric not in table.columns or not pd.api.types.is_numeric_dtype(table[metric]):
        raise ParameterError("metric", f"must be a numeric column of the results ({', '.join(measures(table))}), "
                                       f"got {metric!r}")  # fmt: skip
    for parameter, column in names.items():
        if column not in table.columns:
            raise ParameterError(parameter, f"must be an option of the sweep ({', '.join(options(table))}), got {column!r}")


def _ok(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    ok = table[table["status"] == "ok"] if "status" in table.columns else table
    return ok[ok[metric].map(lambda v: v is not None and math.isfinite(float(v)))]


def heatmap_table(table: pd.DataFrame, metric: str, x: str, y: str) -> pd.DataFrame:
    """Mean of ``metric`` over the ok rows of each (``y``, ``x``) pair: index ``y``, columns ``x``,
    NaN where no ok row has the pair. Missing option values (an option off) count as their own value."""
    _check(table, metric, {"x": x, "y": y})
    ok = _ok(table, metric).copy()
    ok[[x, y]] = ok[[x, y]].astype(object).where(ok[[x, y]].notna(), "off")
    sums: dict[tuple, list[float]] = {}
    for xv, yv, value in zip(ok[x], ok[y], ok[metric]):
        sums.setdefault((yv, xv), []).append(float(value))
    xs = sorted(set(table[x].astype(object).where(table[x].notna(), "off")), key=_order)
    ys = sorted(set(table[y].astype(object).where(table[y].notna(), "off")), key=_order)
    grid = [[sum(sums[(yv, xv)]) / len(sums[(yv, xv)]) if (yv, xv) in sums else float("nan") for xv in xs] for yv in ys]
    return pd.DataFrame(grid, index=pd.Index(ys, name=y), columns=pd.Index(xs, name=x))


def _order(value) -> tuple:
    """Numbers first, in order, then the rest as text ("off" and names)."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def method_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's method: the ``method`` column when there is one, else the values of the options
    that vary across the sweep, other than ``steps``, ``seed``, ``batch`` and the record-only
    diagnostics (``RECORD_ONLY``), each shown where it is set and not SampleConfig's default:
    "erk_guid=0.5, erk_con=0.5", "stein, stein_gamma_max=1.5", or "baseline" when none is."""
    if "method" in table.columns:
        return table["method"].astype(str)
    varying = [c for c in options(table) if c not in NFE_OPTIONS and c not in RECORD_ONLY
               and table[c].astype(str).nunique(dropna=False) > 1]  # fmt: skip

    defaults = {f.name: f.default for f in fields(SampleConfig)}

    def shown(column: str, value) -> bool:  # set, and not SampleConfig's default
        return pd.notna(value) and value is not False and not (column in defaults and value == defaults[column])

    def label(row) -> str:
        parts = [c if row[c] is True else f"{c}={row[c]:g}" if isinstance(row[c], float) else f"{c}={row[c]}"
                 for c in varying if shown(c, row[c])]  # fmt: skip
        return ", ".join(parts) or "baseline"

    return table.apply(label, axis=1) if len(table) else pd.Series([], dtype=str)


def pareto_table(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per method and NFE, the mean of ``metric`` over the ok rows (seeds), with ``front`` True for
    the points no other point of the same method beats: NFE ≤ and a strictly better measure,
    or the same measure at strictly fewer NFE. Sorted by method, then NFE."""
    _check(table, metric, {})
    if "nfe" not in table.columns:
        raise ParameterError("dir", "the results have no nfe column: not a stiffviz sweep table")
    ok = _ok(table, metric)
    points = (ok.assign(method=method_labels(ok)).groupby(["method", "nfe"], as_index=False)[metric].mean()
              .sort_values(["method", "nfe"], ignore_index=True))  # fmt: skip
    sign = -1.0 if metric in HIGHER_BETTER else 1.0
    front = []
    for method, nfe, value in zip(points["method"], points["nfe"], points[metric]):
        mine = points[points["method"] == method]
        beaten = ((mine["nfe"] <= nfe) & (sign * mine[metric] < sign * value)) | \
                 ((mine["nfe"] < nfe) & (mine[metric] == value))  # fmt: skip
        front.append(not beaten.any())
    return points.assign(front=front)


def heatmap_figure(table: pd.DataFrame, metric: str, x: str, y: str) -> go.Figure:
    """The heatmap of :func:`heatmap_table`, the averaging rule in its title."""
    grid = heatmap_table(table, metric, x, y)
    others = [c for c in options(table) if c not in (x, y) and table[c].astype(str).nunique(dropna=False) > 1]
    rule = f"mean over {', '.join(others)}" if others else "one cell each"
    better = "↑" if metric in HIGHER_BETTER else "↓"
    text = [[("-" if math.isnan(v) else f"{v:.4g}") for v in row] for row in grid.to_numpy()]
    fig = go.Figure(go.Heatmap(z=grid.to_numpy(), x=[str(v) for v in grid.columns], y=[str(v) for v in grid.index],
                               text=text, texttemplate="%{text}", colorscale="Viridis",
                               reversescale=metric not in HIGHER_BETTER, colorbar=dict(title=f"{metric} {better}"),
                               hovertemplate=f"{x} %{{x}}<br>{y} %{{y}}<br>{metric} %{{z:.4g}}<extra></extra>"))  # fmt: skip
    fig.update_layout(template=TEMPLATE, width=760, height=520, xaxis_title=x, yaxis_title=y,
                      xaxis_type="category", yaxis_type="category",
                      title=f"{metric} {better} over {x} × {y} (ok cells; {rule})")  # fmt: skip
    return fig


def pareto_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    """``metric`` against NFE, one line per method (:func:`pareto_table`); front points ringed."""
    points = pareto_table(table, metric)
    fig = go.Figure()
    groups = list(points.groupby("method", sort=False))
    palette = COLOURS if len(groups) <= len(COLOURS) else qualitative.Dark24  # one colour per method
    for k, (method, mine) in enumerate(groups):
        colour = palette[k % len(palette)]
        fig.add_trace(go.Scatter(x=mine["nfe"], y=mine[metric], mode="lines+markers", name=method,
                                 line=dict(color=colour, dash="dot"),
                                 marker=dict(size=[13 if f else 7 for f in mine["front"]], color=colour,
                                             line=dict(color="black", width=[2 if f else 0 for f in mine["front"]]))))  # fmt: skip
    better = "↑" if metric in HIGHER_BETTER else "↓"
    fig.update_layout(template=TEMPLATE, width=900, height=520, xaxis_title="NFE", yaxis_title=f"{metric} {better}",
                      title=f"{metric} against NFE per method (mean over seeds; ringed: on the method's front)",
                      legend=dict(font=dict(size=10)))  # fmt: skip
    return fig


def chromium() -> str:
    """The Chromium executable (``STIFFVIZ_CHROMIUM``, /usr/bin/chromium or ``chromium`` on PATH) and
    Playwright, or RuntimeError saying what to install."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"PNG export needs Playwright and Chromium ({err}): pip install playwright and "
                           "install Chromium (Debian: apt-get install chromium), or pass --no-png") from None  # fmt: skip
    chosen = os.environ.get("STIFFVIZ_CHROMIUM")
    for path in [chosen] if chosen else ["/usr/bin/chromium", shutil.which("chromium")]:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RuntimeError("PNG export needs headless Chromium and found none "
                       f"({'STIFFVIZ_CHROMIUM=' + chosen if chosen else 'no /usr/bin/chromium or chromium on PATH'}): "
                       "install it (Debian: apt-get install chromium) or pass --no-png")  # fmt: skip


def write_png(figures: dict[str, go.Figure]) -> None:
    """Render each figure (path -> figure) as a PNG in headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for path, figure in figures.items():
                page_file = Path(folder) / "figure.html"
                page_file.write_text(figure.to_html(include_plotlyjs=True, full_html=True, config={"staticPlot": True}))
                page = browser.new_page(viewport={"width": figure.layout.width + 40, "height": figure.layout.height + 40})
                page.goto(page_file.as_uri())
                page.wait_for_selector(".main-svg")
                page.locator(".plotly-graph-div").screenshot(path=str(path))
                page.close()
        finally:
            browser.close()


def plot_sweep(folder: str | os.PathLike, metric: str, x: str, y: str, out: str | os.PathLike | None = None,
               png: bool = True) -> list[Path]:
    """Write ``heatmap-METRIC.html`` and ``pareto-METRIC.html`` (and their PNGs) into ``out``
    (default: the sweep folder); returns the paths written. Names are checked before anything is drawn."""
    table = load_results(folder)
    heat, front = heatmap_figure(table, metric, x, y), pareto_figure(table, metric)
    out = Path(out or folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in (("heatmap", heat), ("pareto", front)):
        path = out / f"{name}-{metric}.html"
        figure.write_html(path, include_plotlyjs=True)  # self-contained: opens offline
        written.append(path)
    if png:
        chromium()  # says what is missing before the browser starts
        pngs = {out / f"{name}-{metric}.png": fig for name, fig in (("heatmap", heat), ("pareto", front))}
        write_png(pngs)
        written += list(pngs)
    return written
