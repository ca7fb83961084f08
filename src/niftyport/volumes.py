"""Old import path of :mod:`niftyport.reporting.volumes` (the same module object)."""
import sys

from .reporting import volumes as _module

sys.modules[__name__] = _module
