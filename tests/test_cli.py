"""The command line end to end, as a user runs it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import linear_drift_model
from test_live import TextLatentModel

from stiffviz import Trace, cli, load_model, sample
from stiffviz.cli import main
from stiffviz.config import SampleConfig
from stiffviz.guidance.erk import default_erk_con
from stiffviz.quality import quality_report

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
    assert "wall time" in first.stderr
    # Same flags, same output.
    assert run_cli(*args).stdout == first.stdout
    # Files hold what the library computes for the same inputs.
    expected_x, expected_trace = sample("tree", solver="heun", steps=6, batch=128, seed=4, cls="B", cfg=1.5, erk_guid=0.5)
    assert np.array_equal(np.load(samples_file), expected_x.numpy())
    loaded = Trace.from_json(trace_file)
    assert loaded.status == "ok" and len(loaded.steps) == 6
    assert np.allclose(loaded.column("lte"), expected_trace.column("lte"), equal_nan=True)
    # The printed quality is the report of the library's samples, to the 4 decimals shown, and the trace keeps it.
    expected = quality_report(load_model("tree"), expected_x, "B", 4)
    assert printed_quality(first.stdout) == {name: round(value, 4) for name, value in expected.items()}
    assert {name: loaded.summary[name] for name in expected} == pytest.approx(expected, rel=1e-12)


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


# The flags whose value is a stiffviz.sample setting of another name (the rest: the flag's own dest).
SETTING_OF = {"eig_iters": "eig_iterations", "lanczos_iters": "lanczos_iterations",
              "lipschitz_iters": "lipschitz_iterations", "no_diagnostics": "diagnostics"}  # fmt: skip
NOT_SETTINGS = {"help", "metrics", "trace_out", "samples_out", "threads",  # what the CLI does, not the run
                "schedule_from", "schedule_rule", "stability_target"}  # they make `sigmas` (tests/test_prescribe.py)


def sample_flags() -> list:
    (commands,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [a for a in commands.choices["sample"]._actions if a.dest not in NOT_SETTINGS]


def test_every_flag_defaults_to_the_librarys_setting():
    """A run without flags is ``stiffviz.sample()`` with its own defaults: each flag's default (what
    --help shows) is the value the library's trace records when the setting is not passed at all."""
    _, trace = sample(steps=1, batch=1)  # steps and batch: the library's declared defaults (a full run is slow)
    library = trace.config | {"steps": SampleConfig().steps, "batch": SampleConfig().batch}
    flags = sample_flags()
    assert len(flags) >= 30
    for action in flags:
        default = not action.default if action.dest == "no_diagnostics" else action.default
        if action.dest == "erk_con":  # None: by steps; the trace records the value used for steps = 1
            assert default is None
            default = default_erk_con(1)
        if action.dest == "path":  # None: the model's own; the trace records the path used
            assert default is None
            default = "edm"
        setting = SETTING_OF.get(action.dest, action.dest)
        assert library[setting] == default and type(library[setting]) is type(default), (action.option_strings, default)


