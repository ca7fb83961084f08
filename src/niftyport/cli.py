"""The ``niftyport`` command line: one console script, one subcommand per job.

Each subcommand only parses options and calls the library; user mistakes
(:class:`~niftyport.errors.NiftyportError`) are printed as one line,
``niftyport: error: <message>``, with exit status 2. ``--debug`` shows the
traceback instead.
"""
from __future__ import annotations

import sys

import click

from . import __version__
from .errors import NiftyportError
from .outputs import check_outputs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="niftyport")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run NiftyNet models (HighRes3DNet brain parcellation) in PyTorch."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --- checkpoint commands ---
# niftyport variables / convert / export: read NiftyNet (TensorFlow) checkpoints, convert them to
# PyTorch weights, and write PyTorch weights back as a NiftyNet checkpoint.

def _shape_text(shape: tuple[int, ...]) -> str:
    """``(3, 3, 3, 1, 16)`` -> ``"3x3x3x1x16"``; ``()`` -> ``"scalar"`` (TensorFlow's listing style)."""
    return "x".join(str(n) for n in shape) if shape else "scalar"


def _checkpoint_inputs(path):
    """Every file a checkpoint input consists of (no output may replace one)."""
    import glob
    from pathlib import Path

    from .checkpoint import STATE_FILE, is_checkpoint, resolve_prefix

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

    from .architecture import state_dict_shapes

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
def variables_command(path: str, csv_path: str | None, show_all: bool, verify: bool) -> None:
    """List the variables of the TensorFlow checkpoint PATH: name, shape, dtype, kept or dropped and why.

    PATH is a checkpoint prefix (model.ckpt-33000), its .index or .data file,
    or a folder with a 'checkpoint' file.
    """
    import csv
    import io
    from pathlib import Path

    from .checkpoint import atomic_output, read_checkpoint

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
        check_outputs([out], _checkpoint_inputs(path), force=True)
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

    from .checkpoint import is_checkpoint, read_checkpoint
    from .mapping import HIGHRES3DNET_NIFTYNET_RULES, load_rules, map_tensors
    from .weights import read_tensors, save_pth, save_safetensors

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
def export_command(weights: str, output: str, rules_path: str | None, global_step: int | None,
                   weights_only: bool, force: bool) -> None:
    """Write PyTorch WEIGHTS (.safetensors, .pth, or a checkpoint) as a NiftyNet checkpoint.

    Variables get NiftyNet's names and TensorFlow's layouts; TensorFlow reads
    the result with tf.train.load_checkpoint, NiftyNet restores it.
    """
    import re
    from pathlib import Path

    from .checkpoint import checkpoint_files
    from .mapping import HIGHRES3DNET_NIFTYNET_RULES, load_rules
    from .weights import export_niftynet, load_state_dict, read_tensors

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


# --- compare/report commands ---
# niftyport compare / volumes / report: check a parcellation by numbers (differing voxels, Dice,
# volumes) and by eye (slices, overlays, histograms, kernel weights in one HTML page).

def _colour_table(labels_path):
    from .colortable import read_ctbl

    return read_ctbl(labels_path) if labels_path else None


@cli.command("compare")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="3D Slicer colour table (.ctbl) naming the labels, e.g. GIFNiftyNet.ctbl.")
@click.option("--tolerance", default="0", show_default=True,
              help="Differing voxels allowed for exit status 0: a count, or a percentage such as 0.01%.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the whole result (every label) to this JSON file.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0),
              help="How many of the worst labels to list.")
@click.pass_context
def compare_command(ctx, a, b, labels_path, tolerance, json_path, top):
    """Compare two label maps on the same grid, voxel by voxel.

    Prints the number (and percentage) of differing voxels and the labels that
    differ, worst Dice first, with voxels and mm^3 in both. Exit status: 0 when
    at most --tolerance voxels differ, 1 when more do, 2 for bad input
    (unreadable files, different grids or affines).
    """
    from .outputs import write_text_atomic
    from .compare import check_same_grid, compare_labels, tolerance_voxels
    from .volumes import load_label_image

    tolerance_voxels(tolerance, 0)  # check the option's syntax before reading any image
    table = _colour_table(labels_path)
    first, second = load_label_image(a), load_label_image(b)
    check_same_grid(first.data.shape, first.affine, second.data.shape, second.affine, name_a=a, name_b=b)
    allowed = tolerance_voxels(tolerance, first.data.size)
    if json_path:
        check_outputs([json_path], [a, b, labels_path])
    result = compare_labels(first.data, second.data, voxel_mm3=first.voxel_mm3, table=table,
                            name_a=a, name_b=b)
    click.echo(result.summary(top=top))
    within = result.within(allowed)
    click.echo(f"{'within' if within else 'NOT within'} tolerance of {allowed} voxels")
    if json_path:
        from pathlib import Path

        write_text_atomic(Path(json_path), result.to_json(tolerance_voxels=allowed))
    ctx.exit(0 if within else 1)


