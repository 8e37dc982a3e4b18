"""The per-step record of a sampling run, and its JSON (``stiffviz.trace/1``) and CSV forms.

Each step holds ``i``, ``sigma``, ``sigma_next``, the cumulative ``nfe``, the step's
``stability_boundary`` and, for the diagnostics that were computed, one value per sample
(``PER_SAMPLE_FIELDS``) or one per batch (``BATCH_FIELDS``; among them a stochastic run's
``sigma_hat`` = σ̂_i of churn and an ancestral step's ``sigma_down``/``sigma_up``, docs/math.md §11); an adaptive
run's ``accepted`` and ``lte_ratio``, docs/math.md §12: its rejected attempts are steps too, with
``accepted`` False, x unchanged and their evaluations in ``nfe``). A diagnostic that was not
computed is absent; in JSON a non-finite number (from a diverging step) is written as null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError

SCHEMA = "stiffviz.trace/1"
STEP_FIELDS = ("i", "sigma", "sigma_next", "nfe", "stability_boundary")
PER_SAMPLE_FIELDS = (
    "lte", "lte_ref", "stiffness", "stiffness_z", "stiffness_index", "stiffness_ratio", "eig_max",
    "align_cos_est", "align_cos_true", "align_cos_ref", "align_cos_vhat", "erk_active", "erk_correction",
    "lipschitz",
)  # fmt: skip
BATCH_FIELDS = ("stein_gamma", "stein_gamma_raw", "stein_gamma_oracle", "sigma_hat", "sigma_down", "sigma_up",
                "accepted", "lte_ratio")  # adaptive steps (docs/math.md §12): False on a rejected step, ε


def _json_value(value: Any) -> Any:
    """numpy → JSON-ready Python, with NaN and ±inf as None."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return [v if math.isfinite(v) else None for v in value.tolist()]
        return value.tolist()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _json_value(value.item())
    return value


@dataclass
class Trace:
    """Columns per step of one run (see the module docstring for the fields)."""

    config: dict
    sigmas: list[float]
    steps: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    status: str = "ok"
    message: str = ""

    # ----------------------------------------------------------------- reading
    def fields(self) -> list[str]:
        """Diagnostic fields present in at least one step, in schema order."""
        present = {k for step in self.steps for k in step}
        return [f for f in PER_SAMPLE_FIELDS + BATCH_FIELDS if f in present]

    def column(self, name: str) -> np.ndarray:
        """Per-sample field as (steps, B) floats, or batch field as (steps,); NaN where absent."""
        if name in STEP_FIELDS or name in BATCH_FIELDS:
            return np.array([np.nan if s.get(name) is None else float(s[name]) for s in self.steps])
        batch = int(self.config.get("batch", 0)) or max((len(s[name]) for s in self.steps if s.get(name) is not None), default=0)
        out = np.full((len(self.steps), batch), np.nan)
        for row, step in enumerate(self.steps):
            if step.get(name) is not None:
                out[row] = np.asarray(step[name], dtype=float)  # loading turned nulls into NaN
        return out

    def step_median(self, name: str) -> np.ndarray:
        """Median over samples of a per-sample field, per step (NaN where absent)."""
        col = self.column(name)
        with np.errstate(all="ignore"):
            return np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in col])

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "config": _json_value(self.config),
            "sigmas": _json_value(np.asarray(self.sigmas, dtype=float)),
            "steps": [{k: _json_value(v) for k, v in step.items()} for step in self.steps],
            "summary": {k: _json_value(v) for k, v in self.summary.items()},
            "status": self.status,
            "message": self.message,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The trace as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), allow_nan=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> "Trace":
        """Load a trace from a JSON file path or JSON text; a malformed file raises ParameterError."""
        text = source
        if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
            try:
                text = Path(source).read_text()
            except OSError as err:
                raise ParameterError("trace", f"cannot read {source}: {err.strerror}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ParameterError("trace", f"not valid JSON ({err.msg} at line {err.lineno})") from err
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ParameterError("trace", f"schema must be {SCHEMA!r}, got {data.get('schema') if isinstance(data, dict) else None!r}")
        for key in ("config", "sigmas", "steps", "status"):
            if key not in data:
                raise ParameterError("trace", f"missing key {key!r}")
        if not isinstance(data["steps"], list):
            raise ParameterError("trace", "'steps' must be a list of step objects")
        for n, step in enumerate(data["steps"]):
            if not isinstance(step, dict):
                raise ParameterError("trace", f"step {n} must be an object, got {type(step).__name__}")
            missing = [k for k in ("i", "sigma", "sigma_next", "nfe") if k not in step]
            if missing:
                raise ParameterError("trace", f"step {n} lacks {', '.join(missing)}")
        steps = [{k: (np.array([np.nan if x is None else x for x in v]) if isinstance(v, list) else v)
                  for k, v in step.items()} for step in data["steps"]]  # fmt: skip
        return cls(data["config"], data["sigmas"], steps, data.get("summary", {}), data["status"], data.get("message", ""))

    # ----------------------------------------------------------------- tables
    def to_pandas(self) -> Any:
        """One row per (step, sample) as a pandas DataFrame (needs ``pip install stiffviz[sweep]``).

        Columns: ``i``, ``sample``, ``sigma``, ``sigma_next``, ``nfe``, ``stability_boundary``, then
        every field of ``fields()``; batch fields repeat over the step's samples (stiffviz/trace_tables.py).
        """
        from .trace_tables import to_pandas

        return to_pandas(self)

    def to_parquet(self, path: str | Path) -> Path:
        """Write ``to_pandas()``'s table to Parquet with pyarrow (``pip install stiffviz[sweep]``)."""
        from .trace_tables import to_parquet

        return to_parquet(self, path)

    # ----------------------------------------------------------------- CSV
    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per (step, sample): step columns, then every per-sample and batch field."""
        fields = self.fields()
        buffer = io.StringIO()
        csv.writer(buffer).writerow(["step", "sample", "sigma", "sigma_next", "nfe", *fields])
        columns = {f: self.column(f) for f in fields}
        batch = max((c.shape[1] for c in columns.values() if c.ndim == 2), default=1)
        n = len(self.steps)
        # column-wise: each column becomes its text once, then rows are joined (no per-cell indexing)
        step_text = [np.repeat(np.array([str(s[k]) for s in self.steps], dtype=object), batch)
                     for k in ("i", "sigma", "sigma_next", "nfe")]  # fmt: skip
        texts = [step_text[0], np.tile(np.array([str(b) for b in range(batch)], dtype=object), n), *step_text[1:]]
        for f in fields:
            values = columns[f] if columns[f].ndim == 2 else np.repeat(columns[f][:, None], batch, axis=1)
            flat = values.reshape(-1)
            text = list(map(float.__repr__, flat.tolist()))
            for k in np.flatnonzero(~np.isfinite(flat)).tolist():
                text[k] = ""
            texts.append(text)
        buffer.writelines(",".join(row) + "\r\n" for row in zip(*texts))
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text
