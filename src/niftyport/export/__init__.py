"""Hand a ported network to today's tools: TorchScript, ONNX, a MONAI bundle.

Every format takes torch's layout ``(N, C, X, Y, Z)`` (2-D networks
``(N, C, X, Y)``) float32 and gives the network's raw output in the same
layout, and carries the same metadata (:mod:`.metadata`): network,
NiftyNet class, weights SHA-256, layout, size rule, label table.

* :mod:`.torchscript` -- traced, guarded by NiftyNet's size rule, bit for bit eager PyTorch;
* :mod:`.onnx` -- explicit pads, TF1 resizes as asymmetric ``Resize``, optional dynamic axes,
  checked with onnxruntime;
* :mod:`.monai_bundle` -- a MONAI bundle reproducing niftyport's pipeline.

::

    from niftyport.export import load_source, export_onnx
    source = load_source("model.safetensors")              # HighRes3DNet, 160 GIF labels
    export_onnx(source, "model.onnx", dynamic=True)
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "load_source": "source", "from_model": "source", "BuildArgs": "source", "ExportSource": "source",
    "export_torchscript": "torchscript", "export_onnx": "onnx", "export_monai_bundle": "monai_bundle",
    "size_rule": "shapes", "describe": "metadata",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'niftyport.export' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
