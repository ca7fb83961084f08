"""Fine-tuning a trained network on a new labelled set: ``niftyport finetune`` and :func:`finetune`.

What a NiftyNet user does by hand -- write a training config whose
``[SEGMENTATION] num_classes`` is the new task's, restore the trained
weights but the classifier (``vars_to_restore``), freeze the first stages
(``vars_to_freeze``), run ``net_segment train`` -- in one call:

1. **pairs** the images with the labels by NiftyNet's subject id, the file
   name without its image extension and without non-word characters
   (``sub-01.nii.gz`` and ``sub-01.nii`` are subject ``sub01``;
   :func:`pair_files`), as NiftyNet's ``KeywordsMatching`` names files with no
   ``filename_contains`` (``niftynet/utilities/filename_matching.py``);
2. writes the new model's NiftyNet **config** (:func:`model_sections`): the
   preprocessing of the network's own inference config (for HighRes3DNet the
   model zoo's ``highres3dnet_config_eval.ini``: 1 mm RAS, 10 voxels of
   padding, histogram standardisation with the zoo's landmarks, whitening),
   the images and labels as ``[Modality0]`` and ``[Label]``, ``[TRAINING]``
   with the settings used; training reads the volumes through that config,
   so ``niftyport segment --config <out>/config.ini`` preprocesses as training did;
3. **restores** every network variable from the source but the new head's
   (the variables whose shape depends on ``num_classes``, when it differs:
   :func:`head_keys`), which keep PyTorch's initialisation; **freezes** the
   trainable variables whose TensorFlow tensor name ``re.search`` matches
   ``freeze`` (NiftyNet's ``vars_to_freeze``,
   :func:`~niftyport.training.state.trainable_parameters`);
4. **trains** with :func:`~niftyport.training.loop.train_step` on uniform
   windows (:func:`~niftyport.training.data.window_batches`), and writes a
   NiftyNet ``model_dir``: ``models/model.ckpt-<iter>`` with every training
   variable (NiftyNet restores it, ``niftyport train --config`` resumes it),
   its ``.safetensors``, ``training_log.csv``, ``finetune.json``.

Departures from a NiftyNet fine-tune: the optimiser starts fresh (no slots
or beta powers are restored, also from a checkpoint holding them) and so do
the batch-norm zero-debias accumulators (the moving statistics become those
of the fine-tuning batches after the first iteration, as after restoring a
checkpoint ``niftyport export`` wrote); the new head is PyTorch's
initialisation, not NiftyNet's ``he_normal``; the window order is NumPy's
(see :mod:`niftyport.training.data`).
"""
from __future__ import annotations

import configparser
import csv
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import networks
from ..config import MODEL_ZOO_SETTINGS, PACKAGED_LANDMARKS, Config, _build, _read_ini, default_niftynet_home
from ..errors import NetworkError, OptionError, TrainingError
from ..image_io import image_suffix
from ..outputs import check_outputs, write_text_atomic
from ..preprocessing import load_and_resample, preprocess
from ..preprocessing.padding import pad
from ..weights import network_tensors, save_safetensors
from .batchnorm import BatchNormTraining
from .data import TrainingVolume, window_batches
from .loop import LossSettings, format_loss, train_step
from .losses import LOSSES
from .optimisers import OPTIMISERS, make_optimiser
from .settings import TrainingSection
from .state import TrainingVariable, save_checkpoint, search_names, trainable_parameters, training_variables

__all__ = ["CONFIG_NAME", "FinetuneOptions", "FinetuneResult", "Pair", "Start", "finetune", "finetune_volumes",
           "head_keys", "load_pair", "model_sections", "pair_files", "prepare", "sections_text",
           "start_model", "subject_key", "write_model", "write_outputs"]

#: The generated NiftyNet config, in the output folder.
CONFIG_NAME = "config.ini"
LOG_NAME = "training_log.csv"
SUMMARY_NAME = "finetune.json"
#: The image and label sections of the generated config.
IMAGE_SECTION, LABEL_SECTION = "Modality0", "Label"


# --------------------------------------------------------------------------- pairing

