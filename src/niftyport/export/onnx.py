"""ONNX export (torch's ``torch.export``-based exporter), checked with onnxruntime.

What the file holds:

* every pad explicit: convolutions carry ``pads`` (never ``auto_pad=SAME``),
  TF's asymmetric ``SAME`` pads are ``Pad`` nodes (:func:`explicit_pads` checks);
* TF1's legacy ``resize_bilinear`` (``layers.resize_linear_tf1``) as one
  ``Resize(mode="linear", coordinate_transformation_mode="asymmetric")``
  (TF1's ``src = dst * in / out``, clamped at the end), its sizes computed
  from the input's shape, so dynamic axes resize right;
* input ``image`` ``(N, C, X, Y, Z)`` float32, output ``output`` in the same
  layout; with ``dynamic=True`` the batch and every spatial axis are
  symbolic, spatial sides constrained to NiftyNet's rule ``minimum + step * k``;
* the metadata (:mod:`.metadata`) as ``metadata_props``.

torch's exporter writes opset 18 or later; an older ``opset`` (17, the
default) is reached with ONNX's version converter. Needs ``onnx`` and
``onnxscript`` (``pip install 'niftyport[export]'``); the check needs ``onnxruntime``.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NetworkError, OptionError
from ..outputs import write_bytes_atomic
from .metadata import AXES, describe, flat_properties
from .shapes import AxisRule, size_rule, smallest_shape
from .source import ExportSource

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

#: The default opset, and the oldest with every operator the networks need.
DEFAULT_OPSET = 17
MIN_OPSET = 13
#: The opset torch's exporter writes natively.
NATIVE_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "output"
#: max|onnxruntime - eager| accepted, relative to max(1, max|eager|).
TOLERANCE = 1e-5


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OptionError(f"ONNX export needs {module}: pip install 'niftyport[export]'") from None


def _resize_translation(x, size):
    """onnxscript translation of ``niftyport::resize_linear_tf1``: one asymmetric linear ``Resize``."""
    from onnxscript import opset18 as op

    parts = [op.Shape(x, start=0, end=2)]
    for n in size:  # Python ints (static sizes) or scalar INT64 values (symbolic ones)
        parts.append(op.Constant(value_ints=[n]) if isinstance(n, int) else op.Reshape(n, op.Constant(value_ints=[1])))
    return op.Resize(x, None, None, op.Concat(*parts, axis=0), mode="linear",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: niftyport's own ops."""
    import torch

    from ..networks import layers  # noqa: F401  (registers the op)

    return {torch.ops.niftyport.resize_linear_tf1.default: _resize_translation}


