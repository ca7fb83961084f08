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


@cli.command("finetune")
@click.argument("images", required=False, type=click.Path(path_type=str))
@click.argument("labels", required=False, type=click.Path(path_type=str))
@click.option("--demo", is_flag=True, help="Offline demo: a 3-class tissue head on the MNI152 template, "
                                           "Dice on held-out slabs.")
@click.option("--from", "source", default="highres3dnet", show_default=True,
              help="A network with shipped weights, or a checkpoint / .safetensors / .pth path.")
@click.option("--network", help="The network of a --from weights file (a checkpoint's names tell it).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classes of the new model (labels 0..N-1).")
@click.option("--freeze", default="", help="NiftyNet's vars_to_freeze: re.search over the TensorFlow names, "
                                           "e.g. 'res_1|res_2' (note: 'conv_0' also matches res_*/conv_0/w).")
@click.option("--max-iter", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate (NiftyNet's default 0.01).")
@click.option("--loss", default="Dice", show_default=True, help="A NiftyNet segmentation loss.")
@click.option("--optimiser", default="adam", show_default=True,
              type=click.Choice(["adam", "gradientdescent", "momentum", "nesterov", "adagrad", "rmsprop"]))
@click.option("--window", type=click.IntRange(min=1), help="Training window side in voxels (default: the "
                                                           "base config's, 96 for HighRes3DNet).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per iteration (default: the base config's).")
@click.option("--config", "base_config", type=click.Path(dir_okay=False, path_type=str),
              help="A NiftyNet .ini whose preprocessing and inference settings the new model keeps "
                   "(default: the network's model zoo config).")
@click.option("--label-table", type=click.Path(dir_okay=False, path_type=str),
              help="A label table (.ctbl) naming the classes, copied into the output folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the window sampler.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=str),
              help="Output folder, a NiftyNet model_dir (default: niftyport-finetune-demo with --demo).")
@click.option("--force", is_flag=True, help="Replace the files of an earlier run.")
def finetune_command(images, labels, demo, source, network, num_classes, freeze, max_iter, lr, loss, optimiser,
                     window, batch_size, base_config, label_table, seed, device, threads, output_dir, force):
    """Fine-tune a trained network on IMAGES and LABELS (folders paired by file name, or two files).

    An image and a label pair up when their names are equal without the
    image extension (NiftyNet's subject id: sub-01.nii.gz and sub-01.nii).
    Writes into -o a NiftyNet model_dir: config.ini (run it with
    `niftyport segment IMAGE --config OUT/config.ini`), models/model.ckpt-N
    (+ .safetensors), training_log.csv and finetune.json.
    """
    from ..segmentation.pipeline import resolve_device, torch_threads

    dev = str(resolve_device(device))
    if demo:
        if images or labels:
            raise click.UsageError("--demo takes no IMAGES or LABELS")
        from ..training.demo import run_finetune_demo

        with torch_threads(threads):
            click.echo(run_finetune_demo(output_dir or "niftyport-finetune-demo", device=dev, force=force,
                                         echo=click.echo))
        return
    if not images or not labels:
        raise click.UsageError("IMAGES and LABELS are needed (or --demo)")
    if num_classes is None:
        raise click.UsageError("--num-classes is needed")
    if output_dir is None:
        raise click.UsageError("-o/--output is needed: the new model's folder")
    from ..training.finetune import FinetuneOptions, finetune

    options = FinetuneOptions(num_classes=num_classes, source=source, network=network, base_config=base_config,
                              freeze=freeze, max_iter=max_iter, lr=lr, loss=loss, optimiser=optimiser,
                              window=(window,) * 3 if window else None, batch_size=batch_size, seed=seed,
                              device=dev, label_table=label_table)
    with torch_threads(threads):
        result = finetune(images, labels, output_dir, options, force=force, echo=click.echo)
    click.echo(f"wrote {result.checkpoint} and {result.config} ({result.seconds:.0f} s)")
