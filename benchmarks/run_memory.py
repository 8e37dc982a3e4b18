"""Memory at the top: the largest run the app allows (tree, 200 steps × 4,096 samples, the
default diagnostics and compare), twice in a row through the page's run handler (sampling,
frames and all), in this process: RSS after start-up, peak RSS (VmHWM) and RSS after each run,
and the bytes each run's Session keeps. The budget per run is lifted so the run is not refused.

    python benchmarks/run_memory.py            # writes benchmarks/run_memory.txt
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

os.environ["STIFFVIZ_RUN_BUDGET_S"] = "1e9"
from stiffviz.app import ui  # noqa: E402
from stiffviz.app.live import bound_allocator  # noqa: E402
from stiffviz.app.requests import DEFAULTS, INPUTS  # noqa: E402

TOP = DEFAULTS | dict(steps=200, batch=4096)


def status(key: str) -> float:
    """A /proc/self/status memory line in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def main() -> None:
    torch.set_num_threads(1)
    bound_allocator()
    ui._model("tree")
    lines = [f"start-up: RSS {status('VmRSS'):.2f} GB",
             "run  seconds  peak RSS (GB)  RSS after (GB)  Session keeps (MB)"]  # fmt: skip
    for k in (1, 2):
        start = time.perf_counter()
        *_, last = ui.run(*[TOP[name] for name in INPUTS], "step")
        session = last[-1]
        lines.append(f"{k:>3}  {time.perf_counter() - start:7.1f}  {status('VmHWM'):13.2f}  {status('VmRSS'):14.2f}"
                     f"  {session.kept_bytes() / 1e6:18.1f}")  # fmt: skip
        del session, last
    text = "\n".join([f"tree, 200 steps x 4,096, default diagnostics and compare; torch {torch.__version__}, "
                      f"{os.cpu_count()} CPUs, 1 torch thread", *lines])  # fmt: skip
    print(text)
    if "--no-write" not in sys.argv:
        Path(__file__).with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