def dynamic_shapes(rules: Sequence[AxisRule]) -> tuple[dict[int, Any]]:
    """``dynamic_shapes`` for ``torch.export``: batch free, spatial side ``i`` = ``step * k_i + offset``."""
    from torch.export import Dim

    dims: dict[int, Any] = {0: Dim.DYNAMIC}
    for i, rule in enumerate(rules):
        if rule.step == 1:
            dims[2 + i] = Dim(AXES[i], min=max(rule.minimum, 2))
        else:
            root = Dim(f"{AXES[i]}_k", min=max(rule.minimum // rule.step, 1))
            dims[2 + i] = rule.step * root + rule.minimum % rule.step
    return (dims,)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and its notes about torchvision; restored after."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration",
                                                "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


#: Reductions whose ``axes`` became an input in opset 18 (an attribute before).
_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
               "ReduceProd", "ReduceSumSquare")
#: Attributes opset 18 added to ``Resize``, with the value meaning opset 17's behaviour.
_RESIZE_18 = {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}


def _constant_ints(model_proto: onnx.ModelProto, name: str) -> list[int] | None:
    """The values of the initializer or ``Constant`` node named ``name``, or ``None``."""
    from onnx import numpy_helper

    for init in model_proto.graph.initializer:
        if init.name == name:
            return [int(v) for v in numpy_helper.to_array(init).ravel()]
    for node in model_proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return [int(v) for v in numpy_helper.to_array(node.attribute[0].t).ravel()]
    return None


def _to_opset_17(model_proto: onnx.ModelProto) -> None:
    """Rewrite an opset-18 graph as opset 17, in place: the operators that changed in 18, written the 17 way.

    ONNX's version converter has no 18 -> 17 adapter for ``Pad``; the
    changes are small: ``Pad``'s optional ``axes`` input (unused here),
    ``Resize``'s new attributes (at their opset-17 meaning), reductions'
    ``axes`` from a constant input back to an attribute, scatters' new
    ``max``/``min`` reductions (unused). Any other operator changed in opset
    18 is refused.
    """
    from onnx import defs, helper

    for node in model_proto.graph.node:
        if node.domain not in ("", "ai.onnx") or defs.get_schema(node.op_type, NATIVE_OPSET).since_version < 18:
            continue
        if node.op_type == "Pad" and (len(node.input) < 4 or not node.input[3]):
            del node.input[3:]
        elif node.op_type == "Resize" and all(
                helper.get_attribute_value(a) == _RESIZE_18[a.name] for a in node.attribute if a.name in _RESIZE_18
        ) and "axes" not in {a.name for a in node.attribute}:
            kept = [a for a in node.attribute if a.name not in _RESIZE_18]
            del node.attribute[:]
            node.attribute.extend(kept)
        elif node.op_type in _REDUCTIONS and len(node.input) > 1 and node.input[1] and (
                _constant_ints(model_proto, node.input[1]) is not None):
            kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]  # 0 or 1: axes are given
            kept.append(helper.make_attribute("axes", _constant_ints(model_proto, node.input[1])))
            del node.attribute[:]
            node.attribute.extend(kept)
            del node.input[1:]
        elif node.op_type in ("ScatterND", "ScatterElements") and all(
                a.s in (b"none", b"add", b"mul") for a in node.attribute if a.name == "reduction"):
            pass  # opset 18 only added reduction="max"/"min"
        else:
            raise NetworkError(f"cannot write opset 17: {node.op_type} ({node.name}) needs opset 18 as exported; "
                               f"use --opset {NATIVE_OPSET}")
    for entry in model_proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = 17
    _drop_unused_initializers(model_proto)


def _drop_unused_initializers(model_proto: onnx.ModelProto) -> None:
    """Remove initializers no node reads any more (the reductions' former ``axes`` inputs)."""
    used = {name for node in model_proto.graph.node for name in node.input}
    kept = [init for init in model_proto.graph.initializer if init.name in used]
    del model_proto.graph.initializer[:]
    model_proto.graph.initializer.extend(kept)


