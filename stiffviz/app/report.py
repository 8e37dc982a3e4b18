"""Export of finished runs: trace (JSON, CSV), final samples (.npy, PNG grid) and one HTML report.

A run is a label (e.g. "guidance on") mapped to anything with ``trace``, ``samples`` and
``quality`` attributes: a :class:`RunResult`, or the app's ``live.RunRecord``. The HTML report
is self-contained: plotly.js is inlined once, images are PNG data URIs, so it opens offline.
It shows the settings, how each run ended, a summary table, every chart of
:data:`stiffviz.app.plots.CHARTS` that has data (runs overlaid), each run's stability region and
its final samples; for a run with SteinDiff and kept states (the app's runs), the contractivity
figure of its step with the largest raw γ (:mod:`stiffviz.app.contractivity`, which computes it);
for a 2-D model with an exact Jacobian, the stiffness map at the σ of the first run's stiffest step
(:mod:`stiffviz.app.stiffness_view`). Nothing else here computes mathematics; the figures come from
``plots`` and ``render``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from . import contractivity
from .plots import CHARTS, TEMPLATE, stability_figure, trace_figure
from .render import image_grid, particle_figure
from .stiffness_view import LOG_SIGMA, stiffness_view
from ..trace import Trace

SUMMARY_HEADERS = {"nfe": "NFE", "steps_done": "steps done", "wall_time_s": "wall time (s)", "median_stiffness": "median ρ̂",
                   "median_stiffness_z": "median z", "median_lte": "median ‖e‖"}  # fmt: skip
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
tr.differs td { background: #fff6d5; }
.diverged { color: #b00020; }
img.samples { image-rendering: pixelated; max-width: 100%; }
"""


class RunLike(Protocol):
    """What the export needs of a run (``live.RunRecord`` has these too)."""

    trace: Trace
    samples: torch.Tensor | None
    quality: Mapping[str, float]