def test_every_flag_reaches_the_run_with_its_type(capsys):
    """Each flag given a value other than its default: the parsed setting has that value and type."""
    values = {"--model": "moons", "--solver": "rk4", "--steps": "7", "--batch": "9", "--seed": "5", "--dtype": "float64",
              "--device": "cpu", "--schedule": "logsnr", "--sigma-min": "0.01", "--sigma-max": "20", "--rho": "3",
              "--class": "1", "--prompt": "a fox", "--negative-prompt": "dull", "--cfg": "2.5", "--autoguidance": "1.5",
              "--erk-guid": "0.25", "--erk-con": "0.75", "--eig-method": "power", "--eig-iters": "11",
              "--lanczos-iters": "3", "--lte-ref-substeps": "8", "--lipschitz-iters": "4", "--stein-probes": "2",
              "--stein-gamma-min": "0.5", "--stein-gamma-max": "2.5", "--stein-sigma-min": "0.1",
              "--stein-sigma-max": "9", "--churn": "3", "--s-tmin": "0.05", "--s-tmax": "50", "--s-noise": "1.003",
              "--rtol": "0.02", "--atol": "0.001", "--path": "flow", "--shift": "3"}  # fmt: skip
    switches = {"--no-diagnostics", "--eig", "--lte-ref", "--lipschitz", "--stein", "--stein-oracle", "--adaptive"}
    negations = {"--denoise-to-zero": "--no-denoise-to-zero"}  # on by default; the --no- form turns it off
    flags = {a.option_strings[0]: a for a in sample_flags()}
    assert set(flags) == set(values) | switches | set(negations)  # a new flag must be added here
    argv = ["sample", *[part for flag, value in values.items() for part in (flag, value)], *switches,
            *negations.values()]
    args = cli.build_parser().parse_args(argv)
    for flag, text in values.items():
        parsed = getattr(args, flags[flag].dest)
        expected = int(text) if flags[flag].type is int else float(text) if flags[flag].type is float else text
        assert parsed == expected and type(parsed) is type(expected), flag
    assert all(getattr(args, flags[flag].dest) is True for flag in switches)
    assert all(getattr(args, flags[flag].dest) is False for flag in negations)
    for flag in ("--steps", "--seed", "--cfg", "--rho"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["sample", flag, "lots"])
        assert f"argument {flag}: invalid" in capsys.readouterr().err


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


def printed_quality(stdout: str) -> dict:
    """The numbers of the summary's "quality" line (None for n/a)."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("quality  ")]
    words = line.split()[1:]
    return {name: None if value == "n/a" else float(value) for name, value in zip(words[::2], words[1::2])}


def test_metrics_for_an_image_model(capsys):
    assert main(["sample", "--model", "digits", "--steps", "8", "--batch", "32", "--class", "3", "--metrics"]) == 0
    x, _ = sample("digits", steps=8, batch=32, cls=3)
    expected = quality_report(load_model("digits"), x, 3, 0)
    assert set(expected) == {"accuracy", "fd", "precision", "recall"}
    assert printed_quality(capsys.readouterr().out) == {name: round(value, 4) for name, value in expected.items()}


@pytest.mark.parametrize(("model", "batch", "missing"), [("tree", 3, "precision and recall need at least 4 samples"),
                                                          ("digits", 1, "fd needs at least 2")])  # fmt: skip
def test_metrics_of_a_batch_too_small_for_some_measures(model, batch, missing, capsys, tmp_path):
    out = tmp_path / "t.json"
    args = ["sample", "--model", model, "--steps", "3", "--batch", str(batch), "--metrics", "--trace-out", str(out)]
    assert main([*args, *(["--class", "3"] if model == "digits" else [])]) == 0
    text = capsys.readouterr().out
    x, _ = sample(model, steps=3, batch=batch, cls=3 if model == "digits" else None)
    expected = quality_report(load_model(model), x, 3 if model == "digits" else None, 0)
    shown = printed_quality(text)
    assert shown == {name: None if value is None else round(value, 4) for name, value in expected.items()}
    assert shown["precision"] is None and shown["recall"] is None
    assert isinstance(shown["swd"] if model == "tree" else shown["accuracy"], float)  # the rest is measured
    assert f"n/a: {missing}" in text and f"the run has {batch}" in text
    assert Trace.from_json(out).summary["precision"] is None  # the trace keeps the run, n/a as null


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


def cli_run(tmp_path, *args: str) -> tuple[int, Trace, np.ndarray]:
    """``main`` with the trace and samples written to tmp_path: (exit status, trace, samples)."""
    trace_file, samples_file = tmp_path / f"t{len(list(tmp_path.iterdir()))}.json", tmp_path / "s.npy"
    code = main(["sample", *args, "--trace-out", str(trace_file), "--samples-out", str(samples_file)])
    return code, Trace.from_json(trace_file), np.load(samples_file)


def test_a_diverging_run_exits_1_with_its_trace_and_last_finite_state_written(tmp_path, capsys):
    """SteinDiff with γ clipped to −10 blows the tree up part-way through 60 steps."""
    settings = dict(steps=60, batch=16, stein=True, stein_gamma_min=-10.0, stein_gamma_max=-10.0)
    code, trace, samples = cli_run(tmp_path, "--steps", "60", "--batch", "16", "--stein", "--stein-gamma-min", "-10",
                                   "--stein-gamma-max", "-10", "--metrics")  # fmt: skip
    out = capsys.readouterr().out
    expected_x, expected = sample("tree", **settings)
    assert code == 1 and trace.status == expected.status == "diverged"
    failing = len(expected.steps) - 1
    assert 0 < failing < 59 and len(trace.steps) == failing + 1  # every step up to and including the failing one
    assert [s["sigma"] for s in trace.steps] == [s["sigma"] for s in expected.steps]
    np.testing.assert_array_equal(trace.column("lte")[:failing], expected.column("lte")[:failing])
    assert trace.message == expected.message and f"non-finite at step {failing}" in trace.message
    assert np.array_equal(samples, expected_x.numpy()) and np.isfinite(samples).all()
    assert f"status diverged: {expected.message}" in out.splitlines()[1]
    assert "quality  n/a: the run diverged" in out  # no measures from a blown-up state


def test_dtype_flag(tmp_path, capsys):
    code, trace, samples = cli_run(tmp_path, "--dtype", "float64", "--steps", "4", "--batch", "8")
    assert code == 0 and trace.config["dtype"] == "float64" and samples.dtype == np.float64
    assert np.array_equal(samples, sample(dtype="float64", steps=4, batch=8)[0].numpy())
    single = sample(steps=4, batch=8)[0].numpy()  # float32, whose initial noise is drawn in float32
    assert single.dtype == np.float32 and not np.allclose(samples, single)


def test_schedule_and_rho_flags_give_their_grids(tmp_path, capsys):
    """Against the grids' formulas: log σ linear (logsnr); (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ."""
    code, trace, _ = cli_run(tmp_path, "--schedule", "logsnr", "--steps", "5", "--sigma-min", "0.01",
                             "--sigma-max", "20", "--batch", "4")  # fmt: skip
    assert code == 0 and trace.config["schedule"] == "logsnr"
    np.testing.assert_allclose(trace.sigmas, [*np.exp(np.linspace(np.log(20), np.log(0.01), 5)), 0.0], rtol=1e-12)
    code, trace, _ = cli_run(tmp_path, "--rho", "3", "--steps", "6", "--batch", "4")
    i, lo, hi = np.arange(6), 0.002 ** (1 / 3), 80.0 ** (1 / 3)
    assert code == 0 and trace.config["rho"] == 3.0
    np.testing.assert_allclose(trace.sigmas, [*(hi + i / 5 * (lo - hi)) ** 3, 0.0], rtol=1e-12)


