"""Driving the app in headless Chromium: shared by ``tests/test_browser.py`` and ``.ci/screenshots.py``.

The app is launched in-process on a free localhost port (:func:`serving`) and opened with
Python Playwright in the system's Chromium (:func:`browser_page`): Playwright's own browser
download does not work on a closed network, Debian's ``chromium`` package does (``.ci/run``
installs it when it is missing). Every console error and page error is collected from the
first request on (:class:`PageLog`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # for .ci/screenshots.py, run as a script from anywhere
    sys.path.insert(0, str(ROOT))

# Gradio's usage analytics and version check call out to the internet; a test needs neither.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM_MISSING = "install Debian's chromium (apt-get install chromium); .ci/run does this"
# Without the background-networking flags Chromium keeps opening connections of its own
# (component updates, safe browsing, …), which a closed network refuses, noisily. CI runs as
# root (no sandbox) in containers whose /dev/shm may be tiny (--disable-dev-shm-usage).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
WIDTH, HEIGHT = 1400, 1000
RUN_TIMEOUT_S = 120


def chromium_path() -> str:
    """The Chromium executable: ``STIFFVIZ_CHROMIUM`` if set, else /usr/bin/chromium or ``chromium`` on PATH."""
    chosen = os.environ.get("STIFFVIZ_CHROMIUM")
    candidates = [chosen] if chosen else ["/usr/bin/chromium", shutil.which("chromium")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    where = f"STIFFVIZ_CHROMIUM={chosen} is not an executable" if chosen else "no /usr/bin/chromium"
    raise RuntimeError(f"{where}: {CHROMIUM_MISSING}")


def browser_problem() -> str | None:
    """Why the browser cannot be driven here (no Playwright, no Chromium), or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        return f"{err}: pip install -r requirements-dev.txt (it pins playwright)"
    try:
        chromium_path()
    except RuntimeError as err:
        return str(err)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving() -> Iterator[str]:
    """The app (``build_app`` with its queue on) served on a free localhost port; yields its URL."""
    from stiffviz.app.ui import build_app, queued
    from stiffviz.app.userdata import MAX_UPLOAD_BYTES

    app = queued(build_app())
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                           max_file_size=MAX_UPLOAD_BYTES)  # as app.py
    try:
        yield url
    finally:
        app.close()


@dataclass
class PageLog:
    """Console errors and uncaught page errors, as text; failed requests as context for a report."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(error.stack or f"{error.name}: {error.message}"))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error":
            where = message.location
            self.console_errors.append(f"{message.text} (at {where.get('url')}:{where.get('lineNumber')})")

    def _request_failed(self, request) -> None:
        # ERR_ABORTED: the page itself cancelled it (Gradio closes its queue's event stream when done).
        if request.failure != "net::ERR_ABORTED":
            self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.failed_requests.append(f"{response.request.method} {response.url}: HTTP {response.status}")

    def report(self) -> str:
        parts = [("console errors", self.console_errors), ("page errors", self.page_errors),
                 ("failed requests", self.failed_requests)]  # fmt: skip
        return "\n".join(f"{title}:\n  " + "\n  ".join(lines) for title, lines in parts if lines) or "(none)"


@contextlib.contextmanager
def browser_page(width: int = WIDTH, height: int = HEIGHT) -> Iterator[tuple[object, PageLog]]:
    """A fresh headless Chromium page (``width`` × ``height``, scale 1) and its error log."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
            page = context.new_page()
            log = PageLog()
            log.attach(page)
            yield page, log
            context.close()
        finally:
            browser.close()


