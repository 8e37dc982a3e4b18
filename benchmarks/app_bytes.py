"""What a run sends to the browser, before and after light frames: ``python -m benchmarks.app_bytes``.

Serves two checkouts of the app side by side, each as its own ``app.py`` process: BEFORE (a
``git worktree`` of ``--before-rev``, default da5deb2, made under /tmp if missing) and AFTER
(this working tree). Each run is requested through the page's own protocol: a POST to
``/gradio_api/queue/join`` (the run endpoint's inputs by position, in the checkout's ``INPUTS``
order, read at run time) and the server-sent events of ``/gradio_api/queue/data``, whose
messages are counted byte by byte as they arrive on the wire. Reported: the time from the
request to the first frame and to the last, for the default example (medians of
``--repeats`` after a first, uncounted one), and the bytes of a whole run, with the largest
message, for the default example and for the tree at 50 steps × 4,096 samples (the page's
defaults otherwise). Both servers run at once and the requests alternate between them. The
table goes to stdout and to benchmarks/app_bytes.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "app_bytes.txt"
BEFORE_REV = "da5deb2"
# The run endpoint's inputs and the page's defaults, read from a checkout (its module moved to stiffviz.app).
READ_INPUTS = """import json
try:
    from stiffviz.app.ui import INPUTS, DEFAULTS
except ImportError:
    from stiffviz.ui import INPUTS, DEFAULTS
print(json.dumps([list(INPUTS), DEFAULTS]))"""
# The torch threads a run gets: AFTER's app.py sets a thread policy at start-up, BEFORE took torch's default.
READ_THREADS = """try:
    from stiffviz.app.ui import CONCURRENCY_LIMIT
    from stiffviz.threads import threads_for
    print(threads_for(CONCURRENCY_LIMIT))
