"""The work of one scan, as a Dask worker runs it: read the T1, parcellate, write the outputs, return a row.

The scheduler never sees an image: a task receives a :class:`~.scans.Scan`
(paths), the output folder and the :class:`~.settings.RunSettings`, and
returns a :class:`ScanResult` of a few numbers and strings. Inside the task,
torch gets its threads from the settings (Dask starts workers with
``OMP_NUM_THREADS=1``) and the memory budget from the worker's memory limit.

A scan that cannot be parcellated (a :class:`~niftyport.errors.NiftyportError`:
corrupt file, NaNs, a 2-D image...) gives a ``failed`` row and is not
retried; any other exception (a full disk, a lost worker) propagates, so
that Dask retries the task.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NiftyportError, WeightsError
from .derivatives import ScanOutputs, format_volumes_tsv, input_identity, sidecar
from .scans import Scan
from .settings import NETWORK, RunSettings

#: Fraction of a worker's memory limit a task plans to use (Dask pauses a worker at 80%).
MEMORY_FRACTION = 0.7


@dataclass(frozen=True)
class ScanResult:
    """What a task sends back: ``status`` ``done`` or ``failed`` (with ``error``, one line), and how it ran.

    ``seconds``: wall time of the task; ``cpu_seconds``: CPU time of the worker
    process meanwhile (the task's own when the worker runs one task at a time).
    """

    key: str
    status: str
    error: str = ""
    seconds: float = 0.0
    worker: str = ""
    pid: int = 0
    threads: int = 0
    max_memory: int | None = None
    n_labels: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class WorkerResources:
    """What one task may use on the worker running it: torch ``threads``, ``max_memory`` bytes (None: default)."""

    threads: int
    max_memory: int | None
    address: str = ""


def _current_worker():
    """The Dask worker running this code, or None outside Dask."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:  # not inside a task
        return None


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_resources(threads: int | None, max_memory: int | None) -> WorkerResources:
    """Threads and memory for a task: the settings' when given, else shares of the worker's.

    A worker running ``nthreads`` tasks at once gives each ``cores / nthreads``
    threads and :data:`MEMORY_FRACTION` of ``memory_limit / nthreads``.
    """
    worker = _current_worker()
    slots = max(1, int(getattr(getattr(worker, "state", None), "nthreads", 1) or 1)) if worker is not None else 1
    cores = available_cores()
    if max_memory is None and worker is not None:
        limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
        max_memory = int(limit * MEMORY_FRACTION / slots) if limit else None
    return WorkerResources(threads=threads or max(1, cores // slots), max_memory=max_memory,
                           address=str(getattr(worker, "address", "")) if worker is not None else "")


@functools.lru_cache(maxsize=2)
def _model(weights: str | None, sha256: str, device: str):
    """The network, loaded once per worker process (weights checked against the run's SHA-256)."""
    from ..segmentation.pipeline import resolve_device
    from ..weights import find_weights, load_weights, sha256_of

    found = find_weights(weights)
    digest = sha256_of(found.path)
    if digest != sha256:
        raise WeightsError(f"weights {found.path} on this worker have sha256 {digest}, the run uses {sha256}")
    return load_weights(found.path, device=resolve_device(device))


def _write_outputs(scan: Scan, outputs: ScanOutputs, result, settings: RunSettings, run: dict,
                   input_record: dict) -> int:
    """Label map, volumes, then the sidecar (atomically, each); returns the number of labels present."""
    import json

    from ..image_io import save_labels
    from ..outputs import write_text_atomic
    from ..reporting.labels import description_for, network_table
    from ..reporting.volumes import label_volumes
    from ..segmentation.extras import voxel_mm3_of

    outputs.labels.parent.mkdir(parents=True, exist_ok=True)
    save_labels(outputs.labels, result.labels, result.affine, result.loaded.header,
                input_paths=[scan.path], description=description_for(NETWORK))
    volumes = label_volumes(result.labels, voxel_mm3_of(result.affine), network_table(NETWORK))
    write_text_atomic(outputs.volumes, format_volumes_tsv(volumes))
    record = sidecar(scan, labels=settings.labels, run=run, input_record=input_record)
    write_text_atomic(outputs.sidecar, json.dumps(record, indent=2) + "\n")
    return len(volumes)


def parcellate_scan(scan: Scan, out_dir: str, settings: RunSettings) -> ScanResult:
    """Parcellate one scan into ``out_dir`` (see the module docstring); the body of one Dask task."""
    from .. import __version__
    from ..segmentation.pipeline import run_parcellation, torch_threads

    start, cpu = time.perf_counter(), time.process_time()
    resources = worker_resources(settings.threads, settings.max_memory)
    common = dict(key=scan.key, worker=resources.address, pid=os.getpid(), threads=resources.threads,
                  max_memory=resources.max_memory)
    try:
        input_record = input_identity(scan.path)
        model = _model(settings.weights, settings.weights_sha256, settings.device)
        with torch_threads(resources.threads):
            result = run_parcellation(scan.path, config=settings.config.resolve(), model=model,
                                      mode=settings.mode, device=settings.device,
                                      max_memory=resources.max_memory)
    except NiftyportError as exc:
        return ScanResult(status="failed", error=" ".join(str(exc).split()),
                          seconds=time.perf_counter() - start, **common)
    except FileNotFoundError as exc:  # the scan vanished since it was found
        return ScanResult(status="failed", error=f"{scan.path}: {exc.strerror}",
                          seconds=time.perf_counter() - start, **common)
    run = {"niftyport_version": __version__, "device": str(next(model.parameters()).device),
           "threads": resources.threads, "max_memory": resources.max_memory, "worker": resources.address,
           "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
           "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    n_labels = _write_outputs(scan, ScanOutputs.of(Path(out_dir), scan), result, settings, run, input_record)
    return ScanResult(status="done", seconds=time.perf_counter() - start, n_labels=n_labels,
                      cpu_seconds=time.process_time() - cpu, **common)
