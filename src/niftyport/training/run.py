"""NiftyNet's ``net_segment train`` in PyTorch: from a config to checkpoints and a log.

:func:`train` builds the config's network, restores its starting point as
NiftyNet's ``ModelRestorer`` does (``starting_iter``: 0 random
initialisation, ``vars_to_restore`` then ignored; -1 the latest checkpoint
of ``model_dir/models``; N ``model_dir/models/model.ckpt-N``; or an explicit
``weights`` checkpoint), freezes what ``vars_to_freeze`` (else
``vars_to_restore``) names, then runs iterations ``start + 1 .. max_iter``
on uniform windows, printing ``iter N loss 0.1234567`` and writing a CSV log
(``iteration,loss,seconds``). Every ``save_every_n`` iterations and at the
end it writes ``model_dir/models/model.ckpt-<iter>`` (every training
variable under NiftyNet's names, which NiftyNet restores) and
``model.ckpt-<iter>.safetensors`` (the module's ``state_dict``), keeping the
last ``max_checkpoints`` of this run.

Departures from NiftyNet: the windows' random order (see
:mod:`niftyport.training.data`); "random initialisation" is the module's
own (PyTorch's) initialiser, not NiftyNet's ``he_normal``.
"""
from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import networks
from ..checkpoint import read_checkpoint, resolve_prefix
from ..config import Config
from ..errors import CheckpointError, TrainingError
from ..weights import save_safetensors
from .batchnorm import BatchNormTraining
from .data import load_training_volumes, window_batches
from .loop import LossSettings, format_loss, train_step
from .optimisers import make_optimiser
from .settings import TrainingSection, training_settings
from .state import restore, save_checkpoint, trainable_parameters, training_variables

__all__ = ["LOG_NAME", "TrainOptions", "TrainResult", "starting_checkpoint", "train"]

#: The CSV log, in ``model_dir``.
LOG_NAME = "training_log.csv"
_ITER = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class TrainOptions:
    """What the command line adds to the config.

    ``weights``: a checkpoint to start from instead of ``model_dir/models/model.ckpt-<starting_iter>``;
    ``device``: a torch device; ``seed``: the sampler's; ``max_iter``: overrides the config's;
    ``force``: replace checkpoints and log of earlier runs.
    """

    weights: str | None = None
    device: str = "cpu"
    seed: int = 0
    max_iter: int | None = None
    force: bool = False


@dataclass(frozen=True)
class TrainResult:
    """``losses``: ``(iteration, loss)`` pairs; ``checkpoints``: prefixes kept; ``log``: the CSV file."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    log: Path | None = None


def starting_checkpoint(settings: TrainingSection, model_dir: Path, weights: str | None) -> tuple[Path | None, int]:
    """``(checkpoint prefix or None, iteration the run starts after)``, NiftyNet's ``starting_iter`` rule."""
    models = model_dir / "models"
    if weights is not None:
        return resolve_prefix(weights), max(settings.starting_iter, 0)
    if settings.starting_iter == 0:
        return None, 0
    if settings.starting_iter == -1:
        try:
            prefix = resolve_prefix(models)
        except CheckpointError as exc:
            raise TrainingError(f"starting_iter = -1 but {exc}") from None
        match = _ITER.search(prefix.name)
        if match is None:
            raise TrainingError(f"starting_iter = -1: cannot read the iteration from {prefix.name!r}")
        return prefix, int(match.group(1))
    prefix = models / f"model.ckpt-{settings.starting_iter}"
    try:
        return resolve_prefix(prefix), settings.starting_iter
    except CheckpointError:
        raise TrainingError(f"starting_iter = {settings.starting_iter}: no checkpoint {prefix}") from None


def _outputs(model_dir: Path, start: int, stop: int, force: bool) -> Path:
    """The log path; refuses to replace an earlier run's files unless ``force``."""
    log = model_dir / LOG_NAME
    taken = [p for p in (model_dir / "models").glob("model.ckpt-*.index")
             if (m := _ITER.search(p.name[:-len(".index")])) and start < int(m.group(1)) <= stop]
    if log.exists():
        taken.append(log)
    if taken and not force:
        raise TrainingError(f"{taken[0]} exists (an earlier run's); use --force to replace it")
    return log