def test_autoguidance_flag(tmp_path, capsys):
    code, trace, samples = cli_run(tmp_path, "--autoguidance", "2", "--steps", "4", "--batch", "16")
    assert code == 0 and trace.config["autoguidance"] == 2.0 and trace.config["model_calls_per_nfe"] == 2
    assert np.array_equal(samples, sample(autoguidance=2.0, steps=4, batch=16)[0].numpy())
    assert not np.allclose(samples, sample(steps=4, batch=16)[0].numpy())


@pytest.mark.parametrize("w_con", [0.3, 2.0])
def test_erk_con_flag_is_the_threshold_on_rho_hat(tmp_path, capsys, w_con):
    """β = 1[ρ̂ > w_con] per sample on every step ERK-Guid acts on (1 … N−2)."""
    code, trace, _ = cli_run(tmp_path, "--erk-guid", "0.5", "--erk-con", str(w_con), "--steps", "8", "--batch", "64")
    assert code == 0 and trace.config["erk_con"] == w_con
    active, stiffness = trace.column("erk_active")[1:7], trace.column("stiffness")[1:7]
    assert np.array_equal(active, (stiffness > w_con).astype(float))
    assert 0 < active.mean() < 1


def test_no_diagnostics_flag(tmp_path, capsys):
    code, trace, samples = cli_run(tmp_path, "--no-diagnostics", "--steps", "5", "--batch", "16")
    assert code == 0 and trace.config["diagnostics"] is False
    assert not {"lte", "stiffness", "stiffness_z"} & set(trace.fields())
    with_diagnostics = sample(steps=5, batch=16)
    assert {"lte", "stiffness"} <= set(with_diagnostics[1].fields())
    assert np.array_equal(samples, with_diagnostics[0].numpy())  # diagnostics never move the samples


