"""The command line end to end, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_live import TextLatentModel

from stiffviz import Trace, cli, sample
from stiffviz.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stiffviz", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_sample_end_to_end(tmp_path):
    trace_file, samples_file = tmp_path / "t.json", tmp_path / "s.npy"
    args = ["sample", "--model", "tree", "--solver", "heun", "--steps", "6", "--batch", "128", "--seed", "4",
            "--class", "B", "--cfg", "1.5", "--erk-guid", "0.5", "--metrics"]  # fmt: skip
    first = run_cli(*args, "--trace-out", str(trace_file), "--samples-out", str(samples_file))
    assert first.returncode == 0, first.stderr
    assert "NFE 11" in first.stdout
    for measure in ("swd", "nll", "precision", "recall"):
        assert measure in first.stdout
    assert "wall time" in first.stderr
    # Same flags, same output.
    assert run_cli(*args).stdout == first.stdout
    # Files hold what the library computes for the same inputs.
    expected_x, expected_trace = sample("tree", solver="heun", steps=6, batch=128, seed=4, cls="B", cfg=1.5, erk_guid=0.5)
    assert np.array_equal(np.load(samples_file), expected_x.numpy())
    loaded = Trace.from_json(trace_file)
    assert loaded.status == "ok" and len(loaded.steps) == 6
    assert np.allclose(loaded.column("lte"), expected_trace.column("lte"), equal_nan=True)
    assert set(loaded.summary) >= {"swd", "nll", "precision", "recall", "nfe"}


def test_csv_trace(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["sample", "--model", "moons", "--steps", "3", "--batch", "5", "--trace-out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("step,sample,sigma,sigma_next,nfe")
    assert len(lines) == 1 + 3 * 5


def test_bad_input_exits_2_and_names_the_parameter(capsys):
    for args, name in ((["--steps", "0"], "steps"), (["--model", "nope"], "model"), (["--sigma-min", "100"], "sigma_min"),
                       (["--cfg", "nan", "--class", "A"], "cfg"), (["--prompt", "a cat"], "prompt"),
                       (["--negative-prompt", "dull"], "prompt"), (["--schedule", "model"], "schedule"),
                       (["--device", "tpu"], "device")):  # fmt: skip
        assert main(["sample", *args]) == 2
        assert capsys.readouterr().err.startswith(f"error: {name}:")


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--solver", "--steps", "--batch", "--seed", "--dtype", "--erk-guid", "--erk-con", "--cfg",
                 "--autoguidance", "--class", "--trace-out", "--samples-out", "--metrics", "--schedule", "--sigma-min",
                 "--prompt", "--negative-prompt", "--device", "diffusers:FOLDER_OR_HUB_ID", "{karras,logsnr,model}"):  # fmt: skip
        assert flag in text


def test_ground_truth_and_stein_flags(tmp_path, capsys):
    out = tmp_path / "t.json"
    args = ["sample", "--model", "tree", "--steps", "4", "--batch", "64", "--eig", "--lte-ref", "--lipschitz",
            "--stein", "--stein-gamma-max", "2", "--stein-oracle", "--trace-out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    for column in ("lte_ref", "eig_max", "cos(e,v1)", "lipschitz", "gamma_raw", "gamma*"):
        assert column in text
    trace = Trace.from_json(out)
    assert trace.config["stein_gamma_max"] == 2.0 and trace.config["eig"] is True
    assert all(s["stein_gamma"] <= 2.0 for s in trace.steps if "stein_gamma" in s)
    assert {"eig_max", "lte_ref", "lipschitz", "stein_gamma_oracle"} <= set(trace.fields())


def test_metrics_for_an_image_model(capsys):
    assert main(["sample", "--model", "digits", "--steps", "8", "--batch", "32", "--class", "3", "--metrics"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "fd" in text and "recall" in text


def test_bad_flags_fail_before_a_model_is_loaded(monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_model", lambda *a, **k: pytest.fail("a bad flag must stop before loading"))
    assert main(["sample", "--model", "diffusers:org/big-model", "--device", "gpu0"]) == 2
    assert capsys.readouterr().err.startswith("error: device:")


def test_prompt_schedule_and_device_reach_a_text_model(monkeypatch, tmp_path, capsys):
    model, loads = TextLatentModel(), []
    monkeypatch.setattr(cli, "load_model", lambda name, device=None: loads.append((name, device)) or model)
    out = tmp_path / "s.npy"
    args = ["sample", "--model", "diffusers:org/text-model", "--prompt", "a red fox", "--negative-prompt", "blurry",
            "--cfg", "3", "--schedule", "model", "--steps", "3", "--batch", "2", "--device", "cpu",
            "--samples-out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert loads == [("diffusers:org/text-model", "cpu")] and model.prompts == [("a red fox", "blurry")]
    text = capsys.readouterr().out
    assert "prompt 'a red fox'  negative prompt 'blurry'" in text.splitlines()[1]
    expected, trace = sample(model, prompt="a red fox", negative_prompt="blurry", cfg=3.0, schedule="model", steps=3,
                             batch=2, device="cpu")  # fmt: skip
    assert np.array_equal(np.load(out), expected.numpy())
    assert trace.sigmas == model.model_sigmas(3).tolist() and not torch.equal(expected, sample(model, steps=3, batch=2)[0])