def _convert(model_proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The exporter's opset-18 model at ``opset`` (17: :func:`_to_opset_17`; older: then ONNX's converter)."""
    from onnx import version_converter

    if opset >= NATIVE_OPSET:
        return model_proto
    _to_opset_17(model_proto)
    if opset == 17:
        return model_proto
    try:
        return version_converter.convert_version(model_proto, opset)
    except (RuntimeError, ValueError) as exc:
        raise NetworkError(f"cannot write opset {opset}: {str(exc).splitlines()[0]}; try --opset 17") from None


def _capture(source: ExportSource, x: torch.Tensor, rules: Sequence[AxisRule] | None):
    """``torch.export`` (non-strict) of the network on ``x``; symbolic axes per ``rules`` when given.

    Called directly rather than through ``torch.onnx.export``, which falls
    back to a much slower strict capture when this one fails.
    """
    import torch
    from torch._dynamo.exc import UserError

    try:
        return torch.export.export(source.model, (x,), dynamic_shapes=dynamic_shapes(rules) if rules else None,
                                   strict=False)
    except UserError as exc:  # a size rule the graph does not keep (constraint violation)
        raise NetworkError(f"{source.spec.name}: cannot export with dynamic axes: "
                           f"{str(exc).strip().splitlines()[0]}") from None


def trace_onnx(source: ExportSource, shape: Sequence[int], *, opset: int = DEFAULT_OPSET,
               dynamic: bool = False) -> onnx.ModelProto:
    """``source.model`` as an ONNX model at ``opset`` (example spatial ``shape``; all axes symbolic if ``dynamic``)."""
    import torch

    _require("onnx"), _require("onnxscript")
    if not MIN_OPSET <= opset:
        raise OptionError(f"opset {opset} is too old: niftyport writes opset {MIN_OPSET} or later")
    rules = size_rule(source.spec)
    batch = 2 if dynamic else 1  # torch.export fixes axes whose example size is 1
    x = torch.zeros((batch, source.build.in_channels, *shape))
    with _quiet_exporter(), torch.no_grad():
        program = _capture(source, x, rules if dynamic else None)
        onnx_program = torch.onnx.export(
            program, (x,), dynamo=True, opset_version=max(opset, NATIVE_OPSET), verbose=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], optimize=True,
            custom_translation_table=translations())
    return _convert(onnx_program.model_proto, opset)


def _strip_node_metadata(graph) -> None:
    """Drop the exporter's per-node notes (stack traces with local paths)."""
    for node in graph.node:
        del node.metadata_props[:]
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                _strip_node_metadata(attr.g)
    for value in (*graph.input, *graph.output, *graph.value_info):
        del value.metadata_props[:]


def _name_axes(model_proto: onnx.ModelProto, dims: int) -> None:
    """Readable symbolic axes: the input's ``batch``, ``x``, ``y``, ``z``; ``x_k``... for the rule's ``k``.

    torch.export names them ``s<N>``; a spatial axis ``step * k + offset`` is
    the expression ``"8*s12"``, whose symbol becomes ``x_k`` wherever it appears.
    """
    names = ["batch", None, *AXES[:dims]]
    renames, whole = {}, {}
    for dim, name in zip(model_proto.graph.input[0].type.tensor_type.shape.dim, names):
        if not name or not dim.HasField("dim_param"):
            continue
        symbols = re.findall(r"\bs\d+\b", dim.dim_param)
        if dim.dim_param in symbols:
            renames[dim.dim_param] = name
        elif len(set(symbols)) == 1:
            renames[symbols[0]] = f"{name}_k"
        whole[dim.dim_param] = name
    if not renames:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in renames) + r")\b")
    graph = model_proto.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                text = whole.get(dim.dim_param) if value is graph.input[0] else None
                dim.dim_param = text or pattern.sub(lambda m: renames[m.group(1)], dim.dim_param)


def explicit_pads(model_proto: onnx.ModelProto) -> list[str]:
    """Nodes that pad implicitly (``auto_pad`` other than ``NOTSET``); empty for niftyport's exports."""
    bad = []
    for node in model_proto.graph.node:
        for attr in node.attribute:
            if attr.name == "auto_pad" and attr.s not in (b"", b"NOTSET"):
                bad.append(f"{node.op_type} {node.name}: auto_pad={attr.s.decode()}")
    return bad


@dataclass(frozen=True)
class OnnxCheck:
    """onnxruntime against eager PyTorch: per checked spatial shape, max|diff| and max|eager|."""

    results: tuple[tuple[tuple[int, ...], float, float], ...]

    @property
    def passed(self) -> bool:
        return all(diff <= TOLERANCE * max(1.0, scale) for _, diff, scale in self.results)

    def as_dict(self) -> dict:
        return {"onnxruntime": [{"shape": list(s), "max_abs_diff": d, "max_abs_output": m} for s, d, m in self.results],
                "tolerance": f"max|diff| <= {TOLERANCE:g} * max(1, max|eager|)", "passed": self.passed}


