"""stiffviz's browser app (also the Hugging Face Space): ``python app.py``.

Options: ``--model SPEC`` (repeatable) adds a model to the page's list: SPEC is any
:func:`stiffviz.load_model` name, a built-in one or ``diffusers:FOLDER_OR_HUB_ID``. Without
``--model`` the environment variable ``STIFFVIZ_MODELS`` (SPECs separated by commas or new
lines; for a Space's settings) is read. The server chooses these models and loads each once,
at start-up; the page only picks among them by name. A model that fails to load stops the
server with its message (exit status 2). ``--diffusers PATH`` (``STIFFVIZ_DIFFUSERS``) is the
deprecated spelling of ``--model diffusers:PATH``.
Thread policy (``stiffviz.threads``): at most ``CONCURRENCY_LIMIT`` runs at once, each with
max(1, cores // CONCURRENCY_LIMIT) torch threads, set at start-up.
``--sweep DIR`` is the sweep folder the Sweeps tab shows (``python -m stiffviz sweep --out DIR``;
default: ``assets/sweep-findings``, shipped with the repository).
``--host`` and ``--port`` default to Gradio's (127.0.0.1:7860, or GRADIO_SERVER_NAME/PORT).
Uploads are limited to ``MAX_UPLOAD_BYTES`` (1 MB, the app's CSV limit) by ``launch(max_file_size=…)``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from stiffviz.errors import ParameterError
from stiffviz.app.ui import CONCURRENCY_LIMIT, build_app, queued
from stiffviz.threads import apply_policy
from stiffviz.app.userdata import MAX_UPLOAD_BYTES


def server_models(models: list[str], diffusers: list[str], environ=os.environ) -> list[str]:
    """The SPECs to serve: the command line's (``--model``, then ``--diffusers`` as ``diffusers:PATH``),
    or when it names none, ``STIFFVIZ_MODELS`` (split at commas and new lines) and ``STIFFVIZ_DIFFUSERS``."""
    if not models and not diffusers:
        models = [s.strip() for s in re.split(r"[,\n]", environ.get("STIFFVIZ_MODELS", "")) if s.strip()]
        diffusers = [environ["STIFFVIZ_DIFFUSERS"]] if environ.get("STIFFVIZ_DIFFUSERS") else []
    if diffusers:
        print("warning: --diffusers PATH / STIFFVIZ_DIFFUSERS is deprecated; use --model diffusers:PATH "
              "/ STIFFVIZ_MODELS", file=sys.stderr)  # fmt: skip
    return list(dict.fromkeys([*models, *(f"diffusers:{path}" for path in diffusers)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="SPEC",
                        help="a model to offer (repeatable): a built-in name or diffusers:FOLDER_OR_HUB_ID; "
                             "default: the STIFFVIZ_MODELS environment variable")  # fmt: skip
    parser.add_argument("--diffusers", action="append", default=[], metavar="PATH",
                        help="deprecated: the same as --model diffusers:PATH")  # fmt: skip
    parser.add_argument("--host", default=None, help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on")
    parser.add_argument("--sweep", default=None, metavar="DIR",
                        help="sweep folder the Sweeps tab shows (default: the findings sweep in assets/sweep-findings)")
    args = parser.parse_args(argv)
    apply_policy(CONCURRENCY_LIMIT)  # runs at once x torch threads <= cores, before any run or timing
    try:
        app = build_app(*server_models(args.model, args.diffusers), sweep=args.sweep)  # loads every model now, once
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    queued(app).launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD_BYTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
