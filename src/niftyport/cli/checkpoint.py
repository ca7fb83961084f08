"""``niftyport variables`` / ``convert`` / ``export``: NiftyNet (TensorFlow) checkpoints without TensorFlow."""
from __future__ import annotations

import click

from ..errors import CheckpointError, NetworkError, OptionError
from ..outputs import check_outputs
from . import cli
from .export import checkpoint_format, export_options, run_export
from .networks import _parse_option

def _shape_text(shape: tuple[int, ...]) -> str:
    """``(3, 3, 3, 1, 16)`` -> ``"3x3x3x1x16"``; ``()`` -> ``"scalar"`` (TensorFlow's listing style)."""
    return "x".join(str(n) for n in shape) if shape else "scalar"


def _checkpoint_inputs(path):
    """Every file a checkpoint input consists of (no output may replace one)."""
    import glob
    from pathlib import Path

    from ..checkpoint import STATE_FILE, is_checkpoint, resolve_prefix

    path = Path(path)
    if not is_checkpoint(path):
        return [path]
    prefix = resolve_prefix(path)
    files = [Path(p) for p in glob.glob(glob.escape(str(prefix)) + ".*")]
    return files + ([path / STATE_FILE] if path.is_dir() else [])


def _listing(names, limit: int = 8) -> str:
    """``'a', 'b', ... (3 more)``: the first ``limit`` names quoted, then how many more."""
    quoted = [repr(n) for n in names]
    return ", ".join(quoted[:limit]) + (f", ... ({len(quoted) - limit} more)" if len(quoted) > limit else "")


def _status(v) -> str:
    """``kept`` / ``dropped (kind): reason``, then ``; unreadable: why`` for a variable that cannot be read."""
    status = "kept" if v.kept else f"dropped ({v.kind}): {v.reason}"
    return status + (f"; unreadable: {v.unreadable}" if v.unreadable else "")


def _verify(ckpt) -> str:
    """Check every crc32c; the summary's words for it. Variables without one are an error."""
    from ..checkpoint import index_path

    unverifiable = ckpt.verify()
    if unverifiable:
        raise CheckpointError(f"{index_path(ckpt.prefix)}: {len(unverifiable)} variable(s) have no crc32c, "
                              f"so their bytes cannot be verified: {_listing(unverifiable)}")
    unreadable = sum(not v.readable for v in ckpt.variables)
    if unreadable:
        return f", crc32c verified for every readable variable ({unreadable} unreadable, not checked)"
    return ", every crc32c verified"


def _drop_summary(variables) -> list[str]:
    """One line per dropped kind: count, kind and reason, most frequent first."""
    from collections import Counter

    counts = Counter(v.kind for v in variables if not v.kept)
    reasons = {v.kind: v.reason for v in variables if not v.kept}
    return [f"  dropped {n:4d} {kind}: {reasons[kind]}" for kind, n in counts.most_common()]


def _expected_keys(spec: str, names: list[str], *, num_classes=None, in_channels=None, acti_func=None,
                   options=None):
    """What ``convert`` must produce: ``(expected keys/shapes or module, its name, the network's rules)``.

    A registered network (or ``"auto"``: the one whose NiftyNet names the
    checkpoint holds) -> its key/shape table (torch-free where the network
    has one) and its NiftyNet rules at the checkpoint's scope; ``"none"`` ->
    no check; ``"package.module:callable"`` -> the module it builds.
    """
    import importlib

    from .. import networks

    if spec.lower() == "none":
        return None, "no module check", None
    if ":" not in spec:
        if spec.lower() == "auto":
            found, detected = networks.detect(names)
            acti_func = acti_func or detected
        else:
            found = networks.get(spec)
        given = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels),
                                   ("acti_func", acti_func)) if v is not None} | dict(options or {})
        rules = found.rules(networks.scope_of(names, found), **given)
        if found.shapes is not None:
            return found.shapes(**given), found.name, rules
        return networks.build(found.name, **given), found.name, rules
    module_name, _, attr = spec.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise click.BadParameter(f"cannot build {spec!r} ({exc}); use a registered network, 'auto', 'none' or "
                                 "'package.module:callable'", param_hint="--network") from None
    if not hasattr(model, "state_dict"):
        raise click.BadParameter(f"{spec!r} gave a {type(model).__name__}, not a torch.nn.Module",
                                 param_hint="--network")
    return model, type(model).__name__, None


