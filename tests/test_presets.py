"""The app's presets are the README's findings: the same rows, server-valid, the library's runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import stiffviz
from stiffviz.app import ui
from stiffviz.app.live import GUIDED, UNGUIDED, Session
from stiffviz.app.presets import FINDINGS, FINDINGS_BASE, FINDINGS_MODEL, FINDINGS_STEPS, PRESETS
from stiffviz.app.requests import INPUTS, available_models, parse_request
from stiffviz.config import SampleConfig
from stiffviz.quality import quality_report
from stiffviz.solvers import nfe_for

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("one_thread")


def readme_table() -> tuple[list[str], list[tuple[int, int]]]:
    """The findings table of the README: its method column and its (steps, NFE) column headers."""
    section = README.read_text(encoding="utf-8").split("### Findings on the tree toy", 1)[1]
    lines = [line for line in section.split("\n\n")[2].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    columns = [tuple(map(int, re.fullmatch(r"(\d+) steps \((\d+) NFE\)", cell).groups())) for cell in header[1:]]
    return [line.strip("|").split("|")[0].strip() for line in lines[2:]], columns


def test_the_presets_are_the_readme_rows_at_every_step_count():
    methods, columns = readme_table()
    assert [finding.label for finding in FINDINGS] == methods
    assert [steps for steps, _ in columns] == list(FINDINGS_STEPS)
    assert [nfe for _, nfe in columns] == [nfe_for(FINDINGS_BASE["solver"], steps) for steps in FINDINGS_STEPS]
    assert sorted((p.finding.label, p.steps) for p in PRESETS) == sorted(
        (method, steps) for method in methods for steps, _ in columns)
    assert len({p.label for p in PRESETS}) == len(PRESETS)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.label for p in PRESETS])
def test_each_preset_passes_the_server_checks_and_asks_for_its_row(preset):
    request = parse_request(preset.inputs, available_models())  # raises a named ParameterError if not
    row = FINDINGS_BASE | preset.finding.settings | dict(steps=preset.steps)
    assert request.model == FINDINGS_MODEL
    assert SampleConfig().dtype == row.pop("dtype")  # the app samples in the library's default dtype
    assert {key: request.settings[key] for key in row} == row
    assert request.settings["erk_guid"] == row.get("erk_guid")  # None: ERK-Guid off
    assert request.settings["stein"] == row.get("stein", False)
    assert (request.settings["cfg"], request.settings["autoguidance"], request.settings["cls"]) == (1.0, 1.0, None)
    assert not request.settings["lte_ref"] and not request.settings["lipschitz"]
    assert request.compare == request.has_guidance  # guided rows are overlaid with plain Heun


def last_session(frames) -> Session:
    return [out for frame in frames for out in frame if isinstance(out, Session)][-1]


# Two quick ones: a guided row at its best, and the row whose SteinDiff acts only at σ ≤ 1 (the input added for it).
@pytest.mark.parametrize("label", ["4 steps · ERK-Guid w_stiff = 1", "4 steps · SteinDiff [1, 3], σ ≤ 1 only"])
def test_a_preset_through_the_run_handler_is_the_librarys_run_of_its_row(label):
    (preset,) = [p for p in PRESETS if p.label == label]
    session = last_session(ui.run(*[preset.inputs[name] for name in INPUTS], "step"))
    assert list(session.runs) == [GUIDED, UNGUIDED] and all(run.samples is not None for run in session.runs.values())
    model = stiffviz.load_model(FINDINGS_MODEL)
    # The benchmark's run of the row (benchmarks/findings.py): no app diagnostics, plain sample() keywords.
    for run, settings in ((session.runs[GUIDED], preset.finding.settings), (session.runs[UNGUIDED], {})):
        samples, trace = stiffviz.sample(FINDINGS_MODEL, steps=preset.steps, **FINDINGS_BASE | settings)
        assert torch.equal(run.samples, samples)
        assert run.quality == quality_report(model, samples, None, FINDINGS_BASE["seed"])
        assert run.trace.summary["nfe"] == trace.summary["nfe"] and run.trace.status == trace.status == "ok"
    # The same settings as the page's request: the library gives the same trace, field by field.
    request = parse_request(preset.inputs, available_models())
    _, expected = stiffviz.sample(FINDINGS_MODEL, **request.settings)
    got = session.runs[GUIDED].trace
    assert got.config == expected.config and len(got.steps) == len(expected.steps) == preset.steps
    assert "eig_max" in got.fields() and ("stein_gamma" in got.fields()) == preset.finding.settings.get("stein", False)
    for field in got.fields():
        np.testing.assert_array_equal(got.column(field), expected.column(field), err_msg=field)
    settings = preset.finding.settings  # SteinDiff acts (records γ_raw) at σ ≤ stein_sigma_max, before the last step
    acting = [settings.get("stein", False) and step["sigma"] <= settings.get("stein_sigma_max", np.inf)
              for step in got.steps[:-1]]  # fmt: skip
    assert [step.get("stein_gamma_raw") is not None for step in got.steps[:-1]] == acting
    assert any(acting) == settings.get("stein", False)
