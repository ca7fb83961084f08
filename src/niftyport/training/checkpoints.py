"""A training run's checkpoints in ``model_dir/models``: written whole or not at all, and found again to resume.

One checkpoint of iteration ``N`` is, written in this order (each file to a
temporary name first, then renamed):

1. ``model.ckpt-N.data-00000-of-00001`` and ``model.ckpt-N.index``: every
   training variable under NiftyNet's names (NiftyNet restores it);
2. ``model.ckpt-N.safetensors``: the module's ``state_dict``;
3. ``model.ckpt-N.resume.json``: what the variables do not hold -- the
   samplers' states (the seed and the batches taken from each stream), the
   early-stopping history, and what else decides the windows (window, batch
   size, samples per volume, sampler, augmentation, the subjects of each
   phase: a resumed run must have the same);
4. the folder's ``checkpoint`` index (TensorFlow's text format,
   ``model_checkpoint_path`` and one ``all_model_checkpoint_paths`` line per
   checkpoint kept), naming it.

A checkpoint is *complete* when the index names it and its four files
exist; :func:`complete_checkpoints` ignores any other (one half-written when
the run was interrupted), and ``--resume`` continues from the last complete one.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import STATE_FILE, checkpoint_files, state_entries, state_text
from ..outputs import write_text_atomic

__all__ = ["RESUME_SUFFIX", "ResumeState", "complete_checkpoints", "listed_checkpoints", "read_resume_state",
           "remove_checkpoint", "write_index", "write_resume_state"]

#: the sidecar of a checkpoint prefix
RESUME_SUFFIX = ".resume.json"
_ITER = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class ResumeState:
    """What continues a run after ``iteration``: the samplers' batches taken, the validation history, the seed."""

    iteration: int
    seed: int
    training_batches: int
    validation_batches: int = 0
    history: tuple[float, ...] = ()
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"iteration": self.iteration, "seed": self.seed, "training_batches": self.training_batches,
                "validation_batches": self.validation_batches, "history": list(self.history),
                **dict(self.extra)}


def resume_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + RESUME_SUFFIX)


def write_resume_state(prefix: Path, state: ResumeState) -> Path:
    return write_text_atomic(resume_path(prefix), json.dumps(state.to_json(), indent=1) + "\n")


def read_resume_state(prefix: Path) -> ResumeState:
    data = json.loads(resume_path(prefix).read_text(encoding="utf-8"))
    known = {"iteration", "seed", "training_batches", "validation_batches", "history"}
    return ResumeState(int(data["iteration"]), int(data["seed"]), int(data["training_batches"]),
                       int(data.get("validation_batches", 0)), tuple(float(v) for v in data.get("history", ())),
                       {k: v for k, v in data.items() if k not in known})


def write_index(models: Path, prefixes: Sequence[Path]) -> Path:
    """The ``checkpoint`` index naming ``prefixes`` (the last one the latest), TensorFlow's format."""
    return write_text_atomic(models / STATE_FILE, state_text([p.name for p in prefixes]))


def listed_checkpoints(models: Path) -> list[Path]:
    """The prefixes the ``checkpoint`` index names (in its order, no repeats); empty without one."""
    index = models / STATE_FILE
    if not index.is_file():
        return []
    names: list[str] = []
    for _, name in state_entries(index.read_text(encoding="utf-8", errors="replace")):
        if name not in names:
            names.append(name)
    return [Path(n) if Path(n).is_absolute() else models / n for n in names]


def _complete(prefix: Path) -> bool:
    files = [*checkpoint_files(prefix), prefix.with_name(prefix.name + ".safetensors"), resume_path(prefix)]
    return all(f.is_file() for f in files)


def complete_checkpoints(models: Path) -> list[tuple[int, Path]]:
    """``(iteration, prefix)`` of every complete checkpoint of a niftyport run, by iteration."""
    out = []
    for prefix in listed_checkpoints(models):
        match = _ITER.search(prefix.name)
        if match and _complete(prefix):
            out.append((int(match.group(1)), prefix))
    return sorted(out)


def remove_checkpoint(prefix: Path) -> None:
    """Delete every file of ``prefix`` (``prefix.*``)."""
    for path in prefix.parent.glob(prefix.name + ".*"):
        path.unlink()
