"""The cost estimate against passes counted in real runs, the budget's refusals and the env variable."""

from __future__ import annotations

from collections import Counter

import pytest
from torch.autograd import forward_ad

from stiffviz import load_model, sample
from stiffviz.app import cost
from stiffviz.app.requests import DEFAULTS, Request, parse_request, available_models
from stiffviz.errors import ParameterError

pytestmark = pytest.mark.usefixtures("one_thread")


class Counting:
    """A model that counts its passes: forward calls, forward-mode calls (a dual input), reverse
    passes back through its output (a tensor hook), its own JVPs and Jacobians; the weak model too."""

    def __init__(self, inner, counts: Counter):
        self.inner, self.counts = inner, counts
        self.shape, self.classes, self.name = inner.shape, inner.classes, inner.name
        self.weak = Counting(inner.weak, counts) if getattr(inner, "weak", None) is not None else None
        for method, kind in (("denoiser_jvp", "own_jvp"), ("denoiser_jacobian", "jacobian")):
            if hasattr(inner, method):
                setattr(self, method, self._counted(kind, getattr(inner, method)))
        if hasattr(inner, "sample_reference"):
            self.sample_reference = inner.sample_reference

    def _counted(self, kind, fn):
        def counted(*args, **kwargs):
            self.counts[kind] += 1
            return fn(*args, **kwargs)

        return counted

    def __call__(self, x, sigma, cond=None):
        self.counts["jvp" if forward_ad.unpack_dual(x).tangent is not None else "call"] += 1
        out = self.inner(x, sigma, cond)
        if out.requires_grad:
            out.register_hook(lambda grad: self.counts.update(["backward"]))
        return out


OFF = dict(cfg=1.0, autoguidance=1.0, erk_guid=None, stein=False)
CASES = {  # model, settings (small and fast), compare
    "tree heun cfg erk eig-exact": ("tree", dict(solver="heun", steps=5, cls="A", cfg=2.0, erk_guid=1.0, eig=True), True),
    "tree bosh3 erk lte_ref lipschitz": ("tree", dict(solver="bosh3", steps=4, erk_guid=1.0, lte_ref=True,
                                                      lte_ref_substeps=4, lipschitz=True, lipschitz_iterations=3), True),
    "tree bosh3 stein [1,1]": ("tree", dict(solver="bosh3", steps=4, stein=True, stein_probes=3, stein_gamma_min=1.0,
                                            stein_gamma_max=1.0), False),
    "tree heun stein autoguidance": ("tree", dict(solver="heun", steps=4, stein=True, stein_probes=4,
                                                  autoguidance=2.0), True),
    "tree dpmpp2m oracle": ("tree", dict(solver="dpmpp2m", steps=5, stein_oracle=True, eig=True), False),
    "digits power eig (own JVP)": ("digits", dict(solver="euler", steps=3, eig=True, eig_method="power",
                                                  eig_iterations=3, lanczos_iterations=2), False),
    "digits-unet dpm2 eig lipschitz": ("digits-unet", dict(solver="dpm2", steps=3, cls="3", cfg=1.5, eig=True,
                                                           eig_iterations=2, lanczos_iterations=2, lipschitz=True,
                                                           lipschitz_iterations=2), False),
    "rk4 last step only": ("moons", dict(solver="rk4", steps=1, lipschitz=True, lipschitz_iterations=1), False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_counts_the_passes_a_run_makes(case):
    name, settings, compare = CASES[case]
    settings = dict(batch=3, seed=1, **settings)
    counts: Counter = Counter()
    model = Counting(load_model(name), counts)
    runs = [settings] + ([settings | OFF] if compare else [])
    for run in runs:
        sample(model, **run)
    timing = cost.Timing(call_s=0.01, batch=3, ratios=dict(call=1.0, jvp=3.0, own_jvp=2.0, backward=5.0, jacobian=7.0))
    estimate = cost.estimate(Request(name, settings, compare), model, timing)
    assert {k: v for k, v in estimate.passes.items() if v} == +counts
    counted_calls = sum(n * timing.ratios[kind] for kind, n in counts.items())
    assert estimate.model_calls == pytest.approx(counted_calls)
    assert estimate.seconds == pytest.approx(counted_calls * 0.01)
    assert estimate.runs == len(runs)


def _request(**changes):
    values = DEFAULTS | changes
    return parse_request(values, available_models(), load_model)


HUGE = dict(model="tree", solver="rk4", steps=200, batch=4096, eig=True, lte_ref=True, lipschitz=True,
            stein_on=True, stein_probes=32, erk_on=True, cls="A", cfg=2.0)  # fmt: skip


def test_huge_request_is_refused_with_estimate_and_limit():
    request = _request(**HUGE)
    model = load_model("tree")
    estimate = cost.estimate(request, model)
    with pytest.raises(ParameterError) as err:
        cost.admit(request, model, budget=cost.RUN_BUDGET_S)
    message = str(err.value)
    assert f"{estimate.model_calls:,.0f} model calls" in message
    assert f"limit of {cost.RUN_BUDGET_S:,.0f} s per run" in message
    costliest = max(estimate.parts, key=estimate.parts.get)
    assert err.value.parameter == cost.PART_PARAMETERS[costliest]
    assert all(estimate.parts[p] > 0 for p in ("sampling", "stein", "eig", "lte_ref", "lipschitz"))
    assert estimate.runs == 2 and "over both runs of compare" in message


def test_default_request_is_accepted_and_scales_with_batch():
    model = load_model("tree")
    request = _request()
    accepted = cost.admit(request, model, budget=cost.RUN_BUDGET_S)
    assert 0 < accepted.seconds < cost.RUN_BUDGET_S
    doubled = cost.estimate(_request(batch=2 * DEFAULTS["batch"]), model)
    assert doubled.model_calls == pytest.approx(accepted.model_calls)
    assert doubled.seconds == pytest.approx(2 * accepted.seconds)


def test_budget_from_the_environment():
    assert cost.run_budget({}) == cost.RUN_BUDGET_S
    assert cost.run_budget({cost.BUDGET_VARIABLE: "7.5"}) == 7.5
    for bad in ("-1", "0", "abc", "inf"):
        with pytest.raises(ParameterError, match=cost.BUDGET_VARIABLE):
            cost.run_budget({cost.BUDGET_VARIABLE: bad})


def test_note_shows_estimate_and_refusal(monkeypatch):
    lookup = load_model
    note = cost.cost_note(DEFAULTS, available_models(), lookup)
    assert note.startswith("Estimated cost") and "limit" in note and "refused" not in note
    assert "refused" in cost.cost_note(DEFAULTS | HUGE, available_models(), lookup)
    assert cost.cost_note(DEFAULTS | dict(steps=-1), available_models(), lookup).startswith("⚠️ steps")
    monkeypatch.setenv(cost.BUDGET_VARIABLE, "1e-9")
    assert "refused" in cost.cost_note(DEFAULTS, available_models(), lookup)
