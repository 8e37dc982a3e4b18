"""The Ray backend: one Ray task per cell, on an existing cluster or a local one started on demand.

Each task runs :func:`~stiffviz.sweep.results.run_cell` in a Ray worker with ``threads`` torch
threads, asking Ray for as many CPUs (and for one GPU when the cell runs on CUDA), so the
cluster's scheduler keeps tasks × threads ≤ cores on every node. Rows come back as tasks finish
(``ray.wait``); a cell's trace is sent back with its row and written by this process, so
``trace_dir`` need not be on storage the cluster's nodes share. Ctrl-C cancels the tasks.

``address`` is a running cluster's address (``host:port`` of its head, ``ray://host:port`` for
Ray Client, or ``auto``); an address with nothing listening is refused before any cell runs
(Ray itself would wait minutes). Without an address, a Ray session this process already holds
is used, else a local cluster of ``cores()`` CPUs is started and shut down at the end.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import ParameterError
from ..threads import cores
from .results import run_cell

CONNECT_TIMEOUT_S = 5.0
RAY_CLIENT_PORT = 10001  # ray://host without a port
RAY_HEAD_PORT = 6379  # host without a port


def import_ray():
    """The ``ray`` module, or a ParameterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ParameterError("backend", "the ray backend needs Ray: pip install stiffviz[sweep]") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """``host:port``, ``ray://host[:port]`` or ``host`` → (host, port)."""
    text = address.strip()
    client = text.startswith("ray://")
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, RAY_CLIENT_PORT if client else RAY_HEAD_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ParameterError("ray_address", f"must be host:port or ray://host:port, got {address!r}") from None


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address where nothing accepts a connection within ``timeout`` seconds."""
    if not isinstance(address, str) or not address.strip():
        raise ParameterError("ray_address", f"must be host:port, ray://host:port or auto, got {address!r}")
    if address.strip() == "auto":
        return  # Ray finds the local cluster itself and says quickly when there is none
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise ParameterError("ray_address", f"no Ray cluster reachable at {address!r} "
                                            f"({host}:{port}: {err.strerror or err}) within {timeout:g} s") from None


def connect(ray, address: str | None) -> bool:
    """Connect to the cluster at ``address`` (or reuse this process's Ray session, or start a
    local cluster). Returns True when this call started the session (so it should shut it down)."""
    if address is not None:
        check_address(address)
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address.strip(), log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = "a local Ray cluster" if address is None else f"the Ray cluster at {address!r}"
        raise ParameterError("ray_address", f"could not connect to {where}: {err}") from None
    return True


def _task(cell: dict, metrics: bool, threads: int, want_trace: bool) -> tuple[dict, str | None]:
    """Body of one Ray task: the cell's row, and its trace JSON text when asked for."""
    from ..threads import apply

    apply(threads)
    if not want_trace:
        return run_cell(cell, metrics, None), None
    with tempfile.TemporaryDirectory() as tmp:
        row = run_cell(cell, metrics, tmp)
        path = Path(tmp) / f"{row['cell_id']}.json"
        return row, path.read_text() if path.is_file() else None


def _on_cuda(cell: dict) -> bool:
    return str(cell.get("device") or "cpu").startswith("cuda")


def _cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_cells(cells: list[dict], *, workers: int | None = None, metrics: bool = False, trace_dir: str | None = None,
              on_row: Callable[[dict], None] = lambda row: None, address: str | None = None) -> None:  # fmt: skip
    """Run each cell as a Ray task and call ``on_row(row)`` here as each one finishes.

    ``workers`` (default: the cluster's CPU count) is how many cells run at once; each task asks
    Ray for ``max(1, cluster CPUs // workers)`` CPUs and runs that many torch threads, plus one
    GPU when its cell's device is CUDA. Raises ParameterError for a bad ``workers`` or an
    unreachable ``address`` before any cell runs."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ParameterError("workers", f"must be an integer ≥ 1, got {workers!r}")
    ray = import_ray()
    started = connect(ray, address)
    try:
        if not cells:
            return
        cpus = _cluster_cpus(ray)
        workers = min(workers or cpus, len(cells))
        threads = max(1, cpus // workers)
        remote = ray.remote(max_retries=0)(_task)
        want_trace = trace_dir is not None
        queue = list(cells)
        pending: list[Any] = []
        try:
            while queue or pending:
                while queue and len(pending) < workers:  # at most `workers` cells at once
                    cell = queue.pop(0)
                    options = {"num_cpus": threads, "num_gpus": 1 if _on_cuda(cell) else 0}
                    pending.append(remote.options(**options).remote(cell, metrics, threads, want_trace))
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    row, trace = ray.get(ref)
                    if trace is not None:
                        Path(trace_dir).mkdir(parents=True, exist_ok=True)
                        (Path(trace_dir) / f"{row['cell_id']}.json").write_text(trace)
                    on_row(row)
        except BaseException:
            for ref in pending:  # Ctrl-C or an error here: stop the running cells now
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


__all__ = ["check_address", "connect", "import_ray", "run_cells"]
