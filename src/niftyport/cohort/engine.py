"""The Dask side: a client on a ``LocalCluster`` or an existing scheduler, one task per scan.

niftyport schedules nothing itself: each scan is one ``client.submit`` of
:func:`~.task.parcellate_scan` (``retries`` times more if it raises, e.g.
when its worker dies), results come back through ``as_completed``. A local
cluster has one worker process per ``--workers``, each running one scan at a
time with ``--threads-per-worker`` torch threads, on the loopback interface.

Requires the ``cohort`` extra (``pip install 'niftyport[cohort]'``): dask,
distributed, and bokeh for the dashboard.
"""
from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import CohortError
from .scans import Scan
from .settings import RunSettings
from .task import ScanResult, available_cores, parcellate_scan

log = logging.getLogger(__name__)

#: Seconds to wait for an existing scheduler to answer.
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class ClusterSpec:
    """Where the tasks run.

    ``scheduler``: the address of an existing Dask scheduler (``tcp://host:8786``);
    otherwise a ``LocalCluster`` of ``workers`` workers (``processes``: one
    process each, else threads of this process), with ``memory_limit`` each
    (``"auto"``: the machine's memory shared out). ``threads_per_worker``:
    torch threads per scan (default: the cores shared out among the workers).
    """

    workers: int = 1
    threads_per_worker: int | None = None
    scheduler: str | None = None
    processes: bool = True
    memory_limit: str | int = "auto"
    dashboard: bool = True

    def torch_threads(self) -> int | None:
        """Torch threads per task: given, else (local cluster) cores / workers, else (remote) each worker's."""
        if self.threads_per_worker is not None or self.scheduler is not None:
            return self.threads_per_worker
        return max(1, available_cores() // self.workers)


def require_dask() -> None:
    """Raise :class:`CohortError` with the install command when dask/distributed are missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise CohortError(f"cohorts run on Dask, which is not installed ({exc.name} missing): "
                          f"pip install 'niftyport[cohort]'") from None


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def open_client(spec: ClusterSpec) -> Iterator:
    """A ``distributed.Client`` for ``spec``; a local cluster is closed on exit, a remote one left running."""
    require_dask()
    from distributed import Client, LocalCluster

    if spec.scheduler is not None:
        with Client(spec.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False) as client:
            yield client
        return
    dashboard = ":0" if spec.dashboard and _has_bokeh() else None
    with _environment_restored(), LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=spec.processes,
                      host="127.0.0.1", protocol="tcp://", dashboard_address=dashboard,
                      memory_limit=spec.memory_limit,
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


@contextlib.contextmanager
def _environment_restored() -> Iterator[None]:
    """Give the process its environment back when the local cluster closes.

    Dask's nanny writes its ``pre-spawn-environ`` settings (``MALLOC_TRIM_THRESHOLD_``)
    into this process's ``os.environ`` for the workers it spawns; left there, they
    would read as the user's malloc tuning to a later run in the same process
    (:func:`niftyport.inference.engines.can_reuse_freed_memory`).
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def dashboard_link(client) -> str | None:
    """The dashboard's address, when the scheduler serves one."""
    info = client.scheduler_info()
    if "dashboard" not in info.get("services", {}):
        return None
    return client.dashboard_link


def _failure(scan: Scan, exc: BaseException) -> ScanResult:
    """The row of a task that raised every time it ran (or whose worker kept dying)."""
    message = " ".join(str(exc).split()) or "(no message)"
    return ScanResult(key=scan.key, status="failed", error=f"{type(exc).__name__}: {message}")


def _cancelled(scan: Scan) -> ScanResult:
    return ScanResult(key=scan.key, status="failed", error="cancelled: the scheduler dropped the task")


def _running(client) -> int:
    """Tasks running now: those the workers hold, at most one per worker thread."""
    held = sum(len(keys) for keys in client.processing().values())
    return min(held, sum(client.nthreads().values()))


def run_tasks(client, scans: list[Scan], out_dir: Path, settings: RunSettings, *, retries: int = 1,
              progress: bool = True, on_result: Callable[[Scan, ScanResult], None] | None = None
              ) -> list[tuple[Scan, ScanResult]]:
    """Parcellate ``scans`` on ``client``'s workers; returns ``(scan, result)`` in completion order.

    ``retries``: extra tries of a task that raised (a scan that fails with
    a niftyport error is not retried: it fails the same way each time).
    ``on_result`` is called as each scan finishes.
    """
    from distributed import as_completed
    from tqdm import tqdm

    run_id = uuid.uuid4().hex[:8]
    futures = {client.submit(parcellate_scan, scan, str(out_dir), settings, key=f"niftyport-{scan.key}-{run_id}",
                             retries=retries, pure=False): scan for scan in scans}
    done: list[tuple[Scan, ScanResult]] = []
    failed = 0
    with tqdm(total=len(futures), unit="scan", disable=not progress, dynamic_ncols=True) as bar:
        for future in as_completed(futures, loop=client.loop):
            scan = futures[future]
            result = (_cancelled(scan) if future.cancelled() else
                      _failure(scan, future.exception()) if future.status == "error" else future.result())
            failed += result.status != "done"
            done.append((scan, result))
            if on_result is not None:
                on_result(scan, result)
            bar.set_postfix(done=len(done) - failed, failed=failed, running=_running(client), refresh=False)
            bar.update(1)
    return done
