"""stiffviz's browser app (also the Hugging Face Space): ``python app.py``.

Options: ``--diffusers PATH`` (or the environment variable ``STIFFVIZ_DIFFUSERS``) adds a local
diffusers UNet2DModel folder to the model list: the server chooses it, never the page.
``--host`` and ``--port`` default to Gradio's (127.0.0.1:7860, or GRADIO_SERVER_NAME/PORT).
"""

from __future__ import annotations

import argparse
import os

from stiffviz.ui import build_app, queued


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusers", default=os.environ.get("STIFFVIZ_DIFFUSERS"), metavar="PATH",
                        help="a local diffusers UNet2DModel folder to offer as a model")  # fmt: skip
    parser.add_argument("--host", default=None, help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on")
    args = parser.parse_args(argv)
    app = queued(build_app(f"diffusers:{args.diffusers}" if args.diffusers else None))
    app.launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
