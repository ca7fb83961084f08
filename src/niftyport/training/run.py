"""NiftyNet's ``net_segment train`` in PyTorch: from a config to checkpoints, logs and curves.

:func:`train` builds the config's network, restores its starting point as
NiftyNet's ``ModelRestorer`` does (``starting_iter``: 0 random
initialisation, ``vars_to_restore`` then ignored; -1 the latest checkpoint
of ``model_dir/models``; N ``model_dir/models/model.ckpt-N``; or an explicit
``weights`` checkpoint), freezes what ``vars_to_freeze`` (else
``vars_to_restore``) names, splits the subjects (:mod:`.validation`), then
runs iterations ``start + 1 .. max_iter`` on the sampler's windows
(:mod:`.sampler`: uniform, weighted or balanced; augmented), printing
``iter N loss 0.1234567`` (and ``total_loss`` with ``[NETWORK] decay``, as
NiftyNet prints both) and writing ``model_dir/training_log.csv``
(``iteration,loss,total_loss,seconds``). Every ``validation_every_n``
iterations it runs ``validation_max_iter`` validation iterations, printed
and written to ``model_dir/validation_log.csv`` (``iteration,loss,total_loss,
mean_dice,dice_0 ...``; Dice of the round's windows per class, the mean over
the foreground classes present), with early stopping when asked. Every
``save_every_n`` iterations and at the end it writes a checkpoint of
``model_dir/models`` (:mod:`.checkpoints`; NiftyNet restores it), keeping the
last ``max_checkpoints`` of this run, and ``model_dir/training_curves.png``.
``resume`` continues an interrupted run from its last complete checkpoint
with the same results as a run without the interruption.

Departures from NiftyNet: the windows' random order (:mod:`.sampler`);
"random initialisation" is the module's own (PyTorch's) initialiser, not
NiftyNet's ``he_normal``, seeded with the run's seed; a checkpoint is written after the validation
round of its iteration (NiftyNet saves before it; the variables are the
same, validation changes nothing); the Dice columns, the curves and
``resume`` are niftyport's.
"""
from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import networks
from ..checkpoint import read_checkpoint, resolve_prefix
from ..config import Config
from ..errors import CheckpointError, TrainingError
from ..outputs import write_text_atomic
from ..weights import save_safetensors
from .batchnorm import BatchNormTraining
from .checkpoints import (
    ResumeState,
    complete_checkpoints,
    read_resume_state,
    remove_checkpoint,
    write_index,
    write_resume_state,
)
from .curves import CURVES_NAME, write_curves
from .data import input_orders, load_training_volumes, training_subjects
from .loop import LossSettings, format_loss, train_step_losses, validation_step
from .optimisers import make_optimiser
from .regularisation import Regulariser, make_regulariser
from .sampler import TRAINING_STREAM, VALIDATION_STREAM, Batch, SamplerSettings, WindowSampler
from .settings import TrainingSection, augmentation, ignored_options, training_settings
from .state import restore, save_checkpoint, trainable_parameters, training_variables
from .validation import Split, dice_per_class, should_stop, split_subjects

__all__ = ["LOG_NAME", "VALIDATION_LOG_NAME", "TrainOptions", "TrainResult", "ValidationRound", "starting_checkpoint",
           "train"]

#: The CSV logs, in ``model_dir``.
LOG_NAME = "training_log.csv"
VALIDATION_LOG_NAME = "validation_log.csv"
_ITER = re.compile(r"-(\d+)$")
#: the split's generator: ``default_rng([seed, SPLIT_STREAM])``
SPLIT_STREAM = 2


@dataclass(frozen=True)
class TrainOptions:
    """What the command line adds to the config.

    ``weights``: a checkpoint to start from instead of ``model_dir/models/model.ckpt-<starting_iter>``;
    ``device``: a torch device; ``seed``: the samplers', the split's and the initial weights'; ``max_iter``: overrides the config's;
    ``force``: replace checkpoints and logs of earlier runs; ``resume``: continue the run of
    ``model_dir`` from its last complete checkpoint (its seed, samplers and logs);
    ``progress``: a tqdm bar on stderr (loss, iterations/s) when stderr is a terminal;
    ``verbose``: one line per iteration; ``curves``: write the PNG;
    ``early_stopping``: NiftyNet's early stopping even when ``[SYSTEM] event_handler`` lacks ``early_stopper``;
    ``prefetch``: batches computed ahead by a thread (None: ``ceil(queue_length / batch_size)``; 0: none);
    ``on_iteration``: called with the iteration number after each complete iteration (and its checkpoint).
    """

    weights: str | None = None
    device: str = "cpu"
    seed: int = 0
    max_iter: int | None = None
    force: bool = False
    resume: bool = False
    progress: bool = False
    verbose: bool = True
    curves: bool = True
    early_stopping: bool = False
    prefetch: int | None = None
    on_iteration: Callable[[int], None] | None = None


