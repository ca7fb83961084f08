"""NiftyNet ``.ini`` configurations as frozen, validated dataclasses.

A NiftyNet inference config has the sections ``[SYSTEM]``, ``[NETWORK]``,
``[INFERENCE]``, ``[SEGMENTATION]`` and one section per input modality
(named by ``[SEGMENTATION] image = Modality0``); ``[TRAINING]`` and
``[EVALUATION]`` may be present and are checked but unused. Keys keep
NiftyNet's names, and a missing key takes NiftyNet's default
(``niftynet/utilities/user_parameters_default.py``,
``user_parameters_custom.py``), parsed with NiftyNet's value types:
booleans ``yes/no/true/false/t/f/y/n/1/0``, tuples ``(1.0, 1.0, 1.0)``,
``(R, A, S)``, ``{...}`` or bare ``a, b``; ``spatial_window_size`` pads
with 1s to three values, ``border``/``volume_padding_size`` repeat the last
value.

Paths are resolved as NiftyNet's launcher does (``niftynet/__init__.py``,
``io/misc_io.py``: ``resolve_module_dir``, ``to_absolute_path``;
``utilities/filename_matching.py``):

* ``model_dir`` (default: ``model`` next to the config file): an existing
  folder relative to the working directory, else relative to the NiftyNet
  home folder (``~/niftynet``, or ``home`` in ``~/.niftynet/config.ini``,
  or the ``niftynet_home`` argument);
* ``histogram_ref_file``, ``save_seg_dir``, ``dataset_split_file``:
  relative to ``model_dir``;
* ``path_to_search``: each comma-separated folder relative to the working
  directory if it exists, else to the NiftyNet home folder.

Departures from NiftyNet, all stricter: a key is accepted only in its own
section (NiftyNet accepts any known key anywhere and ignores it); a section
that is neither a NiftyNet section nor an input named in ``[SEGMENTATION]``
is an error; ``model_dir`` is never imported as a Python module; only the
nibabel loader is supported; an image section named twice in
``[SEGMENTATION] image`` is an error. Several image modalities
(``image = T1, T2``) are the network's input channels in that order, each
section with its own ``axcodes``, ``pixdim``, ``interp_order``. Every problem raises
:class:`~niftyport.errors.ConfigError` naming the file, section, key and
value, with the closest valid key or value.
"""
from __future__ import annotations

import configparser
import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

# ----------------------------------------------------------------------------
# value parsers: each takes the ini string (or a Python value, for overrides)
# and returns the typed value, raising ValueError with a short reason.

TRUE_VALUES = ("yes", "true", "t", "y", "1")
FALSE_VALUES = ("no", "false", "f", "n", "0")


class _Invalid(ValueError):
    """A value that does not parse; ``choices`` feed the did-you-mean hint."""

    def __init__(self, reason: str, choices: Sequence[str] = ()):
        super().__init__(reason)
        self.choices = tuple(choices)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _split(text: str) -> tuple[str, ...]:
    """``"(a, b)"``, ``"{a, b}"``, ``"a, b"`` -> ``("a", "b")``; ``""``/``"()"`` -> ``()``."""
    text = text.strip()
    if text[:1] + text[-1:] in ("()", "{}"):
        text = text[1:-1].strip()
    if not text:
        return ()
    items = tuple(item.strip() for item in text.split(","))
    if any(not item for item in items):
        raise _Invalid("empty element in the list")
    return items


def _as_items(value: Any) -> tuple:
    if isinstance(value, str):
        return _split(value)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("a string is expected")
    return _unquote(value)


def to_optional_str(value: Any) -> str | None:
    return None if value is None else (to_str(value) or None)


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Invalid("an integer is expected")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _Invalid("an integer is expected") from None
    if hasattr(value, "__index__"):  # int, numpy integers
        return int(value)
    raise _Invalid("an integer is expected")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Invalid("a number is expected")
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise _Invalid("a number is expected") from None


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = _unquote(value).lower()
        if text in TRUE_VALUES:
            return True
        if text in FALSE_VALUES:
            return False
    raise _Invalid("a boolean is expected (yes/no, true/false, 1/0)", ("True", "False"))


def to_int_tuple(value: Any) -> tuple[int, ...]:
    return tuple(to_int(v) for v in _as_items(value))


