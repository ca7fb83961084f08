"""``niftyport bids`` / ``cohort``: many scans on a Dask cluster, BIDS derivatives out.

``niftyport bids BIDS_DIR OUTPUT_DIR participant|group`` follows the
BIDS-Apps convention (positional arguments first; ``--participant-label 01 02``
or ``--participant_label 01 02``). Exit status: 0 when every scan succeeded,
1 when some failed (listed, and in ``errors.tsv``), 2 for bad arguments.
"""
from __future__ import annotations

import click

from . import cli
from .segmentation import DeviceType

#: Options that take several values after one flag, BIDS-Apps style.
LIST_OPTIONS = ("--participant-label", "--participant_label", "--session-label", "--session_label")


def expand_list_options(args: list[str], names: tuple[str, ...] = LIST_OPTIONS) -> list[str]:
    """``['--participant-label', '01', '02']`` -> ``['--participant-label', '01', '--participant-label', '02']``.

    Values run until the next argument starting with ``-``.

    >>> expand_list_options(["ds", "--participant-label", "01", "02", "--force"])
    ['ds', '--participant-label', '01', '--participant-label', '02', '--force']
    """
    out: list[str] = []
    flag = None
    for arg in args:
        if arg.startswith("-"):
            flag = arg if arg in names else None
            out.append(arg)
        elif flag is not None and out[-1] != flag:
            out += [flag, arg]
        else:
            out.append(arg)
    return out


