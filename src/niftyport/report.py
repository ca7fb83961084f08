"""Old import path of :mod:`niftyport.reporting.report` (the same module object)."""
import sys

from .reporting import report as _module

sys.modules[__name__] = _module
