"""The app's memory: the server's resident size at each start-up stage, and what a run keeps.

Resident size (VmRSS, after ``gc.collect`` and glibc's ``malloc_trim``, so it is what is held,
not what the allocator keeps) after each stage of ``python app.py``'s path, then after one
default run from a ``gradio_client`` session; then the bytes a finished run's Session keeps
(tensors and the trace's per-sample arrays, both runs of a comparison) for a few requests.
Linux with glibc only (reads /proc/self/status).

    python -m benchmarks.app_memory
"""

from __future__ import annotations

import ctypes
import gc
import os

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
REQUESTS = {"default example (tree, 6 steps × 1,024)": {}, "tree, 20 steps × 4,096": dict(steps=20, batch=4096)}


def rss_mb() -> float:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    status = open("/proc/self/status").read()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def nbytes(obj, seen: set) -> int:
    """Bytes of the tensors and arrays reachable from ``obj`` through dicts, lists and objects."""
    import torch

    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v, seen) for v in obj)
    return nbytes(vars(obj), seen) if hasattr(obj, "__dict__") else 0


def main() -> None:
    stages = [("python", rss_mb())]
    import torch  # noqa: F401

    stages.append(("import torch", rss_mb()))
    import gradio  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    stages.append(("import gradio, plotly", rss_mb()))
    from stiffviz.app import ui

    stages.append(("import stiffviz.app.ui (scikit-learn, scipy parts)", rss_mb()))
    app = ui.queued(ui.build_app())
    stages.append(("build_app (models loaded and timed, page built)", rss_mb()))
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    stages.append(("launch", rss_mb()))
    from gradio_client import Client

    from stiffviz.app.live import stream_session
    from stiffviz.app.requests import DEFAULTS, INPUTS, available_models, parse_request

    client = Client(url, verbose=False, download_files=False)
    client.predict(*[DEFAULTS[name] for name in INPUTS], "step", api_name="/run")
    stages.append(("one default run, its session kept", rss_mb()))
    print("| stage | RSS (MB) | added (MB) |\n|---|---|---|")
    previous = 0.0
    for name, mb in stages:
        print(f"| {name} | {mb:.0f} | {mb - previous:+.0f} |")
        previous = mb
    print("\n| request | Session keeps (MB) | of it: trace arrays | states and previews | samples |\n|---|---|---|---|---|")
    for name, changes in REQUESTS.items():
        request = parse_request(DEFAULTS | changes, available_models())
        for session in stream_session(request, ui._model(request.model)):
            pass
        runs = session.runs.values()
        parts = [sum(nbytes(run.trace.steps, set()) for run in runs),
                 sum(nbytes(run.states, set()) + nbytes(run.previews, set()) for run in runs),
                 sum(nbytes(run.samples, set()) for run in runs)]  # fmt: skip
        print(f"| {name} | {sum(parts) / 2**20:.2f} | " + " | ".join(f"{p / 2**20:.2f}" for p in parts) + " |")
    client.close()
    app.close()


if __name__ == "__main__":
    main()
