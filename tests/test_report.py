"""Export of finished runs: file names, round trips of trace and samples, the self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from stiffviz import Trace, load_model, sample
from stiffviz.models import CallableDenoiser
from stiffviz.app.plots import TITLES
from stiffviz.quality import quality_report
from stiffviz.app.render import image_grid
from stiffviz.app.report import RunResult, html_report, slugify, write_exports

PLOTLY_JS = re.compile(r"\* plotly\.js v\d")  # the licence header of the inlined bundle
PLOTLY_DIV = 'class="plotly-graph-div"'


def _run(model, **settings) -> RunResult:
    samples, trace = sample(model, **settings)
    return RunResult(trace, samples, quality_report(model, samples, seed=settings.get("seed", 0)))


@pytest.fixture(scope="module")
def tree():
    return load_model("tree")


@pytest.fixture(scope="module")
def tree_runs(tree) -> dict[str, RunResult]:
    """ERK-Guid on and off, same seed; the first label carries characters HTML must escape."""
    return {"guided <w=1> & on": _run(tree, steps=4, batch=64, seed=0, erk_guid=1.0),
            "guidance off": _run(tree, steps=4, batch=64, seed=0)}  # fmt: skip


@pytest.fixture(scope="module")
def digits_run() -> RunResult:
    samples, trace = sample("digits", steps=3, batch=4, seed=0)
    return RunResult(trace, samples)


@pytest.fixture(scope="module")
def diverged_run() -> RunResult:
    """f = −1000 x on a coarse grid: explicit Euler overflows float32 within a few steps."""
    model = CallableDenoiser(lambda x, sigma: x + 1000.0 * sigma.view(-1, 1) * x, shape=(2,))
    samples, trace = sample(model, solver="euler", steps=20, batch=8, seed=0)
    assert trace.status == "diverged"
    return RunResult(trace, samples)


def test_files_are_named_per_run_and_round_trip(tmp_path, tree_runs):
    paths = write_exports(tree_runs, tmp_path)
    names = [p.name for p in paths]
    assert len(set(names)) == len(names) == 2 * 3 + 1 and all(p.is_file() for p in paths)
    assert "stiffviz-tree-heun-4steps-seed0-guided-w-1-on.trace.json" in names
    assert "stiffviz-tree-heun-4steps-seed0-guidance-off.samples.npy" in names
    assert names[-1] == "stiffviz-tree-heun-4steps-seed0.report.html"
    for label, run in tree_runs.items():
        stem = tmp_path / f"stiffviz-tree-heun-4steps-seed0-{slugify(label)}"
        loaded = Trace.from_json(stem.with_name(stem.name + ".trace.json"))
        assert loaded.fields() == run.trace.fields() and loaded.config == run.trace.config
        for name in ["sigma", "nfe", *run.trace.fields()]:
            np.testing.assert_array_equal(loaded.column(name), run.trace.column(name))
        with open(stem.with_name(stem.name + ".trace.csv"), newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][:5] == ["step", "sample", "sigma", "sigma_next", "nfe"]
        assert len(rows) - 1 == len(run.trace.steps) * run.samples.shape[0]  # one row per (step, sample)
        saved = np.load(stem.with_name(stem.name + ".samples.npy"), allow_pickle=False)
        np.testing.assert_array_equal(saved, run.samples.numpy())


def test_labels_that_slugify_alike_get_distinct_files(tmp_path, tree_runs):
    run = tree_runs["guidance off"]
    paths = write_exports({"guidance on": run, "Guidance  ON!": run, "<>": run}, tmp_path)
    jsons = sorted(p.name for p in paths if p.name.endswith(".trace.json"))
    assert jsons == ["stiffviz-tree-heun-4steps-seed0-guidance-on-2.trace.json",
                     "stiffviz-tree-heun-4steps-seed0-guidance-on.trace.json",
                     "stiffviz-tree-heun-4steps-seed0-run.trace.json"]  # fmt: skip


def test_image_samples_get_a_png_grid(tmp_path, digits_run):
    paths = write_exports({"run": digits_run}, tmp_path)
    png = next(p for p in paths if p.suffix == ".png")
    picture = np.asarray(Image.open(png).convert("RGB"))
    np.testing.assert_array_equal(picture, image_grid(digits_run.samples))
    report = paths[-1].read_text(encoding="utf-8")
    embedded = re.findall(r'<img class="samples"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert len(embedded) == 1
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(embedded[0])))), picture)
    assert report.count(PLOTLY_DIV) == 3 + 1  # stiffness, LTE, alignment; the stability region


def test_html_report_is_self_contained_with_one_div_per_figure(tree, tree_runs):
    report = html_report(tree_runs, tree)
    assert len(PLOTLY_JS.findall(report)) == 1  # plotly.js inlined once
    assert not re.search(r"<script[^>]*\bsrc\s*=", report, re.I)
    assert not re.search(r"<(link|img|iframe)[^>]*\b(href|src)\s*=\s*[\"']?(https?:)?//", report, re.I)
    charts = ("stiffness", "lte", "alignment")  # heun's cheap diagnostics; no SteinDiff, no Lipschitz
    # charts, a stability region and particles per run, the stiffness map and its branch segments
    assert report.count(PLOTLY_DIV) == len(charts) + 2 + 2 + 2
    assert report.count("Plotly.newPlot") == report.count(PLOTLY_DIV)
    assert all(TITLES[c] in report for c in charts) and TITLES["stein"] not in report
    assert "heatmap" in report  # particles over the model's density


def test_html_report_escapes_text_and_shows_settings_and_quality(tree_runs):
    report = html_report(tree_runs)
    label = "guided <w=1> & on"
    assert html.escape(label) in report and label not in report
    run = tree_runs[label]
    assert f"<td>{run.trace.config['erk_guid']}</td>" in report and "<td>tree</td>" in report
    for measure, value in run.quality.items():
        assert f"<th>{measure}</th>" in report and f"<td>{value:.4g}</td>" in report
    assert f"<td>{run.trace.summary['nfe']}</td>" in report


def test_html_report_says_why_a_run_diverged(diverged_run):
    tricky = replace(diverged_run.trace, config=diverged_run.trace.config | {"model": "mine</td><script>"})
    report = html_report({"explicit": RunResult(tricky, diverged_run.samples)})
    assert html.escape(diverged_run.trace.message) in report and "diverged" in report
    assert "mine&lt;/td&gt;&lt;script&gt;" in report and "mine</td><script>" not in report
    assert report.count(PLOTLY_DIV) == 3  # stiffness, stability region, scatter of the final samples (no model)


def test_runs_without_samples_and_empty_runs():
    _, trace = sample("tree", steps=2, batch=4)
    assert "No final samples." in html_report({"stopped": RunResult(trace, None)})
    with pytest.raises(ValueError, match="runs"):
        html_report({})


def test_latent_samples_are_exported_as_latents_and_pictured_through_the_vae(tmp_path):
    """A latent model's .npy keeps the latents; its PNG grid (file and report) shows the VAE decode."""
    from test_live import TextLatentModel

    model = TextLatentModel()
    samples, trace = sample(model, prompt="a cat", steps=3, batch=2, schedule="model")
    paths = write_exports({"run": RunResult(trace, samples)}, tmp_path, model)
    np.testing.assert_array_equal(np.load(next(p for p in paths if p.suffix == ".npy")), samples.numpy())
    picture = np.asarray(Image.open(next(p for p in paths if p.suffix == ".png")).convert("RGB"))
    assert (False, 2) in model.decodes and (True, 2) not in model.decodes  # the VAE, never the preview
    np.testing.assert_array_equal(picture, image_grid(model.decode(samples, fast=False)))
    assert not np.array_equal(picture, image_grid(samples[:, :3]))  # not the raw latent channels
