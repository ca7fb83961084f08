"""Old import path of :mod:`niftyport.reporting.compare` (the same module object)."""
import sys

from .reporting import compare as _module

sys.modules[__name__] = _module
