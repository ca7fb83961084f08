"""Validation as NiftyNet 0.6.0 runs it: the data split, the validation rounds, Dice, early stopping.

**The split** (``ImageSetsPartitioner``, ``niftynet/io/image_sets_partitioner.py``,
set up by ``ApplicationDriver``, ``engine/application_driver.py``): when
``[SYSTEM] dataset_split_file`` (default ``model_dir/dataset_split.csv``)
does not exist and ``exclude_fraction_for_validation`` or
``exclude_fraction_for_inference`` is above 0, every subject is given a
phase -- ``ceil(n * f_valid)`` ``validation``, ``ceil(n * f_infer)``
``inference``, the rest ``training``, in a random order -- and the file is
written: one ``subject_id,phase`` row per subject, no header. When the file
exists it is read instead (the fractions are then ignored, as NiftyNet warns).
Training uses the ``training`` subjects (all subjects when the file has none,
or when there is no file); validation the ``validation`` ones; a subject
missing from the file is used by neither. NiftyNet refuses
``validation_every_n > 0`` without validation subjects; so does niftyport.

**Rounds** (``_train_iter_generator``, ``engine/application_iteration.py``):
after training iteration ``i`` with ``i % validation_every_n == 0``, NiftyNet
runs ``validation_max_iter`` validation iterations, each one batch of the
validation reader's sampler (same sampler kind, no augmentation), the loss
and ``total_loss`` computed and printed, nothing updated
(:func:`~niftyport.training.loop.validation_step`).

**Early stopping** (``engine/handler_performance.py``,
``engine/handler_early_stopping.py``): NiftyNet keeps the last ``patience``
validation ``total_loss`` values (one per validation iteration) and, once it
has ``patience`` of them, stops when :func:`should_stop` says so for
``early_stopping_mode``. NiftyNet does this only when ``[SYSTEM]
event_handler`` lists ``early_stopper`` (not among its defaults); niftyport
also when asked by its own option (``--early-stopping``).

Departures: the split's random order comes from a NumPy generator seeded
with the run's seed (NiftyNet: Python's unseeded ``random.shuffle``); Dice
per class is niftyport's addition to the log (NiftyNet logs losses only).
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter

from ..errors import TrainingError
from ..outputs import write_text_atomic

__all__ = ["EARLY_STOPPING_MODES", "PHASES", "Split", "dice_per_class", "generalisation_loss", "new_split",
           "read_split", "should_stop", "split_subjects", "write_split"]

#: NiftyNet's phase names (``engine/signal.py``).
PHASES = ("training", "validation", "inference")
#: ``early_stopping_mode`` values of ``check_should_stop``.
EARLY_STOPPING_MODES = ("mean", "robust_mean", "median", "generalisation_loss", "median_smoothing",
                        "validation_up")


@dataclass(frozen=True)
class Split:
    """Subject ids per phase; ``path``: the split file (None: no split, every subject trains)."""

    training: tuple[str, ...]
    validation: tuple[str, ...] = ()
    inference: tuple[str, ...] = ()
    path: Path | None = None


def new_split(subjects: Sequence[str], valid_fraction: float, infer_fraction: float,
              rng: np.random.Generator) -> list[tuple[str, str]]:
    """``(subject, phase)`` rows: ``ceil(n f_valid)`` validation, ``ceil(n f_infer)`` inference, in a random order.

    >>> rows = new_split(["a", "b", "c", "d", "e"], 0.2, 0.2, np.random.default_rng(0))
    >>> sorted(p for _, p in rows)
    ['inference', 'training', 'training', 'training', 'validation']
    """
    n = len(subjects)
    valid_fraction = max(min(1.0, float(valid_fraction)), 0.0)
    infer_fraction = max(min(1.0, float(infer_fraction)), 0.0)
    n_valid, n_infer = math.ceil(n * valid_fraction), math.ceil(n * infer_fraction)
    phases = (["training"] * (n - n_valid - n_infer) + ["validation"] * n_valid + ["inference"] * n_infer)[:n]
    order = rng.permutation(len(phases))
    return list(zip(subjects, [phases[i] for i in order]))


def write_split(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    """NiftyNet's split file: ``subject_id,phase`` rows, no header (``util_csv.write_csv``), written atomically."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def read_split(path: Path) -> list[tuple[str, str]]:
    """The rows of a split file; phases lower-cased, as NiftyNet reads them; an unknown phase is an error."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, skipinitialspace=True), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise TrainingError(f"{path}: line {number}: expected 'subject_id,phase'")
            phase = row[1].strip().lower()
            if phase not in PHASES + ("all",):
                raise TrainingError(f"{path}: line {number}: phase {row[1]!r} is not one of {', '.join(PHASES)}")
            rows.append((row[0], phase))
    if not rows:
        raise TrainingError(f"{path}: the split file is empty (remove it to make a new split)")
    return rows


def split_subjects(subjects: Sequence[str], *, split_file: str | os.PathLike | None, valid_fraction: float,
                   infer_fraction: float, rng: np.random.Generator) -> Split:
    """The subjects of each phase, reading or writing ``split_file`` as NiftyNet does (see the module)."""
    path = Path(split_file) if split_file else None
    if path is not None and path.is_file():
        rows = read_split(path)
    elif path is not None and (valid_fraction > 0 or infer_fraction > 0):
        rows = new_split(list(subjects), valid_fraction, infer_fraction, rng)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_split(path, rows)
    else:
        return Split(tuple(subjects))
    known = set(subjects)
    phase_of = {subject: phase for subject, phase in rows if subject in known}
    by_phase = {p: tuple(s for s in subjects if phase_of.get(s) == p) for p in PHASES}
    training = by_phase["training"] or tuple(subjects)
    return Split(training, by_phase["validation"], by_phase["inference"], path)


def dice_per_class(overlaps: np.ndarray) -> np.ndarray:
    """``2 * both / (predicted + true)`` per class from :func:`~niftyport.training.loop.class_overlaps`
    counts ``(3, C)``; NaN where a class is in neither.

    >>> dice_per_class(np.array([[1, 0, 0], [2, 1, 0], [1, 0, 0]])).tolist()
    [0.6666666666666666, 0.0, nan]
    """
    both, predicted, true = (np.asarray(overlaps, dtype=np.float64)[k] for k in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted + true > 0, 2 * both / (predicted + true), np.nan)


def generalisation_loss(history: Sequence[float]) -> float:
    """``(last - min) / (max - min)`` (``last`` when the minimum is 0), ``compute_generalisation_loss``.

    >>> generalisation_loss([2.0, 1.0, 3.0, 1.5])
    0.25
    """
    values = np.asarray(history, dtype=np.float64)
    low, high, last = values.min(), values.max(), values[-1]
    if low == 0:
        return float(last)
    return float((last - low) / (high - low))


def should_stop(history: Sequence[float], mode: str = "mean", *, min_delta: float = 0.03, kernel_size: int = 5,
                k_splits: int = 5) -> bool:
    """NiftyNet's ``check_should_stop`` on a full history of ``patience`` validation losses (oldest first).

    * ``mean`` / ``median``: the last value above the mean / median of the others;
    * ``robust_mean``: above the mean of the others strictly between their 5th and 95th percentiles;
    * ``generalisation_loss``: :func:`generalisation_loss` above 0.2;
    * ``median_smoothing``: under half of the gradient of the median-filtered others below ``min_delta``;
    * ``validation_up``: every one of ``k_splits`` strips (after dropping ``len % k_splits`` first values)
      has a generalisation loss of at least ``min_delta``.

    >>> should_stop([1.0, 0.9, 0.8, 0.95], "mean"), should_stop([1.0, 0.9, 0.8, 0.7], "mean")
    (True, False)
    """
    return bool(_should_stop([float(v) for v in history], mode, min_delta, kernel_size, k_splits))


def _should_stop(values: list[float], mode: str, min_delta: float, kernel_size: int, k_splits: int):
    others = values[:-1]
    if mode == "mean":
        return values[-1] > np.mean(others)
    if mode == "robust_mean":
        low, high = np.percentile(others, q=[5, 95])
        return values[-1] > np.mean([v for v in others if low < v < high])
    if mode == "median":
        return values[-1] > np.median(others)
    if mode == "generalisation_loss":
        return generalisation_loss(values) > 0.2
    if mode == "median_smoothing":
        gradient = np.gradient(median_filter(others, size=kernel_size))
        return np.sum(np.where(gradient < min_delta, 1, 0)) * 1.0 / len(gradient) < 0.5
    if mode == "validation_up":
        strips = np.split(np.array(values[len(values) % k_splits:]), k_splits)
        return all(generalisation_loss(strip) >= min_delta for strip in strips)
    raise TrainingError(f"[TRAINING] early_stopping_mode = {mode}: not one of {', '.join(EARLY_STOPPING_MODES)}")
