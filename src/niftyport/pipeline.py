"""Old import path of :mod:`niftyport.segmentation.pipeline` (the same module object)."""
import sys

from .segmentation import pipeline as _module

sys.modules[__name__] = _module
