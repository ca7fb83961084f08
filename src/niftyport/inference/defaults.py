"""Run defaults that follow the machine: the memory budget and the thread count.

Torch-free (the command line computes them for ``--help`` without importing
torch). The budget is a fraction of the memory the system says is *available*
now (``MemAvailable`` in ``/proc/meminfo``: free memory plus caches it can
drop), not of the installed memory, bounded so that a head of 256 x 256 x 180
voxels stays under 8 GiB of resident memory in every mode; the threads are
the cores this process may run on (``os.sched_getaffinity``: a ``taskset`` or
container CPU set), not the cores the machine has.
"""
from __future__ import annotations

import os

#: Share of the available memory the network's working memory may take by default.
MEMORY_FRACTION = (3, 4)
#: The default budget never goes below this (a 128^3 window is tiled to fit under it) ...
MIN_DEFAULT_MEMORY = 1 * 2**30
#: ... nor above this: more does not make a 1 mm head faster (``full`` needs 2 tiles either
#: way up to ~9 GiB) and keeps a 256 x 256 x 180 head's peak resident memory under 8 GiB.
MAX_DEFAULT_MEMORY = 8 * 2**30
#: Budget when the machine's memory cannot be read at all.
FALLBACK_MEMORY = 6 * 2**30


def available_memory(meminfo: str | os.PathLike = "/proc/meminfo") -> int | None:
    """Bytes of memory available to new work (``MemAvailable``), or None where unknown.

    >>> available_memory("/nonexistent") is None
    True
    """
    try:
        with open(meminfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "MemAvailable":
                    number, _, unit = value.strip().partition(" ")
                    return int(number) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError):
        return None
    return None


def physical_memory() -> int | None:
    """Bytes of installed memory, or None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory(available: int | None = None, physical: int | None = None) -> int:
    """The working-memory budget when ``--max-memory`` is not given, in bytes.

    ``3/4 * available``, at least :data:`MIN_DEFAULT_MEMORY` and at most
    :data:`MAX_DEFAULT_MEMORY`; never more than ``3/4 * physical``. Without
    ``MemAvailable`` (not Linux): the same on the installed memory; without
    either, :data:`FALLBACK_MEMORY`. Arguments default to this machine's.

    >>> GiB = 2**30
    >>> [default_max_memory(a * GiB, 64 * GiB) / GiB for a in (0.5, 4, 20)]
    [1.0, 3.0, 8.0]
    """
    available = available_memory() if available is None else available
    physical = physical_memory() if physical is None else physical
    num, den = MEMORY_FRACTION
    base = available if available is not None else physical
    if base is None:
        return FALLBACK_MEMORY
    budget = min(MAX_DEFAULT_MEMORY, max(MIN_DEFAULT_MEMORY, base * num // den))
    if physical is not None:
        budget = min(budget, physical * num // den)
    return int(budget)


def default_threads() -> int:
    """CPU threads for the network when ``--threads`` is not given: the cores this
    process may run on (its affinity mask), else the machine's CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def format_bytes(size: int) -> str:
    """``size`` in the units ``--max-memory`` takes, as short as exact to 0.1.

    >>> format_bytes(8 * 2**30), format_bytes(int(1.5 * 2**30)), format_bytes(512 * 2**20)
    ('8G', '1.5G', '512M')
    """
    for unit, scale in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if size >= scale:
            text = f"{size / scale:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{size}"


def describe_defaults() -> dict[str, str]:
    """``--threads`` and ``--max-memory`` help texts with this machine's defaults in them."""
    available = available_memory()
    where = (f"3/4 of the {format_bytes(available)} available now" if available is not None
             else "3/4 of the installed memory")
    return {
        "threads": (f"CPU threads for the network [default on this machine: {default_threads()}, "
                    "the cores this process may use]."),
        "max_memory": (f"Working-memory budget for the network, e.g. 8G or 512M [default on this "
                       f"machine: {format_bytes(default_max_memory())}: {where}, within "
                       f"{format_bytes(MIN_DEFAULT_MEMORY)}..{format_bytes(MAX_DEFAULT_MEMORY)}]."),
    }
