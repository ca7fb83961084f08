"""Read and write TensorFlow (NiftyNet) checkpoints with numpy only::

    ckpt = read_checkpoint("models/model.ckpt-33000")     # or the .index file, or the folder
    [v.name for v in ckpt.variables if v.kept][0]         # 'HighRes3DNet/conv_0_bn_relu/bn_/beta'
    ckpt.read("HighRes3DNet/conv_0_bn_relu/conv_/w")      # float32 array of shape (3, 3, 3, 1, 16)

Arrays come back exactly as TensorFlow stores them: same dtype, same bytes,
TensorFlow's layout (a 3-D convolution kernel is ``(D, H, W, in, out)``);
bfloat16 as :data:`niftyport.tensors.BFLOAT16` arrays (the raw bits, marked).
A variable this reader cannot turn into an array (a partitioned variable, a
dtype such as ``variant`` that numpy cannot hold) is listed with the reason
(:attr:`VariableInfo.unreadable`) and leaves the others readable.
:mod:`niftyport.mapping` turns them into a PyTorch ``state_dict``. The file
format is decoded by :mod:`niftyport.checkpoint.bundle`; TensorFlow is never
imported.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from . import bundle as tb
from ..errors import CheckpointError
from ..outputs import atomic_output
from ..tensors import to_numpy
from .filter import classify

#: Name of TensorFlow's checkpoint state file in a model folder.
STATE_FILE = "checkpoint"
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")
_STATE_ENTRY = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"((?:[^"\\]|\\.)*)"\s*$')


@dataclass(frozen=True)
class VariableInfo:
    """One checkpoint variable: name, shape, dtype, whether it is a model weight and why.

    ``dtype`` is the numpy dtype it reads as (None when it cannot be read);
    ``dtype_name`` TensorFlow's name (``'float32'``, ``'bfloat16'``, ``'variant'``);
    ``unreadable`` says why the variable cannot be read, ``''`` when it can.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype | None
    kept: bool
    reason: str
    kind: str = "model"
    dtype_name: str = ""
    unreadable: str = ""
    has_checksum: bool = True

    @property
    def readable(self) -> bool:
        return not self.unreadable


# --------------------------------------------------------------------------- the state file

def state_text(names: list[str]) -> str:
    """TensorFlow's ``checkpoint`` state file naming the checkpoints ``names`` (the last one the latest)."""
    return f'model_checkpoint_path: "{names[-1]}"\n' + "".join(f'all_model_checkpoint_paths: "{n}"\n' for n in names)


def state_entries(text: str) -> list[tuple[str, str]]:
    """The ``(key, path)`` lines of a ``checkpoint`` state file, in order, paths unescaped.

    >>> state_entries(state_text(["model.ckpt-1", "model.ckpt-2"]))[0]
    ('model_checkpoint_path', 'model.ckpt-2')
    """
    entries = []
    for line in text.splitlines():
        match = _STATE_ENTRY.match(line)
        if match:
            entries.append((match.group(1), match.group(2).replace('\\"', '"').replace("\\\\", "\\")))
    return entries


# --------------------------------------------------------------------------- paths

def index_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def data_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(prefix.name + tb.data_file_suffix(shard, num_shards))


def _prefix_from_folder(folder: Path) -> Path:
    """Checkpoint named by the folder's ``checkpoint`` state file (or its only ``.index`` file)."""
    state = folder / STATE_FILE
    if not state.is_file():
        candidates = sorted(folder.glob("*.index"))
        if len(candidates) == 1:
            return candidates[0].with_suffix("")
        found = ", ".join(p.name for p in candidates) or "none"
        raise CheckpointError(f"{folder}: folder without a '{STATE_FILE}' file; pass a checkpoint prefix "
                              f"(.index files found: {found})")
    latest = [path for key, path in state_entries(state.read_text(encoding="utf-8", errors="replace"))
              if key == "model_checkpoint_path"]
    if not latest:
        raise CheckpointError(f"{state}: no model_checkpoint_path line")
    named = Path(latest[0])
    prefix = named if named.is_absolute() else folder / named
    if not index_path(prefix).is_file() and named.is_absolute():
        # a folder copied from the training machine still names its old absolute path
        prefix = folder / named.name
    return prefix


