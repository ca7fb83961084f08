"""Whole pipelines: HighRes3DNet's parcellation (:mod:`.pipeline`) and any NiftyNet config (:mod:`.application`).

``segment``, ``run_segmentation`` and ``Segmentation`` are imported on first
use, so that importing a torch-free submodule (``subjects``, ``label_mapping``)
pulls in no torch::

    >>> from niftyport.segmentation import segment   # doctest: +SKIP
    >>> seg = segment(["t1.nii.gz", "t2.nii.gz"], config="my_model.ini")   # doctest: +SKIP
"""
from __future__ import annotations

import importlib

_EXPORTS = {"segment": "application", "run_segmentation": "application", "Segmentation": "application",
            "segment_brats": "brats"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'niftyport.segmentation' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
