"""``python -m stiffviz``: see :mod:`stiffviz.cli`."""

import sys

from .cli import main

sys.exit(main())
