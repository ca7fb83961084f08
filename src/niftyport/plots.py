"""Old import path of :mod:`niftyport.reporting.plots` (the same module object)."""
import sys

from .reporting import plots as _module

sys.modules[__name__] = _module