def test_eig_flags(tmp_path, capsys):
    """2-D tree: Lanczos with 1 iteration has one Ritz value (ratio 1), with 2 it is exact; power
    iteration with 1 iteration misses λ₁ where many do not."""
    base = ("--eig", "--steps", "4", "--batch", "8")
    _, exact, _ = cli_run(tmp_path, *base, "--eig-method", "exact")
    _, rough, _ = cli_run(tmp_path, *base, "--eig-method", "power", "--eig-iters", "1", "--lanczos-iters", "1")
    _, fine, _ = cli_run(tmp_path, *base, "--eig-method", "power", "--eig-iters", "50", "--lanczos-iters", "2")
    assert (rough.config["eig_method"], rough.config["eig_iterations"], rough.config["lanczos_iterations"]) == ("power", 1, 1)
    assert (fine.config["eig_iterations"], fine.config["lanczos_iterations"]) == (50, 2)
    np.testing.assert_array_equal(rough.column("stiffness_ratio"), 1.0)
    np.testing.assert_allclose(fine.column("stiffness_ratio"), exact.column("stiffness_ratio"), rtol=1e-3)
    np.testing.assert_allclose(fine.column("eig_max"), exact.column("eig_max"), rtol=0.02)
    assert np.abs(rough.column("eig_max")[-1] / exact.column("eig_max")[-1] - 1).max() > 0.1


