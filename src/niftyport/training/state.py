"""Every training variable under NiftyNet's name: restore (``vars_to_restore``), freeze (``vars_to_freeze``), save.

NiftyNet's training graph holds, besides the network's variables, the
optimiser's slots (``<var>/Adam``, ``<var>/Adam_1`` ... for every variable it
optimises), Adam's ``beta1_power``/``beta2_power`` and the batch-norm
zero-debias accumulators (``S/S/moving_mean/biased``, ``.../local_step``).
:func:`training_variables` lists all of them, each with a getter and a setter
in TensorFlow's layout, mapped onto a torch model, its optimiser and its
:class:`~niftyport.training.batchnorm.BatchNormTraining` by the network's
NiftyNet rules (:mod:`niftyport.mapping`). On that list:

* :func:`restore` is NiftyNet's ``ModelRestorer`` (``niftynet/engine/handler_model.py``):
  every variable, or those whose name ``re.search`` matches ``vars_to_restore``,
  comes from the checkpoint; the others keep their fresh values;
* :func:`frozen_names` / :func:`trainable_parameters` are
  ``SegmentationApplication``'s ``vars_to_freeze``, which falls back to
  ``vars_to_restore`` (``niftynet/application/segmentation_application.py``);
* :func:`checkpoint_tensors` / :func:`save_checkpoint` write them back.

Two details follow TensorFlow: patterns are searched in the variable's
*tensor* name, ``name + ":0"`` (so ``"w$"`` matches nothing, as in NiftyNet);
and the graph NiftyNet 0.6.0 builds names the beta powers
``ApplyGradients/beta1_power`` while the model zoo checkpoint (an older
NiftyNet's) stores ``beta1_power``. Departure: NiftyNet 0.6.0 cannot restore
the zoo checkpoint for that reason; here either name is read, and both are
written.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from ..errors import TrainingError
from ..mapping import RuleSet, apply_transform, inverse_transform
from .batchnorm import BatchNormTraining
from .optimisers import TFOptimizer

__all__ = ["BETA_SCOPE", "RestoreReport", "TrainingVariable", "checkpoint_tensors", "frozen_names", "restore",
           "save_checkpoint", "search_names", "trainable_parameters", "training_variables"]

#: NiftyNet 0.6.0's name scope of the Adam beta powers (``ApplyGradients`` in handler_gradient.py).
BETA_SCOPE = "ApplyGradients"


@dataclass(frozen=True)
class TrainingVariable:
    """One variable of NiftyNet's training graph.

    Attributes:
        name: NiftyNet's variable name (no ``:0``).
        kind: ``"model"``, a slot suffix (``"Adam"``, ``"Adam_1"``, ``"Momentum"`` ...),
            ``"beta1_power"``/``"beta2_power"``, ``"biased"`` or ``"local_step"``.
        shape: TensorFlow's shape.
        trainable: whether it is a network parameter (a ``nn.Parameter``).
        get: the current value, numpy, TensorFlow's layout and dtype.
        set: store a value given in TensorFlow's layout.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    trainable: bool
    get: Callable[[], np.ndarray]
    set: Callable[[np.ndarray], None]


def _relayout(array: np.ndarray, transform: str) -> np.ndarray:
    """``array`` in the other layout, a copy (0-d arrays stay 0-d, unlike ``np.ascontiguousarray``)."""
    return np.array(array, copy=True) if transform == "identity" else apply_transform(array, transform)


def _tensor_variable(name: str, kind: str, tensor_of: Callable[[], torch.Tensor], transform: str,
                     trainable: bool) -> TrainingVariable:
    """A variable backed by a torch tensor (looked up on each call: optimisers replace their slot tensors)."""
    back = inverse_transform(transform)

    def get() -> np.ndarray:
        return _relayout(tensor_of().detach().cpu().numpy(), transform)

    def set_(array: np.ndarray) -> None:
        target = tensor_of()
        value = torch.from_numpy(_relayout(np.asarray(array), back))
        if tuple(value.shape) != tuple(target.shape):
            raise TrainingError(f"variable {name!r}: checkpoint shape {tuple(np.shape(array))} does not fit "
                                f"the model's {tuple(get().shape)}")
        with torch.no_grad():
            target.copy_(value.to(dtype=target.dtype, device=target.device))

    return TrainingVariable(name, kind, tuple(get().shape), trainable, get, set_)


