"""``label_normalisation``: from the network's class indices back to the user's label values.

NiftyNet trains on labels mapped to ``0 .. num_classes - 1`` by
``DiscreteLabelNormalisationLayer`` (``niftynet/layer/discrete_label_normalisation.py``),
whose mapping lives in ``histogram_ref_file`` as two lines,
``label_<section>-from v1 v2 ...`` (the original values) and
``label_<section>-to 0 1 ...`` (the indices), ``<section>`` being the first
``[SEGMENTATION] label`` section (or ``label``). At inference the layer's
``inverse_op`` maps every voxel whose index is ``to[i]`` to ``from[i]``
(other voxels become 0; the values are cast to the labels' int32, as NumPy
assigns float32 into an int32 array).

Where NiftyNet applies it (``segmentation_application.py``, the aggregators):
only with ``label_normalisation = True``, a ``histogram_ref_file`` and
``output_prob = False``, and only in the *grid* aggregator: the resize
aggregator (``windows_aggregator_resize.py``) applies the inverse to a copy
it then does not write, so with ``window_sampling = resize`` the written
labels stay the network's indices. niftyport does the same.
"""
from __future__ import annotations

import re

import numpy as np

from ..config import Config
from ..errors import ConfigError
from ..preprocessing.histogram import read_landmarks_file


def mapping_keys(config: Config) -> tuple[str, str]:
    """The two line names of the label mapping in ``histogram_ref_file``.

    NiftyNet's ``key`` property, with its ``standardise_string`` (characters
    other than letters, digits, ``_``, ``-`` and space dropped).

    >>> from niftyport.config import default_config
    >>> mapping_keys(default_config(niftynet_home="/nonexistent"))
    ('label_label-from', 'label_label-to')
    """
    labels = config.segmentation.label
    name = labels[0] if labels else "label"

    def clean(text: str) -> str:
        return re.sub(r"[^0-9a-zA-Z_\- ]+", "", text.strip())

    return clean(f"label_{name}-from"), clean(f"label_{name}-to")


def grid_label_mapping(config: Config) -> tuple[np.ndarray, np.ndarray] | None:
    """``(original, index)`` float32 arrays the grid aggregator maps labels back with, or ``None``.

    ``None`` unless ``label_normalisation`` is on and ``output_prob`` off.
    Raises :class:`ConfigError` where NiftyNet fails: no ``histogram_ref_file``,
    no mapping lines, lines of different lengths, or a number of labels other
    than ``num_classes``.
    """
    seg, net = config.segmentation, config.network
    if not seg.label_normalisation or seg.output_prob:
        return None
    source = config.source or "config"
    if not net.histogram_ref_file:
        raise ConfigError(f"{source}: label_normalisation = True needs a histogram_ref_file holding the "
                          "label mapping (NiftyNet fails without one)")
    key_from, key_to = mapping_keys(config)
    mapping = read_landmarks_file(net.histogram_ref_file)
    missing = [k for k in (key_from, key_to) if k not in mapping]
    if missing:
        raise ConfigError(f"histogram_ref_file {net.histogram_ref_file!r} has no line {missing[0]!r}: "
                          "label_normalisation = True needs the mapping written when the model was trained")
    original, index = mapping[key_from], mapping[key_to]
    if len(original) != len(index):
        raise ConfigError(f"histogram_ref_file {net.histogram_ref_file!r}: {key_from} has {len(original)} "
                          f"values, {key_to} {len(index)}")
    if len(original) != seg.num_classes:
        raise ConfigError(f"histogram_ref_file {net.histogram_ref_file!r}: {len(original)} labels in the mapping "
                          f"but num_classes = {seg.num_classes} (NiftyNet refuses this too)")
    return original, index


def map_back(labels: np.ndarray, original: np.ndarray, index: np.ndarray) -> np.ndarray:
    """NiftyNet's ``inverse_op``: voxels of class ``index[i]`` get ``original[i]``, the others 0.

    ``labels``: integer array of any shape; returns the same shape and dtype.

    >>> map_back(np.int32([0, 1, 2, 5]), np.float32([0, 10, 20]), np.float32([0, 1, 2])).tolist()
    [0, 10, 20, 0]
    """
    labels = np.asarray(labels)
    flat = labels.reshape(-1)
    mapped = np.zeros_like(flat)
    for new_value, class_index in zip(original, index):
        mapped[flat == class_index] = new_value
    return mapped.reshape(labels.shape)