def heun_and_rk4(h_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heun's and RK4's one-step matrices for y' = Ay: the Taylor polynomials of e^{hA} to orders 2 and 4."""
    eye, z = np.eye(len(h_a)), h_a
    heun = eye + z + z @ z / 2
    return heun, heun + z @ z @ z / 6 + z @ z @ z @ z / 24


def test_lte_ref_substeps_and_lipschitz_iters_against_closed_forms(tmp_path, capsys, monkeypatch):
    """A linear drift f = Ax (symmetric A): Heun's step is R₂(hA)x, the reference of one RK4 sub-step is
    R₄(hA)x, many sub-steps approach e^{hA}x; the step map's Lipschitz constant is max |R₂(hλ)|."""
    a = np.array([[0.2, 0.05], [0.05, 0.4]])
    model = linear_drift_model(torch.tensor(a))
    monkeypatch.setattr(cli, "load_model", lambda name, device=None: model)
    base = ("--model", "linear", "--dtype", "float64", "--steps", "4", "--batch", "3", "--sigma-max", "5")
    states = []
    sample(model, dtype="float64", steps=4, batch=3, sigma_max=5.0, on_step=lambda r, x, d: states.append(x.numpy()))
    _, one, _ = cli_run(tmp_path, *base, "--lte-ref", "--lte-ref-substeps", "1")
    _, many, _ = cli_run(tmp_path, *base, "--lte-ref", "--lte-ref-substeps", "64")
    assert (one.config["lte_ref_substeps"], many.config["lte_ref_substeps"]) == (1, 64)
    x0 = 5.0 * torch.randn((3, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()  # seed 0
    xs = [x0, *states]
    eigenvalues, vectors = np.linalg.eigh(a)
    for i in range(3):  # the last step (to σ = 0) is Euler, without a reference
        h = one.sigmas[i + 1] - one.sigmas[i]
        heun, rk4 = heun_and_rk4(h * a)
        exact = vectors @ np.diag(np.exp(h * eigenvalues)) @ vectors.T
        np.testing.assert_allclose(one.column("lte_ref")[i], np.linalg.norm(xs[i] @ (heun - rk4).T, axis=1), rtol=1e-7)
        np.testing.assert_allclose(many.column("lte_ref")[i], np.linalg.norm(xs[i] @ (heun - exact).T, axis=1),
                                   rtol=1e-6)  # fmt: skip
    _, rough, _ = cli_run(tmp_path, *base, "--lipschitz", "--lipschitz-iters", "1")
    _, fine, _ = cli_run(tmp_path, *base, "--lipschitz", "--lipschitz-iters", "30")
    assert (rough.config["lipschitz_iterations"], fine.config["lipschitz_iterations"]) == (1, 30)
    # Step 0 (a cold start; later steps start from the previous step's vector, which for this A, whose
    # eigenvectors never change, is an eigenvector the iteration cannot leave).
    h = fine.sigmas[1] - fine.sigmas[0]
    norm = np.abs(1 + h * eigenvalues + (h * eigenvalues) ** 2 / 2).max()
    np.testing.assert_allclose(fine.column("lipschitz")[0], norm, rtol=1e-6)
    assert (rough.column("lipschitz")[0] <= norm * (1 + 1e-9)).all()  # a Rayleigh quotient: never above
    assert rough.column("lipschitz")[0].min() < norm * (1 - 1e-2)  # one iteration falls short


def test_stein_flags(tmp_path, capsys):
    """γ = clip(γ_raw, γ_min, γ_max) on exactly the steps with σ_min^Stein ≤ σ ≤ σ_max^Stein; K probes move γ_raw."""
    base = ("--stein", "--steps", "8", "--batch", "32", "--stein-sigma-min", "0.5", "--stein-sigma-max", "20",
            "--stein-gamma-min", "0.9", "--stein-gamma-max", "1.2")  # fmt: skip
    _, one, _ = cli_run(tmp_path, *base, "--stein-probes", "1")
    _, eight, _ = cli_run(tmp_path, *base, "--stein-probes", "8")
    for trace, probes in ((one, 1), (eight, 8)):
        c = trace.config
        assert (c["stein_probes"], c["stein_sigma_min"], c["stein_sigma_max"]) == (probes, 0.5, 20.0)
        assert (c["stein_gamma_min"], c["stein_gamma_max"]) == (0.9, 1.2)
        acting = [s for s in trace.steps if "stein_gamma" in s]
        assert [s["i"] for s in acting] == [s["i"] for s in trace.steps if 0.5 <= s["sigma"] <= 20] != []
        assert all(s["stein_gamma"] == min(max(s["stein_gamma_raw"], 0.9), 1.2) for s in acting)
    assert [s.get("stein_gamma_raw") for s in one.steps] != [s.get("stein_gamma_raw") for s in eight.steps]


def test_device_flag(tmp_path, capsys):
    code, trace, samples = cli_run(tmp_path, "--device", "cpu", "--steps", "4", "--batch", "8")
    assert code == 0 and trace.config["device"] == "cpu"
    assert np.array_equal(samples, sample(steps=4, batch=8)[0].numpy())


def test_erk_con_defaults_by_steps_and_the_trace_records_it(tmp_path, capsys):
    """Without --erk-con: the authors' w_con for the step count (0.1 at 8, 0.3 at 16); the run is the
    one with that value given."""
    for steps, w_con in (("8", 0.1), ("16", 0.3)):
        code, trace, samples = cli_run(tmp_path, "--erk-guid", "0.5", "--steps", steps, "--batch", "32")
        assert code == 0 and trace.config["erk_con"] == w_con
        assert np.array_equal(samples, sample(erk_guid=0.5, erk_con=w_con, steps=int(steps), batch=32)[0].numpy())


def test_no_denoise_to_zero_ends_the_grid_at_sigma_min(tmp_path, capsys):
    """--steps 8 --no-denoise-to-zero: 8 levels from σ_max to σ_min, 7 Heun steps (14 NFE), samples at σ_min."""
    code, trace, samples = cli_run(tmp_path, "--steps", "8", "--batch", "32", "--no-denoise-to-zero")
    assert code == 0 and trace.config["denoise_to_zero"] is False
    assert len(trace.sigmas) == 8 and trace.sigmas[0] == 80.0 and trace.sigmas[-1] == pytest.approx(0.002)
    assert trace.summary["nfe"] == 14 and "NFE 14" in capsys.readouterr().out
    assert main(["sample", "--steps", "1", "--no-denoise-to-zero"]) == 2
    assert "steps" in capsys.readouterr().err
