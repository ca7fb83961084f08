"""Writing output files safely: never half-written, never over an input.

Every file niftyport writes goes through :func:`atomic_output`: the data go
to a temporary file in the destination folder, which replaces the
destination in one rename only once it is complete.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NiftyportError

#: Compression extensions: a temporary file keeps the extension before them
#: too (``.nii.gz``, ``.img.gz``), so that writers that choose a format by
#: extension (nibabel) still see it.
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst")


def _suffix(name: str) -> str:
    """``'t1.nii.gz'`` -> ``'.nii.gz'``; ``'a.csv'`` -> ``'.csv'``; ``'x.tar.gz'`` -> ``'.tar.gz'``."""
    suffixes = Path(name).suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() in _COMPRESSION_SUFFIXES:
        return "".join(suffixes[-2:])
    return Path(name).suffix


def _usual_mode() -> int:
    """``0o666`` less the process's umask (``0o644`` under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` in one rename.

    The temporary file has ``path``'s extension (``.nii.gz`` included). On
    error it is removed and ``path`` is left untouched. A read-only file or
    folder is never written into, even by a user (such as root) whom
    permissions would not stop. The file written gets the usual permissions
    (``0o666`` less the umask), whatever the writer created: ``mkstemp``
    makes ``0600`` files, and some writers (safetensors) replace the
    temporary file with one of their own.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NiftyportError(f"{path}: output folder {folder} does not exist")
    for what, existing in (("file", path), ("folder", folder)):
        if existing.exists() and not existing.stat().st_mode & 0o222:
            raise NiftyportError(f"{what} {existing} is read-only; not writing {path.name} there")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=_suffix(path.name))
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _usual_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output`; returns ``path``."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (through links and ``..`` too)."""
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None], *,
                  force: bool = True) -> None:
    """Refuse an output that is one of the inputs, or that exists when ``force`` is off."""
    inputs = [p for p in inputs if p is not None]
    for out in outputs:
        for src in inputs:
            if same_file(out, src):
                raise NiftyportError(f"output {out} is the input file {src}; choose another output path")
        if not force and Path(out).exists():
            raise NiftyportError(f"output {out} exists; use --force to overwrite it")


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files that :func:`atomic_output` left beside ``path`` (a process killed mid-write).

    They are hidden (``.name.XXXXXXXX.ext``) and never replace ``path``;
    call this only when no other process is writing ``path``.
    """
    import glob
    import re

    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}{re.escape(_suffix(path.name))}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".{glob.escape(path.name)}.*") if pattern.fullmatch(p.name))