class _BidsAppCommand(click.Command):
    """A command that reads ``--participant-label 01 02`` as two labels."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_list_options(list(args)))


def _cohort_options(f):
    """The options of a participant-level run, shared by ``bids`` and ``cohort``."""
    from ..inference.modes import MODES

    options = [
        click.option("--workers", type=click.IntRange(min=1),
                     help="Workers of the local Dask cluster, each one process running one scan at a time "
                          "(default 1)."),
        click.option("--threads-per-worker", type=click.IntRange(min=1),
                     help="Torch threads per scan (default: the cores shared out among the workers; with "
                          "--scheduler, each worker's cores shared out among its task slots)."),
        click.option("--scheduler", metavar="ADDRESS",
                     help="An existing Dask scheduler, e.g. tcp://host:8786, instead of a local cluster."),
        click.option("--memory-limit", metavar="SIZE",
                     help="Memory limit of each local worker, e.g. 4G (default: the memory shared out). "
                          "Each scan plans for 70%% of its worker's limit."),
        click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                     help="Extra tries of a scan whose task raised (a lost worker, a full disk...)."),
        click.option("--mode", type=click.Choice(list(MODES)), default="niftynet", show_default=True,
                     help="niftynet: NiftyNet's exact labels; the others trade them for speed."),
        click.option("--device", type=DeviceType(), default="auto", show_default=True,
                     help="Where each worker runs the network (one worker per GPU: see the README)."),
        click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=str),
                     help="NiftyNet .ini file (default: the model zoo's highres3dnet_config_eval.ini)."),
        click.option("--niftynet-home", type=click.Path(file_okay=False, path_type=str),
                     help="NiftyNet home folder for relative paths in the config (default: ~/niftynet)."),
        click.option("--window", type=click.IntRange(min=8), help="Window side in voxels (multiple of 8)."),
        click.option("--border", type=click.IntRange(min=0), help="Voxels cropped from each window side."),
        click.option("--batch-size", type=click.IntRange(min=1), help="NiftyNet's batch_size."),
        click.option("--weights", help="Weights file or checkpoint (default: the packaged model-zoo weights); "
                                       "with --scheduler, a path every worker can read."),
        click.option("--max-memory", help="Working-memory budget per scan, e.g. 8G (default: from the "
                                          "worker's memory limit)."),
        click.option("--force", is_flag=True,
                     help="Redo every scan, even those done with the same settings; write into a folder "
                          "another program made."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _cluster(workers, threads_per_worker, scheduler, memory_limit):
    from ..errors import OptionError
    from ..inference.tiling import parse_memory
    from ..cohort.engine import ClusterSpec

    if scheduler is not None and (workers is not None or memory_limit is not None):
        raise click.UsageError("--scheduler uses the workers of that cluster: give either --scheduler or "
                               "--workers/--memory-limit")
    limit = "auto"
    if memory_limit is not None:
        try:
            limit = parse_memory(memory_limit)
        except OptionError:
            raise OptionError(f"--memory-limit {memory_limit!r}: expected a size such as 4G or 512M") from None
    return ClusterSpec(workers=workers or 1, threads_per_worker=threads_per_worker, scheduler=scheduler,
                       memory_limit=limit)


def _participants(scans, output_dir, bids_dir, options):
    """Prepare, run and summarise a participant-level run; returns its :class:`~niftyport.cohort.run.Summary`."""
    from ..cohort.run import prepare, run_participants
    from ..cohort.settings import ConfigSource
    from ..inference.tiling import parse_memory

    cluster = _cluster(options["workers"], options["threads_per_worker"], options["scheduler"],
                       options["memory_limit"])
    config = ConfigSource(path=options["config_path"], niftynet_home=options["niftynet_home"],
                          window=options["window"], border=options["border"], batch_size=options["batch_size"])
    max_memory = parse_memory(options["max_memory"]) if options["max_memory"] else None
    settings = prepare(config=config, weights=options["weights"], mode=options["mode"], device=options["device"],
                       threads=cluster.torch_threads(), max_memory=max_memory, local=cluster.scheduler is None)
    summary = run_participants(scans, output_dir, settings, cluster=cluster, bids_dir=bids_dir,
                               retries=options["retries"], force=options["force"],
                               progress=not options["quiet"], echo=lambda s: click.echo(s, err=True))
    click.echo(summary.text())
    return summary


def _group(output_dir, bids_dir=None, participant_labels=(), session_labels=()) -> None:
    from ..cohort.group import run_group

    result = run_group(output_dir, bids_dir=bids_dir, participant_labels=participant_labels,
                       session_labels=session_labels)
    click.echo(f"{result.n_scans} scans: wrote {result.volumes} and {result.page}")


@cli.command("bids", cls=_BidsAppCommand)
@click.argument("bids_dir", type=click.Path(file_okay=False, path_type=str))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=str))
@click.argument("analysis_level", type=click.Choice(["participant", "group"]))
@click.option("--participant-label", "--participant_label", "participant_labels", multiple=True, metavar="LABEL",
              help="Only these participants (01 or sub-01; several after one flag, BIDS-Apps style).")
@click.option("--session-label", "--session_label", "session_labels", multiple=True, metavar="LABEL",
              help="Only these sessions (pre or ses-pre).")
@_cohort_options
@click.pass_context
def bids_command(ctx, bids_dir, output_dir, analysis_level, participant_labels, session_labels, **options):
    """Parcellate every T1w scan of a BIDS dataset (participant), or summarise the outputs (group).

    participant: sub-*/[ses-*/]anat/*_T1w.nii[.gz] -> OUTPUT_DIR/sub-*/[ses-*/]anat/*_desc-gif_dseg.nii.gz
    with a volumes table and a JSON sidecar each, on a local Dask cluster or --scheduler's; scans already
    done with the same settings and weights are skipped. group: OUTPUT_DIR/group/label_volumes_mm3.csv
    (scan x label, mm^3) and OUTPUT_DIR/group/qc.html (one slice per scan).
    """
    from ..cohort.bids import check_dataset, find_t1w

    labels = dict(participant_labels=tuple(participant_labels), session_labels=tuple(session_labels))
    if analysis_level == "group":
        from pathlib import Path

        check_dataset(Path(bids_dir).expanduser().absolute())
        _group(output_dir, bids_dir=bids_dir, **labels)
        return
    scans = find_t1w(bids_dir, **labels)
    ctx.exit(_participants(scans, output_dir, bids_dir, options).exit_status)


@cli.command("cohort")
@click.argument("source")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for the label maps, their volumes and sidecars, and group/.")
@click.option("--no-group", is_flag=True, help="Skip the volumes table and QC page of the whole cohort.")
@_cohort_options
@click.pass_context
def cohort_command(ctx, source, output_dir, no_group, **options):
    """Parcellate many scans without BIDS: SOURCE is a CSV (column path, optional id), a folder or a glob.

    Each scan gives OUTPUT_DIR/<id>_desc-gif_dseg.nii.gz, _volumes.tsv and _dseg.json; then (unless
    --no-group) OUTPUT_DIR/group/ holds the volumes of every scan and a QC page.
    """
    from ..cohort.scans import scans_from

    summary = _participants(scans_from(source), output_dir, None, options)
    if not no_group and (summary.done or summary.skipped):
        _group(output_dir)
    ctx.exit(summary.exit_status)