def _network_line(names: list[str], network: str) -> str:
    """``variables --network``: which network holds these names, or how many a given network misses."""
    from .. import networks

    if network.lower() == "auto":
        spec, acti = networks.detect(names)
        return (f"network: {spec.name} ({spec.niftynet_class}, acti_func {acti}): its NiftyNet rules map "
                f"all {len(names)} model variables")
    spec = networks.get(network)
    acti = networks.activation_fitting(spec, names)
    if acti is not None:
        return f"network: {spec.name} (acti_func {acti}): its NiftyNet rules map all {len(names)} model variables"
    rules = spec.rules(networks.scope_of(names, spec))
    missed = [n for n in names if not rules.covers(n)] or names
    raise NetworkError(f"{spec.name}'s NiftyNet rules do not map {len(missed)} of the {len(names)} model "
                       f"variables, e.g. {missed[0]!r} (try --network auto)")


def _has_niftynet_names(tensors, rules) -> bool:
    """Whether ``tensors`` are keyed by the NiftyNet names ``rules`` map (not by a module's own keys)."""
    return any(rules.target_of(name) is not None for name in tensors)


@cli.command("variables")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the table as CSV: name,shape,dtype,kind,kept,reason,unreadable.")
@click.option("--all/--kept-only", "show_all", default=True, show_default=True,
              help="List every variable, or only the model weights that are kept.")
@click.option("--verify", is_flag=True, help="Also read every tensor and check its crc32c (an error when "
                                             "a variable has none).")
@click.option("--network", help="'auto': say which registered network's NiftyNet names the checkpoint holds; "
                                "or a network name: check that its rules map every model variable.")
@click.option("--force", is_flag=True, help="Overwrite an existing --csv file.")
def variables_command(path: str, csv_path: str | None, show_all: bool, verify: bool, network: str | None,
                      force: bool) -> None:
    """List the variables of the TensorFlow checkpoint PATH: name, shape, dtype, kept or dropped and why.

    PATH is a checkpoint prefix (model.ckpt-33000), its .index or .data file,
    or a folder with a 'checkpoint' file. Variables that cannot be read (a
    partitioned variable, a dtype such as variant) are listed with the reason.
    """
    import csv
    import io
    from pathlib import Path

    from ..checkpoint import atomic_output, read_checkpoint

    ckpt = read_checkpoint(path)
    if csv_path is not None:
        check_outputs([Path(csv_path)], _checkpoint_inputs(path), force=force)
    verified = _verify(ckpt) if verify else ""
    rows = [v for v in ckpt.variables if show_all or v.kept]
    width = max([len("name"), *(len(v.name) for v in rows)])
    shape_width = max([len("shape"), *(len(_shape_text(v.shape)) for v in rows)])
    dtype_width = max([8, *(len(v.dtype_name) for v in rows)])
    click.echo(f"{'name':<{width}}  {'shape':<{shape_width}}  {'dtype':<{dtype_width}}  status")
    for v in rows:
        click.echo(f"{v.name:<{width}}  {_shape_text(v.shape):<{shape_width}}  {v.dtype_name:<{dtype_width}}  "
                   f"{_status(v)}")
    kept = sum(v.kept for v in ckpt.variables)
    unreadable = sum(not v.readable for v in ckpt.variables)
    click.echo(f"{len(ckpt.variables)} variables in {ckpt.prefix}: {kept} kept, "
               f"{len(ckpt.variables) - kept} dropped" + (f", {unreadable} unreadable" if unreadable else "")
               + verified)
    for line in _drop_summary(ckpt.variables):
        click.echo(line)
    if network is not None:
        click.echo(_network_line([v.name for v in ckpt.variables if v.kept], network))
    if csv_path is not None:
        out = Path(csv_path)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "shape", "dtype", "kind", "kept", "reason", "unreadable"])
        for v in rows:
            writer.writerow([v.name, _shape_text(v.shape), v.dtype_name, v.kind, int(v.kept), v.reason,
                             v.unreadable])
        with atomic_output(out) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
        click.echo(f"wrote {out}")


