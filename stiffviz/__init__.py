"""stiffviz: a stiffness microscope for diffusion sampling.

Public API: ``load_model``, ``list_models``, ``sample``, ``sweep``, ``Trace``.
"""

from .config import SampleConfig
from .errors import ParameterError
from .models import list_models, load_model
from .sampler import integrate, sample
from .sweep import sweep  # the function; the package's modules: ``from stiffviz.sweep.grid import …``
from .trace import Trace

__all__ = ["ParameterError", "SampleConfig", "Trace", "integrate", "list_models", "load_model", "sample", "sweep"]