@dataclass(frozen=True)
class _Trainer:
    """What one run updates: the module, its optimiser and batch norms, and their NiftyNet variables."""

    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    batch_norm: BatchNormTraining
    variables: dict
    device: torch.device


def _save(trainer: _Trainer, models: Path, iteration: int, kept: list[Path], max_checkpoints: int) -> None:
    prefix = save_checkpoint(trainer.variables, models / f"model.ckpt-{iteration}", global_step=iteration)
    save_safetensors(trainer.model.state_dict(), models / f"model.ckpt-{iteration}.safetensors")
    kept.append(prefix)
    while max_checkpoints > 0 and len(kept) > max_checkpoints:
        old = kept.pop(0)
        for path in old.parent.glob(old.name + ".*"):
            path.unlink()


def train(config: Config, options: TrainOptions = TrainOptions(), *,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Train as ``net_segment train -c config`` would; see the module docstring."""
    settings = training_settings(config)
    model_dir = Path(config.system.model_dir or ".")
    checkpoint, start = starting_checkpoint(settings, model_dir, options.weights)
    stop = options.max_iter if options.max_iter is not None else settings.max_iter
    if stop <= start:
        raise TrainingError(f"max_iter {stop} is not after the starting iteration {start}")
    spec = networks.get(config.network.name or "")
    device = torch.device(options.device)
    model = networks.build(spec.name, num_classes=config.segmentation.num_classes,
                           acti_func=config.network.activation_function).to(device)
    ckpt = read_checkpoint(checkpoint) if checkpoint is not None else None
    scope = networks.scope_of([v.name for v in ckpt.variables if v.kept], spec) if ckpt else spec.default_scope
    rules = spec.rules(scope, acti_func=config.network.activation_function)
    # NiftyNet freezes by vars_to_restore even when it initialises at random (starting_iter 0)
    parameters = trainable_parameters(model, rules, vars_to_freeze=settings.vars_to_freeze,
                                      vars_to_restore=settings.vars_to_restore)
    optimiser = make_optimiser(settings.optimiser, parameters, settings.lr)
    bn = BatchNormTraining(model)
    variables = training_variables(model, rules, optimiser=optimiser, batch_norm=bn)
    if ckpt is not None:
        report = restore(variables, ckpt, vars_to_restore=settings.vars_to_restore)
        echo(f"restored {len(report.restored)} of {len(variables)} variables from {ckpt.prefix}")
    log_path = _outputs(model_dir, start, stop, options.force)
    volumes = load_training_volumes(config)
    batches = window_batches(volumes, config.image.spatial_window_size, batch_size=config.network.batch_size,
                             sample_per_volume=settings.sample_per_volume, seed=options.seed)
    trainer = _Trainer(model, optimiser, bn, variables, device)
    return _loop(trainer, batches, settings, config, range(start + 1, stop + 1), log_path, echo)


def _loop(trainer: _Trainer, batches, settings: TrainingSection, config: Config, iterations: range,
          log_path: Path, echo: Callable[[str], None]) -> TrainResult:
    result = TrainResult(log=log_path)
    models = log_path.parent / "models"
    loss = LossSettings(settings.loss_type, config.segmentation.softmax)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "loss", "seconds"])
        for iteration in iterations:
            tic = time.perf_counter()
            image, label = (torch.from_numpy(a).to(trainer.device) for a in next(batches))
            value = train_step(trainer.model, trainer.optimiser, trainer.batch_norm, image, label, loss=loss)
            seconds = time.perf_counter() - tic
            result.losses.append((iteration, value))
            writer.writerow([iteration, f"{value:.7f}", f"{seconds:.3f}"])
            handle.flush()
            echo(f"iter {iteration} {format_loss(value)} ({seconds:.2f}s)")
            if settings.save_every_n > 0 and iteration % settings.save_every_n == 0:
                _save(trainer, models, iteration, result.checkpoints, settings.max_checkpoints)
    if not result.checkpoints or result.checkpoints[-1].name != f"model.ckpt-{iterations[-1]}":
        _save(trainer, models, iterations[-1], result.checkpoints, settings.max_checkpoints)
    return result