def check_onnx(model_bytes: bytes, source: ExportSource, shapes: Sequence[Sequence[int]], *,
               seed: int = 0) -> OnnxCheck:
    """Run the ONNX model in onnxruntime (CPU) and eager PyTorch on the same N(0, 1) inputs; see :class:`OnnxCheck`."""
    import torch

    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    results = []
    for i, shape in enumerate(shapes):
        generator = torch.Generator().manual_seed(seed + i)
        x = torch.randn((1, source.build.in_channels, *shape), generator=generator)
        with torch.no_grad():
            expected = source.model(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != expected.shape:
            raise NetworkError(f"{source.spec.name}: onnxruntime gave shape {got.shape}, PyTorch {expected.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
        results.append((tuple(shape), diff, float(np.max(np.abs(expected)))))
    return OnnxCheck(tuple(results))


def _finish(model_proto: onnx.ModelProto, meta: dict) -> bytes:
    """Metadata in, exporter notes out, checked by ONNX's checker; the serialised model."""
    import onnx

    _strip_node_metadata(model_proto.graph)
    del model_proto.metadata_props[:]
    for key, value in flat_properties(meta).items():
        model_proto.metadata_props.add(key=key, value=value)
    model_proto.doc_string = (f"{meta['network']} ({meta['niftynet_class']}) exported by {meta['producer']}; "
                              "metadata_props 'niftyport' holds the details")
    onnx.checker.check_model(model_proto)
    return model_proto.SerializeToString()


def export_onnx(source: ExportSource, path: str | os.PathLike, *, shape: Sequence[int] | None = None,
                opset: int = DEFAULT_OPSET, dynamic: bool = False, check: bool = True) -> dict:
    """Write ``source`` as an ONNX file at ``path`` (atomically); returns its metadata document.

    ``shape`` is the example (static: the only) spatial shape, by default
    the smallest valid one with sides >= 32 (dynamic exports trace at sides
    two steps above the smallest, where no inner map has size 1: torch.export
    would fix such a size). With ``check`` the model is run
    in onnxruntime against eager PyTorch first (at ``shape``, and at a second
    size when ``dynamic``); a difference beyond :data:`TOLERANCE` is a
    :class:`~niftyport.errors.NetworkError` and nothing is written.
    """
    rules = size_rule(source.spec)
    shape = tuple(shape) if shape is not None else smallest_shape(rules, 32)
    source.spec.validate_input(shape)
    traced_at = tuple(max(n, r.minimum + 2 * r.step) for n, r in zip(shape, rules)) if dynamic else shape
    model_proto = trace_onnx(source, traced_at, opset=opset, dynamic=dynamic)
    bad = explicit_pads(model_proto)
    if bad:
        raise NetworkError(f"{source.spec.name}: the ONNX graph pads implicitly ({bad[0]})")
    _name_axes(model_proto, source.spec.spatial_dims)
    export: dict[str, Any] = {"format": "onnx", "opset": opset, "dynamic_shape": dynamic,
                              "example_shape": list(shape), "resize": "Resize linear, asymmetric (TF1 legacy)"}
    if check:
        from .torchscript import second_shape

        shapes = [shape, second_shape(rules, shape)] if dynamic else [shape]
        result = check_onnx(model_proto.SerializeToString(), source, shapes)
        if not result.passed:
            worst = max(result.results, key=lambda r: r[1])
            raise NetworkError(f"{source.spec.name}: onnxruntime differs from PyTorch by {worst[1]:.3g} at "
                               f"{worst[0]} (max|output| {worst[2]:.3g}); nothing written")
        export["check"] = result.as_dict()
    meta = describe(source, export)
    write_bytes_atomic(Path(path), _finish(model_proto, meta))
    return meta


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata document of an ONNX file written by :func:`export_onnx`."""
    import json

    onnx = _require("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "niftyport" not in props:
        raise NetworkError(f"{path}: no niftyport metadata")
    return json.loads(props["niftyport"])
