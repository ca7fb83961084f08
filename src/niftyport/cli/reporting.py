"""``niftyport compare`` / ``volumes`` / ``report``: check a label map by numbers and by eye."""
from __future__ import annotations

import click

from ..outputs import check_outputs
from . import cli

LABELS_HELP = ("Label names: a 3D Slicer colour table (.ctbl), 'gif' (HighRes3DNet's 160 GIF labels, shipped), "
               "or 'none'. Default: the .ctbl beside the label map, else the table of the network its header names.")


def _colour_table(label_map, labels_option):
    from ..reporting.labels import table_for

    return table_for(label_map, labels_option)


@cli.command("compare")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--labels", "labels_path", help=LABELS_HELP)
@click.option("--tolerance", default="0", show_default=True,
              help="Differing voxels allowed for exit status 0: a count, or a percentage such as 0.01%.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the whole result (every label) to this JSON file.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0),
              help="How many of the worst labels to list.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.pass_context
def compare_command(ctx, a, b, labels_path, tolerance, json_path, top, force):
    """Compare two label maps on the same grid, voxel by voxel.

    Prints the number (and percentage) of differing voxels and the labels that
    differ, worst Dice first, with voxels and mm^3 in both. Exit status: 0 when
    at most --tolerance voxels differ, 1 when more do, 2 for bad input
    (unreadable files, different grids or affines).
    """
    from ..outputs import write_text_atomic
    from ..reporting.compare import check_same_grid, compare_labels, tolerance_voxels
    from ..reporting.volumes import load_label_image

    tolerance_voxels(tolerance, 0)  # check the option's syntax before reading any image
    first, second = load_label_image(a), load_label_image(b)
    table = _colour_table(a, labels_path)
    check_same_grid(first.data.shape, first.affine, second.data.shape, second.affine, name_a=a, name_b=b)
    allowed = tolerance_voxels(tolerance, first.data.size)
    if json_path:
        check_outputs([json_path], [a, b, labels_path], force=force)
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
@click.option("--labels", "labels_path", help=LABELS_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="CSV file to write (default: print the CSV).")
@click.option("--with-background", is_flag=True, help="Also list label 0.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def volumes_command(parcellation, labels_path, output, with_background, force):
    """Volume of every label: id, name, side, voxels, mm^3 (voxel size from the header),
    and for Right-/Left- structures the other side's id, volume and the asymmetry.
    """
    from ..reporting.volumes import format_volumes_csv, label_volumes, load_label_image, write_volumes_csv

    image = load_label_image(parcellation)
    table = _colour_table(parcellation, labels_path)
    volumes = label_volumes(image.data, image.voxel_mm3, table, include_background=with_background)
    if output:
        check_outputs([output], [parcellation, labels_path], force=force)
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
@click.option("--labels", "labels_path", help=LABELS_HELP)
@click.option("--weights", help="Pretrained weights for the kernel figure (checkpoint, .pth, "
                                ".safetensors); default: weights already on this machine.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="NiftyNet .ini for the preprocessing figures (default: the model-zoo settings).")
@click.option("--convention", type=click.Choice(["radiological", "neurological"]),
              default="radiological", show_default=True, help="Left/right display convention.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for index.html and the figures (created if needed).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def report_command(image, parcellation, reference, labels_path, weights, config_path, convention, output,
                   force):
    """Write an HTML report (OUTPUT/index.html, images embedded) and its PNGs.

    Slices of the input and the parcellation (and the reference and a difference
    map), intensity histograms before and after preprocessing, the foreground
    mask, kernel-weight distributions (random vs pretrained) and a volume table.
    """
    from pathlib import Path

    from ..reporting.report import report_files

    table = _colour_table(parcellation, labels_path)
    result, notes = report_files(image, parcellation, output, reference=reference, table=table, weights=weights,
                                 config_path=config_path, convention=convention, force=force,
                                 other_inputs=[labels_path])
    click.echo(f"wrote {Path(output) / 'index.html'} and {len(result.files) - 1} other files")
    for key, note in notes.items():
        if note:
            click.echo(f"note: {key} section left out: {note}", err=True)
    if result.compare is not None:
        click.echo(f"number of different voxels: {result.compare.n_different} "
                   f"({result.compare.percent_different:.4f} %)")
