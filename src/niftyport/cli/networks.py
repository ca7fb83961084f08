"""``niftyport networks`` / ``weights``: what niftyport can run, and which weights it uses."""
from __future__ import annotations

import click

from . import cli


@cli.command("networks")
def networks_command() -> None:
    """List the networks niftyport runs: name, dimensions, input rule, NiftyNet class, what was verified."""
    from .. import networks

    rows = [(s.name, f"{s.spatial_dims}-D", s.niftynet_class, s.status or "-") for s in networks.specs()]
    widths = [max(len(r[i]) for r in rows + [("name", "dims", "NiftyNet class", "")]) for i in range(3)]
    click.echo(f"{'name':<{widths[0]}}  {'dims':<{widths[1]}}  {'NiftyNet class':<{widths[2]}}  verified")
    for row in rows:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")


@cli.command("weights")
@click.option("--weights", help="A weights file or checkpoint to describe instead of the default ones.")
@click.option("--network", default="highres3dnet", show_default=True, help="Network whose weights to describe.")
def weights_command(weights: str | None, network: str) -> None:
    """Where the weights in use come from, their sha256 and their licence.

    The order: --weights, then $NIFTYPORT_WEIGHTS, then the weights shipped in
    the package (the NiftyNet model zoo's), then the cache.
    """
    from .. import networks
    from ..weights import find_weights, sha256_of

    spec = networks.get(network)
    found = find_weights(weights, network=spec.name, download=False)
    pretrained = spec.pretrained
    click.echo(f"network:  {spec.name} ({spec.niftynet_class})")
    click.echo(f"weights:  {found.path}")
    click.echo(f"found by: {_ORIGINS[found.origin]}")
    digest = sha256_of(found.path) if found.path.is_file() else "(a checkpoint: several files)"
    click.echo(f"sha256:   {digest}")
    if found.origin == "packaged" and pretrained is not None:
        click.echo(f"source:   NiftyNet model zoo entry {pretrained.entry}")
        click.echo(f"licence:  {pretrained.licence}")
        if pretrained.labels is not None:
            click.echo(f"labels:   {pretrained.labels}")
        click.echo(f"details:  {pretrained.provenance}")
    else:
        click.echo("licence:  that of the file's source (not shipped with niftyport)")


_ORIGINS = {"explicit": "--weights", "environment": "$NIFTYPORT_WEIGHTS", "packaged": "shipped with niftyport",
            "cache": "the download cache", "download": "a download"}
