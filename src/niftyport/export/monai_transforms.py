"""niftyport's stages as MONAI dictionary transforms, for the inference of a niftyport MONAI bundle.

Used where MONAI's own transforms would change NiftyNet's labels (see
:mod:`.monai_bundle` for the whole pipeline and each departure):

* :class:`NiftyNetPreprocessd` -- NiftyNet's reader (affine repair, the
  header's voxel sizes, NiftyNet's memory layout), reorientation,
  resampling with the config's ``interp_order`` (scipy, as NiftyNet; MONAI's
  ``Spacingd`` interpolates differently), volume padding, the foreground mask, histogram
  standardisation (no MONAI equivalent) and whitening over that mask;
* :class:`RestoreToInputd` -- un-padding, nearest-neighbour resampling back
  and reorientation to the file's grid, as NiftyNet's aggregator writes labels.

Plain callables on dicts (MONAI's ``Compose`` takes them); only
:class:`RestoreToInputd` imports MONAI, for its ``MetaTensor``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Key under which :class:`NiftyNetPreprocessd` leaves what :class:`RestoreToInputd` needs.
LOADED_KEY = "niftyport_loaded"


def bundle_config(config_file: str | os.PathLike, landmarks_file: str | os.PathLike | None = None):
    """The NiftyNet config of a bundle: its ``.ini``, landmarks read from the bundle's copy."""
    from ..config import load_config

    cfg = load_config(config_file)
    if landmarks_file is not None:
        cfg = cfg.replace(histogram_ref_file=str(Path(landmarks_file).resolve()))
    return cfg


class NiftyNetPreprocessd:
    """``data[key]`` (a NIfTI path) -> the network input ``(1, X, Y, Z)`` float32, as ``niftyport parcellate``.

    Leaves the loaded scan under :data:`LOADED_KEY` (for :class:`RestoreToInputd`)
    and the file name under ``<key>_file``.
    """

    def __init__(self, keys: str = "image", *, config_file: str, landmarks_file: str | None = None):
        self.key = keys if isinstance(keys, str) else keys[0]
        self.config = bundle_config(config_file, landmarks_file)

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        from ..preprocessing import load_and_resample, preprocess

        out = dict(data)
        path = str(data[self.key])
        loaded = load_and_resample(path, self.config)
        whitened = preprocess(loaded.data, self.config).whitened
        out[self.key] = torch.from_numpy(np.ascontiguousarray(whitened, dtype=np.float32))[None]
        out[LOADED_KEY] = loaded
        out[f"{self.key}_file"] = path
        return out


class RestoreToInputd:
    """``data[key]`` labels ``(1, X', Y', Z')`` in network space -> int32 ``MetaTensor`` on the file's grid.

    The result is ``(1, X, Y, Z)`` with the file's affine and file name, for
    MONAI's ``SaveImaged``.
    """

    def __init__(self, keys: str = "pred", *, config_file: str, landmarks_file: str | None = None):
        self.key = keys if isinstance(keys, str) else keys[0]
        self.config = bundle_config(config_file, landmarks_file)

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        import torch
        from monai.data import MetaTensor

        from ..preprocessing import restore_to_input_space

        out = dict(data)
        loaded = data[LOADED_KEY]
        labels = np.asarray(torch.as_tensor(data[self.key]).detach().cpu().numpy())
        labels = restore_to_input_space(labels.reshape(labels.shape[-3:]).astype(np.int32), loaded, self.config)
        meta = {"filename_or_obj": str(loaded.source or "image"), "original_channel_dim": "no_channel",
                "affine": torch.as_tensor(loaded.affine, dtype=torch.float64)}
        out[self.key] = MetaTensor(torch.from_numpy(labels)[None], affine=meta["affine"], meta=meta)
        return out
