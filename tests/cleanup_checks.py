"""Nothing piles up on the server: sessions that end or idle leave no memory and no files behind.

The server runs in this process (its resident size is this process's VmRSS); the clients are
``gradio_client`` ones, each a fresh session that closes when done. Before each reading, garbage
is collected and glibc asked to return free memory (``malloc_trim``), so the reading is what is
still held, not what the allocator keeps. Measured before the clean-up existed (rounds of 20 runs
from fresh sessions): about 2 MB more per session, for good.
"""

from __future__ import annotations

import ctypes
import gc
import time
from pathlib import Path

import pytest
from gradio_client import Client

from stiffviz.app import sessions, ui
from stiffviz.app.requests import DEFAULTS, INPUTS

SMALL = DEFAULTS | dict(steps=2, batch=64, eig=False, compare=False, erk_on=False)  # a quick run
RUNS, EXPORTS, GROWTH_MB = 60, 50, 50
IDLE_S, EXPORT_AGE_S = 10, 4


def rss_mb() -> float:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_HEARTBEAT_INTERVAL", "1")  # a closed client is noticed within a second
        patch.setattr(sessions, "EXPORT_ROOT", tmp_path_factory.mktemp("exports"))
        patch.setattr(sessions, "IDLE_S", IDLE_S)
        patch.setattr(sessions, "EXPORT_AGE_S", EXPORT_AGE_S)
        patch.setattr(sessions, "SWEEP_S", 1)
        app = ui.queued(ui.build_app())
        _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            yield app, url
        finally:
            app.close()


def served_files(files) -> list[Path]:
    """The server's copies of an export's files (the client does not download them)."""
    return [Path(f["path"] if isinstance(f, dict) else f) for f in files]


def one_session(url: str, export: bool) -> list[Path]:
    """A fresh client: one small run, an export if asked, then it closes. Returns the exported files."""
    client = Client(url, verbose=False, download_files=False)
    try:
        client.predict(*[SMALL[name] for name in INPUTS], "step", api_name="/run")
        if not export:
            return []
        files = served_files(client.predict(api_name="/export"))
        # Gradio keeps one copy per content: a file equal to an earlier export's may be that older copy.
        assert [f.exists() for f in files if f.name.endswith(".report.html")] == [True]
        return files
    finally:
        client.close()


def wait_until_gone(app, files: list[Path], timeout: float = 90.0) -> None:
    """Until the server holds no session, the export folder is empty and the exported files are deleted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = (len(app.state_holder.session_data), list(sessions.EXPORT_ROOT.iterdir()), [f for f in files if f.exists()])
        if not any(left):
            return
        time.sleep(0.5)
    pytest.fail(f"after {timeout:.0f} s the server still holds (sessions, export folders, exported files) {left}")


def test_sessions_that_ended_leave_no_memory_and_no_files(served):
    app, url = served
    files = [f for _ in range(3) for f in one_session(url, export=True)]  # warm-up: first-use costs
    wait_until_gone(app, files)
    before = rss_mb()
    files = []
    for i in range(RUNS):
        files += one_session(url, export=i < EXPORTS)
    assert sum(f.name.endswith(".report.html") for f in files) == EXPORTS
    wait_until_gone(app, files)
    growth = rss_mb() - before
    assert growth <= GROWTH_MB, f"{RUNS} runs and {EXPORTS} exports from sessions that ended left {growth:.0f} MB"



def test_an_idle_session_is_freed_while_its_client_is_still_connected(served):
    app, url = served
    client = Client(url, verbose=False, download_files=False)
    try:
        client.predict(*[SMALL[name] for name in INPUTS], "step", api_name="/run")
        files = served_files(client.predict(api_name="/export"))
        assert client.session_hash in app.state_holder.session_data
        assert (sessions.EXPORT_ROOT / client.session_hash).is_dir() and all(f.exists() for f in files)
        wait_until_gone(app, files, timeout=IDLE_S + 30)
        with pytest.raises(Exception, match="export: run the sampler first"):  # its runs are gone
            client.predict(api_name="/export")
    finally:
        client.close()
