"""The shipped example trace is what the README's command makes today.

The command is read out of the README (one place), run as a user runs it (with only the
output file moved to a temporary folder), and the new trace is compared with
``stiffviz/data/example-tree-heun8-erk.json``: config, σ grid, status and every per-step value.
Only the wall time may differ. If this fails, regenerate the file with the README's command.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "stiffviz/data/example-tree-heun8-erk.json"
VOLATILE = {"wall_time_s"}  # summary keys that depend on the machine's speed
RTOL, ATOL = 1e-5, 1e-7  # float32 runs: other CPUs may round the last bits differently


def readme_command() -> list[str]:
    """The one command in the README that writes the example, as argv after ``python -m stiffviz``."""
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"`(python -m stiffviz sample [^`]*--trace-out " + re.escape(EXAMPLE) + r")`", text)
    assert len(commands) == 1, f"the README must give the example's command once, found {len(commands)}"
    argv = shlex.split(commands[0])
    assert argv[:3] == ["python", "-m", "stiffviz"]
    return argv[3:]


def assert_same(name: str, shipped, made) -> None:
    """Equal structure; numbers (None for non-finite) equal to RTOL/ATOL, everything else exactly."""
    if isinstance(shipped, dict):
        assert isinstance(made, dict) and set(shipped) == set(made), f"{name}: keys {set(shipped) ^ set(made)} differ"
        for key in shipped:
            assert_same(f"{name}.{key}", shipped[key], made[key])
    elif isinstance(shipped, list):
        assert isinstance(made, list) and len(shipped) == len(made), f"{name}: lengths differ"
        for k, (a, b) in enumerate(zip(shipped, made)):
            assert_same(f"{name}[{k}]", a, b)
    elif isinstance(shipped, float) and not isinstance(made, bool) and isinstance(made, (int, float)):
        assert math.isclose(shipped, made, rel_tol=RTOL, abs_tol=ATOL), f"{name}: {shipped} != {made}"
    else:
        assert type(shipped) is type(made) and shipped == made, f"{name}: {shipped!r} != {made!r}"


def test_the_readme_command_makes_the_shipped_example(tmp_path):
    argv = readme_command()
    out = tmp_path / "example.json"
    argv[argv.index("--trace-out") + 1] = str(out)
    result = subprocess.run([sys.executable, "-m", "stiffviz", *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    shipped, made = json.loads((ROOT / EXAMPLE).read_text()), json.loads(out.read_text())
    for key in VOLATILE:
        assert key in shipped["summary"] and key in made["summary"]
        del shipped["summary"][key], made["summary"][key]
    assert_same("trace", shipped, made)
    # The comparison has teeth: the file holds real per-sample numbers, and a changed one is caught.
    lte = np.array([s["lte"] for s in shipped["steps"][:-1]], dtype=float)
    assert lte.shape == (7, 64) and np.isfinite(lte).all() and lte.min() > 0
    changed = json.loads(json.dumps(made))
    changed["steps"][3]["stiffness"][5] *= 1 + 10 * RTOL
    with pytest.raises(AssertionError, match=re.escape("trace.steps[3].stiffness[5]")):
        assert_same("trace", shipped, changed)
