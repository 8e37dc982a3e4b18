"""The browser app (``python app.py``, also the Hugging Face Space) and what only it needs.

Everything here may import Gradio and Plotly; the engine (``stiffviz`` outside this package:
models, solvers, guidance, diagnostics, sampler, trace, command line) never does, so the
library and the command line install and run without the ``[app]`` extra.
"""
