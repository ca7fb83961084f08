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


def _parse_option(text: str) -> tuple[str, object]:
    """``KEY=JSON`` -> ``(key, value)``, e.g. ``n_features=[8,16,32,64,128]``."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r} is not KEY=JSON", param_hint="--option")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{text!r}: the value is not JSON ({exc.msg})", param_hint="--option") from None


@cli.command("forward")
@click.argument("input_path", metavar="INPUT.npy", type=click.Path(dir_okay=False, path_type=str))
@click.argument("output_path", metavar="OUTPUT.npy", type=click.Path(dir_okay=False, path_type=str))
@click.option("--network", "network", required=True, help="Registered network name (see 'niftyport networks').")
@click.option("--weights", required=True, help="NiftyNet checkpoint, or .safetensors/.pth of niftyport keys.")
@click.option("--num-classes", type=click.IntRange(min=1), help="NiftyNet's num_classes (default: the network's).")
@click.option("--acti-func", default="relu", show_default=True, help="NiftyNet's activation_function.")
@click.option("--in-channels", type=click.IntRange(min=1), help="Input channels (default: INPUT's last axis).")
@click.option("--option", "options", multiple=True, metavar="KEY=JSON",
              help="A NiftyNet hyper-parameter, e.g. 'n_features=[8,16,32,64,128]'; repeatable.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--force", is_flag=True, help="Overwrite an existing OUTPUT.")
def forward_command(input_path, output_path, network, weights, num_classes, acti_func, in_channels, options,
                    device, force):
    """Run a network on INPUT.npy and write its raw output (before softmax) to OUTPUT.npy.

    Both arrays are in NiftyNet's layout, (N, X, Y, Z, C), or (N, X, Y, C) for
    2-D networks: the tool to check a port against NiftyNet by hand.
    """
    from pathlib import Path

    from .. import networks
    from ..networks.forward import forward_niftynet_layout, load_input
    from ..outputs import atomic_output, check_outputs

    check_outputs([Path(output_path)], [Path(input_path), Path(weights)], force=force)
    spec = networks.get(network)
    array = load_input(input_path, spec)
    kwargs = dict(_parse_option(o) for o in options)
    model = networks.load(spec.name, weights, num_classes=num_classes, acti_func=acti_func,
                          in_channels=in_channels or int(array.shape[-1]), **kwargs)
    out = forward_niftynet_layout(model, array, device=device)
    import numpy as np

    with atomic_output(Path(output_path)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out, allow_pickle=False)
    click.echo(f"{spec.name}: {tuple(array.shape)} -> {tuple(out.shape)}, wrote {output_path}")
