"""What every exported model says about itself: network, NiftyNet source, weights, layout, sizes, labels.

One JSON document (:func:`describe`), stored as ONNX ``metadata_props``
(key ``niftyport``, plus a few flat keys) and as the TorchScript extra file
``niftyport.json``; the MONAI bundle's ``metadata.json`` is built from it.
Torch-free apart from the version string.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..errors import InputShapeError
from .shapes import AxisRule, output_rule, size_rule
from .source import ExportSource

#: Layouts, as the metadata spells them.
TORCH_LAYOUT = {2: "N,C,X,Y", 3: "N,C,X,Y,Z"}
NIFTYNET_LAYOUT = {2: "N,X,Y,C", 3: "N,X,Y,Z,C"}
AXES = ("x", "y", "z")


def _rule_message(source: ExportSource, rules: tuple[AxisRule, ...]) -> str:
    """The network's own words for its size rule: ``check_input``'s message on an invalid shape."""
    bad = [r.minimum + 1 if r.step > 1 else r.minimum - 1 for r in rules]
    if any(n < 1 for n in bad):
        return "every spatial size is accepted"
    try:
        source.spec.validate_input(bad)
    except InputShapeError as exc:
        return str(exc)
    return "every spatial size is accepted"


def describe(source: ExportSource, export: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata document of ``source`` exported as ``export`` (format, opset, shapes, checks).

    ``input.spatial`` gives per axis ``minimum`` and ``step`` (valid sides
    ``minimum + step * k``); ``output.spatial`` per axis ``scale`` and
    ``offset`` (output side ``= scale * input side + offset``).
    """
    spec, build = source.spec, source.build
    rules = size_rule(spec)
    dims = spec.spatial_dims
    pretrained = spec.pretrained
    return {
        "producer": f"niftyport {__version__}",
        "network": spec.name,
        "niftynet_class": spec.niftynet_class,
        "citation": spec.citation,
        "verified_against_niftynet": spec.status,
        "build": {"num_classes": build.num_classes, "in_channels": build.in_channels,
                  "acti_func": build.acti_func, "options": _jsonable(build.options)},
        "weights": {"file": source.weights.name if source.weights else None, "file_sha256": source.file_sha256,
                    "state_sha256": source.state_sha256, "shipped_with_niftyport": source.shipped,
                    "model_zoo_entry": pretrained.entry if source.shipped and pretrained else None,
                    "licence": pretrained.licence if source.shipped and pretrained else "that of the weights' source"},
        "input": {"layout": TORCH_LAYOUT[dims], "niftynet_layout": NIFTYNET_LAYOUT[dims], "dtype": "float32",
                  "channels": build.in_channels,
                  "spatial": [{"axis": AXES[i], "minimum": r.minimum, "step": r.step, "rule": r.text()}
                              for i, r in enumerate(rules)],
                  "rule": _rule_message(source, rules)},
        "output": {"layout": TORCH_LAYOUT[dims], "dtype": "float32", "channels": build.num_classes,
                   "spatial": output_rule(spec, rules),
                   "meaning": "the network's raw output (before softmax; see notes), argmax over C = class"},
        "labels": {str(k): v for k, v in source.labels.items()} if source.labels else None,
        "label_source": source.label_source,
        "notes": list(spec.notes),
        "export": _jsonable(dict(export)),
    }


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python numbers, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def flat_properties(meta: Mapping[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props``: ``niftyport`` (the whole document) and flat keys for the main facts."""
    return {
        "niftyport": json.dumps(meta, sort_keys=True),
        "network": meta["network"],
        "niftynet_class": meta["niftynet_class"],
        "weights_sha256": meta["weights"]["state_sha256"],
        "input_layout": meta["input"]["layout"],
        "input_size_rule": json.dumps(meta["input"]["spatial"]),
        "labels": json.dumps(meta["labels"]),
    }
