"""app.py's options and environment: ``--host``/``--port`` reach Gradio's launch, without them the
server listens where GRADIO_SERVER_NAME/PORT say, and STIFFVIZ_MODELS / STIFFVIZ_DIFFUSERS choose
the served models when no ``--model`` is given."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from test_live import FAKE, TextLatentModel

import app
from stiffviz.app import ui
from stiffviz.app.requests import available_models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launched(monkeypatch):
    """app.main without serving: each launch's (blocks, keyword arguments), and the specs loaded."""
    calls, loads = [], []
    monkeypatch.setattr(ui.gr.Blocks, "launch", lambda self, **kwargs: calls.append((self, kwargs)))
    monkeypatch.setattr(ui, "load_model", lambda name, device=None: loads.append(name) or TextLatentModel())
    monkeypatch.delenv("STIFFVIZ_MODELS", raising=False)
    monkeypatch.delenv("STIFFVIZ_DIFFUSERS", raising=False)
    threads = torch.get_num_threads()  # app.main sets the server's thread policy
    ui._model.cache_clear()
    yield calls, loads
    ui._model.cache_clear()
    torch.set_num_threads(threads)


def offered(blocks) -> list[str]:
    (dropdown,) = [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "model"]
    return [value for _, value in dropdown.choices]


def test_host_and_port_reach_gradios_launch(launched):
    calls, _ = launched
    assert app.main(["--host", "0.0.0.0", "--port", "7861"]) == 0
    ((_, kwargs),) = calls
    assert kwargs["server_name"] == "0.0.0.0" and kwargs["server_port"] == 7861 and type(kwargs["server_port"]) is int
    calls.clear()
    assert app.main([]) == 0  # no flags: None, so Gradio's own defaults and GRADIO_SERVER_NAME/PORT apply
    ((_, kwargs),) = calls
    assert kwargs["server_name"] is None and kwargs["server_port"] is None


def test_a_port_that_is_no_number_is_refused_by_name(launched, capsys):
    with pytest.raises(SystemExit) as stop:
        app.main(["--port", "http"])
    assert stop.value.code == 2 and "argument --port: invalid int value: 'http'" in capsys.readouterr().err
    assert launched[0] == []


def test_stiffviz_models_chooses_the_served_models_and_the_command_line_wins(launched, monkeypatch, capsys):
    calls, loads = launched
    monkeypatch.setenv("STIFFVIZ_MODELS", f" {FAKE}, moons\n{FAKE},,")
    assert app.main([]) == 0
    assert [name for name in loads if name not in available_models()] == [FAKE]  # once
    assert offered(calls[-1][0]) == [*available_models(), FAKE]
    loads.clear()
    ui._model.cache_clear()
    assert app.main(["--model", "tree"]) == 0  # the command line names models: the environment is not read
    assert FAKE not in loads and offered(calls[-1][0]) == available_models()
    monkeypatch.delenv("STIFFVIZ_MODELS")
    monkeypatch.setenv("STIFFVIZ_DIFFUSERS", "/srv/unet")
    capsys.readouterr()
    loads.clear()
    ui._model.cache_clear()
    assert app.main([]) == 0
    assert [name for name in loads if name not in available_models()] == ["diffusers:/srv/unet"]
    assert offered(calls[-1][0]) == [*available_models(), "diffusers:/srv/unet"]
    assert "STIFFVIZ_DIFFUSERS is deprecated; use --model diffusers:PATH / STIFFVIZ_MODELS" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_listens_where_gradio_server_name_and_port_say():
    port = free_port()
    env = os.environ | {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env.pop("STIFFVIZ_MODELS", None)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline, config = time.monotonic() + 300, None
        while config is None and server.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.load(response)
            except OSError:
                time.sleep(1)
        assert config is not None, f"nothing served on port {port}: {server.poll()=}"
        ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {"model", "step-slider", "results"} <= ids  # it is stiffviz's page
    finally:
        server.terminate()
        server.wait(timeout=30)
