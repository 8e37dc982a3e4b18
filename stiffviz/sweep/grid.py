"""The grid of a sweep: options as lists, their full product, and the spec file.

An option is a :class:`~stiffviz.config.SampleConfig` setting or ``model``; ``seeds`` is another
name for ``seed``. Each option's value is one value or a list of them; the grid is the product of
the lists in the order the options are given, the last option varying fastest.
"""

from __future__ import annotations

import difflib
import itertools
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import SampleConfig
from ..errors import ParameterError

MAX_CELLS = 10_000
OPTIONS = ("model", *(f.name for f in fields(SampleConfig) if f.name != "sigmas"))
ALIASES = {"seeds": "seed"}


def _unknown(name: str) -> ParameterError:
    close = difflib.get_close_matches(name, [*OPTIONS, *ALIASES], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ParameterError(name, f"unknown option{hint}; the options are SampleConfig's settings and model")


def parse_seeds(text: str) -> list[int]:
    """``"0:8"`` → 0..7 (a half-open range, ``"a:b:step"`` too); ``"0,3,5"`` → [0, 3, 5]."""
    text = str(text).strip()
    try:
        if ":" in text:
            return list(range(*(int(p) for p in text.split(":"))))
        return [int(p) for p in text.split(",") if p.strip()]
    except (TypeError, ValueError):
        raise ParameterError("seeds", f"must be integers a,b,c or a range start:stop[:step], got {text!r}") from None


def as_list(name: str, value: Any) -> list:
    """One option's values as a list (a scalar is a list of one); an empty list is bad input."""
    if ALIASES.get(name, name) == "seed" and isinstance(value, str):
        value = parse_seeds(value)
    values = list(value) if isinstance(value, (list, tuple, range)) else [value]
    if not values:
        raise ParameterError(name, "is an empty list; give at least one value")
    return values


def normalize(options: dict[str, Any]) -> dict[str, list]:
    """Options with their aliases resolved, unknown names refused, and values as lists."""
    out: dict[str, list] = {}
    for name, value in options.items():
        key = ALIASES.get(name, name)
        if key not in OPTIONS:
            raise _unknown(name)
        out[key] = as_list(name, value)
    return out


def expand_grid(options: dict[str, list]) -> list[dict]:
    """The full product of the options' lists (deterministic order, the last option fastest);
    more than :data:`MAX_CELLS` cells is refused before any cell runs."""
    options = normalize(options)
    count = 1
    for values in options.values():
        count *= len(values)
    if count > MAX_CELLS:
        sizes = " × ".join(f"{len(v)} {k}" for k, v in options.items())
        raise ParameterError("grid", f"has {count} cells ({sizes}); the limit is MAX_CELLS = {MAX_CELLS}")
    names = list(options)
    return [dict(zip(names, combo)) for combo in itertools.product(*options.values())]


def load_spec(spec: dict | list | str | Path) -> dict[str, Any] | list[dict[str, Any]]:
    """A spec: a dict of options, or a ``.yaml``/``.yml``/``.json`` file holding one; or a list of
    such dicts, a sweep over the union of their grids (``benchmarks/findings_sweep.yaml``). Unknown
    keys (typos) are refused, naming the key and the closest option."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ParameterError("spec", f"file {str(path)!r} not found")
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ParameterError("spec", "YAML spec files need PyYAML: pip install stiffviz[sweep]") from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ParameterError("spec", f"{path} is not valid YAML: {err}") from None
        elif path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise ParameterError("spec", f"{path} is not valid JSON: {err}") from None
        else:
            raise ParameterError("spec", f"must be a .yaml, .yml or .json file, got {str(path)!r}")
    else:
        data = spec
    if isinstance(data, list) and data and all(isinstance(grid, dict) for grid in data):
        for grid in data:
            normalize(grid)  # refuse typos before anything runs
        return [dict(grid) for grid in data]
    if not isinstance(data, dict):
        raise ParameterError("spec", f"must be a mapping of option: value or list (or a non-empty list of such "
                                     f"mappings), got {type(data).__name__}")  # fmt: skip
    normalize(data)  # refuse typos before anything runs
    return dict(data)
