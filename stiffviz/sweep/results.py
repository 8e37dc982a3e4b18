"""One cell's run into one row, and the table of rows written as cells finish.

``DIR/results.parquet`` and ``DIR/results.csv`` are rewritten as rows arrive (at most once a
second, and at the end), so an interrupted sweep keeps what finished; a sweep started again on
the same ``DIR`` skips the cells whose ``cell_id`` is already there.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

STATUS_OK, STATUS_DIVERGED, STATUS_FAILED = "ok", "diverged", "failed"


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)  # 4 and 4.0 are the same cell
    return str(value)


def cell_id(cell: dict) -> str:
    """A stable 16-hex-digit hash of the cell's options (key order and int/float spelling aside)."""
    text = json.dumps({k: _canonical(v) for k, v in cell.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=4)
def _model(name: str, device: str | None):
    from ..models import load_model

    return load_model(name, device=device)


def run_cell(cell: dict, metrics: bool = False, trace_dir: str | None = None) -> dict:
    """Run one cell with :func:`stiffviz.sample` in this process (threads set by the caller).

    Returns the row: the cell's options, ``cell_id``, ``status`` (ok, diverged, failed),
    ``message``, ``nfe``, ``wall_time_s``, the trace summary's keys and, with ``metrics``, the
    quality measures. Any exception is caught into a failed row. Writes
    ``trace_dir/<cell_id>.json`` when ``trace_dir`` is given and the run produced a trace."""
    from ..quality import quality_report
    from ..sampler import sample

    row: dict[str, Any] = dict(cell) | {"cell_id": cell_id(cell), "status": STATUS_OK, "message": "",
                                        "nfe": None, "wall_time_s": None}  # fmt: skip
    start = time.perf_counter()
    try:
        settings = {k: v for k, v in cell.items() if k != "model"}
        model = _model(cell.get("model", "tree"), cell.get("device"))
        samples, trace = sample(model, **settings)
        row.update({k: v for k, v in trace.summary.items() if k not in row or row[k] is None})
        if trace.status != "ok":
            row.update(status=STATUS_DIVERGED, message=trace.message or trace.status)
        elif metrics:
            row.update(quality_report(model, samples, settings.get("cls"), settings.get("seed", 0)))
        if trace_dir is not None:
            Path(trace_dir).mkdir(parents=True, exist_ok=True)
            trace.to_json(Path(trace_dir) / f"{row['cell_id']}.json")
    except Exception as err:  # noqa: BLE001 — a failing cell is a row, the sweep goes on
        row.update(status=STATUS_FAILED, message=f"{type(err).__name__}: {err}")
        row["wall_time_s"] = time.perf_counter() - start
    return row


def _pandas():
    import pandas

    return pandas


class ResultsTable:
    """The rows of a sweep folder: those already in ``DIR/results.parquet`` and new ones, written
    back (parquet and csv) at most every ``interval`` seconds and at :meth:`flush`."""

    def __init__(self, out: str | Path | None, interval: float = 1.0):
        self.out = Path(out) if out is not None else None
        self.interval = interval
        self.rows: list[dict] = []
        self._written = 0.0
        self._dirty = False
        if self.out is not None:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                from ..errors import ParameterError

                raise ParameterError("out", "writing results.parquet needs pyarrow: pip install stiffviz[sweep]") from None
            self.out.mkdir(parents=True, exist_ok=True)
            if self.parquet.is_file():
                self.rows = _pandas().read_parquet(self.parquet).to_dict("records")

    @property
    def parquet(self) -> Path:
        return self.out / "results.parquet"

    def done(self) -> set[str]:
        """The cell ids already in the table."""
        return {row["cell_id"] for row in self.rows}

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self._dirty = True
        if time.monotonic() - self._written >= self.interval:
            self.flush()

    def frame(self):
        """All rows as a DataFrame; a column mixing types (``cls`` 0 and "A") is written as text."""
        frame = _pandas().DataFrame(self.rows)
        for name in frame.columns:
            kinds = {type(v) for v in frame[name] if v is not None and v == v}
            if len(kinds) > 1 and not kinds <= {int, float, bool}:
                frame[name] = [None if v is None else str(v) for v in frame[name]]
        return frame

    def flush(self) -> None:
        """Write results.parquet and results.csv (atomically replaced) if rows changed."""
        if self.out is None or not self._dirty:
            return
        frame = self.frame()
        for name, write in (("results.parquet", frame.to_parquet), ("results.csv", frame.to_csv)):
            tmp = self.out / f".{name}.tmp"
            write(tmp, index=False)
            tmp.replace(self.out / name)
        self._written, self._dirty = time.monotonic(), False
