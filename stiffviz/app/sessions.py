"""What a visitor leaves on the server, and when it goes.

A browser session (or a ``gradio_client``) leaves three things behind on the server:

* its :class:`~stiffviz.app.live.Session` (every run's states, kept for scrubbing and export), in
  the page's ``gr.State``;
* Gradio's record of the session (``SessionState``: a copy of the page's configuration and the
  last value sent to every output, the charts included), which Gradio itself drops only when
  more than ``state_session_capacity`` (10,000) sessions exist;
* export files: ours in ``EXPORT_ROOT/<session>/`` and Gradio's copies of them in its cache.

They go:

* when the session ends (the tab is closed or reloaded, the client closes: Gradio's heartbeat
  drops and the page's ``unload`` event calls :func:`forget`) — at once;
* after ``IDLE_S`` seconds without an event from the session (a client that never says goodbye):
  the ``gr.State``'s own time to live, and :func:`sweep` every ``SWEEP_S`` seconds for the rest;
* export files after ``EXPORT_AGE_S`` seconds at the latest (ours and Gradio's copies by :func:`sweep`,
  the copies also by ``gr.Blocks(delete_cache=(SWEEP_S, EXPORT_AGE_S))``); a session keeps only its
  latest export.

The sweeper thread survives a failed sweep (it is logged; the next one retries): one that died
would leave idle sessions and old copies held for good.

After freeing anything, :func:`sweep` collects garbage and asks glibc's allocator to return
free memory to the system (``malloc_trim``), so the server's resident size falls back too.
The module's constants are read when the app is built (tests set them before).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import gc
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import gradio as gr

log = logging.getLogger(__name__)

IDLE_S = 3600  # a session's runs are kept this long after its last event (or until it ends)
EXPORT_AGE_S = 3600  # export files are kept at most this long (or until the session ends)
SWEEP_S = 60  # how often the sweeper looks
EXPORT_ROOT = Path(tempfile.gettempdir()) / "stiffviz-exports"
NO_SESSION = "no-session"  # the folder of exports made outside a served session (direct calls)


def free(session: Any) -> None:
    """The ``gr.State``'s delete callback: drop the session's runs (whatever else holds the
    :class:`Session` object, e.g. a stopped run's last frame, no longer holds its tensors)."""
    runs = getattr(session, "runs", None)
    if runs is not None:
        runs.clear()


def _folder(session_hash: str | None) -> Path:
    return EXPORT_ROOT / (session_hash if session_hash and "/" not in session_hash else NO_SESSION)


def export_folder(session_hash: str | None) -> Path:
    """An empty folder for an export of the session ``session_hash``, its earlier exports removed."""
    folder = _folder(session_hash)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def forget(blocks: Any, session_hash: str) -> None:
    """Free everything of the session ``session_hash``: its ``gr.State`` values (their delete
    callbacks run), Gradio's record of it and its export folder."""
    holder = getattr(blocks, "state_holder", None)
    state = None
    if holder is not None:
        with holder.lock:  # taken out first, so no other thread (Gradio's, the sweeper) is in it any more
            state = holder.session_data.pop(session_hash, None)
            holder.time_last_used.pop(session_hash, None)
    if state is not None:
        for key, value in list(state.state_data.items()):
            block = state.blocks_config.blocks.get(key)
            if isinstance(block, gr.State):
                block.delete_callback(value)
    shutil.rmtree(_folder(session_hash), ignore_errors=True)


def release_memory() -> None:
    """Collect garbage and hand free heap memory back to the system (glibc only; elsewhere a no-op)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def _age_s(path: Path, now: datetime.datetime) -> float:
    """Seconds since ``path`` was last modified; 0 for a path that is already gone."""
    try:
        return now.timestamp() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def delete_old_copies(blocks: Any, age_s: float, now: datetime.datetime | None = None) -> int:
    """Delete Gradio's cached copies of the files the app handed out (exports) once their ``st_ctime``
    is more than ``age_s`` seconds old; returns how many went.

    Gradio's ``delete_cache`` schedule does this too, but it lives in the server's lifespan, which an app
    launched after others in one process may not run; and Gradio's own deleter iterates the sets of
    copies that request threads add to, which from another thread raises "Set changed size during
    iteration". This one iterates snapshots (``set.copy`` is atomic under the GIL)."""
    now = now or datetime.datetime.now()
    keep = set()
    for block in list(getattr(blocks, "blocks", {}).values()):
        keep |= set(getattr(block, "keep_in_cache", ()))
    deleted = 0
    for copies in list(getattr(blocks, "temp_file_sets", ())):
        for name in copies.copy():
            try:
                if name in keep or now.timestamp() - os.lstat(name).st_ctime <= age_s:
                    continue
                os.remove(name)
                deleted += 1
            except FileNotFoundError:
                pass
            copies.discard(name)
    return deleted


def sweep(blocks: Any, now: datetime.datetime | None = None) -> int:
    """Forget the sessions that ended or stayed idle ``IDLE_S`` seconds, delete export folders
    older than ``EXPORT_AGE_S`` seconds; returns how many sessions and folders went."""
    now = now or datetime.datetime.now()
    holder = getattr(blocks, "state_holder", None)
    gone = []
    if holder is not None:
        with holder.lock:
            last_used = dict(holder.time_last_used)
            closed = {key for key, state in holder.session_data.items() if state.is_closed}
        gone = [key for key, used in last_used.items() if key in closed or (now - used).total_seconds() > IDLE_S]
        for key in gone:
            forget(blocks, key)
    old = [path for path in (EXPORT_ROOT.iterdir() if EXPORT_ROOT.is_dir() else ())
           if _age_s(path, now) > EXPORT_AGE_S]  # fmt: skip
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    delete_old_copies(blocks, EXPORT_AGE_S, now)
    if gone or old:
        release_memory()
    return len(gone) + len(old)


def _sweep_forever(blocks_ref: weakref.ref) -> None:
    while (blocks := blocks_ref()) is not None:
        try:
            sweep(blocks)
        except Exception:  # one failed sweep must not end the sweeper (the next one retries)
            log.exception("stiffviz: the session sweep failed")
        del blocks
        time.sleep(SWEEP_S)


def install(blocks: Any) -> None:
    """Free a session when it ends (the page's ``unload`` event) and sweep every ``SWEEP_S``
    seconds in a daemon thread (it ends with ``blocks``). Call inside the ``with blocks:`` block."""

    def session_ended(request: gr.Request) -> None:
        forget(blocks, request.session_hash)

    blocks.unload(session_ended)
    threading.Thread(target=_sweep_forever, args=(weakref.ref(blocks),), daemon=True, name="stiffviz-sweeper").start()