@dataclass(frozen=True)
class Pair:
    """One training subject: NiftyNet's subject id, its image and its label file."""

    subject_id: str
    image: Path
    label: Path


def subject_key(path: str | os.PathLike) -> str:
    """NiftyNet's subject id of a file found with no ``filename_contains``.

    The name without folder and image extension, non-word characters removed
    (``candidate_ids`` of :mod:`niftyport.segmentation.subjects`).

    >>> subject_key("images/sub-01.nii.gz"), subject_key("labels/sub-01.nii"), subject_key("x/case_7.mgz")
    ('sub01', 'sub01', 'case_7')
    """
    name = Path(path).name
    suffix = image_suffix(name) or ""
    return re.sub(r"\W+", "", name[: len(name) - len(suffix)] if suffix else name)


def _without_suffix(path: Path) -> str:
    return str(path)[: -len(image_suffix(path.name))]


def _volumes_in(folder: Path) -> list[Path]:
    """The volume files of a folder (sorted), the ``.hdr`` of an ``.img``/``.hdr`` pair left out."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and image_suffix(p.name) is not None)
    pairs = {_without_suffix(p) for p in files if image_suffix(p.name).lower().startswith(".img")}
    return [p for p in files
            if not (image_suffix(p.name).lower().startswith(".hdr") and _without_suffix(p) in pairs)]


def _keyed(folder: Path, what: str) -> dict[str, Path]:
    files = _volumes_in(folder)
    if not files:
        raise OptionError(f"{folder}: no image file (.nii, .nii.gz, .mgz, .mgh, .img) in this {what} folder")
    keyed: dict[str, Path] = {}
    for path in files:
        key = subject_key(path)
        if key in keyed:
            raise OptionError(f"{path}: same subject id {key!r} as {keyed[key].name} (ids are file names "
                              "without extension and non-word characters)")
        keyed[key] = path
    return keyed


def pair_files(images: str | os.PathLike, labels: str | os.PathLike) -> list[Pair]:
    """Images and labels paired by subject id (:func:`subject_key`), sorted by id.

    ``images`` and ``labels`` are two folders, or two files (one pair,
    whatever their names). Every image needs a label and every label an
    image: the first one left over is an :class:`~niftyport.errors.OptionError`.
    """
    images, labels = Path(images), Path(labels)
    for path, what in ((images, "IMAGES"), (labels, "LABELS")):
        if not path.exists():
            raise OptionError(f"{path}: no such file or folder ({what})")
    if images.is_file() and labels.is_file():
        return [Pair(subject_key(images), images, labels)]
    if images.is_file() != labels.is_file():
        raise OptionError(f"{labels if images.is_file() else images}: IMAGES and LABELS must both be folders "
                          "or both be files")
    by_image, by_label = _keyed(images, "IMAGES"), _keyed(labels, "LABELS")
    for key, path in by_image.items():
        if key not in by_label:
            raise OptionError(f"{path}: no label file with the same name in {labels} "
                              f"(subject id {key!r}; {len(set(by_image) - set(by_label))} image(s) unpaired)")
    for key, path in by_label.items():
        if key not in by_image:
            raise OptionError(f"{path}: no image file with the same name in {images} (subject id {key!r})")
    return [Pair(key, by_image[key], by_label[key]) for key in sorted(by_image)]


# --------------------------------------------------------------------------- the config

@dataclass(frozen=True)
class FinetuneOptions:
    """A fine-tune's settings; ``None`` means the base config's value, else NiftyNet's default.

    ``source``: a registry network with shipped weights (``"highres3dnet"``),
    or a checkpoint / ``.safetensors`` / ``.pth`` path (then ``network`` names
    its network unless a checkpoint's names tell it). ``freeze``: NiftyNet's
    ``vars_to_freeze``. ``window``: the training window (voxels). ``base_config``:
    an ``.ini`` whose preprocessing and inference settings the new model keeps
    (default: the network's model zoo config when niftyport has one).
    """

    num_classes: int
    source: str = "highres3dnet"
    network: str | None = None
    base_config: str | None = None
    freeze: str = ""
    max_iter: int = 2000
    lr: float | None = None
    loss: str = "Dice"
    optimiser: str = "adam"
    window: tuple[int, ...] | None = None
    batch_size: int | None = None
    save_every_n: int | None = None
    seed: int = 0
    device: str = "cpu"
    label_table: str | None = None


def _base_sections(spec: networks.NetworkSpec, base_config: str | None) -> tuple[dict, Path | None]:
    """Raw ``{section: {key: value}}`` of the base config and its histogram landmarks file (or None)."""
    if base_config is not None:
        path = Path(base_config)
        if not path.is_file():
            raise OptionError(f"{path}: no such config file")
        sections = _read_ini(path.read_text(encoding="utf-8"), str(path))
        parsed = _build(sections, source=str(path), config_path=path.resolve(), home=str(default_niftynet_home()))
        hist = Path(parsed.network.histogram_ref_file) if parsed.network.normalisation else None
        if hist is not None and not hist.is_file():
            raise OptionError(f"{path}: [NETWORK] histogram_ref_file {hist} not found (needed beside the new model)")
        image = parsed.modality
        kept = {k: dict(v) for k, v in sections.items() if k in ("SYSTEM", "NETWORK", "INFERENCE", "SEGMENTATION")}
        kept[IMAGE_SECTION] = {k: v for k, v in sections[image].items()
                               if k not in ("path_to_search", "filename_contains", "filename_not_contains",
                                            "filename_removefromid", "csv_file", "csv_data_file")}
        segmentation = kept.get("SEGMENTATION", {})
        for key in ("weight", "sampler", "inferred", "value"):  # sections the new config does not have
            segmentation.pop(key, None)
        return kept, hist
    if str(MODEL_ZOO_SETTINGS["NETWORK"]["name"]) == spec.name:
        return {k: dict(v) for k, v in MODEL_ZOO_SETTINGS.items()}, PACKAGED_LANDMARKS
    return {IMAGE_SECTION: {}, "NETWORK": {"name": spec.name}, "SEGMENTATION": {}}, None


def _search(path: Path) -> dict[str, str]:
    """An input section's keys finding ``path``: its folder; a single file by its whole name."""
    path = path.resolve()
    if path.is_dir():
        return {"path_to_search": str(path)}
    return {"path_to_search": str(path.parent), "filename_contains": path.name}


def model_sections(spec: networks.NetworkSpec, options: FinetuneOptions, images: Path, labels: Path,
                   output_dir: Path) -> tuple[dict[str, dict[str, str]], Path | None]:
    """The new model's NiftyNet config as raw sections, and the landmarks file it names (copied beside it).

    ``[SYSTEM] model_dir`` is ``output_dir``'s absolute path (NiftyNet resolves
    a relative one against the working directory or its home, not the
    config's folder); ``histogram_ref_file`` is relative to it.
    """
    sections, landmarks = _base_sections(spec, options.base_config)
    image = dict(sections[IMAGE_SECTION])
    for key in ("filename_contains", "path_to_search"):
        image.pop(key, None)
    image.update(_search(images))
    window = options.window or _window_of(image.get("spatial_window_size"))
    if window is None:
        raise OptionError("--window: the base config has no spatial_window_size; give the training window")
    image["spatial_window_size"] = _tuple_text(window)
    label = {**_search(labels), "interp_order": "0", "spatial_window_size": _tuple_text(window)}
    for key in ("pixdim", "axcodes"):
        if key in image:
            label[key] = image[key]
    network = dict(sections.get("NETWORK", {}), name=spec.name)
    if options.batch_size is not None:
        network["batch_size"] = str(options.batch_size)
    if landmarks is not None:
        network["histogram_ref_file"] = landmarks.name
    inference = dict(sections.get("INFERENCE", {}))
    inference["inference_iter"] = str(options.max_iter)
    inference.setdefault("spatial_window_size", _tuple_text(window))
    inference["save_seg_dir"] = os.path.join(".", "output")
    segmentation = dict(sections.get("SEGMENTATION", {}), image=IMAGE_SECTION, label=LABEL_SECTION,
                        num_classes=str(options.num_classes), label_normalisation="False")
    defaults = TrainingSection()
    training = {"optimiser": options.optimiser, "lr": repr(options.lr if options.lr is not None else defaults.lr),
                "loss_type": options.loss, "starting_iter": "-1", "max_iter": str(options.max_iter),
                "save_every_n": str(options.save_every_n if options.save_every_n is not None
                                    else defaults.save_every_n),
                "sample_per_volume": "1"}
    if options.freeze:
        training["vars_to_freeze"] = options.freeze
    system = dict(sections.get("SYSTEM", {}), model_dir=str(output_dir.resolve()))
    return ({IMAGE_SECTION: image, LABEL_SECTION: label, "SYSTEM": system, "NETWORK": network,
             "INFERENCE": inference, "SEGMENTATION": segmentation, "TRAINING": training}, landmarks)


def _window_of(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    return tuple(int(float(v)) for v in re.findall(r"-?\d+(?:\.\d*)?", text))


def _tuple_text(values: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(v)) for v in values) + ")"


def sections_text(sections: Mapping[str, Mapping[str, str]], header: Sequence[str] = ()) -> str:
    """An ``.ini`` text of raw sections (``configparser``'s format), ``header`` lines as comments first."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    for name, values in sections.items():
        parser[name] = {k: str(v) for k, v in values.items()}
    buffer = io.StringIO()
    parser.write(buffer)
    return "".join(f"# {line}\n" for line in header) + buffer.getvalue()


def parse_sections(sections: Mapping[str, Mapping[str, str]], config_path: Path,
                   landmarks: Path | None) -> Config:
    """The :class:`Config` ``niftyport segment`` will read from ``config_path``, landmarks from ``landmarks``."""
    return _build({k: dict(v) for k, v in sections.items()}, source=str(config_path),
                  config_path=config_path.resolve(), home=str(default_niftynet_home()),
                  histogram_ref_file=None if landmarks is None else str(landmarks))


# --------------------------------------------------------------------------- data

def load_pair(pair: Pair, config: Config) -> TrainingVolume:
    """One subject as training sees it: the network input and its label on the padded grid.

    As :func:`niftyport.training.data.load_training_volumes`: the image read,
    resampled and preprocessed by the config's image section and
    ``[NETWORK]``; the label by the label section (nearest neighbour), padded
    alike. Raises :class:`TrainingError` when the grids differ.
    """
    image = preprocess(load_and_resample(pair.image, config).data, config).whitened
    raw = load_and_resample(pair.label, config, section=config.inputs[LABEL_SECTION]).data
    net = config.network
    label = pad(raw, net.volume_padding_size, mode=net.volume_padding_mode, pad_to=net.volume_padding_to_size)
    if label.shape != image.shape:
        raise TrainingError(f"{pair.label}: label grid {label.shape} differs from its image's {image.shape} "
                            f"({pair.image.name}, after resampling)")
    return TrainingVolume(pair.subject_id, image, np.rint(label).astype(np.int64))


def check_labels(volumes: Iterable[TrainingVolume], num_classes: int, pairs: Sequence[Pair]) -> None:
    """Every label value an integer class in ``[0, num_classes)``."""
    for volume, pair in zip(volumes, pairs):
        low, high = int(volume.label.min()), int(volume.label.max())
        if low < 0 or high >= num_classes:
            raise OptionError(f"{pair.label}: label values {low}..{high} are not classes 0..{num_classes - 1} "
                              "(--num-classes)")


# --------------------------------------------------------------------------- the network

@dataclass
class Start:
    """The network ready to fine-tune.

    ``restored``: NiftyNet names read from the source; ``new``: the head's,
    freshly initialised; ``frozen``: trainable variables not optimised.
    ``variables``: every training variable (for checkpoints).
    """

    spec: networks.NetworkSpec
    scope: str
    model: torch.nn.Module
    optimiser: torch.optim.Optimizer
    batch_norm: BatchNormTraining
    variables: dict[str, TrainingVariable]
    restored: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)


def _source(options: FinetuneOptions) -> tuple[networks.NetworkSpec, Path]:
    """The network and the weights file of ``options.source``."""
    from ..checkpoint import is_checkpoint, read_checkpoint
    from ..weights import find_weights

    path = Path(options.source)
    if not path.exists() and not is_checkpoint(path):
        try:
            spec = networks.get(options.source)
        except NetworkError:
            shipped = ", ".join(s.name for s in networks.specs() if s.pretrained)
            raise OptionError(f"--from {options.source!r}: neither a weights file nor a network with "
                              f"shipped weights ({shipped})") from None
        if spec.pretrained is None:
            raise OptionError(f"--from {spec.name}: no weights ship with this network; give a checkpoint path "
                              "and --network")
        return spec, find_weights(network=spec.name, download=False).path
    if options.network:
        return networks.get(options.network), path
    if is_checkpoint(path):
        return networks.detect([v.name for v in read_checkpoint(path).variables if v.kept])[0], path
    raise OptionError(f"--from {path}: say which network these weights are for with --network")


def head_keys(spec: networks.NetworkSpec, source_shapes: Mapping[str, tuple[int, ...]],
              model: torch.nn.Module, *, num_classes: int) -> list[str]:
    """The module keys left out of restore: those whose shape differs and depends on ``num_classes``.

    A key of another shape that does not depend on ``num_classes`` (another
    input channel count, a narrower network) is an error, and so is a key
    missing from the source.
    """
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    other = networks.build(spec.name, num_classes=num_classes + 1, acti_func=getattr(model, "acti_func", None))
    depends = {k for k, v in other.state_dict().items() if tuple(v.shape) != shapes.get(k)}
    missing = sorted(k for k in shapes if k not in source_shapes and not k.endswith("num_batches_tracked"))
    if missing:
        raise TrainingError(f"the weights lack {len(missing)} of {spec.name}'s variables, e.g. {missing[0]!r}")
    differ = [k for k in shapes if k in source_shapes and tuple(source_shapes[k]) != shapes[k]]
    wrong = [k for k in differ if k not in depends]
    if wrong:
        raise TrainingError(f"{wrong[0]!r} is {tuple(source_shapes[wrong[0]])} in the weights, {shapes[wrong[0]]} "
                            f"here: not a classifier of another class count")
    return differ


def start_model(options: FinetuneOptions, *, acti_func: str = "relu") -> Start:
    """Build, restore (all but the head) and freeze the network of ``options``; a fresh optimiser."""
    from ..mapping import map_tensors

    spec, weights = _source(options)
    device = torch.device(options.device)
    with torch.random.fork_rng(devices=[]):  # the new head's initialisation follows the seed; torch's RNG kept
        torch.manual_seed(options.seed)
        model = networks.build(spec.name, num_classes=options.num_classes, acti_func=acti_func)
    tensors, rules_in = network_tensors(spec, weights, rule_kwargs={"acti_func": acti_func})
    state = {k: v for k, v in map_tensors(tensors, rules_in).items()
             if not k.endswith("num_batches_tracked")}  # torch's counters: never read by the networks
    head = head_keys(spec, {k: v.shape for k, v in state.items()}, model, num_classes=options.num_classes)
    current = model.state_dict()
    extra = sorted(k for k in state if k not in current)
    if extra:
        raise TrainingError(f"{weights}: {len(extra)} variable(s) that {spec.name} does not have, e.g. {extra[0]!r}")
    with torch.no_grad():
        for key, array in state.items():
            if key not in head:
                current[key].copy_(torch.from_numpy(np.ascontiguousarray(array)))
    model = model.to(device)
    scope = networks.scope_of(list(tensors), spec) if any("/" in name for name in tensors) else spec.default_scope
    rules = spec.rules(scope, acti_func=acti_func)
    parameters = trainable_parameters(model, rules, vars_to_freeze=options.freeze)
    if not parameters:
        raise OptionError(f"--freeze {options.freeze!r} freezes every variable: nothing left to train")
    defaults = TrainingSection()
    optimiser = make_optimiser(options.optimiser, parameters, options.lr if options.lr is not None else defaults.lr)
    bn = BatchNormTraining(model)
    variables = training_variables(model, rules, optimiser=optimiser, batch_norm=bn)
    model_names = {v.name for v in variables.values() if v.kind == "model"}
    back = rules.reversed()
    new = sorted(hit[1] for k in head if (hit := back.target_of(k)) is not None)
    frozen_set = {p for p in model.parameters() if not p.requires_grad}
    named = {id(p): k for k, p in model.named_parameters()}
    frozen = sorted(hit[1] for p in frozen_set if (hit := back.target_of(named[id(p)])) is not None)
    restored = sorted(model_names - set(new))
    return Start(spec, scope, model, optimiser, bn, variables, restored, new, frozen)


# --------------------------------------------------------------------------- training and writing

def finetune_volumes(start: Start, batches: Iterator[tuple[np.ndarray, np.ndarray]], *, iterations: range,
                     loss: LossSettings, log_path: Path, save: Callable[[int], None] | None = None,
                     save_every_n: int = 0, echo: Callable[[str], None] = print) -> list[tuple[int, float]]:
    """Run ``iterations`` on ``batches`` (torch-layout ``(N, 1, X, Y, Z)`` pairs); the CSV log as it goes.

    Returns ``(iteration, loss)`` pairs (the loss before each update, as
    NiftyNet prints it); ``save(iteration)`` every ``save_every_n`` iterations.
    """
    device = next(start.model.parameters()).device
    losses = []
    with open(log_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "loss", "seconds"])
        for iteration in iterations:
            tic = time.perf_counter()
            image, label = (torch.from_numpy(a).to(device) for a in next(batches))
            value = train_step(start.model, start.optimiser, start.batch_norm, image, label, loss=loss)
            seconds = time.perf_counter() - tic
            losses.append((iteration, value))
            writer.writerow([iteration, f"{value:.7f}", f"{seconds:.3f}"])
            handle.flush()
            echo(f"iter {iteration} {format_loss(value)} ({seconds:.2f}s)")
            if save is not None and save_every_n > 0 and iteration % save_every_n == 0 and iteration != iterations[-1]:
                save(iteration)
    start.model.eval()
    return losses


def write_model(start: Start, output_dir: Path, iteration: int) -> Path:
    """``output_dir/models/model.ckpt-<iteration>`` (every training variable) and its ``.safetensors``."""
    models = output_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    prefix = save_checkpoint(start.variables, models / f"model.ckpt-{iteration}", global_step=iteration)
    save_safetensors(start.model.state_dict(), models / f"model.ckpt-{iteration}.safetensors")
    return prefix


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` wrote and did."""

    output_dir: Path
    config: Path
    checkpoint: Path
    log: Path
    losses: list[tuple[int, float]]
    restored: list[str]
    new: list[str]
    frozen: list[str]
    seconds: float


def _check_options(options: FinetuneOptions) -> None:
    if options.num_classes < 1:
        raise OptionError(f"--num-classes: must be at least 1, got {options.num_classes}")
    if options.max_iter < 1:
        raise OptionError(f"--max-iter: must be at least 1, got {options.max_iter}")
    if options.loss not in LOSSES:
        raise OptionError(f"--loss {options.loss!r}: not one of {', '.join(LOSSES)}")
    if options.optimiser not in OPTIMISERS:
        raise OptionError(f"--optimiser {options.optimiser!r}: not one of {', '.join(OPTIMISERS)}")
    if options.freeze:
        search_names([], options.freeze)  # raises for an invalid expression
    if options.label_table is not None and not Path(options.label_table).is_file():
        raise OptionError(f"{options.label_table}: no such label table")


def output_paths(output_dir: Path, options: FinetuneOptions) -> dict[str, Path]:
    """The files a fine-tune writes into ``output_dir`` (checked against ``--force`` first)."""
    every = options.save_every_n if options.save_every_n is not None else TrainingSection().save_every_n
    saved = [*(range(every, options.max_iter, every) if every > 0 else ()), options.max_iter]
    paths = {"config": output_dir / CONFIG_NAME, "log": output_dir / LOG_NAME,
             "summary": output_dir / SUMMARY_NAME,
             **{f"checkpoint-{i}": output_dir / "models" / f"model.ckpt-{i}.index" for i in saved}}
    if options.label_table is not None:
        paths["labels"] = output_dir / Path(options.label_table).name
    return paths


def prepare(images, labels, output_dir, options: FinetuneOptions, *, force: bool = False):
    """Checks and setup before anything is written: ``(pairs, sections, config, landmarks, start, paths)``."""
    _check_options(options)
    output_dir = Path(output_dir)
    pairs = pair_files(images, labels)
    paths = output_paths(output_dir, options)
    check_outputs(paths.values(), [p for pair in pairs for p in (pair.image, pair.label)], force=force)
    spec, _ = _source(options)
    sections, landmarks = model_sections(spec, options, Path(images), Path(labels), output_dir)
    config = parse_sections(sections, paths["config"], landmarks)
    spec.validate_input(config.image.spatial_window_size[:3])
    start = start_model(options, acti_func=config.network.activation_function)
    return pairs, sections, config, landmarks, start, paths


def finetune(images: str | os.PathLike, labels: str | os.PathLike, output_dir: str | os.PathLike,
             options: FinetuneOptions, *, force: bool = False,
             echo: Callable[[str], None] = print) -> FinetuneResult:
    """Fine-tune ``options.source`` on ``images``/``labels`` into ``output_dir``; see the module docstring."""
    tic = time.perf_counter()
    output_dir = Path(output_dir)
    pairs, sections, config, landmarks, start, paths = prepare(images, labels, output_dir, options, force=force)
    echo(f"{len(pairs)} subject(s); {start.spec.name}: {len(start.restored)} variables restored, "
         f"{len(start.new)} new ({', '.join(start.new) or 'none'}), {len(start.frozen)} frozen")
    volumes = [load_pair(pair, config) for pair in pairs]
    check_labels(volumes, options.num_classes, pairs)
    batches = window_batches(volumes, config.image.spatial_window_size, batch_size=config.network.batch_size,
                             seed=options.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = TrainingSection(**{k: v for k, v in sections["TRAINING"].items()})
    losses = finetune_volumes(start, batches, iterations=range(1, options.max_iter + 1),
                              loss=LossSettings(options.loss, config.segmentation.softmax), log_path=paths["log"],
                              save=lambda it: write_model(start, output_dir, it),
                              save_every_n=settings.save_every_n, echo=echo)
    seconds = time.perf_counter() - tic
    return write_outputs(start, output_dir, sections, landmarks, options, paths, losses, seconds)


def write_outputs(start: Start, output_dir: Path, sections, landmarks: Path | None, options: FinetuneOptions,
            paths: Mapping[str, Path], losses, seconds: float, extra: Mapping | None = None) -> FinetuneResult:
    """Write the checkpoint, the landmarks, the config, the label table and the summary."""
    prefix = write_model(start, output_dir, options.max_iter)
    if landmarks is not None and landmarks.resolve() != (output_dir / landmarks.name).resolve():
        shutil.copyfile(landmarks, output_dir / landmarks.name)
    if options.label_table is not None:
        shutil.copyfile(options.label_table, paths["labels"])
    header = [f"{start.spec.name} fine-tuned by niftyport from {options.source}, {options.max_iter} iterations",
              f"restored all network variables but the new head: {', '.join(start.new) or 'none'}",
              f"to segment: niftyport segment IMAGE --config {CONFIG_NAME}; to train on: niftyport train "
              f"--config {CONFIG_NAME} --max-iter N (starting_iter = -1 resumes from the last checkpoint)"]
    write_text_atomic(paths["config"], sections_text(sections, header))
    summary = {"options": asdict(options), "network": start.spec.name, "scope": start.scope,
               "restored": start.restored, "new": start.new, "frozen": start.frozen,
               "iterations": options.max_iter, "final_loss": losses[-1][1] if losses else None,
               "seconds": round(seconds, 1), **dict(extra or {})}
    write_text_atomic(paths["summary"], json.dumps(summary, indent=2) + "\n")
    return FinetuneResult(output_dir, paths["config"], prefix, paths["log"], losses, start.restored, start.new,
                          start.frozen, seconds)
