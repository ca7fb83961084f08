"""``niftyport export --format torchscript|onnx|monai-bundle``: the options and what they run.

``niftyport export`` itself lives in :mod:`.checkpoint` (its default format,
``niftynet``, writes a NiftyNet checkpoint); :func:`export_options` adds the
options of the other formats to it and :func:`run_export` carries them out.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

#: ``--format`` choices; ``niftynet`` is the checkpoint writer of :mod:`.checkpoint`.
FORMATS = ("niftynet", "torchscript", "onnx", "monai-bundle")
#: Options that only the checkpoint writer reads, with their defaults.
_CHECKPOINT_ONLY = {"rules_path": ("--rules", None), "global_step": ("--global-step", None),
                    "weights_only": ("--weights-only", False)}
#: Options that only the new formats read, with their defaults.
_NEW_ONLY = {"network": ("--network", None), "num_classes": ("--num-classes", None),
             "in_channels": ("--in-channels", None), "acti_func": ("--acti-func", None),
             "options": ("--option", ()), "input_shape": ("--input-shape", None), "labels": ("--labels", None),
             "config": ("--config", None), "opset": ("--opset", 17)}


def export_options(command: Callable) -> Callable:
    """Add ``--format`` and the options of the TorchScript/ONNX/MONAI exports to a click command."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="niftynet", show_default=True,
                     help="niftynet: a TensorFlow checkpoint; torchscript: a .ts file; onnx: a .onnx file; "
                          "monai-bundle: a MONAI bundle folder."),
        click.option("--network", help="Registered network (see 'niftyport networks'); default: found from "
                                        "the weights' NiftyNet names, else highres3dnet."),
        click.option("--num-classes", type=click.IntRange(min=1),
                     help="NiftyNet's num_classes (default: the network's)."),
        click.option("--in-channels", type=click.IntRange(min=1), help="Input channels (default 1)."),
        click.option("--acti-func",
                     help="NiftyNet's activation_function (default: from the weights' names, else relu)."),
        click.option("--option", "options", multiple=True, metavar="KEY=JSON",
                     help="A NiftyNet hyper-parameter, e.g. 'n_features=[8,16,32,64,128]'; repeatable."),
        click.option("--input-shape", metavar="X,Y,Z", help="Spatial shape to trace and check at (a static ONNX "
                     "takes only this one); default: the smallest valid one with sides >= 32."),
        click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True, help="ONNX opset."),
        click.option("--dynamic-shape", is_flag=True, help="ONNX: symbolic batch and spatial axes (NiftyNet's "
                                                           "size rule still applies)."),
        click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=str),
                     help="3D Slicer colour table naming the classes (default: the shipped one for the shipped "
                          "weights)."),
        click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=str),
                     help="monai-bundle: NiftyNet .ini whose preprocessing the bundle reproduces (default: the "
                          "model zoo's)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _refuse(given: dict[str, Any], names: dict[str, tuple[str, Any]], fmt: str) -> None:
    for key, (flag, default) in names.items():
        if key in given and given[key] != default:
            raise click.BadParameter(f"does not apply to --format {fmt}", param_hint=flag)


def checkpoint_format(fmt: str, given: dict[str, Any]) -> bool:
    """Whether ``niftyport export`` writes a NiftyNet checkpoint; refuses options of the other kind."""
    if fmt == "niftynet":
        _refuse(given, _NEW_ONLY, fmt)
        if given.get("dynamic_shape"):
            raise click.BadParameter("does not apply to --format niftynet", param_hint="--dynamic-shape")
        return True
    _refuse(given, _CHECKPOINT_ONLY, fmt)
    return False


def _parse_options(texts: tuple[str, ...]) -> dict[str, Any]:
    from .networks import _parse_option

    return dict(_parse_option(t) for t in texts)


def run_export(weights: str, output: str, *, fmt: str, force: bool, network: str | None = None,
               num_classes: int | None = None, in_channels: int | None = None, acti_func: str | None = None,
               options: tuple[str, ...] = (), input_shape: str | None = None, opset: int = 17,
               dynamic_shape: bool = False, labels: str | None = None, config: str | None = None,
               **_checkpoint_options: Any) -> None:
    """Write ``weights`` as ``fmt`` (torchscript, onnx, monai-bundle) at ``output`` and say what was checked."""
    from ..export.shapes import parse_shape, size_rule
    from ..export.source import load_source
    from ..outputs import check_outputs
    from .checkpoint import _checkpoint_inputs

    if fmt != "onnx" and dynamic_shape:
        raise click.BadParameter(f"applies to --format onnx only (a {fmt} export takes every valid size when its "
                                 "graph allows it: see its metadata)", param_hint="--dynamic-shape")
    if fmt != "onnx" and opset != 17:
        raise click.BadParameter("applies to --format onnx only", param_hint="--opset")
    if fmt != "monai-bundle" and config is not None:
        raise click.BadParameter("applies to --format monai-bundle only", param_hint="--config")
    out = Path(output)
    check_outputs([out], [*_checkpoint_inputs(weights), labels, config], force=force)
    source = load_source(weights, network=network, num_classes=num_classes, in_channels=in_channels,
                         acti_func=acti_func, options=_parse_options(options), labels=labels)
    shape = parse_shape(input_shape, size_rule(source.spec), source.spec) if input_shape else None
    if fmt == "torchscript":
        _torchscript(source, out, shape)
    elif fmt == "onnx":
        _onnx(source, out, shape, opset, dynamic_shape)
    else:
        _bundle(source, out, shape, config, force)


def _describe(source) -> str:
    b = source.build
    return f"{source.spec.name}, {b.in_channels} -> {b.num_classes} channels"


def _torchscript(source, out: Path, shape) -> None:
    from ..export.torchscript import export_torchscript

    meta = export_torchscript(source, out, shape=shape)
    check = meta["export"]["check"]
    sizes = "any valid size" if check["size_independent"] else f"only {tuple(check['bit_for_bit_at'])}"
    click.echo(f"wrote TorchScript {out} ({_describe(source)}; takes {sizes}): bit for bit eager PyTorch at "
               f"{tuple(check['bit_for_bit_at'])}" + (f" and {tuple(check['second_size_checked'])}"
                                                      if check["size_independent"] else ""))


def _onnx(source, out: Path, shape, opset: int, dynamic: bool) -> None:
    from ..export.onnx import export_onnx

    meta = export_onnx(source, out, shape=shape, opset=opset, dynamic=dynamic)
    kind = "dynamic batch and spatial axes" if dynamic else f"static shape {tuple(meta['export']['example_shape'])}"
    check = meta["export"].get("check")
    checked = "; ".join(f"max|diff| {r['max_abs_diff']:.2g} at {tuple(r['shape'])}" for r in check["onnxruntime"])
    click.echo(f"wrote ONNX {out} ({_describe(source)}; opset {opset}, {kind}): onnxruntime vs PyTorch {checked}")


def _bundle(source, out: Path, shape, config: str | None, force: bool) -> None:
    from ..export.monai_bundle import export_monai_bundle

    result = export_monai_bundle(source, out, config=config, shape=shape, force=force)
    click.echo(f"wrote MONAI bundle {out} ({_describe(source)}): {', '.join(result.files)}")