# Wraps the page's own fetch: each response of /gradio_api/queue/data (the queue's server-sent
# events, which Gradio's client reads with fetch) is tee'd, and its bytes are counted as they
# arrive, split into the SSE messages (each ends with a blank line), with each message's kind
# and event id (both near its start: {"msg": …, "event_id": …, …}).
WIRE_JS = """(() => {
    const wire = (window.__wire = {sizes: [], kinds: [], events: []});
    const original = window.fetch;
    const head = (bytes) => new TextDecoder().decode(new Uint8Array(bytes));
    window.fetch = async (...args) => {
        const response = await original(...args);
        const url = String(args[0] && args[0].url ? args[0].url : args[0]);
        if (!url.includes('/queue/data') || !response.body) return response;
        const [page, tap] = response.body.tee();
        (async () => {
            const reader = tap.getReader();
            let size = 0, last = -1, start = [];
            for (;;) {
                // the page aborts its stream once the queue is done with it: the tap ends there too
                const {done, value} = await reader.read().catch(() => ({done: true}));
                if (done) break;
                for (const byte of value) {
                    size += 1;
                    if (start.length < 200) start.push(byte);
                    if (byte === 13) continue;  // CR LF line ends count as bytes, not as a blank line
                    if (byte === 10 && last === 10) {
                        const kind = /"msg":\\s*"(\\w+)"/.exec(head(start));
                        const event = /"event_id":\\s*"(\\w+)"/.exec(head(start));
                        wire.sizes.push(size);
                        wire.kinds.push(kind ? kind[1] : '');
                        wire.events.push(event ? event[1] : '');
                        size = 0; start = []; last = -1;
                        continue;
                    }
                    last = byte;
                }
            }
        })();
        const {status, statusText, headers} = response;
        return new Response(page, {status, statusText, headers});
    };
})()"""