@cli.command("volumes")
@click.argument("parcellation", type=click.Path(dir_okay=False))
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="3D Slicer colour table (.ctbl) naming the labels.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="CSV file to write (default: print the CSV).")
@click.option("--with-background", is_flag=True, help="Also list label 0.")
def volumes_command(parcellation, labels_path, output, with_background):
    """Volume of every label: id, name, side, voxels, mm^3 (voxel size from the header),
    and for Right-/Left- structures the other side's id, volume and the asymmetry.
    """
    from .volumes import format_volumes_csv, label_volumes, load_label_image, write_volumes_csv

    table = _colour_table(labels_path)
    image = load_label_image(parcellation)
    volumes = label_volumes(image.data, image.voxel_mm3, table, include_background=with_background)
    if output:
        check_outputs([output], [parcellation, labels_path])
        write_volumes_csv(volumes, output)
        total = sum(v.mm3 for v in volumes)
        click.echo(f"wrote {output}: {len(volumes)} labels, {total:.1f} mm^3 "
                   f"({image.voxel_mm3:g} mm^3 per voxel)")
    else:
        click.echo(format_volumes_csv(volumes), nl=False)


@cli.command("report")
@click.argument("image", type=click.Path(dir_okay=False))
@click.argument("parcellation", type=click.Path(dir_okay=False))
@click.option("--reference", type=click.Path(dir_okay=False),
              help="A second parcellation on the same grid (e.g. NiftyNet's output) to compare with.")
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="3D Slicer colour table (.ctbl); without it a built-in palette is used.")
@click.option("--weights", help="Pretrained weights for the kernel figure (checkpoint, .pth, "
                                ".safetensors); default: weights already on this machine.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="NiftyNet .ini for the preprocessing figures (default: the model-zoo settings).")
@click.option("--convention", type=click.Choice(["radiological", "neurological"]),
              default="radiological", show_default=True, help="Left/right display convention.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for index.html and the figures (created if needed).")
def report_command(image, parcellation, reference, labels_path, weights, config_path, convention, output):
    """Write an HTML report (OUTPUT/index.html, images embedded) and its PNGs.

    Slices of the input and the parcellation (and the reference and a difference
    map), intensity histograms before and after preprocessing, the foreground
    mask, kernel-weight distributions (random vs pretrained) and a volume table.
    """
    from pathlib import Path

    from .compare import check_same_grid
    from .report import FILES, ReportInputs, kernels_from_weights, preprocessing_from_image, write_report
    from .volumes import load_label_image

    table = _colour_table(labels_path)
    t1, labels = _load_report_image(image), load_label_image(parcellation)
    check_same_grid(t1[0].shape, t1[1], labels.data.shape, labels.affine, name_a=image, name_b=parcellation)
    ref = None
    if reference:
        ref = load_label_image(reference)
        check_same_grid(labels.data.shape, labels.affine, ref.data.shape, ref.affine,
                        name_a=parcellation, name_b=reference)
    check_outputs([Path(output) / name for name in FILES],
                      [image, parcellation, reference, labels_path, config_path])
    notes = {}
    pre, notes["preprocessing"] = preprocessing_from_image(image, config_path)
    kernels, notes["kernels"] = kernels_from_weights(weights)
    inputs = ReportInputs(t1[0], labels.data, labels.affine, labels.voxel_mm3, table,
                          image_name=Path(image).name, labels_name=Path(parcellation).name,
                          reference=None if ref is None else ref.data,
                          reference_name=Path(reference).name if reference else "reference",
                          preprocessing=pre, kernels=kernels, notes=notes)
    result = write_report(inputs, output, convention=convention)
    click.echo(f"wrote {Path(output) / 'index.html'} and {len(result.files) - 1} other files")
    for key, note in notes.items():
        if note:
            click.echo(f"note: {key} section left out: {note}", err=True)
    if result.compare is not None:
        click.echo(f"number of different voxels: {result.compare.n_different} "
                   f"({result.compare.percent_different:.4f} %)")


def _load_report_image(path):
    """``(data float32 (X, Y, Z), affine (4, 4))`` of the input scan."""
    import numpy as np

    from .image_io import load_image

    img = load_image(path)
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)


# --- parcellation commands ---
# niftyport parcellate / demo: the whole NiftyNet inference pipeline in PyTorch.

def _output_path_for(image_path: str) -> str:
    """``dir/t1.nii.gz`` -> ``dir/t1_parcellation.nii.gz`` (next to the input)."""
    from pathlib import Path

    from .subjects import split_name

    path = Path(image_path)
    return str(path.with_name(split_name(path.name) + "_parcellation.nii.gz"))


