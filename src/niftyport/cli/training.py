"""``niftyport train``: NiftyNet's ``net_segment train`` for a config, in PyTorch."""
from __future__ import annotations

import click

from . import cli


@cli.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="NiftyNet .ini file with [TRAINING], the image and label sections.")
@click.option("--weights", type=click.Path(path_type=str),
              help="Checkpoint to start from instead of model_dir/models/model.ckpt-<starting_iter>.")
@click.option("--niftynet-home", type=click.Path(file_okay=False, path_type=str),
              help="NiftyNet home folder for relative paths in the config (default: ~/niftynet).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the window sampler.")
@click.option("--max-iter", type=click.IntRange(min=1), help="Override [TRAINING] max_iter.")
@click.option("--force", is_flag=True, help="Replace the checkpoints and log of an earlier run.")
def train_command(config_path, weights, niftynet_home, device, threads, seed, max_iter, force):
    """Train or fine-tune the config's network with NiftyNet's semantics.

    Prints 'iter N loss 0.1234567' per iteration (the loss before that
    iteration's update), writes model_dir/training_log.csv, and every
    save_every_n iterations and at the end model_dir/models/model.ckpt-<iter>
    (a NiftyNet checkpoint with optimiser slots) and its .safetensors.
    Augmentation, validation, samplers other than uniform and L2 decay are
    refused (not supported yet).
    """
    from ..config import load_config
    from ..segmentation.pipeline import resolve_device, torch_threads
    from ..training.run import TrainOptions, train

    config = load_config(config_path, niftynet_home=niftynet_home)
    options = TrainOptions(weights=weights, device=str(resolve_device(device)), seed=seed, max_iter=max_iter,
                           force=force)
    with torch_threads(threads):
        result = train(config, options, echo=click.echo)
    click.echo(f"wrote {result.checkpoints[-1]} and {result.log}")