@dataclass(frozen=True)
class ValidationRound:
    """One validation round after ``iteration``: mean ``loss`` and ``total_loss`` of its batches, ``dice`` (C,)."""

    iteration: int
    loss: float
    total_loss: float
    dice: np.ndarray


@dataclass(frozen=True)
class TrainResult:
    """``losses``: ``(iteration, loss)`` pairs (``total_losses`` the same with regularisation) of this call;
    ``checkpoints``: prefixes kept; ``log``/``validation_log``/``curves``: the files; ``split``: the subjects."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    log: Path | None = None
    total_losses: list[tuple[int, float]] = field(default_factory=list)
    validation: list[ValidationRound] = field(default_factory=list)
    validation_log: Path | None = None
    curves: Path | None = None
    stopped_early: bool = False
    split: Split | None = None


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


def _check_outputs(model_dir: Path, start: int, stop: int, force: bool) -> None:
    """Refuse to replace an earlier run's checkpoints or logs unless ``force``."""
    taken = [p for p in (model_dir / "models").glob("model.ckpt-*.index")
             if (m := _ITER.search(p.name[:-len(".index")])) and start < int(m.group(1)) <= stop]
    taken += [model_dir / n for n in (LOG_NAME, VALIDATION_LOG_NAME) if (model_dir / n).exists()]
    if taken and not force:
        raise TrainingError(f"{taken[0]} exists (an earlier run's); use --force to replace it, --resume to continue")


@dataclass(frozen=True)
class _Trainer:
    """What one run updates: the module, its optimiser and batch norms, their NiftyNet variables, the regulariser."""

    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    batch_norm: BatchNormTraining
    variables: dict
    device: torch.device
    regulariser: Regulariser | None = None


def _build(config: Config, settings: TrainingSection, checkpoint: Path | None, device: torch.device, seed: int):
    """The trainer, and the checkpoint read (or None); the module's initial values drawn from ``seed``
    (torch's generator forked: the global state is left as it was)."""
    spec = networks.get(config.network.name or "")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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
    net = config.network
    try:
        regulariser = make_regulariser(model, rules, decay=net.decay, reg_type=net.reg_type,
                                       unregularised=spec.unregularised)
    except TrainingError as exc:
        raise TrainingError(f"[NETWORK] decay = {net.decay} with {spec.name}: {exc}") from None
    return _Trainer(model, optimiser, bn, variables, device, regulariser), ckpt


def _samplers(config: Config, settings: TrainingSection, split: Split, seed: int, validating: bool):
    window = tuple(int(w) for w in config.section_window[:3])
    if len(window) != 3:
        raise TrainingError(f"spatial_window_size {config.section_window}: training needs a 3-D window")
    common = {"window": window, "batch_size": config.network.batch_size,
              "sample_per_volume": settings.sample_per_volume, "method": config.network.window_sampling,
              "orders": input_orders(config), "seed": seed}
    training = WindowSampler(load_training_volumes(config, split.training),
                             SamplerSettings(augmentation=augmentation(settings), stream=TRAINING_STREAM, **common))
    validation = None
    if validating:
        validation = WindowSampler(load_training_volumes(config, split.validation),
                                   SamplerSettings(stream=VALIDATION_STREAM, **common))
    return training, validation


def _sampling(config: Config, settings: TrainingSection, split: Split) -> dict:
    """What decides the samplers' batches besides the seed: a resumed run must have the same."""
    return {"window": [int(w) for w in config.section_window[:3]], "batch_size": config.network.batch_size,
            "sample_per_volume": settings.sample_per_volume, "window_sampling": config.network.window_sampling,
            "augmentation": repr(augmentation(settings)), "training": list(split.training),
            "validation": list(split.validation), "validation_max_iter": settings.validation_max_iter}


