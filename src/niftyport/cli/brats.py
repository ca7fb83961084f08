"""``niftyport brats``: the BraTS 2017 cascade of github.com/taigw/brats17, as its ``test.py`` runs it."""
from __future__ import annotations

import click

from . import cli
from .segmentation import DeviceType, _setup_logging


@cli.command("brats")
@click.argument("flair", type=click.Path(dir_okay=False, path_type=str))
@click.argument("t1", type=click.Path(dir_okay=False, path_type=str))
@click.argument("t1c", type=click.Path(dir_okay=False, path_type=str))
@click.argument("t2", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Output label map (.nii or .nii.gz): 0 background, 2 oedema, 1 core, 4 enhancing.")
@click.option("--weights-dir", type=click.Path(path_type=str),
              help="Folder of the nine checkpoints, as taigw/brats17's model17/ (default: $NIFTYPORT_BRATS17).")
@click.option("--fill", type=click.Choice(["repeat", "random"]), default="repeat", show_default=True,
              help="What tops up each view's last, short batch (batch norm uses each batch's statistics). "
                   "repeat: that batch's own sub-images again, their outputs discarded (deterministic in "
                   "the batch). random: N(0, 1) sub-images whose outputs overwrite the last slab, exactly "
                   "as test.py does.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the N(0, 1) noise test.py draws (background, padding, random fillers): "
                   "--fill random --seed N gives test.py's result after np.random.seed(N).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=str),
              help="A test.py config file (default: the published config17/test_all_class.txt).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--device", type=DeviceType(), default="auto", show_default=True,
              help="Where the networks run: auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the networks.")
@click.option("-q", "--quiet", is_flag=True, help="No progress, errors only.")
def brats_command(flair, t1, t1c, t2, output, weights_dir, fill, seed, config_path, force, device, threads, quiet):
    """Segment a brain tumour from BraTS scans: FLAIR, T1, T1 post-contrast (T1ce) and T2 of one grid.

    W-Net (whole tumour), then T-Net (core) inside its box, then E-Net
    (enhancing core) inside the core's box, each in axial, sagittal and
    coronal views with probabilities averaged, post-processed as test.py does.
    The default --fill repeat is deterministic and keeps noise images out of
    the batches; --fill random reproduces test.py.
    """
    import logging
    import time
    from pathlib import Path

    from ..image_io import check_nifti_name, save_image
    from ..outputs import check_outputs
    from ..segmentation import brats
    from ..segmentation.pipeline import resolve_device, torch_threads

    _setup_logging(quiet)
    log = logging.getLogger("niftyport.brats")
    out = check_nifti_name(output)
    inputs = [Path(p) for p in (flair, t1, t1c, t2)]
    check_outputs([out], inputs, force=force)
    config = brats.read_config(config_path) if config_path else brats.CONFIG17
    folder = brats.weights_folder(weights_dir, config)
    dev = resolve_device(device)
    started = time.time()
    with torch_threads(threads):
        img = brats.segment_brats(*inputs, weights_dir=folder, fill=fill, seed=seed, config=config, device=dev,
                                  progress=None if quiet else log.info)
    save_image(out, img, input_paths=inputs)
    if not quiet:
        import numpy as np

        labels = np.asarray(img.dataobj)
        counts = ", ".join(f"{v}: {int((labels == v).sum())}" for v in (1, 2, 4))
        click.echo(f"voxels per label {counts} ({time.time() - started:.1f} s)")
    click.echo(f"wrote {out}")
