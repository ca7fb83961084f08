"""NiftyNet's ``[TRAINING]`` section: parsed with NiftyNet 0.6.0's defaults, and what niftyport trains with.

Defaults are ``add_training_args`` of ``niftynet/utilities/user_parameters_default.py``.
:func:`training_settings` reads the raw section a :class:`~niftyport.config.Config`
keeps (``config.training``) and refuses, with the key named, every option
whose value asks for something niftyport does not do (elastic deformation,
the ``resize`` and ``patch`` samplers, dropout in training, label
normalisation, mixup, a regulariser other than L1/L2), rather than ignoring it.
:func:`ignored_options` lists what NiftyNet 0.6.0's segmentation
application itself ignores (``bias_field_range``), for a notice.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import (
    Config,
    _check,
    _Invalid,
    _message,
    _Section,
    _spec,
    choice,
    to_bool,
    to_float,
    to_float_tuple,
    to_int,
    to_int_tuple,
    to_str,
)
from ..errors import ConfigError, TrainingError
from .augmentation import Augmentation
from .losses import LOSSES
from .optimisers import OPTIMISERS
from .sampling import SAMPLERS
from .validation import EARLY_STOPPING_MODES

__all__ = ["TrainingSection", "augmentation", "ignored_options", "training_settings", "unsupported_options"]


def _loss_type(value) -> str:
    text = to_str(value)
    if text not in LOSSES:
        raise _Invalid("not a NiftyNet segmentation loss", tuple(LOSSES))
    return text


@dataclass(frozen=True)
class TrainingSection(_Section):
    """``[TRAINING]``, every key NiftyNet 0.6.0 knows, NiftyNet's defaults."""

    SECTION = "TRAINING"
    optimiser: str = _spec("adam", choice(*OPTIMISERS, parse=lambda v: to_str(v).lower()))
    sample_per_volume: int = _spec(1, _check(to_int, lambda v: v >= 1, "must be at least 1"))
    rotation_angle: tuple[float, ...] = _spec((), to_float_tuple)
    rotation_angle_x: tuple[float, ...] = _spec((), to_float_tuple)
    rotation_angle_y: tuple[float, ...] = _spec((), to_float_tuple)
    rotation_angle_z: tuple[float, ...] = _spec((), to_float_tuple)
    scaling_percentage: tuple[float, ...] = _spec((), to_float_tuple)
    isotropic_scaling: bool = _spec(False, to_bool)
    antialiasing: bool = _spec(True, to_bool)
    bias_field_range: tuple[float, ...] = _spec((), to_float_tuple)
    bf_order: int = _spec(3, to_int)
    random_flipping_axes: tuple[int, ...] = _spec((-1,), to_int_tuple)
    do_elastic_deformation: bool = _spec(False, to_bool)
    num_ctrl_points: int = _spec(4, to_int)
    deformation_sigma: float = _spec(15.0, to_float)
    proportion_to_deform: float = _spec(0.5, to_float)
    lr: float = _spec(0.01, _check(to_float, lambda v: v > 0, "must be positive"))
    loss_type: str = _spec("Dice", _loss_type)
    starting_iter: int = _spec(0, _check(to_int, lambda v: v >= -1, "0 (random init), -1 (latest) or N"))
    save_every_n: int = _spec(500, to_int)
    tensorboard_every_n: int = _spec(20, to_int)
    max_iter: int = _spec(10000, to_int)
    max_checkpoints: int = _spec(100, to_int)
    validation_every_n: int = _spec(-1, to_int)
    validation_max_iter: int = _spec(1, to_int)
    exclude_fraction_for_validation: float = _spec(0.0, to_float)
    exclude_fraction_for_inference: float = _spec(0.0, to_float)
    vars_to_restore: str = _spec("", to_str)
    vars_to_freeze: str = _spec("", to_str)
    patience: int = _spec(100, _check(to_int, lambda v: v >= 1, "must be at least 1"))
    early_stopping_mode: str = _spec("mean", choice(*EARLY_STOPPING_MODES))


