"""``niftyport compare`` / ``volumes`` / ``report``: check a label map by numbers and by eye."""
from __future__ import annotations

import click

from ..outputs import check_outputs
from . import cli

def _colour_table(labels_path):
    from ..reporting.colortable import read_ctbl

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
    from ..outputs import write_text_atomic
    from ..reporting.compare import check_same_grid, compare_labels, tolerance_voxels
    from ..reporting.volumes import load_label_image

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
    from ..reporting.volumes import format_volumes_csv, label_volumes, load_label_image, write_volumes_csv

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

    from ..reporting.compare import check_same_grid
    from ..reporting.report import FILES, ReportInputs, kernels_from_weights, preprocessing_from_image, write_report
    from ..reporting.volumes import load_label_image

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

    from ..image_io import load_image

    img = load_image(path)
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)
