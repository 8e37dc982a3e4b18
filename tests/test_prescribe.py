"""Prescribed schedules (docs/math.md §13): the two rules against closed forms, same NFE, the
explicit grid setting, the CLI round trip and the named errors."""

import json
import math

import numpy as np
import pytest

from stiffviz import sample
from stiffviz.cli import main
from stiffviz.errors import ParameterError
from stiffviz.prescribe import check_matches, load_trace, prescribe
from stiffviz.trace import Trace

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def log_grid(levels: int) -> list[float]:
    """Levels uniform in ln σ from σ_max to σ_min (written here, not taken from the package)."""
    return [math.exp(math.log(SIGMA_MAX) + j / (levels - 1) * (math.log(SIGMA_MIN) - math.log(SIGMA_MAX)))
            for j in range(levels)]  # fmt: skip


def edm_grid(levels: int, rho: float) -> list[float]:
    return [(SIGMA_MAX ** (1 / rho) + j / (levels - 1) * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho
            for j in range(levels)]  # fmt: skip


def synthetic(levels: list[float], lte=None, stiffness=None, solver="heun", boundary=2.0, batch=3) -> Trace:
    """A trace on ``levels`` + 0 whose step i records lte(σ_i, σ_{i+1}) and stiffness(σ_i) for every sample."""
    grid = [*levels, 0.0]
    steps = []
    for i, (s, t) in enumerate(zip(grid, grid[1:])):
        step = {"i": i, "sigma": s, "sigma_next": t, "nfe": 2 * i + 1, "stability_boundary": boundary if t > 0 else 2.0}
        if lte is not None and t > 0:
            step["lte"] = np.full(batch, lte(s, t))
        if stiffness is not None:
            step["stiffness"] = np.full(batch, stiffness(s))
        steps.append(step)
    return Trace({"model": "tree", "solver": solver, "batch": batch}, grid, steps)


def test_lte_rule_equalises_c_h_k_for_a_power_law():
    """C(σ) = a σ^β is what log-log interpolation recovers exactly, so every step of the new grid
    must have the same C(√(σ_j σ_{j+1}))·|h_j|^k, k = p + 1 = 2 for Heun, computed here from C."""
    for beta in (-1.5, 1.0, -4.0):
        for levels in (5, 8, 24):
            C = lambda s: 0.3 * s**beta  # noqa: E731
            trace = synthetic(edm_grid(levels, 7.0), lte=lambda s, t: C(math.sqrt(s * t)) * (s - t) ** 2)
            result = prescribe(trace, "lte")
            assert len(result.sigmas) == levels
            assert result.sigmas[0] == SIGMA_MAX and result.sigmas[-1] == pytest.approx(SIGMA_MIN, rel=1e-12)
            values = [C(math.sqrt(s * t)) * (s - t) ** 2 for s, t in zip(result.sigmas, result.sigmas[1:])]
            np.testing.assert_allclose(values, values[0], rtol=1e-9)
            np.testing.assert_allclose(result.predicted, values, rtol=1e-9)


def test_lte_rule_closed_forms():
    """β = −k: a C·|h|^k = a·r^{−1}(1 − r)² depends on the ratio r = σ_{j+1}/σ_j alone, so the grid
    is geometric. Many small steps: the step density tends to ∝ σ^{β/k}, whose levels are
    σ_j^γ = σ_max^γ + j/(M−1)(σ_min^γ − σ_max^γ), γ = β/k + 1 (an EDM grid with ρ = 1/γ)."""
    trace = synthetic(edm_grid(9, 7.0), lte=lambda s, t: 2.0 * math.sqrt(s * t) ** -2 * (s - t) ** 2)
    np.testing.assert_allclose(prescribe(trace, "lte").sigmas, log_grid(9), rtol=1e-9)
    beta, levels = -1.0, 400
    trace = synthetic(log_grid(levels), lte=lambda s, t: 0.3 * math.sqrt(s * t) ** beta * (s - t) ** 2)
    got, limit = np.array(prescribe(trace, "lte").sigmas), np.array(edm_grid(levels, 1 / (beta / 2 + 1)))
    small_steps = limit > 1.0  # where |h| ≪ σ (near σ_min this grid's ratios stay large)
    np.testing.assert_allclose(got[small_steps], limit[small_steps], rtol=5e-3)


def test_lte_rule_on_a_smooth_c_evens_out_the_true_error():
    """C(σ) not a power law: the rule sees it only at the recorded steps, yet the true C·|h|² of
    its grid is far more even than the base grid's."""
    C = lambda s: 0.1 / s * (1 + s) ** 1.5 * math.exp(-0.2 * math.sqrt(s))  # noqa: E731
    trace = synthetic(edm_grid(24, 7.0), lte=lambda s, t: C(math.sqrt(s * t)) * (s - t) ** 2)
    sig = prescribe(trace, "lte").sigmas
    values = [C(math.sqrt(s * t)) * (s - t) ** 2 for s, t in zip(sig, sig[1:])]
    base = [C(math.sqrt(s * t)) * (s - t) ** 2 for s, t in zip(trace.sigmas[:-1], trace.sigmas[1:-1])]
    assert max(values) / min(values) < 1.1 and max(base) / min(base) > 50


def stability_z(sigmas, a, beta, boundary=2.0):
    """z/B = |h|·max ρ̂/B over each step, for ρ̂(σ) = a σ^{−β} (β > 0: the max is at the step's end)."""
    return np.array([(s - t) * a * t**-beta / boundary for s, t in zip(sigmas, sigmas[1:])])


def test_stability_rule_keeps_z_within_the_target():
    """ρ̂(σ) = a σ^{−1.5}: the base EDM grid's last steps exceed z/B = 0.5; the new grid's do not."""
    a, beta, target, levels = 0.2, 1.5, 0.5, 16
    base = edm_grid(levels, 7.0)
    trace = synthetic(base, stiffness=lambda s: a * s**-beta)
    assert stability_z(base, a, beta).max() > 1.5 * target
    result = prescribe(trace, "stability", target)
    z = stability_z(result.sigmas, a, beta)
    assert result.feasible and len(result.sigmas) == levels
    assert result.sigmas[0] == base[0] and result.sigmas[-1] == base[-1]
    assert z.max() <= target * (1 + 1e-9) and z.max() > 0.99 * target  # it binds, and holds
    np.testing.assert_allclose(result.predicted, z, rtol=1e-9)
    np.testing.assert_allclose(result.base_predicted, stability_z(base, a, beta), rtol=1e-9)


def test_stability_rule_keeps_the_base_grid_where_the_target_does_not_bind():
    base = edm_grid(12, 7.0)
    trace = synthetic(base, stiffness=lambda s: 0.01 / s)
    assert stability_z(base, 0.01, 1.0).max() < 0.1
    np.testing.assert_allclose(prescribe(trace, "stability", 0.5).sigmas, base, rtol=1e-12)


def test_stability_rule_with_the_target_out_of_reach_evens_z_out():
    """Too few steps for the target: every step gets the same z/B, the least largest one."""
    a, beta, levels = 5.0, 1.5, 10
    trace = synthetic(edm_grid(levels, 7.0), stiffness=lambda s: a * s**-beta)
    result = prescribe(trace, "stability", 0.5)
    assert not result.feasible
    z = stability_z(result.sigmas, a, beta)
    np.testing.assert_allclose(z, z[0], rtol=1e-9)
    assert z[0] > 0.5
    # ρ̂ = a/σ makes the equal-z grid geometric: z/B = a(1/r − 1)/B with r the common ratio
    trace = synthetic(edm_grid(levels, 7.0), stiffness=lambda s: 50.0 / s)
    ratio = (SIGMA_MIN / SIGMA_MAX) ** (1 / (levels - 1))
    np.testing.assert_allclose(prescribe(trace, "stability", 0.8).sigmas, log_grid(levels), rtol=1e-9)
    np.testing.assert_allclose(prescribe(trace, "stability", 0.8).predicted, 50.0 * (1 / ratio - 1) / 2.0, rtol=1e-9)


def test_a_prescribed_grid_runs_at_the_same_nfe():
    for solver, rule in (("heun", "lte"), ("heun", "stability"), ("bosh3", "lte"), ("dpmpp2m", "stability")):
        _, base = sample("tree", solver=solver, steps=6, batch=16)
        result = prescribe(base, rule)
        _, rerun = sample("tree", solver=solver, sigmas=result.sigmas, batch=16)
        assert rerun.summary["nfe"] == base.summary["nfe"]
        assert rerun.sigmas[:-1] == list(result.sigmas) and rerun.sigmas[-1] == 0.0
        assert rerun.config["steps"] == 6 and tuple(rerun.config["sigmas"]) == result.sigmas


def test_explicit_grid_equals_the_schedule_it_copies_and_appends_zero_once():
    x1, t1 = sample("tree", steps=5, batch=32)
    x2, t2 = sample("tree", sigmas=t1.sigmas, batch=32)  # with its final 0
    x3, _ = sample("tree", sigmas=t1.sigmas[:-1], batch=32)
    assert t2.sigmas == t1.sigmas
    assert (x1 == x2).all() and (x1 == x3).all()


@pytest.mark.parametrize("sigmas, words", [
    ([1.0, 2.0], "strictly decreasing"),
    ([3.0, -1.0, 0.0], "> 0"),
    ([3.0, float("nan")], "finite"),
    ([], "1 to 1000 positive levels"),
    ("80,1", "sequence of numbers"),
    ([3.0, "a"], "numbers"),
])  # fmt: skip
def test_bad_explicit_grids_are_named(sigmas, words):
    with pytest.raises(ParameterError, match=words) as err:
        sample("tree", sigmas=sigmas, batch=4)
    assert err.value.parameter == "sigmas"


def test_steps_must_match_the_explicit_grid():
    with pytest.raises(ParameterError, match="has 2 positive levels, so steps must be 2, got 3") as err:
        sample("tree", sigmas=[10.0, 1.0], steps=3, batch=4)
    assert err.value.parameter == "sigmas"


def test_cli_round_trip(tmp_path, capsys):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["sample", "--steps", "6", "--batch", "64", "--trace-out", str(first)]) == 0
    for rule in ("lte", "stability"):
        assert main(["sample", "--schedule-from", str(first), "--schedule-rule", rule, "--batch", "64",
                     "--trace-out", str(second)]) == 0  # fmt: skip
        expected = prescribe(str(first), rule).sigmas
        rerun = Trace.from_json(second)
        np.testing.assert_array_equal(rerun.sigmas, [*expected, 0.0])
        assert rerun.summary["nfe"] == Trace.from_json(first).summary["nfe"]
        assert f"prescribed schedule ({rule} rule" in capsys.readouterr().out