def resolve_prefix(path: str | os.PathLike) -> Path:
    """Checkpoint prefix (e.g. ``models/model.ckpt-33000``) from any way of naming a checkpoint.

    Accepts the prefix itself, its ``.index``, ``.meta`` or a ``.data-*-of-*``
    file, or a folder holding a TensorFlow ``checkpoint`` state file (whose
    ``model_checkpoint_path`` may be relative to the folder or absolute; an
    absolute path that does not exist is looked up in the folder by name).
    """
    path = Path(path)
    if path.is_dir():
        prefix = _prefix_from_folder(path)
    elif path.suffix in (".index", ".meta"):
        prefix = path.with_suffix("")
    elif _DATA_SUFFIX.search(path.name):
        prefix = path.with_name(_DATA_SUFFIX.sub("", path.name))
    else:
        prefix = path
    if not index_path(prefix).is_file():
        raise CheckpointError(f"{path}: no TensorFlow checkpoint there ({index_path(prefix)} not found)")
    return prefix


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a TensorFlow checkpoint in any way :func:`resolve_prefix` accepts."""
    try:
        resolve_prefix(path)
    except CheckpointError:
        return False
    return True


# --------------------------------------------------------------------------- reading

class Checkpoint:
    """A TensorFlow V2 checkpoint opened for reading (index parsed, data read on demand).

    Attributes:
        prefix: the checkpoint prefix (``.../model.ckpt-33000``).
        variables: every variable, in TensorFlow's (byte-wise name) order, each
            classified by :mod:`niftyport.checkpoint.filter`.
    """

    def __init__(self, prefix: Path, header: tb.BundleHeader, entries: Mapping[str, tb.BundleEntry]):
        self.prefix = prefix
        self.header = header
        self._entries = dict(entries)
        self.variables: list[VariableInfo] = []
        source = str(index_path(prefix))
        for name, entry in self._entries.items():
            dtype = tb.check_entry(entry, name=name, num_shards=header.num_shards, source=source)
            kind = classify(name, entry.shape)
            self.variables.append(VariableInfo(name, entry.shape, dtype, kind.kept, kind.reason, kind.kind,
                                               dtype_name=tb.tf_dtype_name(entry.dtype),
                                               unreadable=tb.unreadable_reason(entry),
                                               has_checksum=entry.crc32c is not None))
        self._check_shards()

    def __repr__(self) -> str:
        kept = sum(v.kept for v in self.variables)
        return f"Checkpoint({str(self.prefix)!r}, {len(self.variables)} variables, {kept} kept)"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _shard(self, shard: int) -> Path:
        return data_path(self.prefix, shard, self.header.num_shards)

    def _check_shards(self) -> None:
        """Every data shard exists and holds the bytes its entries point to."""
        sizes = {}
        for shard in range(self.header.num_shards):
            path = self._shard(shard)
            if not path.is_file():
                raise CheckpointError(f"{path}: checkpoint data file not found")
            sizes[shard] = path.stat().st_size
        for name, entry in self._entries.items():
            if entry.sliced:
                continue
            end = entry.offset + entry.size
            if end > sizes[entry.shard_id]:
                raise CheckpointError(f"{self._shard(entry.shard_id)}: truncated: {sizes[entry.shard_id]} bytes, "
                                      f"but variable {name!r} needs bytes [{entry.offset}, {end})")

    def _entry(self, name: str) -> tb.BundleEntry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CheckpointError(f"{self.prefix}: no variable {name!r} in this checkpoint{hint}") from None

    def info(self, name: str) -> VariableInfo:
        """The :class:`VariableInfo` of variable ``name``."""
        self._entry(name)
        return next(v for v in self.variables if v.name == name)

    def read_many(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """``{name: array}`` for ``names``, each checked against its crc32c; one open per shard.

        Raises :class:`CheckpointError` for an unreadable variable (see :attr:`VariableInfo.unreadable`).
        """
        names = list(names)
        by_shard: dict[int, list[str]] = {}
        for name in names:
            by_shard.setdefault(self._entry(name).shard_id, []).append(name)
        arrays = {}
        for shard, shard_names in by_shard.items():
            path = self._shard(shard)
            with open(path, "rb") as f:
                for name in shard_names:
                    entry = self._entries[name]
                    f.seek(entry.offset)
                    arrays[name] = tb.decode_tensor(f.read(entry.size), entry, name=name,
                                                    big_endian=self.header.big_endian, source=str(path))
        return {name: arrays[name] for name in names}

    def read(self, name: str) -> np.ndarray:
        """The array of variable ``name`` (crc32c verified), TensorFlow's dtype and layout."""
        return self.read_many([name])[name]

    def model_tensors(self) -> dict[str, np.ndarray]:
        """``{name: array}`` of the kept (model) variables that can be read.

        Kept variables that cannot be read are left out (:meth:`unreadable_kept`
        lists them): whoever maps the tensors decides whether one is needed.
        """
        return self.read_many(v.name for v in self.variables if v.kept and v.readable)

    def unreadable_kept(self) -> list[VariableInfo]:
        """The kept (model) variables that cannot be read, with the reason in ``unreadable``."""
        return [v for v in self.variables if v.kept and not v.readable]

    def slots(self, kind: str = "Adam") -> dict[str, np.ndarray]:
        """Copies stored as ``<variable>/<kind>``, keyed by ``<variable>``.

        ``kind`` is an optimizer slot (``"Adam"``, ``"Adam_1"``, ``"Momentum"`` ...)
        or ``"ExponentialMovingAverage"`` for the moving-average shadow weights.
        """
        suffix = "/" + kind
        names = [v.name for v in self.variables if v.name.endswith(suffix) and not v.kept]
        if not names:
            present = sorted({v.kind for v in self.variables
                              if not v.kept and v.name.endswith("/" + v.kind)})
            raise CheckpointError(f"{self.prefix}: no {kind!r} slots in this checkpoint "
                                  f"(slot kinds present: {', '.join(present) or 'none'})")
        return {name[:-len(suffix)]: array for name, array in self.read_many(names).items()}

    def verify(self) -> list[str]:
        """Read every readable variable once, checking each crc32c; returns the names that have none.

        Raises :class:`CheckpointError` at the first mismatch. Variables with
        no stored checksum are read but cannot be verified: their names come
        back, sorted. Unreadable variables (:attr:`VariableInfo.unreadable`)
        are not read.
        """
        readable = [v.name for v in self.variables if v.readable]
        self.read_many(readable)
        return sorted(v.name for v in self.variables if v.readable and not v.has_checksum)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Open the checkpoint named by ``path`` (prefix, ``.index``, ``.data-*`` file, or folder).

    The index is parsed and every block checksum verified; data shards must
    exist and be long enough. Tensor checksums are verified on each read.
    """
    prefix = resolve_prefix(path)
    index = index_path(prefix)
    header, entries = tb.decode_index(index.read_bytes(), source=str(index))
    return Checkpoint(prefix, header, entries)


# --------------------------------------------------------------------------- writing

def checkpoint_files(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """``(.index, .data-00000-of-00001)`` paths that :func:`write_checkpoint` writes for ``prefix``."""
    prefix = Path(prefix)
    return index_path(prefix), data_path(prefix, 0, 1)


def write_checkpoint(prefix: str | os.PathLike, tensors: Mapping[str, np.ndarray], *,
                     global_step: int | None = None, state_file: bool = True) -> Path:
    """Write ``tensors`` as a TensorFlow V2 checkpoint; returns the prefix.

    Writes ``PREFIX.index`` and ``PREFIX.data-00000-of-00001`` (each to a
    temporary file first, then renamed), and a ``checkpoint`` state file in
    the folder naming this checkpoint (replacing any existing one, as
    TensorFlow's ``Saver`` does). Arrays are stored as given (dtype, shape,
    layout; C order, little-endian; bfloat16 arrays as ``DT_BFLOAT16``);
    ``global_step`` adds an int64 scalar ``global_step`` variable. An object
    array is refused unless it holds only str/bytes (a string tensor).
    TensorFlow reads the result with ``tf.train.load_checkpoint``.
    ``state_file=False`` leaves the ``checkpoint`` file alone (the caller
    writes it once everything else of the checkpoint is written).
    """
    prefix = Path(prefix)
    arrays = {name: to_numpy(value) for name, value in tensors.items()}
    if global_step is not None:
        if "global_step" in arrays:
            raise CheckpointError("write_checkpoint: 'global_step' given both as a tensor and as global_step=")
        arrays["global_step"] = np.asarray(global_step, dtype=np.int64)
    index_bytes, data_bytes = tb.encode_bundle(arrays)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    index_file, data_file = checkpoint_files(prefix)
    for path, payload in ((data_file, data_bytes), (index_file, index_bytes)):
        with atomic_output(path) as tmp:
            tmp.write_bytes(payload)
    if state_file:
        with atomic_output(prefix.parent / STATE_FILE) as tmp:
            tmp.write_text(state_text([prefix.name]), encoding="utf-8")
    return prefix
