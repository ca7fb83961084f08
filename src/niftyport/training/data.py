"""Training data: the config's image and label volumes, preprocessed as NiftyNet does, and uniform windows.

Each subject's image goes through niftyport's port of NiftyNet's reader and
preprocessing layers (:mod:`niftyport.preprocessing`: orientation, voxel
size, volume padding, histogram standardisation, whitening); its label
through the same reader with the label section's own ``interp_order``, and
the same volume padding. Arrays here are NiftyNet's ``(X, Y, Z)``; batches
come out in torch's ``(N, 1, X, Y, Z)``.

The uniform sampler draws each window's corner uniformly among the
positions where the window fits (``rand_spatial_coordinates`` in
``niftynet/engine/sampler_uniform_v2.py``), ``sample_per_volume`` windows per
visit of a volume. Departure: NiftyNet's order of volumes and windows comes
from its ``tf.data`` shuffling buffers; here from one seeded NumPy generator,
volumes visited in a fresh random order each round.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..errors import TrainingError
from ..preprocessing import load_and_resample, preprocess
from ..preprocessing.padding import pad
from ..segmentation.subjects import find_subjects

__all__ = ["TrainingVolume", "load_training_volumes", "uniform_corners", "window_batches"]


@dataclass(frozen=True, eq=False)
class TrainingVolume:
    """One subject: ``image`` float32 ``(X, Y, Z)`` network input, ``label`` int64 ``(X, Y, Z)``, same grid."""

    subject_id: str
    image: np.ndarray
    label: np.ndarray


def _section_subjects(config: Config, name: str) -> dict:
    section = config.inputs[name]
    removed = (section.filename_removefromid,) if section.filename_removefromid else ()
    found = find_subjects(section.path_to_search, filename_contains=section.filename_contains,
                          filename_not_contains=section.filename_not_contains, filename_removefromid=removed)
    return {s.subject_id: s.path for s in found}


def load_training_volumes(config: Config) -> list[TrainingVolume]:
    """Every subject with both an image and a label file, preprocessed; sorted by subject id."""
    if len(config.segmentation.label) != 1:
        raise TrainingError("[SEGMENTATION] label must name exactly one input section for training")
    label_name = config.segmentation.label[0]
    images = _section_subjects(config, config.modality)
    labels = _section_subjects(config, label_name)
    ids = sorted(set(images) & set(labels))
    if not ids:
        raise TrainingError(f"no subject has both an image ([{config.modality}]) and a label ([{label_name}]); "
                            f"image ids {sorted(images)[:3]}, label ids {sorted(labels)[:3]}")
    label_config = dataclasses.replace(
        config, segmentation=dataclasses.replace(config.segmentation, image=(label_name,)))
    net = config.network
    volumes = []
    for subject in ids:
        image = preprocess(load_and_resample(images[subject], config).data, config).whitened
        raw = load_and_resample(labels[subject], label_config).data
        label = pad(raw, net.volume_padding_size, mode=net.volume_padding_mode, pad_to=net.volume_padding_to_size)
        if label.shape != image.shape:
            raise TrainingError(f"subject {subject!r}: label grid {label.shape} differs from the image's {image.shape}")
        volumes.append(TrainingVolume(subject, image, np.rint(label).astype(np.int64)))
    return volumes


def uniform_corners(shape: Sequence[int], window: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` window corners, each axis uniform in ``[0, shape - window]``.

    >>> uniform_corners((10, 8, 8), (10, 4, 8), 2, np.random.default_rng(0))[:, [0, 2]].tolist()
    [[0, 0], [0, 0]]
    """
    shape, window = np.asarray(shape[:3]), np.asarray(window[:3])
    if np.any(window > shape):
        raise TrainingError(f"spatial_window_size {tuple(int(w) for w in window)} is larger than the volume "
                            f"{tuple(int(s) for s in shape)} (after padding)")
    return np.stack([rng.integers(0, s - w + 1, size=n) for s, w in zip(shape, window)], axis=1)


def window_batches(volumes: Sequence[TrainingVolume], window: Sequence[int], *, batch_size: int,
                   sample_per_volume: int = 1, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless ``(image, label)`` batches, ``(batch_size, 1, *window)`` float32 and int64 (torch layout)."""
    rng = np.random.default_rng(seed)
    window = tuple(int(w) for w in window[:3])
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    while True:
        for index in rng.permutation(len(volumes)):
            volume = volumes[index]
            for corner in uniform_corners(volume.image.shape, window, sample_per_volume, rng):
                box = tuple(slice(c, c + w) for c, w in zip(corner, window))
                pending.append((volume.image[box], volume.label[box]))
                if len(pending) == batch_size:
                    yield (np.stack([p[0] for p in pending])[:, None].astype(np.float32),
                           np.stack([p[1] for p in pending])[:, None])
                    pending = []