def cli_error(capsys, *argv) -> str:
    assert main(["sample", *argv]) == 2
    return capsys.readouterr().err


def test_cli_refuses_a_trace_from_another_model_or_solver(tmp_path, capsys):
    path = tmp_path / "a.json"
    assert main(["sample", "--steps", "5", "--batch", "16", "--trace-out", str(path)]) == 0
    capsys.readouterr()
    err = cli_error(capsys, "--schedule-from", str(path), "--solver", "euler")
    assert "schedule_from" in err and "solver 'heun'" in err and "solver 'euler'" in err
    err = cli_error(capsys, "--schedule-from", str(path), "--model", "rings")
    assert "schedule_from" in err and "model 'tree'" in err and "model 'rings'" in err
    err = cli_error(capsys, "--schedule-from", str(path), "--steps", "9")
    assert "steps: must be 5" in err
    err = cli_error(capsys, "--schedule-from", str(path), "--stability-target", "1.5", "--schedule-rule", "stability")
    assert "target: must be in (0, 1]" in err


def test_corrupt_and_foreign_files_are_named(tmp_path, capsys):
    text = tmp_path / "notes.json"
    text.write_text("not json at all")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something/else", "steps": []}))
    for path, words in ((text, "not valid JSON"), (other, "schema must be"), (tmp_path / "missing.json", "cannot read")):
        err = cli_error(capsys, "--schedule-from", str(path))
        assert err.startswith("error: schedule_from:") and words in err
    with pytest.raises(ParameterError, match="is not a stiffviz trace") as caught:
        load_trace({"schema": "stiffviz.trace/1", "config": {}}, "trace")
    assert caught.value.parameter == "trace"