def _run_options(f):
    """Options shared by ``parcellate`` and ``demo``."""
    options = [
        click.option("--weights", help="Weights: a NiftyNet checkpoint, our .safetensors/.pth, or the "
                                       "third-party .pth (default: $NIFTYPORT_WEIGHTS, the cache, or a "
                                       "one-time download)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda or cuda:N."),
        click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the network."),
        click.option("--mode", default="niftynet", show_default=True,
                     help="niftynet: NiftyNet's exact output; see README for faster modes."),
        click.option("--max-memory", help="Working-memory budget for the network, e.g. 8G or 512M."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar, errors only."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _memory_bytes(text):
    if text is None:
        return None
    from .inference import parse_memory

    return parse_memory(text)


def _setup_logging(quiet: bool) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="niftyport: %(message)s")


@cli.command("parcellate")
@click.argument("image", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="Output label map (default: IMAGE's name + _parcellation.nii.gz, next to it).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=str),
              help="NiftyNet .ini file (default: the model zoo's highres3dnet_config_eval.ini).")
@click.option("--niftynet-home", type=click.Path(file_okay=False, path_type=str),
              help="NiftyNet home folder for relative paths in the config (default: ~/niftynet).")
@click.option("--window", type=click.IntRange(min=8), help="Window side in voxels (multiple of 8).")
@click.option("--border", type=click.IntRange(min=0), help="Voxels cropped from each window side.")
@click.option("--batch-size", type=click.IntRange(min=1), help="NiftyNet's batch_size.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@_run_options
def parcellate_command(image, output, config_path, niftynet_home, window, border, batch_size, force,
                       weights, device, threads, mode, max_memory, quiet):
    """Parcellate a T1 MRI into 160 GIF labels, voxel for voxel as NiftyNet.

    With no IMAGE, runs NiftyNet's own batch inference for --config: every
    file found by path_to_search / filename_contains is parcellated into
    save_seg_dir as window_seg_<subject>_<output_postfix>.nii.gz, listed in
    inferred.csv.
    """
    from pathlib import Path

    from .pipeline import resolve_config

    _setup_logging(quiet)
    if image is None and config_path is None:
        raise click.UsageError("give an IMAGE to parcellate, or a --config whose path_to_search "
                               "finds the images")
    cfg = resolve_config(config_path, niftynet_home=niftynet_home, window=window, border=border,
                         batch_size=batch_size)
    run = dict(weights=weights, device=device, threads=threads, mode=mode,
               max_memory=_memory_bytes(max_memory), progress=not quiet)
    if image is None:
        from .batch import parcellate_subjects

        written = parcellate_subjects(cfg, **run)
        click.echo(f"wrote {len(written)} label map(s) into {written[0].parent if written else '-'}")
        return
    out = Path(output or _output_path_for(image))
    check_outputs([out], [Path(image)], force=force)
    from .image_io import save_labels
    from .pipeline import run_parcellation

    result = run_parcellation(image, config=cfg, **run)
    save_labels(out, result.labels, result.affine, result.loaded.header, input_paths=[image])
    if not quiet:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        click.echo(f"{len(set(result.labels.ravel().tolist()))} labels ({took})")
    click.echo(f"wrote {out}")


@cli.command("demo")
@click.option("-o", "--output-dir", default="niftyport-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=str), help="Folder for the input and output.")
@click.option("--full-head", is_flag=True,
              help="Parcellate the whole template, not the default field of view (slower on a CPU).")
@_run_options
def demo_command(output_dir, full_head, weights, device, threads, mode, max_memory, quiet):
    """Parcellate a real T1 (the MNI152 template shipped with nilearn), offline."""
    from .demo import run_demo

    _setup_logging(quiet)
    summary = run_demo(output_dir, full_head=full_head, weights=weights, device=device,
                       threads=threads, mode=mode, max_memory=_memory_bytes(max_memory),
                       progress=not quiet)
    click.echo(summary)


def main(args: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = sys.argv[1:] if args is None else list(args)
    debug = "--debug" in argv
    try:
        status = cli.main(args=argv, prog_name="niftyport", standalone_mode=False)
        if isinstance(status, int) and not isinstance(status, bool):
            return status  # a command's ctx.exit(n): click returns n when not standalone
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("niftyport: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except NiftyportError as exc:
        if debug:
            raise
        click.echo(f"niftyport: error: {exc}", err=True)
        return 2
    except OSError as exc:  # unreadable input, unwritable output folder, full disk...
        if debug:
            raise
        click.echo(f"niftyport: error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("niftyport: interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
