"""The README's screenshots, taken in headless Chromium: ``python .ci/screenshots.py``.

Launches the app in-process exactly as ``tests/test_browser.py`` does (the shared code is
``tests/browser.py``) and writes, at 1400 px wide and device scale 1:

- ``assets/screenshot-sampler.png``: the Sampler tab after the default example (tree, Heun,
  6 steps, ERK-Guid on, compared with guidance off), down to the results table;
- ``assets/screenshot-digits.png``: the same with the model ``digits-unet``, class 3, 12 steps (image gallery);
- ``assets/screenshot-learn.png``: the Learn tab.

The PNGs are reduced to a 256-colour palette (still PNG, no JPEG artefacts) to stay small.
Needs Debian's ``chromium`` and the PyPI ``playwright`` package, like the browser test.
Fails on any console or page error, as the test does.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import browser  # noqa: E402  (tests/browser.py; puts the repository root on sys.path too)
from PIL import Image  # noqa: E402  (a Gradio dependency)

ASSETS = browser.ROOT / "assets"
MAX_BYTES = 400_000


def save_png(png: bytes, path: Path) -> None:
    """Write ``png`` as a 256-colour palette PNG (UI screenshots have few colours)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    size = path.stat().st_size
    print(f"{path.relative_to(browser.ROOT)}: {image.width}×{image.height}, {size / 1000:.0f} kB")
    if size > MAX_BYTES:
        print(f"warning: {path.name} is larger than {MAX_BYTES / 1000:.0f} kB", file=sys.stderr)


def down_to(page, selector: str, margin: int = 16) -> bytes:
    """A screenshot of the page from the top down to the bottom of ``selector``."""
    bottom = page.evaluate(
        "(sel) => { const r = document.querySelector(sel).getBoundingClientRect(); return r.bottom + window.scrollY; }",
        selector,
    )
    width = page.viewport_size["width"]
    return page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": width, "height": bottom + margin})


def settle(page) -> None:
    """Let images decode, Plotly finish drawing and the page scroll back to the top."""
    page.wait_for_function("() => [...document.images].every(img => img.complete)", timeout=30_000)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(800)


def main() -> int:
    ASSETS.mkdir(exist_ok=True)
    with browser.serving() as url, browser.browser_page() as (page, log):
        browser.open_app(page, url)
        browser.run_and_wait(page, runs=2)
        settle(page)
        save_png(down_to(page, "#results"), ASSETS / "screenshot-sampler.png")

        browser.select_dropdown(page, "model", "digits-unet")
        browser.wait_idle(page)
        browser.select_dropdown(page, "class", "3")
        steps = page.locator("#steps input[type=number]")
        steps.fill("12")
        steps.press("Enter")
        browser.wait_idle(page)
        browser.run_and_wait(page, runs=2)
        page.locator("#gallery img").first.wait_for(state="visible", timeout=30_000)
        settle(page)
        save_png(down_to(page, "#results"), ASSETS / "screenshot-digits.png")

        browser.open_tab(page, "Learn")
        page.locator("[id^=learn-] .js-plotly-plot").first.wait_for(state="visible", timeout=30_000)
        settle(page)
        save_png(page.screenshot(full_page=True), ASSETS / "screenshot-learn.png")

        if log.console_errors or log.page_errors:
            print(f"errors in the browser:\n{log.report()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
