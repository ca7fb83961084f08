"""``niftyport parcellate`` / ``demo``: NiftyNet's whole inference pipeline in PyTorch."""
from __future__ import annotations

import click

from ..outputs import check_outputs
from . import cli

class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (checked against the machine when the run starts)."""

    name = "device"

    def get_metavar(self, *args, **kwargs) -> str:
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        from ..inference.modes import DEVICES

        text = str(value).strip().lower()
        index = text.partition(":")[2]
        if text in DEVICES or (text.startswith("cuda:") and index.isdigit()):
            return text
        self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N", param, ctx)


class MachineDefaultOption(click.Option):
    """An option whose help names its default on this machine, computed when help is shown
    (:func:`~niftyport.inference.defaults.describe_defaults`: the available memory changes)."""

    def __init__(self, *args, default_key: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_key = default_key

    def get_help_record(self, ctx):
        from ..inference.defaults import describe_defaults

        self.help = describe_defaults()[self.default_key]
        return super().get_help_record(ctx)


def _run_options(f):
    """Options shared by ``parcellate`` and ``demo``."""
    from ..inference.modes import MODES

    options = [
        click.option("--weights", help="Weights: a NiftyNet checkpoint, our .safetensors/.pth, or the "
                                       "third-party .pth (default: $NIFTYPORT_WEIGHTS, else the model zoo's "
                                       "weights shipped with niftyport; see 'niftyport weights')."),
        click.option("--device", type=DeviceType(), default="auto", show_default=True,
                     help="Where the network runs: auto (CUDA when available), cpu, cuda or cuda:N."),
        click.option("--threads", type=click.IntRange(min=1), cls=MachineDefaultOption,
                     default_key="threads"),
        click.option("--mode", type=click.Choice(list(MODES)), default="niftynet", show_default=True,
                     help="niftynet: NiftyNet's exact output; niftynet-fast, full, full-eager, full-winograd trade it for speed "
                          "(see the README's Speed section)."),
        click.option("--max-memory", cls=MachineDefaultOption, default_key="max_memory"),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar, errors only."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _memory_bytes(text):
    if text is None:
        return None
    from ..inference.engines import parse_memory

    return parse_memory(text)


def _setup_logging(quiet: bool) -> None:
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="niftyport: %(message)s")


@cli.command("parcellate")
@click.argument("image", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="Output label map, in the format of its extension (default: IMAGE's name + _parcellation, "
                   "next to it, in IMAGE's format).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=str),
              help="NiftyNet .ini file (default: the model zoo's highres3dnet_config_eval.ini).")
@click.option("--niftynet-home", type=click.Path(file_okay=False, path_type=str),
              help="NiftyNet home folder for relative paths in the config (default: ~/niftynet).")
@click.option("--window", type=click.IntRange(min=8), help="Window side in voxels (multiple of 8).")
@click.option("--border", type=click.IntRange(min=0), help="Voxels cropped from each window side.")
@click.option("--batch-size", type=click.IntRange(min=1), help="NiftyNet's batch_size.")
@click.option("--no-extras", is_flag=True,
              help="Write only the label map, not its label table (.ctbl) and volumes (_volumes.csv) beside it.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--timings", type=click.Path(dir_okay=False, path_type=str),
              help="Also write, as JSON, the wall and CPU seconds of each stage (preprocessing, weights, "
                   "network, restore, writing), the peak resident memory, threads, budget and work.")
@_run_options
def parcellate_command(image, output, config_path, niftynet_home, window, border, batch_size, no_extras, force,
                       timings, weights, device, threads, mode, max_memory, quiet):
    """Parcellate a T1 MRI into 160 GIF labels, voxel for voxel as NiftyNet.

    With no IMAGE, runs NiftyNet's own batch inference for --config: every
    file found by path_to_search / filename_contains is parcellated into
    save_seg_dir as window_seg_<subject>_<output_postfix>.nii.gz, listed in
    inferred.csv.
    """
    import time
    from pathlib import Path

    from ..segmentation.pipeline import resolve_config

    started = time.perf_counter(), time.process_time()
    _setup_logging(quiet)
    if image is None and config_path is None:
        raise click.UsageError("give an IMAGE to parcellate, or a --config whose path_to_search "
                               "finds the images")
    if timings is not None and image is None:
        raise click.UsageError("--timings needs an IMAGE (one scan)")
    cfg = resolve_config(config_path, niftynet_home=niftynet_home, window=window, border=border,
                         batch_size=batch_size)
    run = dict(weights=weights, device=device, threads=threads, mode=mode,
               max_memory=_memory_bytes(max_memory), progress=not quiet)
    if image is None:
        from ..segmentation.batch import parcellate_subjects

        written = parcellate_subjects(cfg, **run)
        click.echo(f"wrote {len(written)} label map(s) into {written[0].parent if written else '-'}")
        return
    from ..segmentation.extras import extras_paths, save_label_map
    from ..segmentation.pipeline import run_parcellation

    from ..image_io import default_label_path

    out = Path(output) if output else default_label_path(image)
    check_outputs([out, *(() if no_extras else extras_paths(out)), *([timings] if timings else [])],
                  [Path(image)], force=force)
    result = run_parcellation(image, config=cfg, **run)
    t = time.perf_counter(), time.process_time()
    written = save_label_map(out, result.labels, result.affine, result.loaded.header, network=cfg.network.name,
                             input_paths=[image], extras=not no_extras)
    result.seconds["writing"] = time.perf_counter() - t[0]
    result.cpu_seconds["writing"] = time.process_time() - t[1]
    if not quiet:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        import numpy as np

        click.echo(f"{len(np.unique(result.labels))} labels ({took})")
    if timings:
        written.append(_write_timings(timings, image, result, started))
    for path in written:
        click.echo(f"wrote {path}")


def _write_timings(path, image, result, started) -> "Path":
    """The ``--timings`` JSON: per-stage wall/CPU seconds (the command's own start to the
    label map written; ``other``: option parsing and checks), peak RSS, how the network ran."""
    import json
    import resource
    import sys
    import time

    from ..outputs import write_text_atomic

    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    seconds, cpu_seconds = dict(result.seconds), dict(result.cpu_seconds)
    seconds["other"] = max(0.0, wall - sum(seconds.values()))
    cpu_seconds["other"] = max(0.0, cpu - sum(cpu_seconds.values()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record = {"image": str(image), "mode": result.mode, "seconds": seconds, "cpu_seconds": cpu_seconds,
              "total_seconds": wall, "total_cpu_seconds": cpu,
              "peak_rss": int(peak if sys.platform == "darwin" else peak * 1024), **result.run}
    return write_text_atomic(path, json.dumps(record, indent=2) + "\n")


@cli.command("demo")
@click.option("-o", "--output-dir", default="niftyport-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=str), help="Folder for the input and output.")
@click.option("--full-head", is_flag=True,
              help="Parcellate the whole template, not the default field of view (slower on a CPU).")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("--force", is_flag=True, help="Overwrite the files of an earlier run in the output folder.")
@_run_options
def demo_command(output_dir, full_head, no_report, force, weights, device, threads, mode, max_memory, quiet):
    """Parcellate a real T1 (the MNI152 template shipped with nilearn), offline: labels with their
    GIF names, volumes and an HTML report in the output folder."""
    from ..segmentation.demo import run_demo

    _setup_logging(quiet)
    summary = run_demo(output_dir, full_head=full_head, weights=weights, device=device,
                       threads=threads, mode=mode, max_memory=_memory_bytes(max_memory),
                       progress=not quiet, force=force, report=not no_report)
    click.echo(summary)
