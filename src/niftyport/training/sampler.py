"""Training batches: volume visits, augmentation, window centres, and a prefetching queue.

What NiftyNet's ``UniformSampler`` / ``WeightedSampler`` / ``BalancedSampler``
(``niftynet/engine/sampler_*_v2.py``) do per read of a volume, here per
*visit*: the volume is augmented once (:mod:`.augmentation`, training only),
``sample_per_volume`` window centres are drawn (:mod:`.sampling`) and the
windows cropped from every field (image, label, and the sampler and weight
maps when the config has them). Windows go into batches of ``batch_size``
in visit order; a visit's windows may span two batches.

Reproducible by construction: visit ``j`` draws from its own generator,
``numpy.random.default_rng([seed, stream, 1, j])``, and visits ``j`` of round
``r = j // n_volumes`` take the volumes in the order
``default_rng([seed, stream, 0, r]).permutation(n_volumes)``. Batch ``i`` is
therefore a pure function of ``(seed, stream, i)``: the state to save beside a
checkpoint is the number of batches taken (:class:`SamplerState`), and a
background thread may compute batches ahead (``queue_length``, as NiftyNet's
queue) without changing them.

Departure from NiftyNet: NiftyNet's order of volumes and windows comes from
its ``tf.data`` shuffling buffers (``engine/image_window_dataset.py``) and
NumPy's global generator; niftyport's from the seeded generators above.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import TrainingError
from .augmentation import Augmentation, apply_transform, draw_transform
from .sampling import centres_to_corners, window_centres

__all__ = ["Batch", "SamplerSettings", "SamplerState", "WindowSampler", "prefetched"]

#: stream numbers of :class:`WindowSampler` (the second seed word)
TRAINING_STREAM, VALIDATION_STREAM = 0, 1


@dataclass(frozen=True)
class SamplerSettings:
    """How windows are drawn.

    ``method``: ``uniform``, ``weighted`` or ``balanced`` (``[NETWORK] window_sampling``);
    ``window``: spatial window size (3,); ``orders``: interpolation order per
    field (``image``, ``label``, ``sampler``, ``weight``) for augmentation;
    ``stream``: which of the seed's independent streams (training 0, validation 1).
    """

    window: tuple[int, int, int]
    batch_size: int = 1
    sample_per_volume: int = 1
    method: str = "uniform"
    augmentation: Augmentation = field(default_factory=Augmentation)
    orders: Mapping[str, int] = field(default_factory=lambda: {"image": 1, "label": 0, "sampler": 0, "weight": 1})
    seed: int = 0
    stream: int = TRAINING_STREAM


@dataclass(frozen=True)
class SamplerState:
    """What resumes a sampler: its seed, stream and the number of batches already taken."""

    seed: int
    stream: int
    batches: int

    def to_json(self) -> dict:
        return {"seed": self.seed, "stream": self.stream, "batches": self.batches}

    @classmethod
    def from_json(cls, data: Mapping) -> SamplerState:
        return cls(int(data["seed"]), int(data["stream"]), int(data["batches"]))


@dataclass(frozen=True)
class Batch:
    """``image`` float32 ``(N, 1, *window)``, ``label`` int64 ``(N, 1, *window)``, ``weight`` float32 or None
    (torch's layout); ``index``: the batch number in its stream."""

    index: int
    image: np.ndarray
    label: np.ndarray
    weight: np.ndarray | None = None


def _fields(volume) -> dict[str, np.ndarray]:
    out = {"image": volume.image, "label": volume.label}
    for name in ("sampler", "weight"):
        value = getattr(volume, name, None)
        if value is not None:
            out[name] = value
    return out


class WindowSampler:
    """Batches of windows from ``volumes`` (:class:`~niftyport.training.data.TrainingVolume`), see the module."""

    def __init__(self, volumes: Sequence, settings: SamplerSettings):
        if not volumes:
            raise TrainingError("no volumes to draw windows from")
        self.volumes = list(volumes)
        self.settings = settings
        self._cached: tuple[int, list[dict[str, np.ndarray]]] | None = None

    def volume_of_visit(self, visit: int) -> int:
        """The index (in ``volumes``) of the volume visit ``visit`` reads."""
        n = len(self.volumes)
        s = self.settings
        order = np.random.default_rng([s.seed, s.stream, 0, visit // n]).permutation(n)
        return int(order[visit % n])

    def visit(self, visit: int) -> list[dict[str, np.ndarray]]:
        """The ``sample_per_volume`` windows of visit ``visit``: ``{field: (X, Y, Z) array}`` each."""
        if self._cached is not None and self._cached[0] == visit:
            return self._cached[1]
        s = self.settings
        rng = np.random.default_rng([s.seed, s.stream, 1, visit])
        fields = _fields(self.volumes[self.volume_of_visit(visit)])
        if s.augmentation.active:
            fields = apply_transform(fields, s.orders, draw_transform(s.augmentation, rng),
                                     antialiasing=s.augmentation.antialiasing)
        shape = fields["image"].shape
        for name, array in fields.items():
            if array.shape != shape:
                raise TrainingError(f"field {name!r} has grid {array.shape}, the image {shape}")
        centres = window_centres(s.method, s.sample_per_volume, shape, s.window, fields.get("sampler"), rng)
        windows = []
        for corner in centres_to_corners(centres, s.window):
            box = tuple(slice(int(c), int(c) + w) for c, w in zip(corner, s.window))
            windows.append({name: array[box] for name, array in fields.items()})
        self._cached = (visit, windows)
        return windows

    def batch(self, index: int) -> Batch:
        """Batch number ``index`` (0-based) of this sampler's stream."""
        s = self.settings
        windows = []
        for k in range(index * s.batch_size, (index + 1) * s.batch_size):
            windows.append(self.visit(k // s.sample_per_volume)[k % s.sample_per_volume])
        image = np.stack([w["image"] for w in windows])[:, None].astype(np.float32)
        label = np.stack([w["label"] for w in windows])[:, None].astype(np.int64)
        weight = (np.stack([w["weight"] for w in windows])[:, None].astype(np.float32)
                  if "weight" in windows[0] else None)
        return Batch(index, image, label, weight)

    def batches(self, start: int = 0, *, prefetch: int = 0) -> Iterator[Batch]:
        """Batches ``start, start + 1, ...``; ``prefetch > 0``: computed ahead by a thread,
        at most that many waiting."""
        if prefetch <= 0:
            index = start
            while True:
                yield self.batch(index)
                index += 1
        else:
            yield from prefetched(self.batch, start, prefetch)

    def state(self, batches_taken: int) -> SamplerState:
        return SamplerState(self.settings.seed, self.settings.stream, batches_taken)


_DONE = object()


def prefetched(make, start: int, depth: int) -> Iterator:
    """``make(start), make(start + 1), ...`` computed by a background thread, at most ``depth`` ahead.

    The thread stops when the iterator is closed or garbage-collected; an
    error in ``make`` is raised in the consumer.
    """
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        index = start
        while not stop.is_set():
            try:
                item = (True, make(index))
            except Exception as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
                item = (False, exc)
            while not stop.is_set():
                try:
                    box.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return
            index += 1

    thread = threading.Thread(target=produce, name="niftyport-sampler", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = box.get()
            if not ok:
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)
