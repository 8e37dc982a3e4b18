"""The README's quality–NFE figure, rendered in headless Chromium: ``python .ci/pareto_png.py``.

Draws ``stiffviz.app.pareto_plot.pareto_figure`` from the numbers ``benchmarks/pareto.py``
saved (``assets/pareto.json``) as a self-contained HTML page, opens it in the browser the
screenshots use (``tests/browser.py``) and writes ``assets/pareto.png`` (``save_png`` of
``.ci/screenshots.py``). Needs Debian's ``chromium`` and the PyPI ``playwright`` package.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshots import ASSETS, browser, save_png  # noqa: E402  (.ci/screenshots.py; it puts tests/ on sys.path)

from stiffviz.app.pareto_plot import pareto_figure  # noqa: E402


def main() -> int:
    figure = pareto_figure(json.loads((ASSETS / "pareto.json").read_text()))
    width, height = figure.layout.width, figure.layout.height
    with tempfile.TemporaryDirectory() as folder:
        page_file = Path(folder) / "pareto.html"
        page_file.write_text(figure.to_html(include_plotlyjs=True, full_html=True, config={"staticPlot": True}))
        with browser.browser_page(width + 40, height + 40) as (page, log):
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            page.wait_for_timeout(500)
            save_png(page.locator(".plotly-graph-div").screenshot(), ASSETS / "pareto.png")
            failed = log.console_errors or log.page_errors or log.failed_requests
            if failed:
                print(log.report(), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
