"""niftyport: NiftyNet models in PyTorch, voxel for voxel.

The public names are imported lazily so that ``import niftyport`` is cheap
(no torch, never TensorFlow) and the command line starts fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "NiftyportError": "errors",
    "read_checkpoint": "checkpoint",
    "write_checkpoint": "checkpoint",
    "HighRes3DNet": "network",
    "load_niftynet_weights": "weights",
    "load_weights": "weights",
    "parcellate": "segmentation.pipeline",
    "segment": "segmentation.application",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'niftyport' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"niftyport.{module}"), name)


def __dir__():
    return __all__
