"""The participant level: which scans to do, doing them on Dask, what is left in the folder.

:func:`prepare` checks the options and fixes the weights (their SHA-256) on
the client; :func:`plan` splits the scans into those already done with the
same label settings and those to (re)do; :func:`run_participants` runs the
latter and writes the dataset files and ``errors.tsv``. A run that is killed
loses no finished scan: each scan's outputs are renamed into place as they
are complete, the sidecar last, and the next run redoes only what is missing.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import CohortError
from ..outputs import write_text_atomic
from .derivatives import (ScanOutputs, check_output_dir, format_errors_tsv, is_done, raw_link,
                          remove_stale_temporaries, write_dataset_files)
from .scans import Scan
from .settings import NETWORK, ConfigSource, RunSettings, generated_by

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    """How a participant-level run went: scan keys ``done``, ``skipped`` (already done), ``failed`` with errors."""

    done: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    dashboard: str | None = None
    rows: tuple = field(default=(), repr=False)

    @property
    def exit_status(self) -> int:
        """0 when no scan failed, else 1."""
        return 1 if self.failed else 0

    def text(self) -> str:
        """The summary printed at the end of a run."""
        rate = f", {len(self.done) / self.seconds * 3600:.0f} scans/hour" if self.done and self.seconds else ""
        lines = [f"{len(self.done)} done, {len(self.skipped)} already done, {len(self.failed)} failed "
                 f"in {self.seconds:.1f} s{rate}"]
        lines += [f"failed: {key}: {error}" for key, error in self.failed]
        return "\n".join(lines)


def prepare(*, config: ConfigSource, weights: str | None = None, mode: str = "niftynet", device: str = "auto",
            threads: int | None = None, max_memory: int | None = None, local: bool = True) -> RunSettings:
    """The run's settings, checked on the client: config, mode, weights (SHA-256), and the device when local."""
    from ..inference.engines import MODES
    from ..segmentation.pipeline import resolve_device
    from ..weights import find_weights, sha256_of

    if mode not in MODES:
        raise CohortError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    resolved = config.resolve()
    if local:
        resolve_device(device)
    found = find_weights(weights)
    explicit = str(found.path.absolute()) if weights is not None else None
    settings = RunSettings(config=config, weights=explicit, weights_sha256=sha256_of(found.path), mode=mode,
                           device=device, threads=threads, max_memory=max_memory)
    return settings.with_labels(resolved)


def check_no_overlap(scans: list[Scan], out_dir: Path) -> None:
    """Refuse a run where some scan's output would be some scan's input (links resolved)."""
    inputs = {scan.path.resolve(): scan for scan in scans}
    for scan in scans:
        for path in ScanOutputs.of(out_dir, scan).all:
            source = inputs.get(path.resolve())
            if source is not None:
                raise CohortError(f"output {path} of scan {scan.key} is the input of scan {source.key}")


def plan(scans: list[Scan], out_dir: Path, labels: dict, *, force: bool = False) -> tuple[list[Scan], list[Scan]]:
    """``(to do, already done)``: a scan is done when :func:`~.derivatives.is_done` says so (never with ``force``)."""
    done = [] if force else [s for s in scans if is_done(ScanOutputs.of(out_dir, s), s, labels)]
    keys = {s.key for s in done}
    return [s for s in scans if s.key not in keys], done


def _write_errors(out_dir: Path, failed: list[tuple[Scan, str]]) -> None:
    write_text_atomic(out_dir / "errors.tsv", format_errors_tsv(failed))


def run_participants(scans: list[Scan], out_dir: str | Path, settings: RunSettings, *, cluster, bids_dir=None,
                     retries: int = 1, force: bool = False, progress: bool = True,
                     echo: Callable[[str], None] = print) -> Summary:
    """Parcellate every scan not already done into ``out_dir``; returns the :class:`Summary`.

    ``cluster``: a :class:`~.engine.ClusterSpec`. ``bids_dir``: the raw BIDS
    dataset, linked from ``dataset_description.json``. ``errors.tsv`` lists
    the scans that failed in this run (only its header when none did).
    """
    from ..reporting.labels import network_table
    from .engine import dashboard_link, open_client, run_tasks

    start = time.perf_counter()
    if settings.threads is None:
        settings = replace(settings, threads=cluster.torch_threads())
    out_dir = Path(out_dir).absolute()
    bids_dir = Path(bids_dir).absolute() if bids_dir is not None else None
    check_output_dir(out_dir, inputs=(bids_dir,) if bids_dir else (), force=force)
    check_no_overlap(scans, out_dir)
    todo, skipped = plan(scans, out_dir, settings.labels, force=force)
    echo(f"{len(scans)} scans: {len(skipped)} already done, {len(todo)} to do")
    dataset_files = dict(generated_by=generated_by(settings), table=network_table(NETWORK),
                         raw=raw_link(out_dir, bids_dir))
    results, link = [], None
    if not todo:
        write_dataset_files(out_dir, **dataset_files)
    else:
        with open_client(cluster) as client:  # connected: only now is anything written
            write_dataset_files(out_dir, **dataset_files)
            link = dashboard_link(client)
            echo(f"dask: {client.scheduler.address}" + (f", dashboard {link}" if link else ""))
            results = run_tasks(client, todo, out_dir, settings, retries=retries, progress=progress)
    for scan in scans:  # every task has ended: what a killed writer left is no one's
        remove_stale_temporaries(ScanOutputs.of(out_dir, scan))
    failed = [(scan, r.error) for scan, r in results if r.status != "done"]
    _write_errors(out_dir, failed)
    return Summary(done=tuple(s.key for s, r in results if r.status == "done"),
                   skipped=tuple(s.key for s in skipped), failed=tuple((s.key, e) for s, e in failed),
                   seconds=time.perf_counter() - start, dashboard=link, rows=tuple(r for _, r in results))