def _needed_unreadable(ckpt, rules, expected) -> list[str]:
    """Refuse a kept variable that cannot be read but would give an expected key; list the others.

    A variable is needed when ``rules`` map it onto a key and ``expected``
    (a module or ``{key: shape}``; None: every key) wants that key. Returns
    one line per unneeded unreadable variable, for the summary.
    """
    from ..checkpoint import index_path
    from ..mapping import expected_shapes

    keys = None if expected is None else expected_shapes(expected)
    lines = []
    for v in ckpt.unreadable_kept():
        hit = None if rules.ignores_source(v.name) else rules.target_of(v.name)
        if hit is not None and (keys is None or hit[1] in keys):
            raise CheckpointError(f"{index_path(ckpt.prefix)}: variable {v.name!r} is needed for {hit[1]!r} "
                                  f"but cannot be read: {v.unreadable}")
        lines.append(f"  not read {v.name}: {v.unreadable} (not needed)")
    return lines


def _read_source(path: str, rules_path: str | None):
    """``(tensors, rules, summary lines, checkpoint or None)`` of what ``convert`` reads."""
    from ..checkpoint import is_checkpoint, read_checkpoint
    from ..mapping import HIGHRES3DNET_NIFTYNET_RULES, load_rules
    from ..weights import read_tensors

    rules = load_rules(rules_path) if rules_path is not None else None  # a bad rules file fails first
    if not is_checkpoint(path):
        tensors, detected = read_tensors(path)
        return tensors, rules if rules is not None else detected, [], None
    ckpt = read_checkpoint(path)
    kept = sum(v.kept for v in ckpt.variables)
    lines = [f"read {len(ckpt.variables)} variables from {ckpt.prefix}: {kept} kept, "
             f"{len(ckpt.variables) - kept} dropped", *_drop_summary(ckpt.variables)]
    unchecked = [v.name for v in ckpt.variables if v.kept and v.readable and not v.has_checksum]
    if unchecked:
        lines.append(f"  note: {len(unchecked)} kept variable(s) have no crc32c, read unverified: "
                     f"{_listing(unchecked)}")
    return ckpt.model_tensors(), rules if rules is not None else HIGHRES3DNET_NIFTYNET_RULES, lines, ckpt


