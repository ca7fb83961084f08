"""A network on NiftyNet-layout arrays: ``(N, X, Y, Z, C)`` in, the raw network output in the same layout out."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import InputShapeError
from . import NetworkSpec


def load_input(path: str | os.PathLike, spec: NetworkSpec) -> np.ndarray:
    """A float32 ``.npy`` array in NiftyNet's layout for ``spec`` (never unpickled); shape rules checked."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputShapeError(f"{path}: not a numpy .npy array ({exc})") from None
    if array.ndim != spec.spatial_dims + 2:
        layout = "(N, X, Y, Z, C)" if spec.spatial_dims == 3 else "(N, X, Y, C)"
        raise InputShapeError(f"{path}: {spec.name} takes {layout} arrays, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise InputShapeError(f"{path}: not a numeric array ({array.dtype})")
    try:
        spec.validate_input(array.shape[1:-1])
    except InputShapeError as exc:
        raise InputShapeError(f"{path}: {exc}") from None
    return array.astype(np.float32, copy=False)


def forward_niftynet_layout(model: torch.nn.Module, array: np.ndarray, *, device: str | torch.device = "cpu",
                            ) -> np.ndarray:
    """``model`` (torch layout) on a NiftyNet-layout ``array``; float32 output in NiftyNet's layout."""
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1))).to(device)
    with torch.no_grad():
        y = model.to(device).eval()(x)
    return np.ascontiguousarray(np.moveaxis(y.detach().cpu().numpy(), 1, -1)).astype(np.float32, copy=False)
