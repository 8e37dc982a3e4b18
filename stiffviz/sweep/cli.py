"""``python -m stiffviz sweep``: ``sample``'s flags, each taking a comma list, over the full grid.

Exit status: 0 when every cell ran (ok or diverged: a result), 1 when a cell failed, 2 for bad
input, 130 when interrupted (what finished is in ``--out``; the same command resumes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from ..errors import ParameterError
from .grid import MAX_CELLS, parse_seeds

SWEEP_ONLY = ("metrics", "help")  # sample's flags that stay single switches


def _list_of(kind: Callable, choices) -> Callable[[str], list]:
    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError("is an empty list; give at least one value")
        if not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item")
        values = []
        for part in parts:
            try:
                value = kind(part)
            except (TypeError, ValueError):
                raise argparse.ArgumentTypeError(f"{part!r} is not a valid {getattr(kind, '__name__', 'value')}") from None
            if choices is not None and value not in choices:
                raise argparse.ArgumentTypeError(f"{part!r} is not one of {', '.join(map(str, choices))}")
            values.append(value)
        return values

    return parse


def _seeds(text: str) -> list[int]:
    try:
        seeds = parse_seeds(text)
    except ParameterError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("seeds: ")) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} is an empty list or range; give at least one seed")
    return seeds


def _listify(p: argparse.ArgumentParser) -> None:
    """Every value-taking flag takes a comma list; no flag has a default (the grid only holds
    what is given; SampleConfig's defaults fill the rest)."""
    for action in p._actions:
        if action.dest in SWEEP_ONLY:
            continue
        action.default = argparse.SUPPRESS
        if type(action) is argparse._StoreAction:
            action.type, action.choices = _list_of(action.type or str, action.choices), None
            action.help = (action.help or "") + " (a comma list sweeps it)"


def add_sweep_parser(commands: Any, add_sample_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``sweep`` subcommand: ``add_sample_options``' flags as lists, and the sweep's own."""
    p = commands.add_parser("sweep", help="run the full grid of runs over comma lists of sample's options into a table",
                            description="Every option of sample may be a comma list; the sweep runs the full grid "
                                        f"(at most {MAX_CELLS} cells).")  # fmt: skip
    add_sample_options(p)
    _listify(p)
    s = p.add_argument_group("the sweep")
    s.add_argument("--seeds", type=_seeds, default=None, metavar="LIST|A:B", help="seeds: 0,1,5 or a range 0:8 (= 0..7)")
    s.add_argument("--spec", default=None, metavar="FILE", help="YAML or JSON file of options (flags given win)")
    s.add_argument("--out", default=None, metavar="DIR",
                   help="write DIR/results.parquet and .csv as cells finish, traces to DIR/traces/; "
                        "cells already in DIR are skipped")  # fmt: skip
    s.add_argument("--backend", default="local", choices=["local", "ray"], help="local worker processes, or Ray tasks")
    s.add_argument("--workers", type=int, default=None, help="local worker processes (default: the core count)")
    s.add_argument("--ray-address", default=None, metavar="ADDR", help="Ray cluster (default: a local one started on demand)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> dict[str, list]:
    """The grid's options (settings names, lists) from the flags given."""
    from ..cli import RUN_DESTS, setting

    given = vars(args)
    options: dict[str, list] = {}
    if "model" in given:
        options["model"] = given["model"]
    for dest in RUN_DESTS:
        if dest in given:
            values = given[dest] if isinstance(given[dest], list) else [given[dest]]
            name = setting(dest, values[0])[0]
            options[name] = [setting(dest, v)[1] for v in values]
    if args.seeds is not None:
        options["seed"] = args.seeds
    return options


def _report(frame, out: str | None) -> None:
    varied = [c for c in frame.columns if c not in ("cell_id", "message") and frame[c].astype(str).nunique() > 1
              and c not in ("nfe", "wall_time_s", "steps_done") and not c.startswith(("median_", "swd", "mmd"))]  # fmt: skip
    show = [c for c in [*varied, "status", "nfe", "median_stiffness", "median_lte", "wall_time_s"] if c in frame.columns]
    print(frame[show].to_string(index=False))
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    print(f"{len(frame)} cells: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + (f"; written to {out}/results.parquet, results.csv, traces/" if out else ""))  # fmt: skip
    for _, row in frame[frame["status"] != "ok"].iterrows():
        print(f"{row['status']} {row['cell_id']}: {row['message']}")


def run_sweep_cli(args: argparse.Namespace) -> int:
    """Run the sweep the flags ask for; print the varied options and the results per cell."""
    from . import make_cells, run_sweep

    cells = make_cells(args.spec, **options_from_args(args))
    try:
        frame = run_sweep(cells, backend=args.backend, workers=args.workers, out=args.out, metrics=args.metrics,
                          ray_address=args.ray_address, progress=not args.no_progress)  # fmt: skip
    except KeyboardInterrupt:
        where = f"; the finished cells are in {args.out}, the same command resumes" if args.out else ""
        print(f"interrupted{where}", file=sys.stderr)
        return 130
    _report(frame, args.out)
    return 1 if (frame["status"] == "failed").any() else 0


__all__ = ["ParameterError", "add_sweep_parser", "options_from_args", "run_sweep_cli"]
