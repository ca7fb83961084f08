"""The network to export: registry entry, weights loaded strictly, and what is known about them.

Weights are read as every other command reads them (:func:`niftyport.networks.load`):
a NiftyNet checkpoint (prefix, file or folder) or a ``.safetensors``/``.pth``
file of niftyport keys or NiftyNet names. Without ``network``, a source with
NiftyNet names is matched to a network by its names
(:func:`niftyport.networks.detect`); one of niftyport keys is taken as HighRes3DNet.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import networks
from ..errors import MappingError, NetworkError, WeightsError
from ..networks import NetworkSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The network taken for a weights file of niftyport keys when none is named.
DEFAULT_NETWORK = "highres3dnet"


@dataclass(frozen=True)
class BuildArgs:
    """NiftyNet's constructor arguments the module was built with."""

    num_classes: int
    in_channels: int = 1
    acti_func: str = "relu"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportSource:
    """A network ready to export.

    Attributes:
        spec: its registry entry.
        model: the ``torch.nn.Module``, eval mode, on the CPU, float32; torch layout ``(N, C, X, Y, Z)``.
        build: the constructor arguments.
        weights: where the weights came from (``None`` for weights given as a mapping).
        file_sha256: SHA-256 of the weights file, when it is one file (a checkpoint is several).
        state_sha256: SHA-256 of the loaded ``state_dict`` (:func:`state_digest`): the same whatever the file format.
        shipped: whether these are the weights shipped in the package (:attr:`NetworkSpec.pretrained`).
        labels: class index -> name, when known (the shipped table of the shipped weights, or given).
        label_source: where ``labels`` come from, or why there are none.
    """

    spec: NetworkSpec
    model: torch.nn.Module
    build: BuildArgs
    weights: Path | None
    file_sha256: str | None
    state_sha256: str
    shipped: bool
    labels: dict[int, str] | None
    label_source: str


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 over ``state`` sorted by key: per tensor its key, dtype, shape and C-order bytes.

    Batch-norm counters (``num_batches_tracked``, absent from NiftyNet's
    checkpoints, never read at inference) are left out.

    The digest of the weights an exported model holds, independent of the
    file format they were read from (checkpoint, safetensors, ``.pth``).
    """
    import numpy as np

    digest = hashlib.sha256()
    for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
        value = state[key]
        array = np.ascontiguousarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
        digest.update(f"{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _source_names(weights: str | os.PathLike) -> list[str]:
    """The tensor names of a weights source, as stored (NiftyNet names or niftyport keys)."""
    from ..checkpoint import is_checkpoint, read_checkpoint
    from ..weights import read_tensors

    if is_checkpoint(Path(weights)):
        return list(read_checkpoint(weights).model_tensors())
    return list(read_tensors(weights)[0])


def choose_network(weights: str | os.PathLike, network: str | None) -> tuple[NetworkSpec, str | None]:
    """The network for ``weights`` and the activation its names show (``None``: not shown).

    ``network`` (a registry name) wins; else NiftyNet names are matched by
    :func:`niftyport.networks.detect`, and niftyport keys mean :data:`DEFAULT_NETWORK`.
    """
    if network is not None:
        return networks.get(network), None
    names = _source_names(weights)
    if any("/" in n for n in names):
        return networks.detect(names)
    acti = "prelu" if any(n.endswith(".alpha") for n in names) else None
    return networks.get(DEFAULT_NETWORK), acti


def is_shipped(spec: NetworkSpec, state_sha256: str) -> bool:
    """Whether the weights (by :func:`state_digest`) are the ones shipped in the package for ``spec``."""
    from ..weights import read_tensors

    pretrained = spec.pretrained
    if pretrained is None or not pretrained.weights.is_file():
        return False
    return state_digest(read_tensors(pretrained.weights)[0]) == state_sha256


def _labels(spec: NetworkSpec, build: BuildArgs, shipped: bool,
            labels: str | os.PathLike | None) -> tuple[dict[int, str] | None, str]:
    """Class names: a given colour table, else the shipped one when the weights are the shipped weights."""
    from ..reporting.colortable import read_ctbl

    if labels is not None:
        table = read_ctbl(labels)
        return {i: table.name(i) for i in range(build.num_classes)}, f"colour table {Path(labels).name}"
    pretrained = spec.pretrained
    if not shipped or pretrained is None or pretrained.labels is None or build.num_classes != pretrained.num_classes:
        return None, "none known for these weights: classes are output channel indices"
    table = read_ctbl(pretrained.labels)
    return ({i: table.name(i) for i in range(build.num_classes)},
            f"{pretrained.labels.name}, shipped with the NiftyNet model zoo entry {pretrained.entry}")


def load_source(weights: str | os.PathLike, *, network: str | None = None, num_classes: int | None = None,
                in_channels: int | None = None, acti_func: str | None = None,
                options: Mapping[str, Any] | None = None,
                labels: str | os.PathLike | None = None) -> ExportSource:
    """Build the network for ``weights`` and load them strictly (see :func:`choose_network`).

    ``num_classes`` defaults to the network's (HighRes3DNet: 160),
    ``in_channels`` to 1, ``acti_func`` to what the weights' names show, else
    ``"relu"``; ``options`` are NiftyNet hyper-parameters (``n_features`` ...).
    ``labels`` is a 3D Slicer colour table naming the classes.
    """
    from ..weights import sha256_of

    spec, shown = choose_network(weights, network)
    if num_classes is None:
        num_classes = spec.default_num_classes
    if num_classes is None:
        raise NetworkError(f"{spec.name} has no default number of classes: give num_classes (--num-classes)")
    build = BuildArgs(int(num_classes), int(in_channels or 1), (acti_func or shown or "relu").lower(),
                      dict(options or {}))
    try:
        model = networks.load(spec.name, weights, num_classes=build.num_classes, in_channels=build.in_channels,
                              acti_func=build.acti_func, **build.options)
    except (WeightsError, MappingError) as exc:
        raise type(exc)(f"{exc} [as {spec.name}, num_classes={build.num_classes}, in_channels="
                        f"{build.in_channels}, acti_func={build.acti_func}; name the network, classes, channels, "
                        "activation or options that fit the weights]") from None
    model = model.float().cpu().eval()
    digest = state_digest(model.state_dict())
    path = Path(weights)
    shipped = is_shipped(spec, digest)
    names, source = _labels(spec, build, shipped, labels)
    return ExportSource(spec, model, build, path, sha256_of(path) if path.is_file() else None, digest, shipped,
                        names, source)


def from_model(spec: NetworkSpec | str, model: torch.nn.Module, build: BuildArgs, *,
               labels: Mapping[int, str] | None = None) -> ExportSource:
    """An :class:`ExportSource` for a module already built (and loaded) in Python, e.g. ``networks.build(...)``."""
    spec = networks.get(spec) if isinstance(spec, str) else spec
    model = model.float().cpu().eval()
    digest = state_digest(model.state_dict())
    shipped = is_shipped(spec, digest)
    names = dict(labels) if labels is not None else None
    if names is None and shipped:
        names, where = _labels(spec, build, True, None)
    else:
        where = "given" if names is not None else "none known for these weights: classes are output channel indices"
    return ExportSource(spec, model, build, None, None, digest, shipped, names, where)