def _check_resumable(state: ResumeState, now: dict, prefix: Path) -> None:
    before = state.extra.get("sampling")
    if before is None:
        return
    changed = [key for key in now if before.get(key) != now[key]]
    if changed:
        key = changed[0]
        raise TrainingError(f"--resume: {key} was {before.get(key)!r} at {prefix.name}, now {now[key]!r}; resuming "
                            "would not continue that run (start a new one with --force)")


def _resume_point(models: Path) -> tuple[Path, ResumeState, list[Path]]:
    """The last complete checkpoint, its resume state, and every complete one (kept for ``max_checkpoints``)."""
    complete = complete_checkpoints(models)
    if not complete:
        raise TrainingError(f"--resume: no complete checkpoint of a niftyport run in {models}")
    prefix = complete[-1][1]
    return prefix, read_resume_state(prefix), [p for _, p in complete]


def train(config: Config, options: TrainOptions = TrainOptions(), *,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Train as ``net_segment train -c config`` would; see the module docstring."""
    settings = training_settings(config)
    for notice in ignored_options(settings):
        echo(f"notice: {notice}")
    model_dir = Path(config.system.model_dir or ".")
    state, kept = None, []
    if options.resume:
        checkpoint, state, kept = _resume_point(model_dir / "models")
        start, seed = state.iteration, state.seed
    else:
        checkpoint, start = starting_checkpoint(settings, model_dir, options.weights)
        seed = options.seed
    stop = options.max_iter if options.max_iter is not None else settings.max_iter
    if stop <= start:
        raise TrainingError(f"max_iter {stop} is not after the starting iteration {start}")
    validating = settings.validation_every_n > 0
    if not options.resume:
        _check_outputs(model_dir, start, stop, options.force)
    trainer, ckpt = _build(config, settings, checkpoint, torch.device(options.device), seed)
    if ckpt is not None:
        report = restore(trainer.variables, ckpt, vars_to_restore="" if options.resume else settings.vars_to_restore)
        echo(f"restored {len(report.restored)} of {len(trainer.variables)} variables from {ckpt.prefix}")
    split = split_subjects(training_subjects(config), split_file=config.system.dataset_split_file,
                           valid_fraction=settings.exclude_fraction_for_validation,
                           infer_fraction=settings.exclude_fraction_for_inference,
                           rng=np.random.default_rng([seed, SPLIT_STREAM]))
    if validating and not split.validation:
        raise TrainingError(f"[TRAINING] validation_every_n = {settings.validation_every_n} but no subject is "
                            f"for validation (exclude_fraction_for_validation, or {split.path})")
    if options.resume:
        _check_resumable(state, _sampling(config, settings, split), checkpoint)
    training, validation = _samplers(config, settings, split, seed, validating)
    state = state or ResumeState(start, seed, 0)
    run = _Run(config, settings, options, echo, model_dir, seed, range(start + 1, stop + 1), kept, state, split)
    return _loop(trainer, run, training, validation)


@dataclass
class _Run:
    """The settings of one call of :func:`train` and what it has done so far."""

    config: Config
    settings: TrainingSection
    options: TrainOptions
    echo: Callable[[str], None]
    model_dir: Path
    seed: int
    iterations: range
    kept: list[Path]
    state: ResumeState
    split: Split

    @property
    def early_stopping(self) -> bool:
        return self.options.early_stopping or "early_stopper" in self.config.system.event_handler

    @property
    def prefetch(self) -> int:
        if self.options.prefetch is not None:
            return self.options.prefetch
        return max(1, math.ceil(self.config.network.queue_length / self.config.network.batch_size))


class _Logs:
    """The CSV logs (a resumed run keeps the rows up to its checkpoint) and the rows for the curves."""

    def __init__(self, run: _Run, num_classes: int, validating: bool):
        self.model_dir = run.model_dir
        self.training_path = run.model_dir / LOG_NAME
        self.validation_path = run.model_dir / VALIDATION_LOG_NAME if validating else None
        header = ["iteration", "loss", "total_loss", "seconds"]
        v_header = ["iteration", "loss", "total_loss", "mean_dice"] + [f"dice_{c}" for c in range(num_classes)]
        last = run.iterations.start - 1
        old = _rows(self.training_path, last) if run.options.resume else []
        self.training_rows = [(int(r["iteration"]), float(r["loss"]), float(r.get("total_loss") or r["loss"]))
                              for r in old]
        v_old = _rows(self.validation_path, last) if run.options.resume and validating else []
        self.validation_rows = [(int(r["iteration"]), float(r["loss"]), float(r["total_loss"]),
                                 np.array([float(r[f"dice_{c}"]) for c in range(num_classes)])) for r in v_old]
        run.model_dir.mkdir(parents=True, exist_ok=True)
        stale = run.model_dir / VALIDATION_LOG_NAME
        if not validating and not run.options.resume and stale.is_file():
            stale.unlink()              # an earlier run's (replacing it was allowed by --force)
        self._files = [_csv(self.training_path, header, old)]
        if self.validation_path is not None:
            self._files.append(_csv(self.validation_path, v_header, v_old))

    def training(self, iteration: int, loss: float, total: float, seconds: float) -> None:
        self.training_rows.append((iteration, loss, total))
        self._write(0, [iteration, f"{loss:.7f}", f"{total:.7f}", f"{seconds:.3f}"])

    def validation(self, row: ValidationRound) -> None:
        self.validation_rows.append((row.iteration, row.loss, row.total_loss, row.dice))
        present = row.dice[1:][~np.isnan(row.dice[1:])]
        mean = float(present.mean()) if present.size else float("nan")
        self._write(1, [row.iteration, f"{row.loss:.7f}", f"{row.total_loss:.7f}", f"{mean:.6f}"]
                    + [f"{d:.6f}" for d in row.dice])

    def _write(self, which: int, values: list) -> None:
        handle, writer = self._files[which]
        writer.writerow(values)
        handle.flush()

    def curves(self) -> Path:
        return write_curves(self.model_dir / CURVES_NAME, self.training_rows, self.validation_rows)

    def close(self) -> None:
        for handle, _ in self._files:
            handle.close()


def _rows(path: Path, last: int) -> list[dict]:
    """The rows of a log up to iteration ``last`` (an interrupted run's later rows are dropped)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if int(r["iteration"]) <= last]


def _csv(path: Path, header: list[str], rows: list[dict]):
    """``(handle, writer)`` appending to ``path``, first rewritten (atomically) with ``header`` and ``rows``."""
    text = [",".join(header)] + [",".join(str(r.get(h, "")) for h in header) for r in rows]
    write_text_atomic(path, "\n".join(text) + "\n")
    handle = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed by _Logs.close)
    return handle, csv.writer(handle)


def _tensors(batch: Batch, device: torch.device):
    image = torch.from_numpy(batch.image).to(device)
    label = torch.from_numpy(batch.label).to(device)
    weight = None if batch.weight is None else torch.from_numpy(batch.weight).to(device)
    return image, label, weight


def _save(trainer: _Trainer, run: _Run, iteration: int, state: ResumeState) -> Path:
    """One complete checkpoint (:mod:`.checkpoints`), then the oldest beyond ``max_checkpoints`` removed."""
    models = run.model_dir / "models"
    prefix = save_checkpoint(trainer.variables, models / f"model.ckpt-{iteration}", global_step=iteration,
                             state_file=False)
    save_safetensors(trainer.model.state_dict(), models / f"model.ckpt-{iteration}.safetensors")
    write_resume_state(prefix, state)
    run.kept = [p for p in run.kept if p != prefix] + [prefix]
    dropped = []
    while run.settings.max_checkpoints > 0 and len(run.kept) > run.settings.max_checkpoints:
        dropped.append(run.kept.pop(0))
    write_index(models, run.kept)
    for old in dropped:
        remove_checkpoint(old)
    return prefix


def _validate(trainer: _Trainer, run: _Run, iteration: int, batches: Iterator[Batch], history: list[float],
              loss: LossSettings) -> tuple[ValidationRound, bool, int]:
    """One validation round: ``(its row, whether early stopping says stop, batches taken)``."""
    num_classes = run.config.segmentation.num_classes
    overlaps = np.zeros((3, num_classes), dtype=np.int64)
    losses, totals, stop = [], [], False
    for _ in range(max(1, run.settings.validation_max_iter)):
        image, label, weight = _tensors(next(batches), trainer.device)
        step = validation_step(trainer.model, trainer.batch_norm, image, label, loss=loss, weight_map=weight,
                               regulariser=trainer.regulariser, num_classes=num_classes)
        losses.append(step.loss)
        totals.append(step.total_loss)
        overlaps += step.overlaps
        history.append(step.total_loss)
        del history[:-run.settings.patience]
        _echo(run, f"    validation iter {iteration} {_loss_text(step.loss, step.total_loss, trainer)}")
        if run.early_stopping and len(history) == run.settings.patience and \
                should_stop(history, run.settings.early_stopping_mode):
            stop = True
            break
    row = ValidationRound(iteration, float(np.mean(losses)), float(np.mean(totals)), dice_per_class(overlaps))
    return row, stop, len(losses)


def _loss_text(loss: float, total: float, trainer: _Trainer) -> str:
    return format_loss(loss) + (f" total_loss {total:.7f}" if trainer.regulariser is not None else "")


def _echo(run: _Run, line: str) -> None:
    if run.options.verbose:
        from tqdm import tqdm

        with tqdm.external_write_mode():
            run.echo(line)


@dataclass
class _Taken:
    """Batches taken from the two samplers so far, and the validation history (what a checkpoint's sidecar keeps)."""

    training: int
    validation: int
    history: list[float]

    def state(self, iteration: int, seed: int, sampling: dict) -> ResumeState:
        return ResumeState(iteration, seed, self.training, self.validation, tuple(self.history),
                           {"sampling": sampling})


def _checkpoint(trainer: _Trainer, run: _Run, logs: _Logs, iteration: int, taken: _Taken) -> Path | None:
    """A complete checkpoint of ``iteration`` and the curves; returns the PNG (None when not drawn)."""
    _save(trainer, run, iteration, taken.state(iteration, run.seed, _sampling(run.config, run.settings, run.split)))
    return logs.curves() if run.options.curves else None


def _loop(trainer: _Trainer, run: _Run, training: WindowSampler, validation: WindowSampler | None) -> TrainResult:
    from tqdm import tqdm

    result = TrainResult(log=run.model_dir / LOG_NAME, split=run.split,
                         validation_log=run.model_dir / VALIDATION_LOG_NAME if validation else None)
    loss = LossSettings(run.settings.loss_type, run.config.segmentation.softmax)
    logs = _Logs(run, run.config.segmentation.num_classes, validation is not None)
    taken = _Taken(run.state.training_batches, run.state.validation_batches, list(run.state.history))
    batches = training.batches(taken.training, prefetch=run.prefetch)
    v_batches = validation.batches(taken.validation, prefetch=run.prefetch) if validation else None
    bar = tqdm(total=len(run.iterations), unit="it", desc="training", disable=None if run.options.progress else True)
    stopped, saved, curves = False, None, None
    try:
        for iteration in run.iterations:
            tic = time.perf_counter()
            image, label, weight = _tensors(next(batches), trainer.device)
            step = train_step_losses(trainer.model, trainer.optimiser, trainer.batch_norm, image, label, loss=loss,
                                     weight_map=weight, regulariser=trainer.regulariser)
            taken.training += 1
            seconds = time.perf_counter() - tic
            result.losses.append((iteration, step.loss))
            result.total_losses.append((iteration, step.total_loss))
            logs.training(iteration, step.loss, step.total_loss, seconds)
            _echo(run, f"iter {iteration} {_loss_text(step.loss, step.total_loss, trainer)} ({seconds:.2f}s)")
            bar.update(1)
            bar.set_postfix(loss=f"{step.loss:.4f}", refresh=False)
            if v_batches is not None and iteration % run.settings.validation_every_n == 0:
                row, stopped, n = _validate(trainer, run, iteration, v_batches, taken.history, loss)
                taken.validation += n
                result.validation.append(row)
                logs.validation(row)
            if stopped or (run.settings.save_every_n > 0 and iteration % run.settings.save_every_n == 0):
                curves, saved = _checkpoint(trainer, run, logs, iteration, taken), iteration
            if run.options.on_iteration is not None:
                run.options.on_iteration(iteration)
            if stopped:
                _echo(run, f"early stopping at iteration {iteration} ({run.settings.early_stopping_mode})")
                break
        if saved != iteration:
            curves = _checkpoint(trainer, run, logs, iteration, taken)
    finally:
        bar.close()
        logs.close()
        batches.close()
        if v_batches is not None:
            v_batches.close()
    return _with(result, checkpoints=list(run.kept), stopped_early=stopped, curves=curves)


def _with(result: TrainResult, **changes) -> TrainResult:
    import dataclasses

    return dataclasses.replace(result, **changes)