def _model_variables(model: nn.Module, rules: RuleSet) -> dict[str, tuple[str, str]]:
    """``{module key: (NiftyNet name, torch->TF transform)}`` for every state_dict entry the rules map."""
    back = rules.reversed()
    names = {}
    for key in model.state_dict():
        if back.ignores_source(key):
            continue
        hit = back.target_of(key)
        if hit is None:
            raise TrainingError(f"{rules.name}: no NiftyNet name for the module's key {key!r}")
        names[key] = (hit[1], hit[0].transform)
    return names


def training_variables(model: nn.Module, rules: RuleSet, *, optimiser: TFOptimizer | None = None,
                       batch_norm: BatchNormTraining | None = None) -> dict[str, TrainingVariable]:
    """NiftyNet's training variables for ``model``: ``{name: TrainingVariable}``.

    ``rules`` maps NiftyNet's names onto the model's keys (the network's
    ``spec.rules(scope)``). Slots are listed for the parameters ``optimiser``
    holds (NiftyNet creates none for frozen variables), the beta powers when
    it is :class:`~niftyport.training.optimisers.Adam`, the debias
    accumulators of ``batch_norm``'s statistics.
    """
    keys = _model_variables(model, rules)
    tensors = model.state_dict(keep_vars=True)
    parameters = {id(p): key for key, p in model.named_parameters()}
    out: dict[str, TrainingVariable] = {}
    for key, (name, transform) in keys.items():
        out[name] = _tensor_variable(name, "model", lambda key=key: tensors[key], transform,
                                     id(tensors[key]) in parameters)
    if optimiser is not None:
        out.update(_optimiser_variables(optimiser, keys, parameters))
    if batch_norm is not None:
        for key in batch_norm.debias:
            if key not in keys:
                raise TrainingError(f"batch norm statistic {key!r} is not one of the model's mapped keys")
            name = keys[key][0]
            scope = name.rpartition("/")[0]
            for field in ("biased", "local_step"):
                full = f"{scope}/{name}/{field}"
                out[full] = _tensor_variable(full, field, lambda k=key, f=field: getattr(batch_norm.debias[k], f),
                                             "identity", False)
    return out


def _optimiser_variables(optimiser: TFOptimizer, keys: Mapping[str, tuple[str, str]],
                         parameters: Mapping[int, str]) -> dict[str, TrainingVariable]:
    out = {}
    for group in optimiser.param_groups:
        for p in group["params"]:
            if id(p) not in parameters:
                raise TrainingError("the optimiser holds a tensor that is not a parameter of the model")
            name, transform = keys[parameters[id(p)]]
            for slot in optimiser.slots:
                full = f"{name}/{slot.suffix}"
                out[full] = _tensor_variable(full, slot.suffix, lambda p=p, k=slot.key: optimiser.state[p][k],
                                             transform, False)
    if "beta1_power" in optimiser.param_groups[0]:
        if len(optimiser.param_groups) != 1:
            raise TrainingError("NiftyNet's Adam has one pair of beta powers: use one parameter group")
        group = optimiser.param_groups[0]
        for power in ("beta1_power", "beta2_power"):
            def get(power=power) -> np.ndarray:
                return np.asarray(group[power], dtype=np.float32)

            def set_(array, power=power) -> None:
                group[power] = float(np.asarray(array, dtype=np.float32))

            full = f"{BETA_SCOPE}/{power}"
            out[full] = TrainingVariable(full, power, (), False, get, set_)
    return out


# --------------------------------------------------------------------------- selection

