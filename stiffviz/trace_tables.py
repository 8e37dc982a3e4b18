"""Tidy tables of a trace: one row per (step, sample), as a pandas DataFrame or a Parquet file.

Columns, in order: ``i``, ``sample``, ``sigma``, ``sigma_next``, ``nfe``, ``stability_boundary``
(when recorded), then every diagnostic of ``Trace.fields()``. A per-sample field fills its rows
directly; a batch field (one value per step) is repeated over the step's samples. Types:
``i``, ``sample`` and ``nfe`` are int64, numbers float64 with NaN where a step lacks the field,
boolean fields (``erk_active``, ``accepted``) bool, or pandas' nullable ``boolean`` (null in
Parquet) when some steps lack them. Everything is built column-wise from numpy arrays: no Python
work per row, so 200 steps × 4,096 samples take a fraction of a second (benchmarks/trace_export.py).

pandas and pyarrow are the optional extra ``pip install stiffviz[sweep]``; they are imported only
here, when a table is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .trace import Trace

INSTALL_HINT = "pip install stiffviz[sweep]"


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{purpose} needs {module.split('.')[0]}, an optional dependency: {INSTALL_HINT}") from err


def _batch(trace: Trace) -> int:
    """Samples per step: the config's batch, else the longest per-sample list."""
    from .trace import PER_SAMPLE_FIELDS

    lengths = [len(v) for s in trace.steps for k, v in s.items() if k in PER_SAMPLE_FIELDS and v is not None]
    return int(trace.config.get("batch", 0) or 0) or max(lengths, default=1)


def _field(trace: Trace, name: str, batch: int, per_sample: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One field over all rows: (values, mask of missing rows or None when every row has it)."""
    present = np.array([s.get(name) is not None for s in trace.steps], dtype=bool)
    rows = [np.asarray(s[name]) for s in trace.steps if s.get(name) is not None]
    is_bool = bool(rows) and rows[0].dtype == bool
    shape = (len(trace.steps), batch) if per_sample else (len(trace.steps),)
    out = np.zeros(shape, dtype=bool) if is_bool else np.full(shape, np.nan)
    if rows:
        out[present] = np.stack(rows) if per_sample else np.array(rows)
    values = out.reshape(-1) if per_sample else np.repeat(out, batch)
    if not is_bool or present.all():
        return values, None
    return values, np.repeat(~present, batch)


def trace_columns(trace: Trace) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Every column of the tidy table as (numpy values, missing-row mask or None), in order."""
    from .trace import PER_SAMPLE_FIELDS

    batch, n = _batch(trace), len(trace.steps)

    def step_values(key: str, dtype: Any) -> np.ndarray:
        col = np.fromiter((np.nan if s.get(key) is None else s[key] for s in trace.steps), dtype=dtype, count=n)
        return np.repeat(col, batch)

    columns: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "i": (step_values("i", np.int64), None),
        "sample": (np.tile(np.arange(batch, dtype=np.int64), n), None),
        "sigma": (step_values("sigma", np.float64), None),
        "sigma_next": (step_values("sigma_next", np.float64), None),
        "nfe": (step_values("nfe", np.int64), None),
    }
    if any("stability_boundary" in s for s in trace.steps):
        columns["stability_boundary"] = (step_values("stability_boundary", np.float64), None)
    for name in trace.fields():
        columns[name] = _field(trace, name, batch, name in PER_SAMPLE_FIELDS)
    return columns


def to_pandas(trace: Trace) -> Any:
    """The trace as a pandas DataFrame, one row per (step, sample) (see the module docstring)."""
    pd = require("pandas", "Trace.to_pandas()")
    data = {}
    for name, (values, mask) in trace_columns(trace).items():
        data[name] = values if mask is None else pd.arrays.BooleanArray(values, mask)
    return pd.DataFrame(data, copy=False)


def _pandas_metadata(pa: ModuleType, columns: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> dict | None:
    """pandas' schema metadata for these column types (nullable booleans), from an empty frame."""
    try:
        pd = importlib.import_module("pandas")
    except ImportError:
        return None
    empty = {k: (pd.array([], dtype="boolean") if m is not None else v[:0]) for k, (v, m) in columns.items()}
    return pa.Schema.from_pandas(pd.DataFrame(empty), preserve_index=False).metadata


def to_parquet(trace: Trace, path: str | Path) -> Path:
    """Write the tidy table to a Parquet file with pyarrow, column by column; returns the path."""
    pa = require("pyarrow", "Trace.to_parquet()")
    pq = require("pyarrow.parquet", "Trace.to_parquet()")
    columns = trace_columns(trace)
    table = pa.table({k: pa.array(v, mask=m) for k, (v, m) in columns.items()})
    metadata = _pandas_metadata(pa, columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    path = Path(path)
    pq.write_table(table, path)
    return path
