"""The session sweeper, without a server: idle sessions and old copies go, and a failed sweep does
not end the sweeper (the served checks are in ``cleanup_checks.py``)."""

from __future__ import annotations

import datetime
import os
import threading
import time

import gradio as gr
import pytest
from gradio.state_holder import StateHolder

from stiffviz.app import sessions


class Runs:
    def __init__(self) -> None:
        self.runs = ["a run's states"]


def app_with_one_session(session_hash: str) -> tuple[gr.Blocks, gr.State, Runs]:
    with gr.Blocks() as blocks:
        state = gr.State(None, delete_callback=sessions.free)
    StateHolder().set_blocks(blocks)
    runs = Runs()
    blocks.state_holder[session_hash][state._id] = runs
    return blocks, state, runs


@pytest.mark.parametrize("idle_s, gone", [(sessions.IDLE_S + 1, True), (sessions.IDLE_S - 1, False)])
def test_a_session_idle_past_its_time_to_live_is_forgotten_and_its_runs_freed(monkeypatch, tmp_path, idle_s, gone):
    monkeypatch.setattr(sessions, "EXPORT_ROOT", tmp_path)
    blocks, _, runs = app_with_one_session("visitor")
    sessions.export_folder("visitor")
    later = blocks.state_holder.time_last_used["visitor"] + datetime.timedelta(seconds=idle_s)
    sessions.sweep(blocks, now=later)
    assert ("visitor" not in blocks.state_holder.session_data) is gone
    assert (runs.runs == []) is gone
    assert (tmp_path / "visitor").is_dir() is not gone  # the folder is no older than its session here


def test_old_copies_go_young_and_kept_ones_stay(tmp_path):
    with gr.Blocks() as blocks:
        files = gr.File()
    old, young, kept = (tmp_path / name for name in ("old", "young", "kept"))
    for path in (old, young, kept):
        path.write_text("x")
        files.temp_files.add(str(path))
    files.keep_in_cache.add(str(kept))
    now = datetime.datetime.now() + datetime.timedelta(seconds=10)
    os.utime(young)  # ctime is now: 10 s younger than `now` says, so only an age under 10 s keeps it
    assert sessions.delete_old_copies(blocks, 60, now) == 0
    assert sessions.delete_old_copies(blocks, 5, now) == 2
    assert [p.exists() for p in (old, young, kept)] == [False, False, True]
    assert files.temp_files == {str(kept)}


def test_copies_are_deleted_while_request_threads_add_more(tmp_path):
    """Gradio's own deleter iterates the live sets and raises "Set changed size during iteration" here."""
    with gr.Blocks() as blocks:
        files = gr.File()
    adder = threading.Thread(target=lambda: [files.temp_files.add(str(tmp_path / f"copy-{i}")) for i in range(20_000)])
    adder.start()
    try:
        while adder.is_alive():
            sessions.delete_old_copies(blocks, 0)
    finally:
        adder.join()
    sessions.delete_old_copies(blocks, 0)
    assert files.temp_files == set()  # the names of copies already gone are dropped too


def test_a_failed_sweep_does_not_end_the_sweeper(monkeypatch):
    calls = []

    def flaky_sweep(blocks):
        calls.append(blocks)
        if len(calls) == 1:
            raise FileNotFoundError("a folder went while it was looked at")

    monkeypatch.setattr(sessions, "sweep", flaky_sweep)
    monkeypatch.setattr(sessions, "SWEEP_S", 0.01)
    with gr.Blocks() as blocks:
        sessions.install(blocks)
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) >= 3
