"""A visitor's own 2-D data: a CSV upload or a drawing, made into an exact denoiser for that session only.

**CSV**: two numeric columns (x, y) separated by commas, semicolons or tabs, an optional header
(a first row without a number in it), 2 to ``MAX_POINTS`` rows, at most ``MAX_UPLOAD_BYTES``
bytes (the server's upload limit, ``launch(max_file_size=…)``, is the same figure).
**Drawing**: every inked pixel of the ``CANVAS`` × ``CANVAS`` canvas is a point of the box
[−1, 1]² (y up); more than ``MAX_POINTS`` are subsampled with a fixed seed (the same drawing
gives the same points).

The points become :func:`stiffviz.models.points.point_denoiser` (standardised: centred, divided
by the mean per-axis standard deviation; bandwidth h in those units): p_σ = (1/N) Σ_n N(y_n,
(σ² + h²)I), D = x + σ²/(σ² + h²)·(Σ_n r_n y_n − x). Every problem is a
:class:`~stiffviz.errors.ParameterError` naming it (not text, wrong columns, not a number, not
finite, too many points, empty, one point, all points equal, bandwidth out of range).

The model lives in the page's ``gr.State`` (a :class:`UserData`), never in a server-wide cache:
the model dropdown offers ``USER_DATA`` in that session only (:func:`models_for`), and
:func:`lookup` gives :func:`~stiffviz.app.requests.parse_request` that session's model by that name.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
import numpy as np

from ..errors import ParameterError
from ..models.points import H_MAX, point_denoiser

USER_DATA = "your data"  # the model's name in the dropdown and in a request
MAX_POINTS = 2000  # points per data set (the tree has 2,032 components: the same cost per model call)
MAX_UPLOAD_BYTES = 1_000_000  # 1 MB: 2,000 rows of two 17-digit numbers take about 80 kB
CANVAS = 256  # the drawing canvas, pixels a side
DRAWING_SEED = 0  # the subsample of a large drawing's pixels
DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class UserData:
    """One visitor's data: the points as given (N, 2), where they came from, and the model built on them."""

    points: np.ndarray
    source: str
    model: Any

    @property
    def bandwidth(self) -> float:
        return self.model.bandwidth


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_csv(data: bytes) -> np.ndarray:
    """The (N, 2) points of a CSV file's bytes (module docstring), or a ParameterError naming the problem."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ParameterError("file", f"is {len(data):,} bytes; at most {MAX_UPLOAD_BYTES:,} bytes are accepted")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParameterError("file", "is not a CSV text file (it is not UTF-8 text: binary data?)") from None
    if "\x00" in text:
        raise ParameterError("file", "is not a CSV text file (it holds NUL bytes: binary data?)")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ParameterError("file", "is empty: it holds no points (two numeric columns x, y expected)")
    delimiter = next((d for d in DELIMITERS if d in lines[0]), None)
    rows = [[field.strip() for field in row] for row in csv.reader(lines, delimiter=delimiter or ",")]
    if delimiter is None:  # one column, or columns separated by spaces
        rows = [line.split() for line in lines]
    start = 1 if all(_number(field) is None for field in rows[0]) else 0  # a header: no number in it
    rows = rows[start:]
    if not rows:
        raise ParameterError("file", "has a header but no points (two numeric columns x, y expected)")
    if len(rows) > MAX_POINTS:
        raise ParameterError("file", f"has {len(rows):,} points; at most {MAX_POINTS:,} are accepted")
    points = np.empty((len(rows), 2))
    for i, row in enumerate(rows):
        where = f"row {i + start + 1}"
        if len(row) != 2:
            raise ParameterError("file", f"{where} has {len(row)} column{'s' * (len(row) != 1)}; "
                                         "two numeric columns (x, y) are expected")  # fmt: skip
        for j, field in enumerate(row):
            value = _number(field)
            if value is None:
                raise ParameterError("file", f"{where}, column {j + 1}: {field[:40]!r} is not a number")
            if not math.isfinite(value):
                raise ParameterError("file", f"{where}, column {j + 1}: {field!r} is not finite (NaN or infinity)")
            points[i, j] = value
    return points


def points_from_drawing(image: np.ndarray | None) -> np.ndarray:
    """The inked pixels of a drawing (H, W[, 3 or 4]; ink: opaque and dark) as points of [−1, 1]², y up;
    at most ``MAX_POINTS``, a fixed-seed subsample when there are more."""
    if image is None:
        raise ParameterError("drawing", "is empty: draw some strokes first")
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ParameterError("drawing", f"must be an image (H, W, channels), got shape {pixels.shape}")
    opaque = pixels[..., 3] > 127 if pixels.shape[2] == 4 else np.ones(pixels.shape[:2], bool)
    ink = opaque & (pixels[..., : min(3, pixels.shape[2])].mean(2) < 128)
    rows, cols = np.nonzero(ink)
    if len(rows) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(DRAWING_SEED).choice(len(rows), MAX_POINTS, replace=False))
        rows, cols = rows[keep], cols[keep]
    height, width = ink.shape
    points = np.stack([2 * (cols + 0.5) / width - 1, 1 - 2 * (rows + 0.5) / height], 1)
    if len(points) == 0:
        raise ParameterError("drawing", "is empty: draw some strokes first")
    return points


def build(points: np.ndarray, bandwidth: Any, source: str) -> UserData:
    """The visitor's :class:`UserData`: ``points`` and the exact denoiser named ``USER_DATA`` with
    bandwidth h, marked ``session_only`` (the page's drawing code then keeps it in no server-wide cache)."""
    model = point_denoiser(points, bandwidth, USER_DATA)
    model.session_only = True
    return UserData(points, source, model)


def models_for(server_models: list[str], user: UserData | None) -> list[str]:
    """The names this session may run: the server's, and ``USER_DATA`` once the visitor has data."""
    return [*server_models, USER_DATA] if user is not None else list(server_models)


def lookup(user: UserData | None, server_lookup: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse_request``'s lookup for this session: its own model for ``USER_DATA``, the server's otherwise."""
    return lambda name: user.model if user is not None and name == USER_DATA else server_lookup(name)


def describe(user: UserData) -> str:
    """One line on the loaded data (the page's note)."""
    model = user.model
    h = f"h = {user.bandwidth:g}" + (" (exact empirical mixture)" if user.bandwidth == 0 else "")
    return (f"**{USER_DATA}**: {len(user.points):,} points from {user.source}, standardised (centre "
            f"({model.mean[0]:.4g}, {model.mean[1]:.4g}), scale {model.scale:.4g}), {h}. Press **Run**.")  # fmt: skip


# ---------------------------------------------------------------- event handlers (outputs: see ``block``)
def _loaded(result: Callable[[], UserData], server_models: list[str]) -> tuple:
    """(state, model dropdown, note, run session) after loading data: the data selected and the old runs
    dropped (they belong to other data), or a named message with everything else unchanged."""
    try:
        user = result()
    except ParameterError as err:
        return gr.skip(), gr.skip(), f"⚠️ {err}", gr.skip()
    return user, gr.update(choices=models_for(server_models, user), value=USER_DATA), describe(user), None


def load_csv(file: dict | None, bandwidth: Any, server_models: list[str]) -> tuple:
    """The CSV upload (raw: Gradio's FileData of a file it has checked is an upload): read it and build the model."""

    def read() -> UserData:
        path = file.get("path") if isinstance(file, dict) else None
        if not isinstance(path, str):
            raise ParameterError("file", "is missing: upload a CSV file of 2-D points")
        size = os.path.getsize(path)
        if size > MAX_UPLOAD_BYTES:
            raise ParameterError("file", f"is {size:,} bytes; at most {MAX_UPLOAD_BYTES:,} bytes are accepted")
        with open(path, "rb") as handle:
            data = handle.read()
        return build(parse_csv(data), bandwidth, f"the file {file.get('orig_name') or os.path.basename(path)}")

    return _loaded(read, server_models)


def load_drawing(drawing: dict | None, bandwidth: Any, server_models: list[str]) -> tuple:
    """The "use the drawing" button: the canvas's inked pixels as points."""
    image = drawing.get("composite") if isinstance(drawing, dict) else None
    return _loaded(lambda: build(points_from_drawing(image), bandwidth, "the drawing"), server_models)


def set_bandwidth(user: UserData | None, bandwidth: Any, server_models: list[str]) -> tuple:
    """The bandwidth slider: the same points, a new h (nothing to do before any data is loaded)."""
    if user is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return _loaded(lambda: build(user.points, bandwidth, user.source), server_models)


def block(server_models: list[str], model_dropdown: gr.Dropdown, session: gr.State) -> gr.State:
    """The "your own data" accordion (call inside the page's layout) with its events; returns the
    ``gr.State`` holding the session's :class:`UserData` (a hidden input of the handlers that need the model)."""
    user = gr.State(None)
    with gr.Accordion("Your own 2-D data", open=False):
        gr.Markdown(f"Upload a CSV of 2-D points (two numeric columns x, y, an optional header, 2 to "
                    f"{MAX_POINTS:,} rows, at most {MAX_UPLOAD_BYTES // 1000:,} kB) or draw points, then pick "
                    f"**{USER_DATA}**: its exact denoiser is the points' mixture, each point smoothed by h "
                    "(h = 0: the empirical mixture). Standardised to mean 0 and spread 1; kept for this "
                    "page only.")  # fmt: skip
        with gr.Tab("CSV"):
            upload = gr.File(label="CSV file", file_types=[".csv", ".txt"], type="filepath", elem_id="data-file")
        with gr.Tab("draw"):
            sketch = gr.Sketchpad(canvas_size=(CANVAS, CANVAS), fixed_canvas=True, format="png", layers=False,
                                  brush=gr.Brush(default_size=4, colors=["#000000"], color_mode="fixed"),
                                  label="draw points (pick the brush; each inked pixel is one)", elem_id="data-sketch")  # fmt: skip
            use_drawing = gr.Button("Use the drawing", elem_id="use-drawing")
        bandwidth = gr.Slider(0.0, H_MAX, value=0.0, step=0.01, label="bandwidth h (standardised units)",
                              elem_id="bandwidth")  # fmt: skip
        note = gr.Markdown(elem_id="data-note")
    outputs = [user, model_dropdown, note, session]
    # Raw values (preprocess=False): the handlers check them and name the problem; Gradio still admits only
    # files it has checked are uploads. The drawing needs Gradio's decoding; the page alone calls it.
    upload.upload(functools.partial(load_csv, server_models=server_models), [upload, bandwidth], outputs,
                  api_name="load_csv", preprocess=False)  # fmt: skip
    use_drawing.click(functools.partial(load_drawing, server_models=server_models), [sketch, bandwidth], outputs,
                      api_name=False)  # fmt: skip
    bandwidth.release(functools.partial(set_bandwidth, server_models=server_models), [user, bandwidth], outputs,
                      api_name=False, preprocess=False)  # fmt: skip
    return user
