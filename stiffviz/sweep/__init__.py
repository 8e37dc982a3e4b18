"""Sweeps: the full grid of runs over lists of options, into one tidy table.

``stiffviz.sweep(steps=[4, 8], erk_guid=[0, 0.5], seeds=[0, 1])`` runs 8 cells and returns a
pandas DataFrame with one row per cell (:mod:`.results`); ``backend="local"`` runs them in worker
processes (:mod:`.local`), ``backend="ray"`` as Ray tasks (:mod:`.ray_backend`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from ..config import SampleConfig
from ..errors import ParameterError
from .grid import MAX_CELLS, expand_grid, load_spec, normalize
from .results import ResultsTable, cell_id, run_cell

BACKENDS = ("local", "ray")
DEFAULT_CELL = {"model": "tree"} | {k: v for k, v in asdict(SampleConfig()).items() if k not in ("model", "sigmas")}

__all__ = ["BACKENDS", "MAX_CELLS", "cell_id", "expand_grid", "load_spec", "make_cells", "run_cell", "run_sweep", "sweep"]


def make_cells(spec: dict | list | str | Path | None = None, **options: Any) -> list[dict]:
    """The grid's cells, each every option's value (the defaults filled in): the spec's options,
    then ``options`` (which win). A spec that is a list of grids gives the union of their cells."""
    loaded = load_spec(spec) if spec is not None else {}
    grids = loaded if isinstance(loaded, list) else [loaded]
    cells = [DEFAULT_CELL | cell for grid in grids for cell in expand_grid(normalize(grid | options))]
    if len(cells) > MAX_CELLS:
        raise ParameterError("grid", f"has {len(cells)} cells over {len(grids)} grids; the limit is MAX_CELLS = {MAX_CELLS}")
    return cells


def _backend(backend: str, ray_address: str | None) -> Callable:
    if backend == "local":
        from .local import run_cells

        return run_cells
    if backend == "ray":
        from .ray_backend import run_cells as ray_cells

        return lambda cells, **kw: ray_cells(cells, address=ray_address, **kw)
    raise ParameterError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ParameterError("progress", "the progress bar needs tqdm: pip install stiffviz[sweep] (or progress=False)") from None
    return tqdm(total=total, unit="cell", desc="sweep")


def run_sweep(cells: list[dict], *, backend: str = "local", workers: int | None = None, out: str | Path | None = None,
              metrics: bool = False, ray_address: str | None = None, progress: bool = True):  # fmt: skip
    """Run ``cells`` (from :func:`make_cells`) and return their rows as a DataFrame in cell
    order. With ``out``, rows go to ``out/results.parquet`` and ``.csv`` as cells finish, traces
    to ``out/traces/``, and cells already in ``out/results.parquet`` are not run again."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ParameterError("workers", f"must be an integer ≥ 1, got {workers!r}")
    run_cells = _backend(backend, ray_address)
    table = ResultsTable(out)
    ids = [cell_id(cell) for cell in cells]
    done = table.done()
    todo = [cell for cell, i in zip(cells, ids) if i not in done]
    bar = _progress(len(todo), progress)

    def on_row(row: dict) -> None:
        table.add(row)
        if bar is not None:
            bar.update(1)

    trace_dir = str(Path(out) / "traces") if out is not None else None
    try:
        run_cells(todo, workers=workers, metrics=metrics, trace_dir=trace_dir, on_row=on_row)
    finally:
        table.flush()
        if bar is not None:
            bar.close()
    by_id = {row["cell_id"]: row for row in table.rows}
    import pandas

    return pandas.DataFrame([by_id[i] for i in ids if i in by_id])


def sweep(spec: dict | str | Path | None = None, *, backend: str = "local", workers: int | None = None,
          out: str | Path | None = None, metrics: bool = False, ray_address: str | None = None,
          progress: bool = True, **options: Any):  # fmt: skip
    """Run the full grid of ``options`` (each a value or a list; ``seeds``/``seed`` also a range
    ``"0:8"``), or of a spec (a dict, or a YAML/JSON file of the same options), and return a
    pandas DataFrame with one row per cell, in grid order.

    Bad input (an empty list, an unknown option, more than ``MAX_CELLS`` cells, a typo in the
    spec) raises :class:`~stiffviz.errors.ParameterError` before any cell runs; a cell that
    fails or diverges gets a row with its ``status`` and ``message``."""
    cells = make_cells(spec, **options)
    return run_sweep(cells, backend=backend, workers=workers, out=out, metrics=metrics, ray_address=ray_address,
                     progress=progress)  # fmt: skip
