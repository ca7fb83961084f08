"""Old import path of :mod:`niftyport.reporting.colortable` (the same module object)."""
import sys

from .reporting import colortable as _module

sys.modules[__name__] = _module
