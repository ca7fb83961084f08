"""Training data: the config's image, label, sampler and weight volumes, preprocessed as NiftyNet does.

Each subject's image goes through niftyport's port of NiftyNet's reader and
preprocessing layers (:mod:`niftyport.preprocessing`: orientation, voxel
size, volume padding, histogram standardisation, whitening); its label, and
the ``[SEGMENTATION] sampler`` and ``weight`` maps when named, through the
same reader with their sections' own ``interp_order``, and the same volume
padding (NiftyNet's ``PadLayer`` pads every input; the normalisation layers
touch the image only). Arrays here are NiftyNet's ``(X, Y, Z)``; batches come
out in torch's ``(N, 1, X, Y, Z)``.

Windows are drawn by :class:`~niftyport.training.sampler.WindowSampler`
(uniform, weighted or balanced centres, augmentation, prefetching);
:func:`window_batches` is its uniform, unaugmented form.
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

__all__ = ["TrainingVolume", "input_orders", "load_training_volumes", "training_subjects", "uniform_corners",
           "window_batches"]


@dataclass(frozen=True, eq=False)
class TrainingVolume:
    """One subject: ``image`` float32 ``(X, Y, Z)`` network input, ``label`` int64 ``(X, Y, Z)``, same grid;
    ``sampler`` (float32, the weighted / balanced sampler's map) and ``weight`` (float32, the loss's
    weight map) when the config names them, else None."""

    subject_id: str
    image: np.ndarray
    label: np.ndarray
    sampler: np.ndarray | None = None
    weight: np.ndarray | None = None


def _section_subjects(config: Config, name: str) -> dict:
    section = config.inputs[name]
    removed = (section.filename_removefromid,) if section.filename_removefromid else ()
    found = find_subjects(section.path_to_search, filename_contains=section.filename_contains,
                          filename_not_contains=section.filename_not_contains, filename_removefromid=removed)
    return {s.subject_id: s.path for s in found}


def _one_section(config: Config, key: str) -> str | None:
    names = getattr(config.segmentation, key)
    if len(names) > 1:
        raise TrainingError(f"[SEGMENTATION] {key} must name one input section for training, not {len(names)}")
    if names and names[0] not in config.inputs:
        raise TrainingError(f"[SEGMENTATION] {key} = {names[0]}: no such input section")
    return names[0] if names else None


def _map_sections(config: Config) -> dict[str, str]:
    """``{"label": section, "sampler": section, "weight": section}`` for those the config names."""
    out = {}
    for key in ("label", "sampler", "weight"):
        name = _one_section(config, key)
        if name is not None:
            out[key] = name
    if "label" not in out:
        raise TrainingError("[SEGMENTATION] label must name exactly one input section for training")
    return out


def input_orders(config: Config) -> dict[str, int]:
    """The ``interp_order`` of each training field's input section (``image``, ``label``, ``sampler``, ``weight``)."""
    orders = {"image": config.image.interp_order}
    orders.update({key: config.inputs[name].interp_order for key, name in _map_sections(config).items()})
    return orders


def _files(config: Config) -> tuple[dict[str, str], dict[str, dict]]:
    """``({field: section}, {section: {subject id: path}})`` for the image and every map the config names
    (each section searched once)."""
    sections = {"image": config.modality, **_map_sections(config)}
    return sections, {name: _section_subjects(config, name) for name in set(sections.values())}


def _common_ids(sections: dict[str, str], found: dict[str, dict]) -> list[str]:
    ids = set.intersection(*(set(found[name]) for name in sections.values()))
    if not ids:
        listed = "; ".join(f"[{name}] ids {sorted(v)[:3]}" for name, v in found.items())
        raise TrainingError(f"no subject has an image ([{sections['image']}]) and every map "
                            f"({', '.join(f'[{n}]' for k, n in sections.items() if k != 'image')}): {listed}")
    return sorted(ids)


def training_subjects(config: Config) -> list[str]:
    """The ids of the subjects with an image and every map the config names (label, sampler, weight), sorted."""
    return _common_ids(*_files(config))


def load_training_volumes(config: Config, subjects: Sequence[str] | None = None) -> list[TrainingVolume]:
    """Every subject with an image, a label (and the sampler / weight maps the config names), preprocessed;
    sorted by subject id. ``subjects``: only these ids (in this order)."""
    sections, found = _files(config)
    ids = _common_ids(sections, found)
    if subjects is not None:
        missing = sorted(set(subjects) - set(ids))
        if missing:
            raise TrainingError(f"subject {missing[0]!r} lacks an image or one of its maps")
        ids = list(subjects)
    net = config.network
    volumes = []
    for subject in ids:
        image = preprocess(load_and_resample(found[sections["image"]][subject], config).data, config).whitened
        maps, loaded = {}, {}
        for key, name in sections.items():
            if key == "image":
                continue
            if name not in loaded:          # one section may be both the label and the sampler map
                section_config = dataclasses.replace(
                    config, segmentation=dataclasses.replace(config.segmentation, image=(name,)))
                raw = load_and_resample(found[name][subject], section_config).data
                loaded[name] = pad(raw, net.volume_padding_size, mode=net.volume_padding_mode,
                                   pad_to=net.volume_padding_to_size)
            if loaded[name].shape != image.shape:
                raise TrainingError(f"subject {subject!r}: {key} grid {loaded[name].shape} differs from the "
                                    f"image's {image.shape}")
            maps[key] = loaded[name]
        volumes.append(TrainingVolume(subject, image, np.rint(maps["label"]).astype(np.int64),
                                      sampler=_float(maps.get("sampler")), weight=_float(maps.get("weight"))))
    return volumes


def _float(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.asarray(array, dtype=np.float32)


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
    """Endless ``(image, label)`` batches of uniform windows, no augmentation,
    ``(batch_size, 1, *window)`` float32 and int64 (torch layout);
    see :class:`~niftyport.training.sampler.WindowSampler`."""
    from .sampler import SamplerSettings, WindowSampler

    settings = SamplerSettings(window=tuple(int(w) for w in window[:3]), batch_size=batch_size,
                               sample_per_volume=sample_per_volume, seed=seed)
    for batch in WindowSampler(volumes, settings).batches():
        yield batch.image, batch.label