def to_float_tuple(value: Any) -> tuple[float, ...]:
    return tuple(to_float(v) for v in _as_items(value))


def to_str_tuple(value: Any) -> tuple[str, ...]:
    return tuple(to_str(v) if isinstance(v, str) else str(v) for v in _as_items(value))


def to_spatial3(value: Any) -> tuple[int, int, int]:
    """NiftyNet's ``spatialnumarray``: three ints, the last repeated; empty -> (0, 0, 0)."""
    values = to_int_tuple(value) or (0,)
    while len(values) < 3:
        values = values + (values[-1],)
    return values[:3]  # type: ignore[return-value]


def to_window(value: Any) -> tuple[int, ...]:
    """NiftyNet's ``spatial_atleast3d``: padded with 1s to three values; empty stays ().

    A Python ``int`` (an override, not ini text) means a cube: ``64`` -> ``(64, 64, 64)``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * 3
    values = to_int_tuple(value)
    if not values:
        return ()
    if len(values) < 3:
        values = values + (1,) * (3 - len(values))
    return values


def to_pad_to(value: Any) -> tuple[int, ...]:
    """``volume_padding_to_size``: default ``(0,)`` (off); a value is a spatialnumarray.

    NiftyNet quirk kept: an ini value ``0`` becomes ``(0, 0, 0)``, which is
    *not* "off": padding then targets size 0 (no padding at all) and
    ``volume_padding_size`` is ignored.
    """
    if isinstance(value, str):
        return to_spatial3(value)
    values = to_int_tuple(value)
    return (0,) if values == (0,) else to_spatial3(values)


def choice(*options: str, parse: Callable[[Any], Any] = to_str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        parsed = parse(value)
        if parsed not in options:
            raise _Invalid(f"must be one of {', '.join(map(str, options))}", options)
        return parsed
    return convert


def _check(parse: Callable[[Any], Any], test: Callable[[Any], bool], reason: str):
    def convert(value: Any) -> Any:
        parsed = parse(value)
        if not test(parsed):
            raise _Invalid(reason)
        return parsed
    return convert


def _axcodes(value: Any) -> tuple[str, ...]:
    codes = tuple(c.upper() for c in to_str_tuple(value))
    if not codes:
        return ()
    pairs = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
    if len(codes) != 3 or any(c not in pairs for c in codes) or len({pairs[c] for c in codes}) != 3:
        raise _Invalid("three axis codes naming each of L/R, P/A, I/S once, e.g. (R, A, S)",
                       ("(R, A, S)",))
    return codes


def _positive(values: tuple) -> bool:
    return all(v > 0 for v in values)


def _nonnegative(values: tuple) -> bool:
    return all(v >= 0 for v in values)


INTERP_ORDERS = ("0", "1", "2", "3")
FOREGROUND_TYPES = ("otsu_plus", "otsu_minus", "threshold_plus", "threshold_minus", "mean_plus")
MULTIMOD_FOREGROUND_TYPES = ("and", "or", "multi")
NORM_TYPES = ("percentile", "quartile", "median")
PAD_MODES = ("constant", "edge", "linear_ramp", "maximum", "mean", "median", "minimum",
             "reflect", "symmetric", "wrap")
ACTIVATIONS = ("relu", "relu6", "elu", "softplus", "softsign", "sigmoid", "tanh", "prelu",
               "selu", "leakyrelu", "dropout")
PHASES = ("", "training", "validation", "inference")
#: the input keywords of NiftyNet's segmentation application
INPUT_NAMES = ("image", "label", "weight", "sampler", "inferred", "value")


def _interp_order(value: Any) -> int:
    order = to_int(value)
    if order not in (0, 1, 2, 3):
        raise _Invalid("must be one of 0, 1, 2, 3", INTERP_ORDERS)
    return order


def _spec(default: Any, parse: Callable[[Any], Any], **kw) -> Any:
    """A dataclass field with NiftyNet's default and its parser in the metadata."""
    if isinstance(default, (dict, list)):
        raise TypeError("mutable default")
    return field(default=default, metadata={"parse": parse}, **kw)


