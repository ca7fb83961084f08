"""The files written beside a label map: its label table and its volumes.

For ``t1_parcellation.nii.gz``: ``t1_parcellation.ctbl`` (the colour table
naming the labels, which ``volumes``/``compare``/``report`` then pick up by
themselves) and ``t1_parcellation_volumes.csv`` (one row per label present:
id, name, side, voxels, mm^3, the other side and the asymmetry).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..reporting.colortable import ColorTable, write_ctbl
from ..reporting.labels import sibling_table_path
from ..reporting.volumes import label_volumes, write_volumes_csv


def extras_paths(label_path: str | os.PathLike) -> tuple[Path, Path]:
    """``(table, volumes)`` paths beside ``label_path``."""
    table = sibling_table_path(label_path)
    return table, table.with_name(table.stem + "_volumes.csv")


def voxel_mm3_of(affine: np.ndarray) -> float:
    """Voxel volume in mm^3 of a ``(4, 4)`` voxel -> mm affine."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


def write_extras(label_path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray,
                 table: ColorTable) -> tuple[Path, Path]:
    """Write the label table and the volumes CSV beside ``label_path`` (atomically); returns their paths.

    ``labels``: the integer ``(X, Y, Z)`` map as written, ``affine`` its
    ``(4, 4)`` voxel -> RAS+ mm affine (volumes are voxel counts times its
    determinant).
    """
    table_path, volumes_path = extras_paths(label_path)
    write_ctbl(table, table_path)
    write_volumes_csv(label_volumes(labels, voxel_mm3_of(affine), table), volumes_path)
    return table_path, volumes_path


def save_label_map(path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray, header_like, *,
                   network: str, input_paths=(), extras: bool = True) -> list[Path]:
    """Write a label map (and, with ``extras``, its table and volumes beside it); returns the paths written.

    The header's description names ``network``; the table is the one shipped
    with ``network``'s weights (none is written when it ships none).
    """
    from ..errors import ColorTableError
    from ..image_io import save_labels
    from ..reporting.labels import description_for, network_table

    written = [save_labels(path, labels, affine, header_like, input_paths=input_paths,
                           description=description_for(network))]
    if extras:
        try:
            table = network_table(network)
        except ColorTableError:
            return written
        written += write_extras(path, labels, affine, table)
    return written