def augmentation(section: TrainingSection) -> Augmentation:
    """The augmentation the section asks for (NiftyNet 0.6.0's flip, scaling, rotation)."""
    return Augmentation(flip_axes=tuple(section.random_flipping_axes),
                        scaling_percentage=tuple(section.scaling_percentage),
                        isotropic_scaling=section.isotropic_scaling, antialiasing=section.antialiasing,
                        rotation_angle=tuple(section.rotation_angle), rotation_angle_x=tuple(section.rotation_angle_x),
                        rotation_angle_y=tuple(section.rotation_angle_y),
                        rotation_angle_z=tuple(section.rotation_angle_z))


def _range_problems(section: TrainingSection) -> list[str]:
    problems = []
    for key in ("rotation_angle", "rotation_angle_x", "rotation_angle_y", "rotation_angle_z", "scaling_percentage"):
        value = getattr(section, key)
        if value and (len(value) != 2 or not value[0] <= value[1] or (key != "scaling_percentage"
                                                                       and value[0] == value[1])):
            problems.append(_message("TRAINING", key, value, "needs (min, max), min below max"))
    if section.random_flipping_axes != (-1,) and any(a not in (0, 1, 2) for a in section.random_flipping_axes):
        problems.append(_message("TRAINING", "random_flipping_axes", section.random_flipping_axes,
                                 "spatial axes 0, 1, 2 (or -1 for none)"))
    for key in ("exclude_fraction_for_validation", "exclude_fraction_for_inference"):
        if not 0.0 <= getattr(section, key) < 1.0:
            problems.append(_message("TRAINING", key, getattr(section, key), "a fraction in [0, 1)"))
    return problems


def unsupported_options(section: TrainingSection, config: Config) -> list[str]:
    """One message per option set to something niftyport does not do (or to a value it cannot use)."""
    problems = _range_problems(section)
    if section.do_elastic_deformation:
        problems.append(_message("TRAINING", "do_elastic_deformation", True,
                                 "elastic deformation (SimpleITK's B-spline transform in NiftyNet) is not "
                                 "supported"))
    if config.network.decay > 0 and config.network.reg_type.lower() not in ("l1", "l2"):
        problems.append(_message("NETWORK", "reg_type", config.network.reg_type,
                                 "NiftyNet regularises with L1 or L2 only"))
    if config.network.window_sampling not in SAMPLERS:
        problems.append(_message("NETWORK", "window_sampling", config.network.window_sampling,
                                 f"training supports the {', '.join(SAMPLERS)} samplers"))
    if len(config.segmentation.image) > 1:
        problems.append(_message("SEGMENTATION", "image", ", ".join(config.segmentation.image),
                                 "training takes one image modality (several are not supported)"))
    if config.segmentation.label_normalisation:
        problems.append(_message("SEGMENTATION", "label_normalisation", True, "is not supported yet"))
    if config.segmentation.do_mixup:
        problems.append(_message("SEGMENTATION", "do_mixup", True, "is not supported yet"))
    if config.network.keep_prob != 1.0:
        problems.append(_message("NETWORK", "keep_prob", config.network.keep_prob,
                                 "dropout in training is not supported yet (use 1.0)"))
    return problems


def ignored_options(section: TrainingSection) -> list[str]:
    """Notices for keys NiftyNet 0.6.0's segmentation application accepts and never uses."""
    if section.bias_field_range:
        return [_message("TRAINING", "bias_field_range", section.bias_field_range,
                         "ignored, as NiftyNet 0.6.0's segmentation application ignores it")]
    return []


def training_settings(config: Config) -> TrainingSection:
    """The ``[TRAINING]`` section of ``config``, checked; :class:`TrainingError` for what cannot run yet."""
    source = config.source or "<config>"
    known = {f.name for f in fields(TrainingSection)}
    unknown = sorted(set(config.training) - known)
    if unknown:
        raise ConfigError(f"{source}: [TRAINING] {unknown[0]}: unknown key")
    try:
        section = TrainingSection(**dict(config.training))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    problems = unsupported_options(section, config)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TrainingError(f"{source}: {problems[0]}{more}")
    if not config.segmentation.label:
        raise TrainingError(f"{source}: [SEGMENTATION] label: training needs a label section")
    return section
