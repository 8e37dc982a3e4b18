"""How fast the app's default example reaches the page: ``python -m benchmarks.app_speed``.

Calls the run handler (``stiffviz.app.ui.run``) as the server does, with the page's defaults,
and prints, as medians over repeats, the time to the first streamed frame, to the end of
the guided run, and to the last frame, next to the sampler's own wall time for the same
two runs (``stiffviz.sample``), so the cost of drawing the frames is seen beside it, and the
time the Learn tab takes to recompute an example after an input change. The
first repeat is reported separately: it pays the one-off costs (imports, the particle
view's density grids, the classifier of the quality report for image models).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import stiffviz
from stiffviz.app import ui
from stiffviz.app.live import GUIDED
from stiffviz.app.requests import DEFAULTS, INPUTS, parse_request
from stiffviz.app.learn import STIFF_DEFAULTS, TEST_DEFAULTS, learn_stiff_system, learn_test_equation


def timed_run(values: dict) -> dict[str, float]:
    """Seconds from the call to the first frame, to the guided run's end, and to the last frame."""
    start = time.perf_counter()
    marks: dict[str, float] = {}
    for frame in ui.run(*[values[name] for name in INPUTS], "step"):
        now = time.perf_counter() - start
        marks.setdefault("first frame", now)
        session = frame[-1]
        if GUIDED in session.runs and session.runs[GUIDED].done:
            marks.setdefault("guided run done", now)
        marks["last frame"] = now
    return marks


def sampler_only(values: dict) -> float:
    """Seconds for the same runs through the library alone (no frames, no quality report)."""
    request = parse_request(values, ui.available_models())
    start = time.perf_counter()
    for settings in (request.settings, request.unguided()):
        stiffviz.sample(request.model, **settings)
    return time.perf_counter() - start


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=DEFAULTS["model"])
    args = parser.parse_args()
    values = DEFAULTS | {"model": args.model}
    if args.model != DEFAULTS["model"]:
        limits = ui.limits_for(args.model)
        values |= {"batch": limits.default_batch, "eig": False}
    first = timed_run(values)
    runs = [timed_run(values) for _ in range(args.repeats)]
    sampler = statistics.median(sampler_only(values) for _ in range(args.repeats))
    print(f"app default example: {args.model}, {values['solver']} {values['steps']} steps, batch {values['batch']}, "
          f"ERK-Guid w_stiff={values['erk_guid']}, compare on; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.repeats} repeats after a first one")  # fmt: skip
    print(f"{'moment':<28}{'first call s':>14}{'median s':>12}")
    for mark in ("first frame", "guided run done", "last frame"):
        print(f"{mark:<28}{first[mark]:>14.3f}{statistics.median(r[mark] for r in runs):>12.3f}")
    print(f"{'sampler alone, both runs':<28}{'':>14}{sampler:>12.3f}")
    learn = {"Learn: test equation": lambda: learn_test_equation(**TEST_DEFAULTS),
             "Learn: stiff system": lambda: learn_stiff_system(**STIFF_DEFAULTS),
             "Learn: stiff, rk4 200 steps": lambda: learn_stiff_system(-40.0, -1.0, 30.0, 0.065, 200, "rk4")}
    for name, recompute in learn.items():  # one input change in the Learn tab, as the server answers it
        print(f"{name:<28}{timed(recompute):>14.3f}{statistics.median(timed(recompute) for _ in range(args.repeats)):>12.3f}")


if __name__ == "__main__":
    main()
