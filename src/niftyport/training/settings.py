"""NiftyNet's ``[TRAINING]`` section: parsed with NiftyNet 0.6.0's defaults, and what niftyport trains with.

Defaults are ``add_training_args`` of ``niftynet/utilities/user_parameters_default.py``.
:func:`training_settings` reads the raw section a :class:`~niftyport.config.Config`
keeps (``config.training``) and refuses, with the key named, every option
whose value asks for something niftyport does not do yet (augmentation,
validation, early stopping, L2 regularisation), rather than ignoring it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import (Config, _check, _Invalid, _message, _Section, _spec, choice, to_bool, to_float,
                      to_float_tuple, to_int, to_int_tuple, to_str)
from ..errors import ConfigError, TrainingError
from .losses import LOSSES
from .optimisers import OPTIMISERS

__all__ = ["TrainingSection", "training_settings", "unsupported_options"]


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
    patience: int = _spec(100, to_int)
    early_stopping_mode: str = _spec("mean", to_str)


#: ``key: (the value that asks for nothing, what niftyport would need to do)``.
_NOT_YET = {
    "rotation_angle": ((), "random rotation"), "rotation_angle_x": ((), "random rotation"),
    "rotation_angle_y": ((), "random rotation"), "rotation_angle_z": ((), "random rotation"),
    "scaling_percentage": ((), "random scaling"), "bias_field_range": ((), "random bias fields"),
    "random_flipping_axes": ((-1,), "random flipping"), "do_elastic_deformation": (False, "elastic deformation"),
    "validation_every_n": (-1, "validation"), "exclude_fraction_for_validation": (0.0, "a validation split"),
}


def unsupported_options(section: TrainingSection, config: Config) -> list[str]:
    """One message per option set to something niftyport does not do yet."""
    problems = [_message("TRAINING", key, getattr(section, key), f"{what} is not supported yet")
                for key, (neutral, what) in _NOT_YET.items() if getattr(section, key) != neutral]
    if section.validation_every_n == 0:
        problems = [p for p in problems if not p.startswith("[TRAINING] validation_every_n")]
    if config.network.decay > 0:
        problems.append(_message("NETWORK", "decay", config.network.decay,
                                 "L2 regularisation is not supported yet (use 0)"))
    if config.network.window_sampling != "uniform":
        problems.append(_message("NETWORK", "window_sampling", config.network.window_sampling,
                                 "only the uniform sampler is supported yet"))
    if config.segmentation.label_normalisation:
        problems.append(_message("SEGMENTATION", "label_normalisation", True, "is not supported yet"))
    if config.segmentation.do_mixup:
        problems.append(_message("SEGMENTATION", "do_mixup", True, "is not supported yet"))
    if config.network.keep_prob != 1.0:
        problems.append(_message("NETWORK", "keep_prob", config.network.keep_prob,
                                 "dropout in training is not supported yet (use 1.0)"))
    return problems


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