class Wire:
    """The bytes the page receives from the app's queue, message by message (:data:`WIRE_JS`), and
    the same stream's bytes as Chromium's network stack counts them (CDP ``Network.dataReceived``)."""

    def __init__(self, page) -> None:
        self.page = page
        page.add_init_script(WIRE_JS)
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.urls: dict[str, str] = {}
        self.received: list[int] = []  # bytes per dataReceived event of a queue/data response
        self.cdp.on("Network.requestWillBeSent", lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        self.cdp.on("Network.dataReceived", self._data)

    def _data(self, event) -> None:
        if "/queue/data" in self.urls.get(event["requestId"], ""):
            self.received.append(event["dataLength"])

    def mark(self) -> tuple[int, int]:
        """Where the counts stand now (pass it to :meth:`streamed`)."""
        return len(self.messages()[0]), len(self.received)

    def messages(self) -> tuple[list[int], list[str], list[str]]:
        """(size, kind, event id) of every message so far."""
        wire = self.page.evaluate("() => window.__wire")
        return wire["sizes"], wire["kinds"], wire["events"]

    def streamed(self, mark: tuple[int, int], timeout_s: float = 30) -> tuple[list[int], list[str], int]:
        """(message sizes, message kinds) of the one streaming event (the one with process_generating
        messages) that began after ``mark``, once its process_completed arrived, and the network's
        count of the queue stream's bytes since ``mark`` (every event's, heartbeats included)."""
        self.page.wait_for_function(
            """(start) => {
                const w = window.__wire, ids = new Set();
                w.kinds.forEach((k, i) => { if (i >= start && k === 'process_generating') ids.add(w.events[i]); });
                return ids.size > 0 && [...ids].every(id => w.events.some(
                    (e, i) => i >= start && e === id && w.kinds[i] === 'process_completed'));
            }""",
            arg=mark[0], timeout=timeout_s * 1000,
        )  # fmt: skip
        sizes, kinds, events = (values[mark[0] :] for values in self.messages())
        (event,) = {e for e, k in zip(events, kinds) if k == "process_generating"}
        mine = [i for i, e in enumerate(events) if e == event]
        return [sizes[i] for i in mine], [kinds[i] for i in mine], sum(self.received[mark[1] :])


# ---------------------------------------------------------------- page helpers
def open_app(page, url: str) -> None:
    """Load the page and wait until Gradio has mounted the Sampler tab."""
    page.goto(url, wait_until="load")
    page.wait_for_selector("#run-button", state="visible", timeout=60_000)


def select_dropdown(page, elem_id: str, value: str) -> None:
    """Pick ``value`` in the gr.Dropdown with ``elem_id`` (open it, click the option)."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=value, exact=True).click()
    page.wait_for_function("([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[elem_id, value])


def set_number(page, elem_id: str, value: float) -> None:
    """Type ``value`` into the number box of the gr.Slider or gr.Number with ``elem_id`` (Enter commits it)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_function("([id, v]) => Number(document.querySelector(`#${id} input[type=number]`).value) === v",
                           arg=[elem_id, value])  # fmt: skip


def status_text(page) -> str:
    return page.locator("#status").inner_text()


def run_and_wait(page, runs: int = 2, timeout_s: float = RUN_TIMEOUT_S) -> str:
    """Click Run and wait until ``runs`` runs say "done" in the status and the table shows them.

    Fails at once, with the status, when a run is rejected (⚠️), stopped or diverged.
    """
    page.locator("#run-button").click()
    page.wait_for_function(
        """(runs) => {
            const status = document.querySelector('#status')?.innerText ?? '';
            if (/⚠️|stopped:|diverged/.test(status)) return true;
            const done = (status.match(/— done/g) || []).length;
            const rows = document.querySelectorAll('#results .virtual-body [role=row]').length;
            return done >= runs && rows >= runs;
        }""",
        arg=runs,
        timeout=timeout_s * 1000,
    )
    text = status_text(page)
    assert text.count("— done") >= runs, f"the run did not finish cleanly; status:\n{text}"
    wait_idle(page)
    return text


def wait_idle(page, timeout_s: float = 30) -> None:
    """Wait until every Gradio status tracker (the pending/progress overlay of an output) is hidden."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=status-tracker]')].every(e => e.classList.contains('hide'))",
        timeout=timeout_s * 1000,
    )


PLOT_INFO_JS = """(sel) => {
    const root = document.querySelector(sel);
    const plot = root && root.querySelector('.js-plotly-plot');
    if (!plot) return {found: !!root, rendered: false, traces: 0, data: 0, annotations: [], width: 0, height: 0};
    const svg = plot.querySelector('svg.main-svg');
    return {
        found: true,
        rendered: !!svg,
        // drawn traces: SVG scatter/heatmap/contour groups, or WebGL (scattergl) canvases
        traces: plot.querySelectorAll('g.trace, g.hm, g.contour, .gl-container canvas').length,
        data: (plot.data || []).length,
        annotations: [...plot.querySelectorAll('g.annotation')].map(a => a.textContent),
        width: svg ? svg.getBoundingClientRect().width : 0,
        height: svg ? svg.getBoundingClientRect().height : 0,
    };
}"""


def plot_info(page, selector: str) -> dict:
    """What Plotly drew under ``selector``: rendered?, drawn traces, figure data, annotation texts, size."""
    return page.evaluate(PLOT_INFO_JS, selector)


def plot_traces(page, selector: str) -> int:
    """How many drawn Plotly traces ``selector`` holds (0 when no figure is drawn)."""
    return plot_info(page, selector)["traces"]


def table_rows(page, selector: str = "#results") -> list[list[str]]:
    """The body rows of a gr.Dataframe as lists of cell texts (Gradio 6 draws them as ARIA grid rows)."""
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(`${sel} .virtual-body [role=row]`)].map(
               row => [...row.querySelectorAll('[role=gridcell]')].map(cell => cell.innerText.trim()))""",
        selector,
    )


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def x_axis_types(page, selectors: list[str]) -> list[str | None]:
    """The x-axis type ("linear", "log", …) of the Plotly figure under each selector (None: no figure)."""
    return page.evaluate(
        "(sels) => sels.map(s => document.querySelector(`${s} .js-plotly-plot`)?.layout?.xaxis?.type ?? null)",
        selectors,
    )