@dataclass
class RunResult:
    """One finished run: its trace, its final samples (B, *shape) and optional quality measures."""

    trace: Trace
    samples: torch.Tensor | None
    quality: Mapping[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------- file names
def slugify(text: str, limit: int = 60) -> str:
    """Lower-case letters and digits joined by single hyphens (at most ``limit`` characters)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit].strip("-")


def report_stem(config: Mapping) -> str:
    """'stiffviz-MODEL-SOLVER-Nsteps-seedK' from a trace's config."""
    parts = ("stiffviz", config.get("model", "model"), config.get("solver", "solver"),
             f"{config.get('steps', '')}steps", f"seed{config.get('seed', '')}")  # fmt: skip
    return "-".join(slugify(p) for p in parts)


def run_stems(runs: Mapping[str, RunLike]) -> dict[str, str]:
    """A distinct file stem per run label: its config's stem and the slugified label."""
    stems: dict[str, str] = {}
    for label, run in runs.items():
        stem = f"{report_stem(run.trace.config)}-{slugify(label) or 'run'}"
        unique, n = stem, 2
        while unique in stems.values():
            unique, n = f"{stem}-{n}", n + 1
        stems[label] = unique
    return stems


# ----------------------------------------------------------------- files
def png_bytes(picture: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def _is_images(samples: torch.Tensor | None) -> bool:
    return samples is not None and samples.ndim == 4


def pictures(samples: torch.Tensor, model=None) -> torch.Tensor:
    """What the PNG grid shows: the samples themselves, or a latent model's VAE decodes (RGB in [−1, 1])."""
    if getattr(model, "latent", False):
        with torch.no_grad():
            return model.decode(samples.to(getattr(model, "device", samples.device)), fast=False).cpu()
    return samples


def _write_run(run: RunLike, stem: str, directory: Path, model=None) -> list[Path]:
    """Trace as JSON and CSV; samples as .npy (latents for a latent model) and, for images, a PNG
    grid (decoded by the VAE for a latent model)."""
    paths = [directory / f"{stem}.trace.json", directory / f"{stem}.trace.csv"]
    run.trace.to_json(paths[0])
    run.trace.to_csv(paths[1])
    if run.samples is not None:
        paths.append(directory / f"{stem}.samples.npy")
        np.save(paths[-1], run.samples.detach().cpu().numpy(), allow_pickle=False)
    if _is_images(run.samples):
        paths.append(directory / f"{stem}.samples.png")
        paths[-1].write_bytes(png_bytes(image_grid(pictures(run.samples, model))))
    return paths


def write_exports(runs: Mapping[str, RunLike], directory: str | Path, model=None, x_axis: str = "step") -> list[Path]:
    """Write every run's files and one HTML report for all runs into ``directory`` (created if needed).

    ``model`` (optional) draws 2-D samples over its density and decodes a latent model's
    samples for the pictures. Returns the written paths, the report last.
    """
    if not runs:
        raise ValueError("runs must name at least one run")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [p for label, stem in run_stems(runs).items() for p in _write_run(runs[label], stem, directory, model)]
    report = directory / f"{report_stem(next(iter(runs.values())).trace.config)}.report.html"
    report.write_text(html_report(runs, model, x_axis), encoding="utf-8")
    return paths + [report]


# ----------------------------------------------------------------- HTML pieces
def _cell(value) -> str:
    return f"<td>{html.escape('—' if value is None else str(value))}</td>"


def _rounded(value):
    """Floats to 4 significant digits for the summary; anything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else value


def _table(header: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f'<tr class="{c}">' + "".join(_cell(v) for v in row) + "</tr>"
                   for row, c in zip(rows, classes or [""] * len(rows)))  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def settings_table(runs: Mapping[str, RunLike]) -> str:
    """Every config key (rows) of every run (columns); rows where the runs differ are marked."""
    configs = [run.trace.config for run in runs.values()]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    rows = [[k, *(c.get(k) for c in configs)] for k in keys]
    classes = ["differs" if len({repr(v) for v in row[1:]}) > 1 else "" for row in rows]
    return _table(["setting", *runs], rows, classes)


def status_lines(runs: Mapping[str, RunLike]) -> str:
    """How each run ended; a diverged run says where and why."""
    lines = []
    for label, run in runs.items():
        trace = run.trace
        text = trace.status + (f": {trace.message}" if trace.message else "")
        lines.append(f'<li class="{html.escape(trace.status)}"><b>{html.escape(label)}</b>: {html.escape(text)}</li>')
    return f"<ul>{''.join(lines)}</ul>"


def summary_table(runs: Mapping[str, RunLike]) -> str:
    """One row per run: status, the trace's summary (NFE, wall time, medians) and quality measures."""
    keys = list(dict.fromkeys([k for run in runs.values() for k in run.trace.summary]
                              + [k for run in runs.values() for k in run.quality]))  # fmt: skip
    rows = [[label, run.trace.status, *(_rounded(run.quality.get(k, run.trace.summary.get(k))) for k in keys)]
            for label, run in runs.items()]  # fmt: skip
    return _table(["run", "status", *(SUMMARY_HEADERS.get(k, k) for k in keys)], rows)


def _final_sigma(trace: Trace) -> float:
    """σ of the returned state: σ_N for a finished run, σ of the failing step for a diverged one."""
    if not trace.steps:
        return float(trace.sigmas[0])
    last = trace.steps[-1]
    return float(last["sigma"] if trace.status == "diverged" else last["sigma_next"])


def _scatter_figure(samples: torch.Tensor) -> go.Figure:
    points = samples.detach().to("cpu", torch.float64).numpy()
    fig = go.Figure(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", marker=dict(size=3, color="#d62728")))
    fig.update_layout(template=TEMPLATE, height=420, yaxis=dict(scaleanchor="x"),
                      margin=dict(l=30, r=10, t=40, b=30))  # fmt: skip
    return fig


def samples_part(label: str, run: RunLike, model=None) -> str | go.Figure:
    """The final samples: a PNG grid for images, the particle view (or a scatter) for 2-D points."""
    samples = run.samples
    if samples is None:
        return "<p>No final samples.</p>"
    if _is_images(samples):
        data = base64.b64encode(png_bytes(image_grid(pictures(samples, model)))).decode("ascii")
        return f'<img class="samples" alt="final samples of {html.escape(label)}" src="data:image/png;base64,{data}">'
    if samples.ndim != 2 or samples.shape[1] != 2:
        return f"<p>Samples of shape {tuple(samples.shape)}: see the .npy file.</p>"
    if model is not None and hasattr(model, "log_prob") and hasattr(model, "sample_reference"):
        fig = particle_figure(model, [samples], _final_sigma(run.trace), run.trace.config.get("cls"))
    else:
        fig = _scatter_figure(samples)
    return fig.update_layout(title=f"final samples · {label}")


def _stability_part(label: str, trace: Trace) -> go.Figure:
    fig = stability_figure(trace.config["solver"], trace)
    return fig.update_layout(title=f"{fig.layout.title.text} · {label}")


def _render(parts: list[str | go.Figure]) -> str:
    """HTML of the parts, with plotly.js inlined in the first figure only."""
    out, plotly_included = [], False
    for part in parts:
        if isinstance(part, go.Figure):
            part = part.to_html(include_plotlyjs=not plotly_included, full_html=False, config={"displaylogo": False})
            plotly_included = True
        out.append(part)
    return "\n".join(out)


def stiffest_sigma(trace: Trace) -> float | None:
    """σ_i of the step with the largest median stiffness index (None when no step recorded one)."""
    index = [(float(np.nanmedian(step["stiffness_index"])), step["sigma"]) for step in trace.steps
             if step.get("stiffness_index") is not None and np.isfinite(step["stiffness_index"]).any()]  # fmt: skip
    return max(index)[1] if index else None


def stiffness_part(trace: Trace, model) -> list[str | go.Figure]:
    """The stiffness map and the branch segments at the σ of ``trace``'s stiffest step (the app's
    default σ without one), for a 2-D model with an exact Jacobian; nothing otherwise."""
    if model is None:
        return []
    sigma = stiffest_sigma(trace)
    where = "the run's step with the largest median stiffness index" if sigma is not None else "the app's default σ"
    sigma = sigma if sigma is not None else 10.0 ** LOG_SIGMA[2]
    map_fig, segment_fig, note = stiffness_view(model, sigma, trace.config.get("cls"))
    if map_fig is None:
        return []
    return [f"<h2>Stiffness map at σ = {sigma:.3g} ({html.escape(where)})</h2>",
            f"<p>{html.escape(note).replace('**', '')}</p>", map_fig, segment_fig]  # fmt: skip


def html_report(runs: Mapping[str, RunLike], model=None, x_axis: str = "step") -> str:
    """A self-contained HTML report of ``runs`` (label → run); see the module docstring."""
    if not runs:
        raise ValueError("runs must name at least one run")
    traces = {label: run.trace for label, run in runs.items()}
    config = next(iter(traces.values())).config
    title = (f"stiffviz report: {config.get('model')} · {config.get('solver')} · {config.get('steps')} steps · "
             f"seed {config.get('seed')}")  # fmt: skip
    charts = [c for c in CHARTS if any(f in t.fields() for t in traces.values() for f, _ in CHARTS[c])]
    parts: list[str | go.Figure] = [f"<h1>{html.escape(title)}</h1>", "<h2>Settings</h2>", settings_table(runs),
                                    "<h2>Status</h2>", status_lines(runs), "<h2>Summary</h2>", summary_table(runs),
                                    "<h2>Diagnostics</h2>"]  # fmt: skip
    parts += [trace_figure(chart, traces, x_axis) for chart in charts]
    figure = contractivity.report_figure(runs, model)
    if figure is not None:
        parts += ["<h2>SteinDiff: contractivity of the step with the largest raw γ</h2>",
                  "<p>L(γ) = ‖(1 − γ) I + γ ∂T/∂x‖₂ of the relaxed step x − γ (x − T(x)) over the kept samples; "
                  "the step contracts where L &lt; 1.</p>", figure]  # fmt: skip
    parts += stiffness_part(next(iter(traces.values())), model)
    parts.append("<h2>Stability regions</h2>")
    parts += [_stability_part(label, t) for label, t in traces.items() if "solver" in t.config]
    parts.append("<h2>Final samples</h2>")
    for label, run in runs.items():
        parts += [f"<h3>{html.escape(label)}</h3>", samples_part(label, run, model)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{_render(parts)}\n</body></html>\n")  # fmt: skip
