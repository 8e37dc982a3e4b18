"""The quality–NFE front figure of ``benchmarks/pareto.py`` (docs/math.md §13).

One column per model: sample quality against NFE for each schedule, SWD (log scale, lower is
better) above and k-NN recall (higher is better) below. A point is on the front when no other
point of its model has as few NFE or fewer and a lower SWD; front points are drawn larger,
ringed in black. The figure reads the numbers the benchmark saved (``assets/pareto.json``);
``.ci/pareto_png.py`` renders it for the README.
"""

from __future__ import annotations

from typing import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plots import COLOURS, TEMPLATE

LABELS = {"karras": "Karras ρ = 7", "logsnr": "log-SNR uniform", "ays-svd": "AYS (SVD list, transplanted)",
          "erk-guid": "ERK-Guid on Karras", "lte": "prescribed: lte rule", "stability": "prescribed: stability rule"}  # fmt: skip
ROWS = (("swd", "SWD ↓", "log"), ("recall", "recall ↑", "linear"))


def pareto_figure(data: Mapping) -> go.Figure:
    """The front figure from the benchmark's saved numbers: ``data["models"][name]["rows"]``, each
    row with ``schedule``, ``nfe``, ``swd``, ``recall`` and ``front``; schedules in ``data["schedules"]``."""
    models = list(data["models"])
    fig = make_subplots(len(ROWS), len(models), shared_xaxes=True, vertical_spacing=0.08, horizontal_spacing=0.06,
                        subplot_titles=[f"{name} ({data['models'][name]['batch']} samples)" for name in models])  # fmt: skip
    for column, name in enumerate(models, start=1):
        rows = [r for r in data["models"][name]["rows"] if r["status"] == "ok"]
        for k, schedule in enumerate(data["schedules"]):
            mine = sorted((r for r in rows if r["schedule"] == schedule), key=lambda r: r["nfe"])
            colour = COLOURS[k % len(COLOURS)]
            for row, (key, _, _) in enumerate(ROWS, start=1):
                front = [r["front"] and key == "swd" for r in mine]
                fig.add_trace(go.Scatter(
                    x=[r["nfe"] for r in mine], y=[r[key] for r in mine], mode="lines+markers",
                    name=LABELS.get(schedule, schedule), legendgroup=schedule, showlegend=column == 1 and row == 1,
                    line=dict(color=colour, dash="solid" if schedule in ("lte", "stability") else "dot"),
                    marker=dict(size=[13 if f else 7 for f in front], color=colour,
                                line=dict(color="black", width=[2 if f else 0 for f in front])),
                ), row=row, col=column)  # fmt: skip
        for row, (_, title, scale) in enumerate(ROWS, start=1):
            fig.update_yaxes(type=scale, row=row, col=column, title_text=title if column == 1 else None)
        fig.update_xaxes(title_text="NFE (Heun, 2N − 1)", row=len(ROWS), col=column)
    fig.update_layout(template=TEMPLATE, width=1200, height=640, margin=dict(l=60, r=20, t=60, b=50),
                      title="Quality against NFE: prescribed schedules and hand-made ones (ringed: on the SWD front)",
                      legend=dict(orientation="h", y=-0.12))  # fmt: skip
    return fig