@cli.command("convert")
@click.argument("path", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Output .safetensors file (a .pth/.pt name writes torch.save format instead).")
@click.option("--network", default="highres3dnet", show_default=True,
              help="Network whose state_dict must come out: a registered name (see 'niftyport networks'), "
                   "'auto' (the one whose NiftyNet names the checkpoint holds), 'none' (no key or shape "
                   "checks) or 'package.module:callable'.")
@click.option("--num-classes", type=click.IntRange(min=1), help="NiftyNet's num_classes (default: the network's).")
@click.option("--acti-func", help="NiftyNet's activation_function (default: the network's; with auto, detected).")
@click.option("--in-channels", type=click.IntRange(min=1), help="Input channels (default: the network's).")
@click.option("--option", "options", multiple=True, metavar="KEY=JSON",
              help="A NiftyNet hyper-parameter of the network, e.g. 'n_features=[8,16,32,64,128]'; repeatable.")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Rules file (JSON or TOML) mapping the source names; default: the network's NiftyNet rules.")
@click.option("--pth", "pth_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the state_dict with torch.save to this path.")
@click.option("--float32", "as_float32", is_flag=True,
              help="Store bfloat16 and float16 tensors as float32 (exactly); default: as stored.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def convert_command(path: str, output: str, network: str, num_classes: int | None, acti_func: str | None,
                    in_channels: int | None, options: tuple[str, ...], rules_path: str | None,
                    pth_path: str | None, as_float32: bool, force: bool) -> None:
    """Convert the weights at PATH (NiftyNet checkpoint, or .pth/.safetensors) to a PyTorch state_dict.

    Only model variables are converted; optimizer slots, moving-average copies
    and counters are dropped and listed. Every module key must be produced
    exactly once, with the right shape. Dtypes are kept (bfloat16 too) unless
    --float32; a variable that cannot be read (partitioned, dtype variant)
    stops the conversion only when the module needs it.
    """
    import time
    from pathlib import Path

    from ..mapping import map_tensors
    from ..tensors import widen_to_float32
    from ..weights import save_pth, save_safetensors

    outputs = [Path(output)] + ([Path(pth_path)] if pth_path else [])
    check_outputs(outputs, _checkpoint_inputs(path), force=force)
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise OptionError(f"-o and --pth name the same file {output}")
    start = time.perf_counter()
    tensors, rules, lines, ckpt = _read_source(path, rules_path)
    build = dict(num_classes=num_classes, in_channels=in_channels, acti_func=acti_func,
                 options=dict(_parse_option(o) for o in options))
    expected, target, network_rules = _expected_keys(network, list(tensors), **build)
    if network_rules is not None and rules_path is None and _has_niftynet_names(tensors, network_rules):
        rules = network_rules
    if ckpt is not None:
        lines += _needed_unreadable(ckpt, rules, expected)
    for line in lines:
        click.echo(line)
    state = map_tensors(tensors, rules, expected=expected)  # numpy: no torch unless a .pth is asked for
    if as_float32:
        state = {key: widen_to_float32(array) for key, array in state.items()}
    seconds = time.perf_counter() - start
    click.echo(f"mapped {len(state)} tensors with {rules.name} onto {target} in {seconds:.2f} s")
    for out in outputs:
        (save_pth if out.suffix.lower() in (".pth", ".pt") else save_safetensors)(state, out)
        click.echo(f"wrote {out}")


@cli.command("export")
@click.argument("weights", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Checkpoint prefix to write, e.g. OUTDIR/model.ckpt-33000 (other formats: the file or "
                   "bundle folder).")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Rules file whose reverse gives the TensorFlow names; default: built-in HighRes3DNet rules "
                   "(WEIGHTS must then hold keys of the rules' targets).")
@click.option("--global-step", type=int, default=None,
              help="Value of the global_step variable; default: the number ending the prefix (-33000).")
@click.option("--weights-only", is_flag=True,
              help="Write only the model variables, without the batch-norm zero-debias variables "
                   "NiftyNet needs to restore the checkpoint.")
@click.option("--force", is_flag=True, help="Overwrite an existing checkpoint with this prefix.")
@export_options
def export_command(weights: str, output: str, rules_path: str | None, global_step: int | None,
                   weights_only: bool, force: bool, fmt: str = "niftynet", **formats) -> None:
    """Write PyTorch WEIGHTS (.safetensors, .pth, or a checkpoint) as a NiftyNet checkpoint.

    Variables get NiftyNet's names and TensorFlow's layouts; TensorFlow reads
    the result with tf.train.load_checkpoint, NiftyNet restores it.
    --format torchscript/onnx/monai-bundle writes the network for today's tools instead.
    """
    if not checkpoint_format(fmt, dict(formats, rules_path=rules_path, global_step=global_step,
                                       weights_only=weights_only)):
        return run_export(weights, output, fmt=fmt, force=force, **formats)
    import re
    from pathlib import Path

    from ..checkpoint import checkpoint_files
    from ..mapping import HIGHRES3DNET_NIFTYNET_RULES, load_rules
    from ..weights import export_niftynet, load_state_dict, read_tensors

    prefix = Path(output)
    check_outputs(checkpoint_files(prefix), _checkpoint_inputs(weights), force=force)
    if rules_path is not None:
        rules = load_rules(rules_path)
        state, _ = read_tensors(weights)
    else:
        rules = HIGHRES3DNET_NIFTYNET_RULES
        state = load_state_dict(weights)
    debias = not weights_only
    if global_step is None and (match := re.search(r"-(\d+)$", prefix.name)):
        global_step = int(match.group(1))
    export_niftynet(state, prefix, rules=rules, global_step=global_step, debias_variables=debias)
    step = f", global_step {global_step}" if global_step is not None else ""
    extra = ", batch-norm zero-debias variables" if debias else ""
    click.echo(f"wrote NiftyNet checkpoint {prefix} ({len(state)} tensors as {rules.name} reversed{extra}{step})")
