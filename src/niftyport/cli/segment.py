"""``niftyport segment``: any NiftyNet segmentation config, as ``net_segment inference`` runs it."""
from __future__ import annotations

import click

from . import cli
from .segmentation import DeviceType, _memory_bytes, _setup_logging


@cli.command("segment")
@click.argument("images", nargs=-1, type=click.Path(dir_okay=False, path_type=str))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="The model's NiftyNet .ini file (network, sampler, normalisation, outputs).")
@click.option("--weights", help="A NiftyNet checkpoint (prefix, file or folder) or .safetensors/.pth "
                                "(default: the config's <model_dir>/models/model.ckpt-<inference_iter>).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=str),
              help="Output file, in the format of its extension (.nii.gz, .mgz, ...; default: the first IMAGE's "
                   "name + _segmentation, next to it, in its format).")
@click.option("--niftynet-home", type=click.Path(file_okay=False, path_type=str),
              help="NiftyNet home folder for relative paths in the config (default: ~/niftynet).")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--device", type=DeviceType(), default="auto", show_default=True,
              help="Where the network runs: auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the network.")
@click.option("--max-memory", help="Memory budget, e.g. 8G or 512M: for reading each scan, the padded input with "
                                   "its output, HighRes3DNet's engine (default: 3/4 of the memory).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, errors only.")
def segment_command(images, config_path, weights, output, niftynet_home, force, device, threads, max_memory,
                    quiet):
    """Segment with a NiftyNet model, as NiftyNet's `net_segment inference` does.

    IMAGES: one scan per image modality, in the order of the config's
    [SEGMENTATION] image (e.g. `image = T1, T2`: the T1, then the T2). With
    no IMAGES, every subject the config's input sections find is segmented
    into save_seg_dir as window_seg_<subject>_<output_postfix>.nii.gz,
    listed in inferred.csv (NIfTI, as NiftyNet writes). The output holds
    int32 labels, or with output_prob = True the float32 class
    probabilities (X, Y, Z, 1, classes; in an .mgz (X, Y, Z, classes)).
    """
    from pathlib import Path

    from ..outputs import check_outputs
    from ..segmentation.application import resolve_segment_config

    _setup_logging(quiet)
    cfg = resolve_segment_config(config_path, niftynet_home=niftynet_home)
    run = dict(device=device, threads=threads, max_memory=_memory_bytes(max_memory), progress=not quiet)
    if not images:
        if output is not None:
            raise click.UsageError("-o/--output needs IMAGES; without them the outputs go to save_seg_dir")
        from ..segmentation.batch import segment_subjects

        written = segment_subjects(cfg, weights=weights, force=force, **run)
        click.echo(f"wrote {len(written)} output(s) and inferred.csv into {written[0].parent}")
        return
    from ..image_io import default_label_path, image_files, label_format
    from ..segmentation.application import run_segmentation

    out = Path(output) if output else default_label_path(images[0], "_segmentation")
    inputs = [Path(p) for p in images]
    label_format(out, inputs)  # a name of no known format: refused before the run
    check_outputs(image_files(out), [f for p in inputs for f in image_files(p)], force=force)
    result = run_segmentation(list(images), config=cfg, weights=weights, **run)
    result.save(out, input_paths=inputs)
    if not quiet:
        took = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        what = (f"{result.output.shape[-1]} class probabilities" if result.is_probabilities
                else f"{len(set(result.output.ravel().tolist()))} labels")
        click.echo(f"{what} ({took})")
    click.echo(f"wrote {out}")
