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
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the window samplers, the data split and the initial weights (starting_iter = 0).")
@click.option("--max-iter", type=click.IntRange(min=1), help="Override [TRAINING] max_iter.")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run of model_dir from its last complete checkpoint "
                   "(same results as without the interruption).")
@click.option("--early-stopping", is_flag=True,
              help="NiftyNet's early stopping ([TRAINING] patience, early_stopping_mode) even when [SYSTEM] "
                   "event_handler does not list early_stopper (niftyport's option).")
@click.option("--prefetch", type=click.IntRange(min=0),
              help="Batches a background thread prepares ahead (default: queue_length / batch_size; 0: none).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no line per iteration.")
@click.option("--force", is_flag=True, help="Replace the checkpoints and logs of an earlier run.")
def train_command(config_path, weights, niftynet_home, device, threads, seed, max_iter, resume, early_stopping,
                  prefetch, quiet, force):
    """Train or fine-tune the config's network with NiftyNet's semantics.

    Prints 'iter N loss 0.1234567' per iteration (the loss before that
    iteration's update; with [NETWORK] decay also total_loss, the optimised
    one), validation rounds indented; writes model_dir/training_log.csv,
    validation_log.csv (loss and Dice per class) and training_curves.png, and
    every save_every_n iterations and at the end model_dir/models/model.ckpt-<iter>
    (a NiftyNet checkpoint with optimiser slots), its .safetensors and the
    state --resume needs. Samplers uniform, weighted, balanced; augmentation
    by flips, scaling and rotation; elastic deformation, dropout, mixup and
    label normalisation are refused.
    """
    from ..config import load_config
    from ..segmentation.pipeline import resolve_device, torch_threads
    from ..training.run import TrainOptions, train

    config = load_config(config_path, niftynet_home=niftynet_home)
    options = TrainOptions(weights=weights, device=str(resolve_device(device)), seed=seed, max_iter=max_iter,
                           force=force, resume=resume, progress=not quiet, verbose=not quiet,
                           early_stopping=early_stopping, prefetch=prefetch)
    with torch_threads(threads):
        result = train(config, options, echo=click.echo)
    if result.stopped_early:
        click.echo(f"stopped early after iteration {result.losses[-1][0]}")
    click.echo(f"wrote {result.checkpoints[-1]} and {result.log}")
