"""Nothing piles up on the server: ``cleanup_checks.py`` in a process of its own.

Its checks read the server's resident size and Gradio's file cache, so the server must be the
only one the process has run: earlier tests' servers (their memory, their Gradio caches and
schedules) would be counted with it, and Gradio's file cache must be its own (a copy
with the same content, left by another server, is handed out again). This runs those checks in a fresh pytest process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_sessions_that_ended_or_idled_leave_no_memory_and_no_files(tmp_path):
    env = os.environ | {"GRADIO_TEMP_DIR": str(tmp_path / "gradio")}  # not other servers' cached copies
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "cleanup_checks.py")],
                            cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout, result.stdout[-2000:]