except ImportError:
    import torch
    print(torch.get_num_threads())"""
BIG = dict(steps=50, batch=4096)
STARTUP_S = 600  # a server's start-up may load and time models
# The 50 × 4,096 run (compare on) is estimated over the app's default budget per run on a small
# machine; the measurement lifts the budget (a checkout without the cost cap ignores it).
SERVER_ENV = {"STIFFVIZ_RUN_BUDGET_S": "3600"}


@dataclass
class Stream:
    """One run as the browser receives it: each SSE message's size in bytes and arrival time (s)."""

    sizes: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def first_frame(self) -> float:
        return self.times[self.kinds.index("process_generating")]

    def last_frame(self) -> float:
        return self.times[self.kinds.index("process_completed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(checkout: Path) -> Iterator[str]:
    """``checkout``'s app.py on a free localhost port (PYTHONPATH = the checkout); yields its URL."""
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(checkout), "GRADIO_ANALYTICS_ENABLED": "False", **SERVER_ENV}
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{checkout}/app.py exited: {log.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/config", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{checkout}/app.py did not answer within {STARTUP_S} s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def run_endpoint(url: str) -> tuple[int, int]:
    """(id, number of inputs) of the dependency whose api_name is "run"; its inputs include the
    page's hidden ones (a gr.State), which follow the visible ones and which a page sends as null."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    ((index, inputs),) = [(d["id"], len(d["inputs"])) for d in config["dependencies"] if d.get("api_name") == "run"]
    return index, inputs


def request_run(url: str, endpoint: tuple[int, int], data: list) -> Stream:
    """Join the queue with ``data`` (padded with nulls for the hidden inputs) and read the event
    stream to its end, timing each message."""
    index, inputs = endpoint
    data = data + [None] * (inputs - len(data))
    session = uuid.uuid4().hex[:11]
    stream = Stream()
    with httpx.Client(timeout=httpx.Timeout(30, read=900)) as client:
        start = time.perf_counter()
        joined = client.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": index,
                             "trigger_id": None, "event_data": None, "session_hash": session})  # fmt: skip
        joined.raise_for_status()
        with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as response:
            buffer = b""
            for chunk in response.iter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    message, buffer = buffer.split(b"\n\n", 1)
                    payload = json.loads(message.removeprefix(b"data:"))
                    stream.sizes.append(len(message) + 2)
                    stream.times.append(time.perf_counter() - start)
                    stream.kinds.append(payload.get("msg", ""))
                    if payload.get("msg") == "process_completed":
                        if not payload.get("success", True):
                            raise RuntimeError(f"the run failed: {payload.get('output')}")
                        return stream
    raise RuntimeError("the event stream ended before the run completed")


def read(checkout: Path, code: str) -> str:
    """The last line that ``code`` prints, run with ``checkout`` on the path."""
    env = os.environ | {"PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return out.strip().splitlines()[-1]


def inputs_of(checkout: Path) -> tuple[list[str], dict]:
    names, defaults = json.loads(read(checkout, READ_INPUTS))
    return names, defaults


def measure(checkouts: dict[str, Path], repeats: int) -> dict[str, dict]:
    """Serve every checkout at once and alternate their requests (a load on the machine that
    changes over time falls on both alike): a first, uncounted default run each, ``repeats``
    default runs each, then the 50 × 4,096 run each."""
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, checkout in checkouts.items():
            names, defaults = inputs_of(checkout)
            url = stack.enter_context(served(checkout))
            servers[name] = (url, run_endpoint(url), names, defaults)

        def run(name: str, changes: dict) -> Stream:
            url, endpoint, names, defaults = servers[name]
            return request_run(url, endpoint, [(defaults | changes)[n] for n in names] + ["step"])

        results: dict[str, dict] = {name: {"default": []} for name in checkouts}
        for name in checkouts:
            run(name, {})  # one-off costs (density grids, first calls)
        for _ in range(repeats):
            for name in checkouts:
                results[name]["default"].append(run(name, {}))
        for name in checkouts:
            results[name]["big"] = run(name, BIG)
    return results


def worktree(rev: str) -> Path:
    path = Path(f"/tmp/stiffviz-before-{rev}")
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)  # fmt: skip
    return path


def table(before: dict, after: dict) -> str:
    def row(name: str, fn, unit: str) -> str:
        b, a = fn(before), fn(after)
        return f"{name:<44}{b:>12.{2 if unit == 's' else 0}f}{a:>12.{2 if unit == 's' else 0}f}{a / b:>9.2f}"

    med = lambda results, fn: statistics.median(fn(s) for s in results["default"])  # noqa: E731
    kb = 1000
    lines = [
        f"{'default example (tree, heun 6, batch 1024, compare)':<44}{'BEFORE':>12}{'AFTER':>12}{'ratio':>9}",
        row("time to first frame (s, median)", lambda r: med(r, Stream.first_frame), "s"),
        row("time to last frame (s, median)", lambda r: med(r, Stream.last_frame), "s"),
        row("bytes per run (kB)", lambda r: med(r, lambda s: sum(s.sizes)) / kb, "kB"),
        row("largest message (kB)", lambda r: med(r, lambda s: max(s.sizes)) / kb, "kB"),
        row("messages", lambda r: med(r, lambda s: len(s.sizes)), "n"),
        "tree 50 steps x 4096 (otherwise defaults)",
        row("bytes per run (kB)", lambda r: sum(r["big"].sizes) / kb, "kB"),
        row("largest message (kB)", lambda r: max(r["big"].sizes) / kb, "kB"),
        row("messages", lambda r: len(r["big"].sizes), "n"),
        row("time to last frame (s)", lambda r: r["big"].last_frame(), "s"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before-rev", default=BEFORE_REV)
    parser.add_argument("--before", type=Path, help="a checkout of the BEFORE revision (default: a git worktree)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the servers are stopped on the way out
    checkouts = {"before": args.before or worktree(args.before_rev), "after": ROOT}
    threads = {name: read(checkout, READ_THREADS) for name, checkout in checkouts.items()}
    results = measure(checkouts, args.repeats)
    text = (f"app bytes and frame times through /gradio_api/queue (SSE bytes as received); BEFORE = "
            f"{args.before_rev}, AFTER = working tree (torch threads per run: {threads['before']} before, "
            f"{threads['after']} after); both served at once, requests alternating; medians of {args.repeats} "
            f"default runs after a first one; {os.cpu_count()} CPU cores\n"
            + table(results["before"], results["after"]))  # fmt: skip
    print(text)
    OUT.write_text(text + "\n")


if __name__ == "__main__":
    main()