class _Section:
    """Mixin: parse/validate every field on creation (also after ``dataclasses.replace``)."""

    SECTION = ""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            parse = f.metadata.get("parse")
            if parse is None:
                continue
            raw = getattr(self, f.name)
            try:
                value = parse(raw)
            except _Invalid as exc:
                raise ConfigError(_message(self.section_name, f.name, raw, str(exc), exc.choices)) from None
            object.__setattr__(self, f.name, value)

    @property
    def section_name(self) -> str:
        return self.SECTION

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if "parse" in f.metadata)  # type: ignore[arg-type]


def _message(section: str, key: str, value: Any, reason: str, choices: Sequence[str] = ()) -> str:
    text = f"[{section}] {key} = {value!r}: {reason}"
    if choices and isinstance(value, str):
        close = difflib.get_close_matches(_unquote(value), list(choices), n=1, cutoff=0.0)
        if close:
            text += f"; did you mean {close[0]!r}?"
    return text


@dataclass(frozen=True)
class InputSection(_Section):
    """One input modality, e.g. ``[Modality0]``; ``name`` is the section name.

    ``path_to_search``: resolved absolute folders (NiftyNet keeps the
    comma-separated string). ``pixdim`` (mm) and ``axcodes`` empty mean:
    keep the image's own.
    """

    name: str = "Modality0"
    csv_file: str = _spec("", to_str)
    csv_data_file: str = _spec("", to_str)
    to_ohe: bool = _spec(False, to_bool)
    path_to_search: tuple[str, ...] = _spec((), to_str_tuple)
    filename_contains: tuple[str, ...] = _spec((), to_str_tuple)
    filename_not_contains: tuple[str, ...] = _spec((), to_str_tuple)
    filename_removefromid: str = _spec("", to_str)
    interp_order: int = _spec(1, _interp_order)
    loader: str | None = _spec(None, _check(to_optional_str, lambda v: v in (None, "nibabel"),
                                            "niftyport reads images with nibabel only"))
    pixdim: tuple[float, ...] = _spec((), _check(
        to_float_tuple, lambda v: v == () or (len(v) == 3 and _positive(v)),
        "three positive voxel sizes in mm, e.g. (1.0, 1.0, 1.0), or empty"))
    axcodes: tuple[str, ...] = _spec((), _axcodes)
    spatial_window_size: tuple[int, ...] = _spec((), _check(
        to_window, _positive, "positive window sizes in voxels"))

    @property
    def section_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class SystemSection(_Section):
    """``[SYSTEM]``. ``model_dir`` is an absolute folder after :func:`load_config`."""

    SECTION = "SYSTEM"
    cuda_devices: str = _spec("", to_str)
    num_threads: int = _spec(2, _check(to_int, lambda v: v >= 1, "must be at least 1"))
    num_gpus: int = _spec(1, _check(to_int, lambda v: v >= 0, "must be at least 0"))
    model_dir: str | None = _spec(None, to_optional_str)
    dataset_split_file: str = _spec(os.path.join(".", "dataset_split.csv"), to_str)
    event_handler: tuple[str, ...] = _spec(
        ("model_saver", "model_restorer", "sampler_threading", "apply_gradients",
         "output_interpreter", "console_logger", "tensorboard_logger", "performance_logger"),
        to_str_tuple)
    iteration_generator: str = _spec("iteration_generator", to_str)


