"""The app in a real browser: headless Chromium runs the default example and opens the Learn tab.

What the API tests cannot see: that the page loads and mounts, that the front end draws every
Plotly figure the server sends, that the table fills in, and that nothing throws in the
browser's console on the way; and how many bytes a run sends to the page, counted message by
message on the page's own event stream (``browser.Wire``): at most ``MESSAGE_LIMIT`` bytes in
any one message, at most ``DEFAULT_LIMIT`` for the default example and ``BIG_LIMIT`` for the
tree at 50 steps × 4,096 samples (the page's defaults otherwise, eigenvectors included).
Needs Debian's ``chromium`` (``.ci/run`` installs it) and the PyPI ``playwright`` package
(its driver only: the system Chromium is used, never a download).
The launch and page helpers are shared with ``.ci/screenshots.py`` (``tests/browser.py``).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

import browser
from stiffviz.app.live import GUIDED, UNGUIDED
from stiffviz.app.requests import DEFAULTS

# Charts that the default example (cheap diagnostics and eigenvectors on) fills with data, and
# charts whose diagnostic it leaves off (SteinDiff, Lipschitz), which show a "not recorded" note.
FILLED = ["chart-stiffness", "chart-lte", "chart-alignment", "chart-stability"]
OPTIONAL = ["chart-stein", "chart-lipschitz"]
TRACE_CHARTS = ["chart-stiffness", "chart-lte", "chart-alignment", "chart-stein", "chart-lipschitz"]
MESSAGE_LIMIT, DEFAULT_LIMIT, BIG_LIMIT = 250_000, 1_000_000, 6_000_000  # bytes
BIG = dict(steps=50, batch=4096)
BIG_TIMEOUT_S = 900  # two runs of 50 steps at 4,096 samples on a 2-core CI machine


def check_light(wire, mark, steps: int, total_limit: int) -> tuple[int, int]:
    """The bytes a run of two runs × ``steps`` sent after ``mark``, within the limits; (total, largest)."""
    sizes, kinds, network = wire.streamed(mark)
    # the count ties the measurement to the run: a frame per step and at each run's end, then the completion
    assert kinds.count("process_generating") == 2 * (steps + 1) and kinds.count("process_completed") == 1, kinds
    total, largest = sum(sizes), max(sizes)
    assert largest <= MESSAGE_LIMIT, f"a message of {largest:,} bytes (limit {MESSAGE_LIMIT:,}): {sizes}"
    assert total <= total_limit and network <= total_limit, \
        f"{total:,} bytes ({network:,} on the network), limit {total_limit:,}"
    assert network >= total, f"the network counted {network:,} bytes, the page's stream {total:,}"
    print(f"{steps} steps: {total:,} bytes in {len(sizes)} messages, the largest {largest:,}")  # pytest -s shows it
    return total, largest


@contextlib.contextmanager
def checked_page(tmp_path) -> Iterator[tuple[object, browser.Wire]]:
    """The app served and a fresh page with its :class:`browser.Wire`; a failure inside says what the
    browser logged and keeps a screenshot, and the page must end with no console or page error."""
    problem = browser.browser_problem()
    if problem:  # a failure, not a skip: CI must run this test
        pytest.fail(problem, pytrace=False)
    with browser.serving() as url, browser.browser_page() as (page, log):
        wire = browser.Wire(page)  # before the page loads: it wraps the page's fetch
        try:
            browser.open_app(page, url)
            yield page, wire
            page.wait_for_timeout(500)  # let late errors (resize handlers, deferred draws) arrive
        except Exception as err:  # a timeout or failed check: say what the browser logged, keep a picture
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            raise AssertionError(f"{err}\n\nbrowser log:\n{log.report()}\nscreenshot: {tmp_path / 'failure.png'}") from err
        # Nothing is ignored: the page requests nothing outside the app, so every error is the app's.
        assert not (log.console_errors or log.page_errors), f"errors in the browser:\n{log.report()}"


def test_default_example_and_learn_tab_render_without_errors(tmp_path):
    with checked_page(tmp_path) as (page, wire):
        check_sampler_and_learn(page, wire)


def check_sampler_and_learn(page, wire) -> None:
    mark = wire.mark()
    status = browser.run_and_wait(page, runs=2)
    assert GUIDED in status and UNGUIDED in status, status
    check_light(wire, mark, DEFAULTS["steps"], DEFAULT_LIMIT)

    # Every Sampler chart is a drawn Plotly figure: with traces, or saying what was not recorded.
    for elem_id in FILLED + OPTIONAL:
        info = browser.plot_info(page, f"#{elem_id}")
        assert info["rendered"] and info["width"] > 0 and info["height"] > 0, f"#{elem_id} is not drawn: {info}"
        if elem_id in FILLED or not any("not recorded" in text for text in info["annotations"]):
            assert info["traces"] > 0, f"#{elem_id} has no drawn trace: {info}"

    # The default model (tree) is 2-D: particles for both runs, no image gallery.
    for elem_id in ("view-a", "view-b"):
        assert page.locator(f"#{elem_id}").is_visible(), f"#{elem_id} is hidden after a 2-D run"
        assert browser.plot_traces(page, f"#{elem_id}") > 0, f"#{elem_id} has no drawn Plotly trace"
    assert not page.locator("#gallery").is_visible(), "the image gallery shows for a 2-D model"

    rows = browser.table_rows(page)
    assert [row[0] for row in rows] == [GUIDED, UNGUIDED], f"results table rows: {rows}"
    assert all(row[1:3] == ["ok", str(DEFAULTS["steps"])] for row in rows), f"results table rows: {rows}"

    # The x-axis toggle redraws the charts against log σ.
    page.locator("#x-axis label", has_text="σ (log)").click()
    selectors = [f"#{elem_id}" for elem_id in TRACE_CHARTS]
    page.wait_for_function(
        "(sels) => sels.every(s => document.querySelector(`${s} .js-plotly-plot`)?.layout?.xaxis?.type === 'log')",
        arg=selectors, timeout=30_000,
    )  # fmt: skip
    browser.wait_idle(page)
    for elem_id in FILLED[:3]:
        assert browser.plot_traces(page, f"#{elem_id}") > 0, f"#{elem_id} has no drawn trace against σ"

    # The particle colour: the views again, each particle coloured by its stiffness index on a colour bar.
    page.locator("#particle-colour label", has_text="stiffness index").click()
    page.wait_for_function(
        "() => ['#view-a', '#view-b'].every(s => (document.querySelector(`${s} .js-plotly-plot`)?.data ?? [])"
        ".some(t => t.marker?.showscale))", timeout=30_000,
    )  # fmt: skip
    # The stiffness map: opening its accordion draws ρ(J) over the plane and the branch's segments.
    page.get_by_text("Stiffness map: the authors' overview figure").click()
    page.wait_for_function(
        "() => document.querySelector('#stiffness-map .js-plotly-plot')?.data?.[0]?.type === 'heatmap'"
        " && (document.querySelector('#stiffness-segments .js-plotly-plot')?.data ?? []).length > 0",
        timeout=60_000,
    )  # fmt: skip
    browser.wait_idle(page)
    assert "changes sign" in page.locator("#map-note").inner_text()

    # The Learn tab: every figure in it is drawn.
    browser.open_tab(page, "Learn")
    page.locator("[id^=learn-] .js-plotly-plot").first.wait_for(state="visible", timeout=30_000)
    ids = page.evaluate(
        "() => [...document.querySelectorAll('[id^=learn-]')].filter(e => e.querySelector('.js-plotly-plot'))"
        ".map(e => e.id)"
    )
    assert ids, "the Learn tab shows no Plotly figure"
    for elem_id in ids:
        info = browser.plot_info(page, f"#{elem_id}")
        assert info["rendered"] and info["traces"] > 0 and info["width"] > 0, f"#{elem_id} is not drawn: {info}"


def test_a_run_of_50_steps_at_4096_samples_sends_light_frames(tmp_path, monkeypatch):
    """The tree at 50 steps × 4,096 samples, compare on: at most 6 MB, no message over 250 kB, and
    the page shows the whole run (both runs done, a subsample of the particles, saying so)."""
    monkeypatch.setenv("STIFFVIZ_RUN_BUDGET_S", "3600")  # its cost estimate passes a small machine's budget
    with checked_page(tmp_path) as (page, wire):
        browser.set_number(page, "steps", BIG["steps"])
        browser.set_number(page, "batch", BIG["batch"])
        mark = wire.mark()
        status = browser.run_and_wait(page, runs=2, timeout_s=BIG_TIMEOUT_S)
        assert status.count(f"step {BIG['steps']} of {BIG['steps']}") == 2, status
        check_light(wire, mark, BIG["steps"], BIG_LIMIT)
        for elem_id in ("view-a", "view-b"):
            title = page.evaluate(f"() => document.querySelector('#{elem_id} .js-plotly-plot').layout.title.text")
            assert f"step {BIG['steps']}" in title and f"of {BIG['batch']:,} shown" in title, title
        rows = browser.table_rows(page)
        assert [row[1:3] for row in rows] == [["ok", str(BIG["steps"])]] * 2, rows
