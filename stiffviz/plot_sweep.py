"""``python -m stiffviz plot-sweep DIR --metric swd --x steps --y erk_guid``: a sweep's pictures.

Writes ``heatmap-METRIC.html`` and ``pareto-METRIC.html`` (Plotly) and their PNGs (rendered in
headless Chromium) into DIR or ``--out``. The drawing code is ``stiffviz.app.sweep_plots``,
imported only when the command runs (the engine imports no Plotly).
Exit status: 0 when everything was written, 2 for bad input, 3 when the PNGs could not be
rendered (no Chromium or Playwright; the HTML files are written).
"""

from __future__ import annotations

import argparse
import sys


def add_plot_sweep_parser(commands) -> None:
    """The ``plot-sweep`` subcommand on ``commands`` (an argparse subparsers object)."""
    p = commands.add_parser("plot-sweep", help="heatmap and quality–NFE front of a sweep folder, as HTML and PNG",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("dir", help="sweep folder (results.parquet or results.csv, as `stiffviz sweep --out` writes)")
    p.add_argument("--metric", default="swd", help="the measure to draw: a numeric column of the results, e.g. swd, recall")
    p.add_argument("--x", default="steps", help="option on the heatmap's x axis")
    p.add_argument("--y", default="erk_guid", help="option on the heatmap's y axis")
    p.add_argument("--out", default=None, help="folder for the figures (default: DIR)")
    p.add_argument("--no-png", action="store_true", help="write the HTML files only (no Chromium needed)")


def run_plot_sweep(args: argparse.Namespace) -> int:
    """Draw and write the figures; print each path written."""
    try:
        from .app.sweep_plots import plot_sweep  # lazily: Plotly is the app's dependency
    except ImportError as err:
        print(f"error: plot-sweep needs Plotly and pandas ({err}): pip install stiffviz[app,sweep]", file=sys.stderr)
        return 2

    try:
        written = plot_sweep(args.dir, args.metric, args.x, args.y, args.out, png=not args.no_png)
    except RuntimeError as err:  # no Chromium / Playwright: the HTML is there, the PNG is not
        print(f"error: {err} (the HTML files are written)", file=sys.stderr)
        return 3
    for path in written:
        print(path)
    return 0