@dataclass(frozen=True)
class NetworkSection(_Section):
    """``[NETWORK]``: the network and the volume-level preprocessing."""

    SECTION = "NETWORK"
    name: str | None = _spec(None, to_optional_str)
    activation_function: str = _spec("relu", choice(*ACTIVATIONS))
    batch_size: int = _spec(2, _check(to_int, lambda v: v >= 1, "must be at least 1"))
    smaller_final_batch_mode: str = _spec("pad", choice("drop", "pad", "dynamic"))
    decay: float = _spec(0.0, to_float)
    reg_type: str = _spec("L2", to_str)
    volume_padding_size: tuple[int, int, int] = _spec(
        (0, 0, 0), _check(to_spatial3, _nonnegative, "padding must be non-negative"))
    volume_padding_mode: str = _spec("minimum", choice(*PAD_MODES))
    volume_padding_to_size: tuple[int, ...] = _spec(
        (0,), _check(to_pad_to, _nonnegative, "sizes must be non-negative"))
    window_sampling: str = _spec("uniform", choice("uniform", "resize", "balanced", "weighted", "patch"))
    force_output_identity_resizing: bool = _spec(False, to_bool)
    queue_length: int = _spec(5, _check(to_int, lambda v: v >= 1, "must be at least 1"))
    multimod_foreground_type: str = _spec("and", choice(*MULTIMOD_FOREGROUND_TYPES))
    histogram_ref_file: str = _spec(os.path.join(".", "histogram_ref_file.txt"), to_str)
    norm_type: str = _spec("percentile", choice(*NORM_TYPES))
    cutoff: tuple[float, float] = _spec((0.01, 0.99), _check(
        to_float_tuple, lambda v: len(v) == 2 and all(0.0 <= c <= 1.0 for c in v),
        "two fractions between 0 and 1, e.g. (0.001, 0.999)"))
    foreground_type: str = _spec("otsu_plus", choice(*FOREGROUND_TYPES))
    normalisation: bool = _spec(False, to_bool)
    rgb_normalisation: bool = _spec(False, _check(to_bool, lambda v: not v,
                                                  "RGB normalisation is not supported"))
    whitening: bool = _spec(False, to_bool)
    normalise_foreground_only: bool = _spec(False, to_bool)
    weight_initializer: str = _spec("he_normal", to_str)
    bias_initializer: str = _spec("zeros", to_str)
    keep_prob: float = _spec(1.0, _check(to_float, lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"))
    weight_initializer_args: str = _spec("", to_str)
    bias_initializer_args: str = _spec("", to_str)


@dataclass(frozen=True)
class InferenceSection(_Section):
    """``[INFERENCE]``. ``save_seg_dir`` is absolute after :func:`load_config`."""

    SECTION = "INFERENCE"
    spatial_window_size: tuple[int, ...] = _spec((), _check(
        to_window, _positive, "positive window sizes in voxels, e.g. (128, 128, 128)"))
    inference_iter: int = _spec(-1, to_int)
    dataset_to_infer: str = _spec("", choice(*PHASES))
    save_seg_dir: str = _spec(os.path.join(".", "output"), to_str)
    output_postfix: str = _spec("_niftynet_out", to_str)
    output_interp_order: int = _spec(0, _interp_order)
    border: tuple[int, int, int] = _spec((0, 0, 0), _check(
        to_spatial3, _nonnegative, "border must be non-negative"))
    fill_constant: float = _spec(0.0, to_float)


@dataclass(frozen=True)
class SegmentationSection(_Section):
    """``[SEGMENTATION]``: the task; ``image`` names the input section(s)."""

    SECTION = "SEGMENTATION"
    num_classes: int = _spec(-1, to_int)
    output_prob: bool = _spec(False, to_bool)
    label_normalisation: bool = _spec(False, to_bool)
    softmax: bool = _spec(True, to_bool)
    min_sampling_ratio: float = _spec(0.0, to_float)
    compulsory_labels: tuple[int, ...] = _spec((0, 1), to_int_tuple)
    rand_samples: int = _spec(0, to_int)
    min_numb_labels: int = _spec(1, to_int)
    proba_connect: bool = _spec(True, to_bool)
    evaluation_units: str = _spec("foreground", choice("foreground", "label", "cc"))
    do_mixup: bool = _spec(False, to_bool)
    mixup_alpha: float = _spec(0.2, to_float)
    mix_match: bool = _spec(False, to_bool)
    image: tuple[str, ...] = _spec((), to_str_tuple)
    label: tuple[str, ...] = _spec((), to_str_tuple)
    weight: tuple[str, ...] = _spec((), to_str_tuple)
    sampler: tuple[str, ...] = _spec((), to_str_tuple)
    inferred: tuple[str, ...] = _spec((), to_str_tuple)
    value: tuple[str, ...] = _spec((), to_str_tuple)


#: Keys of the sections niftyport checks but does not use.
TRAINING_KEYS = (
    "optimiser", "sample_per_volume", "rotation_angle", "rotation_angle_x", "rotation_angle_y",
    "rotation_angle_z", "scaling_percentage", "isotropic_scaling", "antialiasing",
    "bias_field_range", "bf_order", "random_flipping_axes", "do_elastic_deformation",
    "num_ctrl_points", "deformation_sigma", "proportion_to_deform", "lr", "loss_type",
    "starting_iter", "save_every_n", "tensorboard_every_n", "max_iter", "max_checkpoints",
    "validation_every_n", "validation_max_iter", "exclude_fraction_for_validation",
    "exclude_fraction_for_inference", "vars_to_restore", "vars_to_freeze", "patience",
    "early_stopping_mode")
EVALUATION_KEYS = ("evaluations", "save_csv_dir")

_SECTIONS: dict[str, type[_Section]] = {
    "SYSTEM": SystemSection,
    "NETWORK": NetworkSection,
    "INFERENCE": InferenceSection,
    "SEGMENTATION": SegmentationSection,
}
_UNUSED_SECTIONS = {"TRAINING": TRAINING_KEYS, "EVALUATION": EVALUATION_KEYS}


def _check_image_names(images: Sequence[str]) -> None:
    """At least one image modality, each named once (NiftyNet would stack a repeated one twice)."""
    if not images:
        raise ConfigError(_message("SEGMENTATION", "image", "", "names no input section"))
    repeated = sorted({name for name in images if images.count(name) > 1})
    if repeated:
        raise ConfigError(_message("SEGMENTATION", "image", ", ".join(images),
                                   f"names [{repeated[0]}] more than once"))


@dataclass(frozen=True)
class Config:
    """A parsed NiftyNet segmentation config (frozen; use :meth:`replace` to change it).

    ``inputs``: the input sections by name; :attr:`images` are the image
    modalities in ``[SEGMENTATION] image`` order (the network's input
    channels), :attr:`image` the first of them (NiftyNet writes outputs with
    its geometry). ``training``/``evaluation``: raw
    strings of those sections. ``source``: the ``.ini`` path, or ``None``
    for the built-in model-zoo config. ``niftynet_home``: the folder used
    to resolve relative paths.
    """

    system: SystemSection = field(default_factory=SystemSection)
    network: NetworkSection = field(default_factory=NetworkSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    segmentation: SegmentationSection = field(default_factory=SegmentationSection)
    inputs: Mapping[str, InputSection] = field(default_factory=lambda: MappingProxyType({}))
    training: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    evaluation: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    source: str | None = None
    niftynet_home: str = ""

    def __post_init__(self) -> None:
        for name in ("inputs", "training", "evaluation"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        images = self.segmentation.image
        _check_image_names(images)
        for image in images:
            if image not in self.inputs:
                raise ConfigError(_message("SEGMENTATION", "image", image,
                                           "no such input section", tuple(self.inputs)))
        if self.segmentation.num_classes < 2:
            raise ConfigError(_message("SEGMENTATION", "num_classes", self.segmentation.num_classes,
                                       "must be at least 2"))

    @property
    def modality(self) -> str:
        """Name of the (first) image input section, e.g. ``'Modality0'``."""
        return self.segmentation.image[0]

    @property
    def image(self) -> InputSection:
        """The (first) image input section (pixdim, axcodes, interp_order ...)."""
        return self.inputs[self.modality]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Names of the image input sections, in ``[SEGMENTATION] image`` order (the channels' order)."""
        return tuple(self.segmentation.image)

    @property
    def images(self) -> tuple[InputSection, ...]:
        """The image input sections, one per modality, in :attr:`modalities` order."""
        return tuple(self.inputs[name] for name in self.modalities)

    @property
    def section_window(self) -> tuple[int, ...]:
        """The window of the image sections: NiftyNet takes the *last* modality's
        (``engine/image_window.py``, ``_read_window_sizes``); the resize sampler uses it."""
        return self.images[-1].spatial_window_size

    @property
    def spatial_window_size(self) -> tuple[int, ...]:
        """The grid sampler's window: ``[INFERENCE]``'s if set, else :attr:`section_window` (as NiftyNet)."""
        return self.inference.spatial_window_size or self.section_window

    def replace(self, **overrides: Any) -> "Config":
        """A copy with some values changed, validated like the file's.

        Keywords are either a section (``system``, ``network``, ``inference``,
        ``segmentation``, ``image``) with a dict of keys, or a single key,
        looked up in ``[SYSTEM]``, ``[NETWORK]``, ``[INFERENCE]`` and
        ``[SEGMENTATION]`` (like NiftyNet's command-line overrides), then in
        the image section. Values may be ini strings (``"(64, 64, 64)"``)
        or Python values (``(64, 64, 64)``). Path keys given here are
        resolved like the file's (``histogram_ref_file`` against
        ``model_dir``...).

        >>> cfg = default_config(niftynet_home="/nonexistent")
        >>> cfg.replace(spatial_window_size=64, border=2, batch_size="4").inference.border
        (2, 2, 2)
        """
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if key in ("system", "network", "inference", "segmentation", "image"):
                if not isinstance(value, Mapping):
                    raise ConfigError(f"override {key}={value!r}: a dict of keys is expected")
                grouped.setdefault(key, {}).update(value)
                continue
            grouped.setdefault(_override_section(key), {})[key] = value
        cfg = self
        for section, values in grouped.items():
            cfg = _replace_section(cfg, section, values)
        return cfg


_ATTR = {"SYSTEM": "system", "NETWORK": "network", "INFERENCE": "inference",
         "SEGMENTATION": "segmentation"}


def _override_section(key: str) -> str:
    for section, cls in _SECTIONS.items():
        if key in cls.keys():
            return _ATTR[section]
    if key in InputSection.keys():
        return "image"
    every = sorted({k for cls in (*_SECTIONS.values(), InputSection) for k in cls.keys()})
    close = difflib.get_close_matches(key, every, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"override {key!r}: unknown key{hint}")


def _replace_section(cfg: Config, attr: str, values: dict[str, Any]) -> Config:
    current = cfg.image if attr == "image" else getattr(cfg, attr)
    valid = type(current).keys()
    for key in values:
        if key not in valid:
            raise ConfigError(_unknown_key(current.section_name, key, valid))
    try:
        section = dataclasses.replace(current, **values)
    except ConfigError as exc:
        raise ConfigError(f"override: {exc}") from None
    home = cfg.niftynet_home
    if attr == "system" and "model_dir" in values:
        section = dataclasses.replace(section, model_dir=_resolve_model_dir(section.model_dir, None, home))
    if attr == "network" and "histogram_ref_file" in values:
        section = dataclasses.replace(section, histogram_ref_file=_under_model_dir(
            section.histogram_ref_file, cfg.system.model_dir))
    if attr == "inference" and "save_seg_dir" in values:
        section = dataclasses.replace(section, save_seg_dir=_under_model_dir(
            section.save_seg_dir, cfg.system.model_dir))
    if attr == "image":
        if "path_to_search" in values:
            section = dataclasses.replace(section, path_to_search=_resolve_search_paths(
                section.path_to_search, home))
        inputs = dict(cfg.inputs)
        inputs[section.name] = section
        return dataclasses.replace(cfg, inputs=inputs)
    return dataclasses.replace(cfg, **{attr: section})


def _unknown_key(section: str, key: str, valid: Sequence[str]) -> str:
    elsewhere = [f"[{name}]" for name, cls in _SECTIONS.items() if key in cls.keys()]
    if key in InputSection.keys():
        elsewhere.append("an input section such as [Modality0]")
    elsewhere += [f"[{name}]" for name, keys in _UNUSED_SECTIONS.items() if key in keys]
    elsewhere = [e for e in elsewhere if e != f"[{section}]"]
    if elsewhere:
        return f"[{section}] {key}: unknown key here; it belongs in {elsewhere[0]}"
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.0)
    return f"[{section}] {key}: unknown key" + (f"; did you mean {close[0]!r}?" if close else "")


# ----------------------------------------------------------------------------
# paths


def default_niftynet_home() -> Path:
    """NiftyNet's home folder: ``home`` of ``[global]`` in ``<config home>/config.ini``.

    The config home is ``$niftynet_config_home`` or ``~/.niftynet``; without
    that file, ``~/niftynet`` (NiftyNet's default). Nothing is created.
    """
    config_home = os.environ.get("niftynet_config_home") or os.path.join("~", ".niftynet")
    ini = Path(os.path.expanduser(config_home)) / "config.ini"
    home = os.path.join("~", "niftynet")
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini, encoding="utf-8")
            home = parser.get("global", "home", fallback=home)
        except configparser.Error:
            pass
    return Path(os.path.expanduser(home))


def _resolve_model_dir(model_dir: str | None, config_path: Path | None, home: str) -> str:
    if not model_dir:
        base = config_path.parent if config_path is not None else Path(".")
        return os.path.abspath(base / "model")
    path = os.path.expanduser(model_dir)
    if os.path.isdir(path):
        return os.path.abspath(path)
    if os.path.isfile(path):
        return os.path.abspath(os.path.dirname(path))
    return os.path.abspath(os.path.join(home, path))


def _under_model_dir(path: str, model_dir: str | None) -> str:
    path = os.path.expanduser(path)
    if not path or os.path.isabs(path):
        return path
    return os.path.abspath(os.path.join(model_dir or ".", path))


def _resolve_search_paths(paths: Sequence[str], home: str) -> tuple[str, ...]:
    resolved = []
    for item in paths:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            here = os.path.abspath(os.path.expanduser(part))
            resolved.append(here if os.path.exists(here) else os.path.abspath(os.path.join(home, part)))
    return tuple(resolved)


def _resolve_csv(csv_file: str, config_path: Path | None, home: str) -> str:
    if not csv_file:
        return ""
    for base in ("", str(config_path.parent) if config_path else None, home):
        if base is None:
            continue
        candidate = os.path.join(base, csv_file) if base else csv_file
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return ""


# ----------------------------------------------------------------------------
# parsing


def _standard_section_name(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_\- ]+", "", name.strip())


def _read_ini(text: str, source: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: not a valid .ini file ({' '.join(str(exc).split())})") from None
    sections: dict[str, dict[str, str]] = {}
    for name in parser.sections():
        sections[_standard_section_name(name)] = dict(parser.items(name))
    return sections


def _build(sections: dict[str, dict[str, str]], *, source: str, config_path: Path | None,
           home: str, histogram_ref_file: str | None = None) -> Config:
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}")

    try:
        if "SEGMENTATION" not in sections:
            close = difflib.get_close_matches("SEGMENTATION", list(sections), n=1, cutoff=0.6)
            hint = f" (is [{close[0]}] meant to be [SEGMENTATION]?)" if close else ""
            raise ConfigError(f"[SEGMENTATION] section missing{hint}")
        parsed: dict[str, Any] = {}
        for name, cls in _SECTIONS.items():
            values = sections.get(name, {})
            for key in values:
                if key not in cls.keys():
                    raise ConfigError(_unknown_key(name, key, cls.keys()))
            parsed[_ATTR[name]] = cls(**values)
        segmentation: SegmentationSection = parsed["segmentation"]
        images = segmentation.image
        _check_image_names(images)
        for image in images:
            if image not in sections:
                others = [n for n in sections if n not in _SECTIONS and n not in _UNUSED_SECTIONS]
                raise ConfigError(_message("SEGMENTATION", "image", image, "no such input section", others))
        named = {n for key in INPUT_NAMES for n in getattr(segmentation, key)}
        inputs: dict[str, InputSection] = {}
        unused: dict[str, dict[str, str]] = {}
        for name, values in sections.items():
            if name in _SECTIONS:
                continue
            if name in _UNUSED_SECTIONS:
                for key in values:
                    if key not in _UNUSED_SECTIONS[name]:
                        raise ConfigError(_unknown_key(name, key, _UNUSED_SECTIONS[name]))
                unused[name] = values
                continue
            if name not in named:
                known = [*_SECTIONS, *_UNUSED_SECTIONS, *sorted(named)]
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
                raise ConfigError(f"[{name}]: unknown section (not a NiftyNet section nor an input "
                                  "named in [SEGMENTATION] image/label/...)"
                                  + (f"; did you mean [{close[0]}]?" if close else ""))
            for key in values:
                if key not in InputSection.keys():
                    raise ConfigError(_unknown_key(name, key, InputSection.keys()))
            section = InputSection(name=name, **values)
            inputs[name] = dataclasses.replace(
                section,
                path_to_search=_resolve_search_paths(section.path_to_search, home),
                csv_file=_resolve_csv(section.csv_file, config_path, home))
        system: SystemSection = parsed["system"]
        model_dir = _resolve_model_dir(system.model_dir, config_path, home)
        parsed["system"] = dataclasses.replace(
            system, model_dir=model_dir,
            dataset_split_file=_under_model_dir(system.dataset_split_file, model_dir))
        network: NetworkSection = parsed["network"]
        hist = histogram_ref_file or _under_model_dir(network.histogram_ref_file, model_dir)
        parsed["network"] = dataclasses.replace(network, histogram_ref_file=hist)
        inference: InferenceSection = parsed["inference"]
        parsed["inference"] = dataclasses.replace(
            inference, save_seg_dir=_under_model_dir(inference.save_seg_dir, model_dir))
        return Config(inputs=inputs, training=unused.get("TRAINING", {}),
                      evaluation=unused.get("EVALUATION", {}), source=source if config_path else None,
                      niftynet_home=home, **parsed)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def load_config(path: str | os.PathLike, *, niftynet_home: str | os.PathLike | None = None) -> Config:
    """Parse and validate a NiftyNet ``.ini`` file.

    ``niftynet_home``: the folder relative ``model_dir`` and
    ``path_to_search`` resolve against (default: NiftyNet's,
    :func:`default_niftynet_home`). Raises :class:`ConfigError` naming the
    file, section, key and value of the first problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    home = str(Path(niftynet_home).expanduser()) if niftynet_home is not None else str(default_niftynet_home())
    return _build(_read_ini(text, str(path)), source=str(path), config_path=path.resolve(), home=home)


#: The model-zoo entry ``highres3dnet_brain_parcellation``'s inference settings
#: (its ``highres3dnet_config_eval.ini``), used when no ``.ini`` is given.
MODEL_ZOO_SETTINGS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "Modality0": {"path_to_search": "data/OASIS/", "filename_contains": "nii", "interp_order": "0",
                  "pixdim": "(1.0, 1.0, 1.0)", "axcodes": "(R, A, S)",
                  "spatial_window_size": "(96, 96, 96)"},
    "SYSTEM": {"cuda_devices": '""', "num_threads": "2", "num_gpus": "1",
               "model_dir": "models/highres3dnet_brain_parcellation"},
    "NETWORK": {"name": "highres3dnet", "activation_function": "relu", "batch_size": "1",
                "volume_padding_size": "10", "volume_padding_mode": "minimum",
                "window_sampling": "uniform", "queue_length": "5",
                "multimod_foreground_type": "and",
                "histogram_ref_file": "databrain_std_hist_models_otsu.txt",
                "norm_type": "percentile", "cutoff": "(0.001, 0.999)",
                "foreground_type": "mean_plus", "normalisation": "True", "whitening": "True",
                "normalise_foreground_only": "True", "keep_prob": "1.0"},
    "INFERENCE": {"spatial_window_size": "(128, 128, 128)", "inference_iter": "33000",
                  "save_seg_dir": "./parcellation_output", "output_postfix": "_niftynet_out",
                  "output_interp_order": "0", "border": "2"},
    "SEGMENTATION": {"image": "Modality0", "num_classes": "160", "output_prob": "False",
                     "label_normalisation": "False", "softmax": "True"},
})

#: The model zoo's histogram landmarks file, shipped with niftyport.
PACKAGED_LANDMARKS = Path(__file__).resolve().parents[1] / "networks" / "highres3dnet" / "data" / \
    "databrain_std_hist_models_otsu.txt"


def default_config(*, niftynet_home: str | os.PathLike | None = None) -> Config:
    """The model-zoo config without any ``.ini``; landmarks from the packaged file.

    Equal to ``load_config`` of the model zoo's ``highres3dnet_config_eval.ini``
    except for ``source`` (``None``) and ``histogram_ref_file`` (the copy
    shipped in ``niftyport/networks/highres3dnet/data``).
    """
    home = str(Path(niftynet_home).expanduser()) if niftynet_home is not None else str(default_niftynet_home())
    sections = {name: dict(values) for name, values in MODEL_ZOO_SETTINGS.items()}
    return _build(sections, source="<built-in model-zoo config>", config_path=None, home=home,
                  histogram_ref_file=str(PACKAGED_LANDMARKS))
