"""NiftyNet's networks in PyTorch: a registry, TF-exact layers, one home per network.

Every network lives in its own sub-package ``niftyport.networks.<name>``
whose ``__init__`` defines ``SPEC``, a :class:`NetworkSpec` (torch-free: its
name rules, size constraints, NiftyNet source, hyper-parameters), and whose
``module`` submodule holds the ``torch.nn.Module``. The registry finds them
by listing this package, so adding a network touches no generic code, and
generic code (conversion, the pipeline, the CLI) asks the registry::

    >>> from niftyport import networks
    >>> spec = networks.get("highres3dnet")
    >>> spec.niftynet_class
    'niftynet.network.highres3dnet.HighRes3DNet'
    >>> networks.get("HighRes3DNet") is spec     # names are case-insensitive
    True

Modules take and return torch's layout ``(N, C, X, Y, Z)`` (2-D networks
``(N, C, X, Y)``); NiftyNet's tensors are ``(N, X, Y, Z, C)``. Dropout is
never active: a built module is in eval mode and reproduces
``net(x, is_training=False, keep_prob=1.0)``.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NetworkError

if TYPE_CHECKING:  # pragma: no cover
    import os

    import torch

    from ..mapping import RuleSet


#: NiftyNet's ``acti_func`` names (``niftynet/layer/activation.py``), ``dropout`` excepted
#: (the identity at inference).
ACTI_FUNCS = ("relu", "relu6", "elu", "softplus", "softsign", "sigmoid", "tanh", "prelu", "selu", "leakyrelu")


@dataclass(frozen=True)
class Pretrained:
    """Trained weights shipped in the package, with what a user must know about them.

    Attributes:
        entry: the NiftyNet model-zoo entry they come from.
        weights: the ``.safetensors`` file (niftyport's keys).
        sha256: its SHA-256, checked before use.
        labels: colour table (3D Slicer ``.ctbl``) naming the output classes, if any.
        provenance: a text file: sources, hashes, licences, the command that rebuilt the file.
        licence: one line for the command line.
        num_classes: the network's output classes with these weights.
    """

    entry: str
    weights: Path
    sha256: str
    labels: Path | None
    provenance: Path
    licence: str
    num_classes: int


@dataclass(frozen=True)
class NetworkSpec:
    """What generic code needs to know about one network, without importing torch.

    Attributes:
        name: registry key, NiftyNet's ``[NETWORK] name`` (lower case).
        niftynet_class: the class reproduced, e.g. ``"niftynet.network.toynet.ToyNet"``.
        module: ``"package.module:Class"`` of the ``torch.nn.Module``, imported on demand.
            Its constructor takes ``num_classes``, ``in_channels``, ``acti_func`` and the
            keyword options of :attr:`options`.
        rules: ``rules(scope, **kwargs) -> RuleSet`` mapping NiftyNet's variable names
            (under the name scope ``scope``) onto the module's keys, both ways.
        default_scope: NiftyNet's default name scope (the first component of its variables).
        spatial_dims: 3, or 2 for 2-D networks.
        options: hyper-parameters NiftyNet keeps as attributes (``n_features`` ...) with
            NiftyNet's defaults; a checkpoint of a narrowed network needs them set.
        check_input: ``check_input(spatial_shape)`` raises
            :class:`~niftyport.errors.InputShapeError` for sizes NiftyNet cannot take.
        output_shape: ``output_shape(spatial_shape) -> spatial_shape`` (default: the same).
        receptive_field_radius: voxels a output voxel sees on each side, when fixed.
        shapes: optional torch-free ``shapes(**kwargs) -> {key: shape}`` of the module's
            ``state_dict`` (else the module is built to know them).
        citation: the paper.
        notes: NiftyNet quirks a user should know, kept because they decide the outputs.
        status: what was verified, and how.
        default_num_classes: ``num_classes`` when the caller gives none.
        pretrained: weights shipped in the package, if any (:class:`Pretrained`).
        unregularised: ``re.search`` pattern of the trainable variables (NiftyNet's names)
            that NiftyNet's class creates without the ``w_regularizer`` / ``b_regularizer``
            it is given (so ``[NETWORK] decay`` does not reach them); ``""``: none, every
            trainable variable is regularised; ``None``: not known (training refuses ``decay > 0``).
    """

    name: str
    niftynet_class: str
    module: str
    rules: Callable[..., RuleSet]
    default_scope: str
    spatial_dims: int = 3
    options: Mapping[str, Any] = field(default_factory=dict)
    check_input: Callable[[Sequence[int]], None] | None = None
    output_shape: Callable[[Sequence[int]], tuple[int, ...]] | None = None
    receptive_field_radius: int | None = None
    shapes: Callable[..., dict[str, tuple[int, ...]]] | None = None
    citation: str = ""
    notes: tuple[str, ...] = ()
    status: str = ""
    default_num_classes: int | None = None
    pretrained: Pretrained | None = None
    unregularised: str | None = ""

    def module_class(self) -> type:
        """The ``torch.nn.Module`` subclass (imports torch)."""
        module_name, _, attr = self.module.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def validate_input(self, spatial_shape: Sequence[int]) -> None:
        """Raise :class:`~niftyport.errors.InputShapeError` unless NiftyNet can take this spatial shape."""
        from ..errors import InputShapeError

        if len(spatial_shape) != self.spatial_dims:
            raise InputShapeError(f"{self.name} takes {self.spatial_dims}-D inputs, got spatial shape "
                                  f"{tuple(spatial_shape)}")
        if self.check_input is not None:
            self.check_input(tuple(int(n) for n in spatial_shape))


@lru_cache(maxsize=None)
def _registry() -> dict[str, NetworkSpec]:
    specs = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPEC", None)
        if isinstance(spec, NetworkSpec):
            specs[spec.name] = spec
    return specs


def names() -> list[str]:
    """Registered network names, sorted."""
    return sorted(_registry())


def specs() -> list[NetworkSpec]:
    """Every registered :class:`NetworkSpec`, sorted by name."""
    return [_registry()[n] for n in names()]


def get(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` of ``name`` (case-insensitive), or :class:`~niftyport.errors.NetworkError`."""
    key = str(name).strip().lower()
    registry = _registry()
    if key in registry:
        return registry[key]
    close = difflib.get_close_matches(key, list(registry), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise NetworkError(f"unknown network {name!r}{hint} (known: {', '.join(names())})")


def build(name: str, *, num_classes: int | None = None, in_channels: int | None = None,
          acti_func: str | None = None, **options: Any) -> torch.nn.Module:
    """A freshly initialised network ``name`` in eval mode, from NiftyNet's constructor arguments.

    ``in_channels`` and ``acti_func`` default to the module's own defaults
    (1 and ``relu`` for most networks); ``options`` are the hyper-parameters of
    :attr:`NetworkSpec.options` (``n_features=[8, 16, 32, 64, 128]`` ...);
    unknown ones are an error.
    """
    spec = get(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(sorted(spec.options)) or "none"
        raise NetworkError(f"{spec.name} has no option {unknown[0]!r} (options: {known})")
    if num_classes is None:
        if spec.default_num_classes is None:
            raise NetworkError(f"{spec.name} needs num_classes")
        num_classes = spec.default_num_classes
    given = {k: v for k, v in (("in_channels", in_channels), ("acti_func", acti_func)) if v is not None}
    return spec.module_class()(num_classes=num_classes, **given, **options).eval()


def scope_of(variable_names: Sequence[str], spec: NetworkSpec) -> str:
    """NiftyNet's name scope in a checkpoint: the first component shared by its model variables.

    Falls back to ``spec.default_scope`` when the names do not agree on one.
    """
    firsts = {n.split("/", 1)[0] for n in variable_names if "/" in n}
    return firsts.pop() if len(firsts) == 1 else spec.default_scope


def load(name: str, weights: str | os.PathLike | Mapping[str, Any], *, num_classes: int | None = None,
         in_channels: int | None = None, acti_func: str | None = None, **options: Any) -> torch.nn.Module:
    """Network ``name`` built as :func:`build` does, with ``weights`` loaded strictly, eval mode.

    ``weights`` is a NiftyNet checkpoint (prefix, file or folder; its name
    scope is read from the variables), a ``.safetensors``/``.pth`` file of
    niftyport keys, or a mapping of either kind of names to arrays.
    """
    from ..weights import load_network_state

    model = build(name, num_classes=num_classes, in_channels=in_channels, acti_func=acti_func, **options)
    return load_network_state(model, get(name), weights)


def activation_fitting(spec: NetworkSpec, variable_names: Sequence[str]) -> str | None:
    """The activation under which ``spec``'s NiftyNet rules map every one of these names, or None.

    Tries ``relu`` first, then each activation whose name appears in the
    variable names (NiftyNet puts it into layer scopes, e.g. ``conv_0_bn_prelu``).
    """
    names_ = list(variable_names)
    if not names_:
        return None
    text = "\n".join(names_)
    scope = scope_of(names_, spec)
    for acti in ("relu", *(a for a in ACTI_FUNCS if a != "relu" and a in text)):
        rules = spec.rules(scope, acti_func=acti)
        if all(rules.covers(n) for n in names_):
            return acti
    return None


def detect(variable_names: Sequence[str]) -> tuple[NetworkSpec, str]:
    """The network (and activation) whose NiftyNet rules map every model variable (``--network auto``).

    Keeps the networks for which :func:`activation_fitting` finds an
    activation; when several do, the one whose default scope is the
    checkpoint's wins. Returns ``(spec, acti_func)``.
    """
    names_ = list(variable_names)
    fits = [(spec, acti) for spec in specs() if (acti := activation_fitting(spec, names_)) is not None]
    if not fits:
        raise NetworkError("no registered network's NiftyNet names match this checkpoint "
                           f"(first variable: {names_[0] if names_ else 'none'})")
    if len(fits) > 1:
        scope = {n.split("/", 1)[0] for n in names_ if "/" in n}
        fits = [fit for fit in fits if {fit[0].default_scope} == scope] or fits
    return fits[0]


def divisible_by(multiple: int, what: str) -> Callable[[Sequence[int]], None]:
    """A ``check_input`` demanding every spatial side be a multiple of ``multiple``."""
    from ..errors import InputShapeError

    def check(spatial_shape: Sequence[int]) -> None:
        bad = [n for n in spatial_shape if n % multiple]
        if bad:
            raise InputShapeError(f"{what} needs every spatial side to be a multiple of {multiple}, "
                                  f"got {tuple(spatial_shape)}")
    return check


__all__ = ["NetworkSpec", "Pretrained", "activation_fitting", "build", "detect", "divisible_by", "get", "load", "names", "scope_of", "specs"]

