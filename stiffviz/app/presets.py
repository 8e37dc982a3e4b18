"""Presets: each row of the README's "Findings on the tree toy", one click in the app.

Plain data, the one source of the findings' settings: ``benchmarks/findings.py`` runs exactly
``FINDINGS`` (each row's :func:`stiffviz.sample` keywords on top of ``FINDINGS_BASE``) at each of
``FINDINGS_STEPS``, and the app offers every (row, step count) as a preset (:data:`PRESETS`),
the page's inputs by name (``requests.INPUTS``) that give the same run. A preset keeps the app's
cheap diagnostic (exact eigenpairs, ``eig``) on and, where the row has guidance, ``compare`` on,
so the page overlays the row with plain Heun; neither moves the samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .requests import DEFAULTS, NO_CLASS

FINDINGS_MODEL = "tree"
FINDINGS_STEPS = (4, 6, 8, 16)
# The keywords of stiffviz.sample that every row shares (the benchmark's --batch and --seed override two).
FINDINGS_BASE: dict[str, Any] = dict(
    solver="heun", schedule="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0, batch=2048, seed=0, dtype="float32",
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One row of the findings table: ``label`` as the README's method column prints it, ``name``
    as ``benchmarks/findings.txt`` prints it, ``settings`` the row's keywords beyond ``FINDINGS_BASE``."""

    label: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)


STEIN = dict(stein=True, stein_probes=5)
FINDINGS: tuple[Finding, ...] = (
    Finding("plain Heun", "none"),
    Finding("ERK-Guid w_stiff = 0.25", "ERK-Guid w=0.25", dict(erk_guid=0.25, erk_con=0.5)),
    Finding("ERK-Guid w_stiff = 0.5", "ERK-Guid w=0.5", dict(erk_guid=0.5, erk_con=0.5)),
    Finding("ERK-Guid w_stiff = 0.75", "ERK-Guid w=0.75", dict(erk_guid=0.75, erk_con=0.5)),
    Finding("ERK-Guid w_stiff = 1", "ERK-Guid w=1", dict(erk_guid=1.0, erk_con=0.5)),
    Finding("ERK-Guid w_stiff = 1.5", "ERK-Guid w=1.5", dict(erk_guid=1.5, erk_con=0.5)),
    Finding("ERK-Guid w_stiff = 2", "ERK-Guid w=2", dict(erk_guid=2.0, erk_con=0.5)),
    Finding("SteinDiff [1, 1.5]", "SteinDiff [1,1.5]", STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=1.5)),
    Finding("SteinDiff [1, 3] (default)", "SteinDiff [1,3]", STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=3.0)),
    Finding("SteinDiff [0, 10]", "SteinDiff [0,10]", STEIN | dict(stein_gamma_min=0.0, stein_gamma_max=10.0)),
    Finding("SteinDiff [1, 3], σ ≤ 1 only", "SteinDiff [1,3] σ≤1",
            STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=3.0, stein_sigma_max=1.0)),
)  # fmt: skip


@dataclass(frozen=True)
class Preset:
    """A finding at one step count: its label in the page and the page's inputs by name."""

    label: str
    finding: Finding
    steps: int
    inputs: dict[str, Any]


def preset_inputs(finding: Finding, steps: int) -> dict[str, Any]:
    """The page's inputs (``requests.INPUTS`` by name) that run ``finding`` at ``steps`` steps."""
    s = FINDINGS_BASE | finding.settings
    guided = "erk_guid" in s or s.get("stein", False)
    return DEFAULTS | dict(
        model=FINDINGS_MODEL, prompt="", negative_prompt="", cls=NO_CLASS, cfg=1.0, autoguidance=1.0,
        solver=s["solver"], steps=steps, schedule=s["schedule"], sigma_min=s["sigma_min"], sigma_max=s["sigma_max"],
        rho=s["rho"], erk_on="erk_guid" in s, erk_guid=s.get("erk_guid", DEFAULTS["erk_guid"]),
        erk_con=s.get("erk_con", DEFAULTS["erk_con"]), stein_on=s.get("stein", False),
        stein_probes=s.get("stein_probes", DEFAULTS["stein_probes"]),
        stein_gamma_min=s.get("stein_gamma_min", DEFAULTS["stein_gamma_min"]),
        stein_gamma_max=s.get("stein_gamma_max", DEFAULTS["stein_gamma_max"]),
        stein_sigma_max=s.get("stein_sigma_max", DEFAULTS["stein_sigma_max"]),
        eig=True, lte_ref=False, lipschitz=False, seed=s["seed"], batch=s["batch"], compare=guided,
    )  # fmt: skip


# Ordered by step count, so each page of the page's preset table is one column of the README's table.
PRESETS: tuple[Preset, ...] = tuple(
    Preset(f"{steps} steps · {finding.label}", finding, steps, preset_inputs(finding, steps))
    for steps in FINDINGS_STEPS for finding in FINDINGS
)  # fmt: skip
