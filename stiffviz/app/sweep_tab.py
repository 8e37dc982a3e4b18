"""The app's "Sweeps" tab: a sweep folder's heatmap and quality–NFE front (``sweep_plots``).

The folder is the server's ``--sweep DIR`` (``app.py``), or the findings sweep shipped with
the repository (``assets/sweep-findings``: the README's findings grid of
``benchmarks/findings_sweep.yaml`` at 512 samples and seeds 0 and 1). The page only picks
the measure and the two options; it never names a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..errors import ParameterError
from .sweep_plots import NFE_OPTIONS, heatmap_figure, load_results, measures, options, pareto_figure, pareto_table

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "sweep-findings"


def sweep_folder(folder: str | Path | None) -> Path:
    """The folder the tab shows: ``folder`` (checked now, naming ``sweep``) or the shipped one."""
    if folder is None:
        return SHIPPED
    path = Path(folder)
    if not (path / "results.parquet").is_file() and not (path / "results.csv").is_file():
        raise ParameterError("sweep", f"must be a sweep folder with results.parquet or results.csv, got {folder}")
    return path


def varying(table: pd.DataFrame) -> list[str]:
    """The options that take more than one value in the sweep (the heatmap's useful axes)."""
    return [c for c in options(table) if table[c].astype(str).nunique(dropna=False) > 1]


def defaults(table: pd.DataFrame) -> tuple[str, str, str]:
    """The measure (swd when there), x (steps when it varies) and y (erk_guid, else another varying option)."""
    names = measures(table)
    metric = "swd" if "swd" in names else names[0]
    axes = varying(table) or options(table)
    x = "steps" if "steps" in axes else axes[0]
    rest = [c for c in axes if c != x and c not in NFE_OPTIONS] or [c for c in axes if c != x] or [x]
    y = "erk_guid" if "erk_guid" in rest else rest[0]
    return metric, x, y


def sweep_figures(folder: str | Path, metric: Any, x: Any, y: Any) -> tuple[Any, Any, pd.DataFrame, str]:
    """The tab's handler: heatmap, front figure, the front's table and a note, for the sweep at
    ``folder``; a bad measure or option name is a :class:`ParameterError` naming it."""
    table = load_results(folder)
    for name, value in (("metric", metric), ("x", x), ("y", y)):
        if not isinstance(value, str):
            raise ParameterError(name, f"must be a column name, got {value!r}")
    heat, front = heatmap_figure(table, metric, x, y), pareto_figure(table, metric)
    points = pareto_table(table, metric)
    status = table["status"].value_counts().to_dict() if "status" in table.columns else {}
    note = (f"**{len(table)}** cells (" + ", ".join(f"{n} {s}" for s, n in status.items()) + f") from `{Path(folder).name}`; "
            "only ok cells are drawn.")  # fmt: skip
    return heat, front, points, note


def _shown(folder: Path):
    def handler(metric: Any, x: Any, y: Any) -> tuple:
        try:
            return sweep_figures(folder, metric, x, y)
        except ParameterError as err:
            raise gr.Error(str(err)) from None

    return handler


def build_sweep_tab(folder: str | Path | None = None) -> None:
    """The tab's contents, inside an open ``gr.Tab``: the measure and axes, the two figures, the front's table."""
    path = sweep_folder(folder)
    table = load_results(path)
    metric, x, y = defaults(table)
    axes = options(table)
    gr.Markdown("A sweep's results (`python -m stiffviz sweep`, see the README's *Sweeps*): the measure over two "
                "options, averaged over every other option, and the measure against NFE per method.")  # fmt: skip
    with gr.Row():
        metric_box = gr.Dropdown(measures(table), value=metric, label="measure", elem_id="sweep-metric")
        x_box = gr.Dropdown(axes, value=x, label="heatmap x", elem_id="sweep-x")
        y_box = gr.Dropdown(axes, value=y, label="heatmap y", elem_id="sweep-y")
    heat, front, points, note = sweep_figures(path, metric, x, y)
    note_md = gr.Markdown(note, elem_id="sweep-note")
    with gr.Row():
        heat_plot = gr.Plot(heat, label="heatmap", elem_id="sweep-heatmap")
        front_plot = gr.Plot(front, label="quality against NFE", elem_id="sweep-front")
    front_table = gr.Dataframe(points, label="per method and NFE (front: not beaten at NFE as low)",
                               interactive=False, elem_id="sweep-table")  # fmt: skip
    gr.on([metric_box.change, x_box.change, y_box.change], _shown(path), [metric_box, x_box, y_box],
          [heat_plot, front_plot, front_table, note_md], api_name=False)  # fmt: skip
