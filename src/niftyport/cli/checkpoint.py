"""``niftyport variables`` / ``convert`` / ``export``: NiftyNet (TensorFlow) checkpoints without TensorFlow."""
from __future__ import annotations

import click

from ..errors import NiftyportError
from ..outputs import check_outputs
from . import cli
from .export import checkpoint_format, export_options, run_export

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


def _drop_summary(variables) -> list[str]:
    """One line per dropped kind: count, kind and reason, most frequent first."""
    from collections import Counter

    counts = Counter(v.kind for v in variables if not v.kept)
    reasons = {v.kind: v.reason for v in variables if not v.kept}
    return [f"  dropped {n:4d} {kind}: {reasons[kind]}" for kind, n in counts.most_common()]


def _expected_keys(spec: str):
    """What ``convert`` must produce, and its name for messages.

    ``"highres3dnet"`` -> HighRes3DNet's key/shape table (no torch needed);
    ``"none"`` -> no check; ``"package.module:callable"`` -> the module it builds.
    """
    import importlib

    from ..architecture import state_dict_shapes

    if spec.lower() == "highres3dnet":
        return state_dict_shapes(), "HighRes3DNet"
    if spec.lower() == "none":
        return None, "no module check"
    module_name, _, attr = spec.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise click.BadParameter(f"cannot build {spec!r} ({exc}); use 'highres3dnet', 'none' or "
                                 "'package.module:callable'", param_hint="--network") from None
    if not hasattr(model, "state_dict"):
        raise click.BadParameter(f"{spec!r} gave a {type(model).__name__}, not a torch.nn.Module",
                                 param_hint="--network")
    return model, type(model).__name__


@cli.command("variables")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the table as CSV: name,shape,dtype,kind,kept,reason.")
@click.option("--all/--kept-only", "show_all", default=True, show_default=True,
              help="List every variable, or only the model weights that are kept.")
@click.option("--verify", is_flag=True, help="Also read every tensor and check its crc32c.")
@click.option("--force", is_flag=True, help="Overwrite an existing --csv file.")
def variables_command(path: str, csv_path: str | None, show_all: bool, verify: bool, force: bool) -> None:
    """List the variables of the TensorFlow checkpoint PATH: name, shape, dtype, kept or dropped and why.

    PATH is a checkpoint prefix (model.ckpt-33000), its .index or .data file,
    or a folder with a 'checkpoint' file.
    """
    import csv
    import io
    from pathlib import Path

    from ..checkpoint import atomic_output, read_checkpoint

    ckpt = read_checkpoint(path)
    if verify:
        ckpt.verify()
    rows = [v for v in ckpt.variables if show_all or v.kept]
    width = max([len("name"), *(len(v.name) for v in rows)])
    shape_width = max([len("shape"), *(len(_shape_text(v.shape)) for v in rows)])
    click.echo(f"{'name':<{width}}  {'shape':<{shape_width}}  {'dtype':<8}  status")
    for v in rows:
        status = "kept" if v.kept else f"dropped ({v.kind}): {v.reason}"
        click.echo(f"{v.name:<{width}}  {_shape_text(v.shape):<{shape_width}}  {v.dtype.name:<8}  {status}")
    kept = sum(v.kept for v in ckpt.variables)
    click.echo(f"{len(ckpt.variables)} variables in {ckpt.prefix}: {kept} kept, "
               f"{len(ckpt.variables) - kept} dropped" + (", every crc32c verified" if verify else ""))
    for line in _drop_summary(ckpt.variables):
        click.echo(line)
    if csv_path is not None:
        out = Path(csv_path)
        check_outputs([out], _checkpoint_inputs(path), force=force)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "shape", "dtype", "kind", "kept", "reason"])
        for v in rows:
            writer.writerow([v.name, _shape_text(v.shape), v.dtype.name, v.kind, int(v.kept), v.reason])
        with atomic_output(out) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
        click.echo(f"wrote {out}")


@cli.command("convert")
@click.argument("path", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Output .safetensors file (a .pth/.pt name writes torch.save format instead).")
@click.option("--network", default="highres3dnet", show_default=True,
              help="Module whose state_dict must come out: 'highres3dnet', 'none' (no key or shape "
                   "checks against a module) or 'package.module:callable'.")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False, path_type=str),
              help="Rules file (JSON or TOML) mapping the source names; default: built-in HighRes3DNet rules.")
@click.option("--pth", "pth_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the state_dict with torch.save to this path.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def convert_command(path: str, output: str, network: str, rules_path: str | None,
                    pth_path: str | None, force: bool) -> None:
    """Convert the weights at PATH (NiftyNet checkpoint, or .pth/.safetensors) to a PyTorch state_dict.

    Only model variables are converted; optimizer slots, moving-average copies
    and counters are dropped and listed. Every module key must be produced
    exactly once, with the right shape.
    """
    import time
    from pathlib import Path

    from ..checkpoint import is_checkpoint, read_checkpoint
    from ..mapping import HIGHRES3DNET_NIFTYNET_RULES, load_rules, map_tensors
    from ..weights import read_tensors, save_pth, save_safetensors

    outputs = [Path(output)] + ([Path(pth_path)] if pth_path else [])
    check_outputs(outputs, _checkpoint_inputs(path), force=force)
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise NiftyportError(f"-o and --pth name the same file {output}")
    expected, target = _expected_keys(network)
    start = time.perf_counter()
    if is_checkpoint(path):
        ckpt = read_checkpoint(path)
        kept = sum(v.kept for v in ckpt.variables)
        click.echo(f"read {len(ckpt.variables)} variables from {ckpt.prefix}: {kept} kept, "
                   f"{len(ckpt.variables) - kept} dropped")
        for line in _drop_summary(ckpt.variables):
            click.echo(line)
        tensors, rules = ckpt.model_tensors(), HIGHRES3DNET_NIFTYNET_RULES
    else:
        tensors, rules = read_tensors(path)
    if rules_path is not None:
        rules = load_rules(rules_path)
    state = map_tensors(tensors, rules, expected=expected)  # numpy: no torch unless a .pth is asked for
    seconds = time.perf_counter() - start
    click.echo(f"mapped {len(state)} tensors with {rules.name} onto {target} in {seconds:.2f} s")
    for out in outputs:
        (save_pth if out.suffix.lower() in (".pth", ".pt") else save_safetensors)(state, out)
        click.echo(f"wrote {out}")


@cli.command("export")
@click.argument("weights", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Checkpoint prefix to write, e.g. OUTDIR/model.ckpt-33000.")
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
