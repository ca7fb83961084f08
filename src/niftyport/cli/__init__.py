"""The ``niftyport`` command line: one console script, one subcommand per job.

Each subcommand only parses options and calls the library; user mistakes
(:class:`~niftyport.errors.NiftyportError`) are printed as one line,
``niftyport: error: <message>``, with exit status 2. ``--debug`` shows the
traceback instead.
"""
from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import NiftyportError

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="niftyport")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run NiftyNet models (HighRes3DNet brain parcellation) in PyTorch."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug

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
    except click.UsageError as exc:  # usage mistakes: one line too, with where to read more
        if debug:
            raise
        where = f"niftyport {exc.ctx.info_name}" if exc.ctx is not None and exc.ctx.parent is not None \
            else "niftyport"
        message = " ".join(exc.format_message().split())
        click.echo(f"niftyport: error: {message} (see '{where} --help')", err=True)
        return 2
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"niftyport: error: {' '.join(exc.format_message().split())}", err=True)
        return 2
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

# The command groups register themselves on ``cli``.
from . import brats, checkpoint, cohort, networks, reporting, segment, segmentation, training  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