def test_a_trace_without_the_needed_diagnostic_is_named():
    _, quiet = sample("tree", steps=5, batch=16, diagnostics=False)
    for rule, field in (("lte", "'lte'"), ("stability", "'stiffness'")):
        with pytest.raises(ParameterError, match=field) as err:
            prescribe(quiet, rule)
        assert err.value.parameter == "trace"
    _, euler = sample("tree", solver="euler", steps=5, batch=16)
    with pytest.raises(ParameterError, match="no embedded error estimate for the lte rule"):
        prescribe(euler, "lte")
    prescribe(euler, "stability")  # Euler records ρ̂ (consecutive pair): the stability rule works


def test_diverged_runs_unknown_rules_and_mismatches_are_named():
    trace = synthetic(log_grid(6), lte=lambda s, t: (s - t) ** 2)
    trace.status, trace.message = "diverged", "the state became non-finite at step 3"
    with pytest.raises(ParameterError, match="diverged"):
        prescribe(trace)
    with pytest.raises(ParameterError, match="rule: must be one of lte, stability"):
        prescribe(synthetic(log_grid(6), lte=lambda s, t: 1.0), "fastest")
    with pytest.raises(ParameterError, match="target: must be in"):
        prescribe(synthetic(log_grid(6), stiffness=lambda s: 1.0), "stability", 0.0)
    with pytest.raises(ParameterError, match="recorded with model 'tree', the run asks for model 'digits'"):
        check_matches(trace, "trace", model="digits", solver="heun")