def search_names(names: Iterable[str], pattern: str) -> list[str]:
    """The names whose TensorFlow tensor name (``name + ":0"``) ``re.search`` matches ``pattern``.

    >>> search_names(["net/conv_2/w", "net/conv_2/w/Adam", "net/conv_1/w"], "conv_2")
    ['net/conv_2/w', 'net/conv_2/w/Adam']
    >>> search_names(["net/conv_2/w"], "w$")     # the name searched is 'net/conv_2/w:0'
    []
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise TrainingError(f"invalid regular expression {pattern!r}: {exc}") from None
    return [name for name in names if regex.search(f"{name}:0")]


def frozen_names(variables: Mapping[str, TrainingVariable] | Iterable[str], *, vars_to_freeze: str = "",
                 vars_to_restore: str = "") -> list[str]:
    """Trainable variables NiftyNet does not optimise: those ``vars_to_freeze`` matches, else ``vars_to_restore``.

    ``variables`` is :func:`training_variables`' result (its trainable model
    variables are searched) or a list of trainable names.
    """
    pattern = vars_to_freeze or vars_to_restore
    if not pattern:
        return []
    if isinstance(variables, Mapping):
        names = [v.name for v in variables.values() if v.trainable]
    else:
        names = list(variables)
    return search_names(names, pattern)


def trainable_parameters(model: nn.Module, rules: RuleSet, *, vars_to_freeze: str = "",
                         vars_to_restore: str = "") -> list[nn.Parameter]:
    """The parameters NiftyNet optimises; the frozen ones get ``requires_grad=False``.

    See :func:`frozen_names` for the selection.
    """
    keys = _model_variables(model, rules)
    named = dict(model.named_parameters())
    frozen = set(frozen_names([keys[k][0] for k in named if k in keys], vars_to_freeze=vars_to_freeze,
                              vars_to_restore=vars_to_restore))
    chosen = []
    for key, p in named.items():
        if key in keys and keys[key][0] in frozen:
            p.requires_grad_(False)
        else:
            chosen.append(p)
    return chosen


# --------------------------------------------------------------------------- restore and save

@dataclass(frozen=True)
class RestoreReport:
    """What :func:`restore` did: ``restored`` (name -> name read in the checkpoint) and ``initialised`` (kept fresh)."""

    checkpoint: Path
    restored: dict[str, str]
    initialised: tuple[str, ...]


def _stored_name(name: str, kind: str, checkpoint: Checkpoint) -> str | None:
    """The checkpoint's name for variable ``name``: itself, or for a beta power the other scope's."""
    if name in checkpoint:
        return name
    if kind in ("beta1_power", "beta2_power"):
        for other in (kind, f"{BETA_SCOPE}/{kind}"):
            if other in checkpoint:
                return other
    return None


def restore(variables: Mapping[str, TrainingVariable], checkpoint: str | os.PathLike | Checkpoint, *,
            vars_to_restore: str = "") -> RestoreReport:
    """NiftyNet's ``ModelRestorer.restore_model`` on :func:`training_variables`.

    Without ``vars_to_restore`` every variable is read from ``checkpoint``;
    with it only those it matches (:func:`search_names`), the others keeping
    their fresh values (NiftyNet re-initialises them). As TensorFlow's saver,
    it fails when a variable to restore is missing from the checkpoint or has
    another shape, naming them.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)
    names = list(variables)
    chosen = search_names(names, vars_to_restore) if vars_to_restore else names
    if vars_to_restore and not chosen:
        raise TrainingError(f"vars_to_restore {vars_to_restore!r} matches no variable "
                            f"(names such as {names[0]!r}, searched with ':0' appended)")
    stored = {name: _stored_name(name, variables[name].kind, ckpt) for name in chosen}
    missing = sorted(name for name, found in stored.items() if found is None)
    if missing:
        more = f", ... ({len(missing) - 5} more)" if len(missing) > 5 else ""
        raise TrainingError(f"checkpoint {ckpt.prefix} lacks {len(missing)} variable(s) to restore: "
                            f"{', '.join(missing[:5])}{more}; restore a subset with vars_to_restore")
    shapes = {v.name: v.shape for v in ckpt.variables}
    wrong = [name for name in chosen if shapes[stored[name]] != variables[name].shape]
    if wrong:
        first = wrong[0]
        raise TrainingError(f"checkpoint {ckpt.prefix}: {len(wrong)} variable(s) of another shape, e.g. {first!r} "
                            f"is {shapes[stored[first]]} there, {variables[first].shape} here (a new head? leave "
                            "it out with vars_to_restore)")
    arrays = ckpt.read_many(sorted(set(stored.values())))
    for name in chosen:
        variables[name].set(arrays[stored[name]])
    chosen_set = set(chosen)
    return RestoreReport(ckpt.prefix, stored, tuple(n for n in names if n not in chosen_set))


def checkpoint_tensors(variables: Mapping[str, TrainingVariable]) -> dict[str, np.ndarray]:
    """``{name: array}`` of every variable, TensorFlow's layout; the beta powers under both scopes."""
    out = {name: v.get() for name, v in variables.items()}
    for v in variables.values():
        if v.kind in ("beta1_power", "beta2_power"):
            out[v.kind] = out[v.name]
    return out


def save_checkpoint(variables: Mapping[str, TrainingVariable], prefix: str | os.PathLike, *,
                    global_step: int, state_file: bool = True) -> Path:
    """Write a NiftyNet training checkpoint ``prefix`` (``.../model.ckpt-<iter>``) with every variable.

    With ``global_step`` (an int64 ``global_step`` variable, as the model zoo
    checkpoint has); files written atomically (:func:`~niftyport.checkpoint.write_checkpoint`),
    and the folder's ``checkpoint`` file naming it unless ``state_file=False``.
    """
    return write_checkpoint(prefix, checkpoint_tensors(variables), global_step=global_step, state_file=state_file)
