"""The engine imports no Gradio or Plotly: only ``stiffviz.app`` may (and the library and the
command line must work without the ``[app]`` extra)."""

from __future__ import annotations

import subprocess
import sys

ENGINE = ["stiffviz", "stiffviz.models", "stiffviz.solvers", "stiffviz.guidance", "stiffviz.diagnostics",
          "stiffviz.sampler", "stiffviz.trace", "stiffviz.cli", "stiffviz.kdiffusion", "stiffviz.teaching",
          "stiffviz.quality", "stiffviz.train", "stiffviz.models.diffusers"]  # fmt: skip

BLOCKER = """
import importlib, importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('gradio', 'plotly', 'gradio_client'):
            raise ImportError(f'blocked for this test: {name}')
        return None
sys.meta_path.insert(0, Blocked())
for module in sys.argv[1:]:
    importlib.import_module(module)
import stiffviz
trace = stiffviz.sample('tree', steps=2, batch=8, seed=0)[1]
assert len(trace.steps) == 2
from stiffviz.cli import main
assert main(['sample', '--model', 'tree', '--steps', '2', '--batch', '8', '--metrics']) == 0
print('engine ok')
"""


def test_engine_imports_without_gradio_or_plotly(tmp_path):
    result = subprocess.run([sys.executable, "-c", BLOCKER, *ENGINE], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "engine ok" in result.stdout


def test_the_blocker_does_block_the_app(tmp_path):
    """The same harness fails on the app package, so the test above would notice a Gradio import."""
    result = subprocess.run([sys.executable, "-c", BLOCKER, "stiffviz.app.ui"], capture_output=True, text=True,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "blocked for this test: gradio" in result.stderr
