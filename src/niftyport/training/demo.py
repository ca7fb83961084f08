"""``niftyport finetune --demo``: a 3-class tissue head on the pretrained HighRes3DNet, offline, on a CPU.

Data, all inside nilearn's wheel: the MNI152 2009 T1 template at 1 mm
(:func:`niftyport.segmentation.demo.mni152_t1`) and its grey- and
white-matter probability maps (``load_mni152_gm_template``,
``load_mni152_wm_template``, on the T1's grid). The target is
:func:`tissue_classes`: ``argmax(1 - gm - wm, gm, wm)`` per voxel, so 0 is
everything else (CSF, skull, background), 1 grey and 2 white matter.

Both are cut to the field of view of ``niftyport demo``
(:data:`~niftyport.segmentation.demo.DEMO_FOV`) and written into
``OUT/data/images`` and ``OUT/data/labels``; the fine-tune reads them through
the new model's config (:mod:`niftyport.training.finetune`). After
NiftyNet's preprocessing (10 voxels of padding), the axial slab
:attr:`DemoSettings.held_out` (slices of the padded volume) is held out:
training windows are drawn from the two blocks of slices below and above
it (:func:`slab_blocks`), so no training window contains a held-out voxel,
not even as context. The held-out slab is then segmented by the fine-tuned
network in eval mode (moving batch-norm statistics) on the slab with
:attr:`DemoSettings.context` slices of context on each side, and scored by
Dice per class (:func:`dice_per_class`) on its voxels inside the field of view.
"""
from __future__ import annotations

import csv
import html
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..outputs import check_outputs, write_text_atomic
from ..reporting.colortable import ColorTable, Label, write_ctbl
from .data import TrainingVolume, window_batches
from .finetune import FinetuneOptions, finetune_volumes, load_pair, output_paths, prepare, write_outputs
from .loop import LossSettings

__all__ = ["CLASSES", "DemoSettings", "dice_per_class", "held_out_prediction", "run_finetune_demo",
           "slab_blocks", "tissue_classes", "tissue_target"]

#: The demo's classes, in label order.
CLASSES = ("other", "grey matter", "white matter")
_COLOURS = ((0, 0, 0, 0), (230, 159, 0, 255), (86, 180, 233, 255))


@dataclass(frozen=True)
class DemoSettings:
    """The demo's choices (measured to finish in minutes on 2 CPU cores; see the README).

    ``held_out``: the held-out axial slab, ``(first, stop)`` slices of the
    padded network input; ``context``: slices of context on each side when
    segmenting it; ``fov``: the field of view cut from the template (voxels);
    the rest are :class:`~niftyport.training.finetune.FinetuneOptions`.
    """

    window: tuple[int, int, int] = (32, 32, 32)
    batch_size: int = 1
    max_iter: int = 100
    lr: float = 0.01
    freeze: str = r"conv_0_bn|res_1|res_2|res_3"
    loss: str = "Dice"
    seed: int = 0
    held_out: tuple[int, int] = (56, 72)
    context: int = 16
    fov: tuple[int, int, int] = (116, 140, 108)


def tissue_classes(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """``argmax(1 - gm - wm, gm, wm)`` per voxel, uint8 (ties: the first); probabilities ``(X, Y, Z)`` in [0, 1].

    >>> tissue_classes(np.array([0.0, 0.6, 0.2, 0.3]), np.array([0.0, 0.3, 0.7, 0.3])).tolist()
    [0, 1, 2, 0]
    """
    gm, wm = np.asarray(gm, dtype=np.float64), np.asarray(wm, dtype=np.float64)
    other = np.clip(1.0 - gm - wm, 0.0, None)
    return np.argmax(np.stack([other, gm, wm]), axis=0).astype(np.uint8)


def tissue_target() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """The MNI152 T1 (float32) and its tissue classes (uint8), one grid, from nilearn's wheel."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template
    from nilearn.image import resample_to_img

    from ..segmentation.demo import mni152_t1

    t1 = mni152_t1()
    maps = []
    for load in (load_mni152_gm_template, load_mni152_wm_template):
        img = load(resolution=1)
        if img.shape != t1.shape or not np.allclose(img.affine, t1.affine):
            img = resample_to_img(img, t1, interpolation="linear")
        maps.append(np.asarray(img.get_fdata(dtype=np.float32)))
    return t1, nib.Nifti1Image(tissue_classes(*maps), t1.affine)


def slab_blocks(volume: TrainingVolume, held_out: tuple[int, int], window: Sequence[int]) -> list[TrainingVolume]:
    """The parts of ``volume`` below and above the axial slab ``held_out`` (z slices), those a window fits in."""
    first, stop = held_out
    blocks = [(0, first), (stop, volume.image.shape[2])]
    out = [TrainingVolume(f"{volume.subject_id}_z{a}-{b}", volume.image[:, :, a:b], volume.label[:, :, a:b])
           for a, b in blocks if b - a >= window[2]]
    if not out:
        raise ValueError(f"no block outside slab {held_out} holds a window {tuple(window)}")
    return out


@torch.no_grad()
def held_out_prediction(model: torch.nn.Module, image: np.ndarray, held_out: tuple[int, int],
                        context: int) -> np.ndarray:
    """Labels of the slab ``held_out`` of ``image`` (``(X, Y, Z)`` network input): ``(X, Y, stop - first)`` int64.

    The network (eval mode) sees the slab with ``context`` slices each side (fewer at the volume's ends).
    """
    first, stop = held_out
    low, high = max(first - context, 0), min(stop + context, image.shape[2])
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image[None, None, :, :, low:high])).to(device)
    labels = model.eval()(x).argmax(dim=1)[0].cpu().numpy()
    return labels[:, :, first - low: stop - low]


def dice_per_class(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> list[float]:
    """Dice ``2|P∩T| / (|P| + |T|)`` of classes ``0 .. num_classes - 1`` (NaN for a class absent from both).

    >>> dice_per_class(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 4)
    [1.0, 0.6666666666666666, 0.6666666666666666, nan]
    """
    from ..reporting.compare import dice_per_label

    found = dice_per_label(np.asarray(target), np.asarray(prediction))
    return [float(found.get(c, float("nan"))) for c in range(num_classes)]


def _paths(output_dir: Path) -> dict[str, Path]:
    data = output_dir / "data"
    return {"image": data / "images" / "mni152.nii.gz", "label": data / "labels" / "mni152.nii.gz",
            "table": output_dir / "tissue.ctbl", "dice_csv": output_dir / "held_out_dice.csv",
            "figure": output_dir / "held_out.png", "report": output_dir / "report.html"}


def _table() -> ColorTable:
    return ColorTable({i: Label(i, name.replace(" ", "-"), rgba) for i, (name, rgba) in
                       enumerate(zip(CLASSES, _COLOURS))}, source="niftyport finetune --demo")


def run_finetune_demo(output_dir: str | Path = "niftyport-finetune-demo", *, settings: DemoSettings = DemoSettings(),
                      device: str = "cpu", force: bool = False, echo: Callable[[str], None] = print) -> str:
    """Fine-tune, segment the held-out slab, write the model, Dice and report; returns a summary."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = Path(output_dir)
    paths = _paths(out)
    options = FinetuneOptions(num_classes=len(CLASSES), freeze=settings.freeze, max_iter=settings.max_iter,
                              lr=settings.lr, loss=settings.loss, window=settings.window,
                              batch_size=settings.batch_size, seed=settings.seed, device=device)
    check_outputs([*paths.values(), *output_paths(out, options).values()], [], force=force)
    t1, target = tissue_target()
    from ..segmentation.demo import centred_crop

    image, label = centred_crop(t1, settings.fov), None
    label = target.slicer[tuple(slice(int(round(o)), int(round(o)) + n) for o, n in
                                zip(np.linalg.solve(t1.affine, image.affine)[:3, 3], image.shape))]
    for key, img in (("image", image), ("label", label)):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, paths[key])
    write_ctbl(_table(), paths["table"])
    pairs, sections, config, landmarks, start, model_paths = prepare(
        paths["image"].parent, paths["label"].parent, out, options, force=True)
    volume = load_pair(pairs[0], config)
    blocks = slab_blocks(volume, settings.held_out, settings.window)
    echo(f"{start.spec.name}: new head {len(start.new)} variables, {len(start.frozen)} frozen; training on "
         f"{len(blocks)} blocks of {volume.image.shape} (slab z {settings.held_out} held out)")
    batches = window_batches(blocks, settings.window, batch_size=settings.batch_size, seed=settings.seed)
    train_tic = time.perf_counter()
    losses = finetune_volumes(start, batches, iterations=range(1, settings.max_iter + 1),
                              loss=LossSettings(settings.loss), log_path=model_paths["log"], echo=echo)
    train_seconds = time.perf_counter() - train_tic
    eval_tic = time.perf_counter()
    pad = config.network.volume_padding_size
    predicted = held_out_prediction(start.model, volume.image, settings.held_out, settings.context)
    inside = (slice(pad[0], volume.image.shape[0] - pad[0]), slice(pad[1], volume.image.shape[1] - pad[1]))
    truth = volume.label[:, :, settings.held_out[0]:settings.held_out[1]]
    dice = dice_per_class(predicted[inside], truth[inside], len(CLASSES))
    eval_seconds = time.perf_counter() - eval_tic
    seconds = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "training": train_seconds,
               "held_out_segmentation": eval_seconds}
    extra = {"demo": {"settings": asdict(settings), "dice": dict(zip(CLASSES, dice)),
                      "held_out_voxels": int(truth[inside].size),
                      "seconds": {k: round(v, 1) for k, v in seconds.items()}}}
    result = write_outputs(start, out, sections, landmarks, options, model_paths, losses, seconds["wall"], extra)
    _write_dice(paths["dice_csv"], dice, truth[inside])
    middle = (settings.held_out[1] - settings.held_out[0]) // 2
    figure = _figure(volume.image[inside][:, :, settings.held_out[0] + middle], truth[inside][:, :, middle],
                     predicted[inside][:, :, middle], dice, settings.held_out[0] + middle)
    from ..reporting.plots import save_png

    save_png(figure, paths["figure"])
    write_text_atomic(paths["report"], _report_html(dice, settings, seconds, losses, paths))
    return _summary(dice, seconds, result, paths, settings)


def _write_dice(path: Path, dice: Sequence[float], truth: np.ndarray) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", "name", "dice", "voxels"])
    for c, (name, value) in enumerate(zip(CLASSES, dice)):
        writer.writerow([c, name, f"{value:.4f}", int(np.count_nonzero(truth == c))])
    write_text_atomic(path, buffer.getvalue())


def _figure(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, dice: Sequence[float], z: int):
    """Image, target and prediction of one axial slice (``(X, Y)`` arrays, RAS: x right, y anterior)."""
    from ..reporting.plots import _new_figure

    fig = _new_figure(7.5, 3.2)
    lut = np.array(_COLOURS, dtype=np.float64) / 255.0
    lut[0] = (0, 0, 0, 1)
    panels = (("image (network input)", None), ("target (nilearn GM/WM)", truth), ("fine-tuned prediction", predicted))
    for i, (title, labels) in enumerate(panels):
        ax = fig.add_axes((i / 3 + 0.005, 0.02, 1 / 3 - 0.01, 0.82))
        ax.imshow(image.T, cmap="gray", origin="lower", interpolation="nearest")
        if labels is not None:
            ax.imshow(lut[labels.T], origin="lower", interpolation="nearest", alpha=0.6)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"held-out axial slice z={z} (padded input); Dice grey {dice[1]:.3f}, white {dice[2]:.3f}",
                 fontsize=8)
    return fig


def _report_html(dice, settings: DemoSettings, seconds, losses, paths) -> str:
    rows = "".join(f"<tr><td>{c}</td><td>{html.escape(n)}</td><td>{d:.4f}</td></tr>"
                   for c, (n, d) in enumerate(zip(CLASSES, dice)))
    return (f"<!doctype html><meta charset='utf-8'><title>niftyport finetune --demo</title>"
            f"<h1>Fine-tuned HighRes3DNet: tissue classes on a held-out slab</h1>"
            f"<p>{settings.max_iter} iterations, window {settings.window}, batch {settings.batch_size}, "
            f"lr {settings.lr}, loss {settings.loss}, frozen <code>{html.escape(settings.freeze)}</code>; "
            f"held-out slab z {settings.held_out}; last loss {losses[-1][1]:.4f}.</p>"
            f"<table border=1><tr><th>label</th><th>class</th><th>Dice</th></tr>{rows}</table>"
            f"<p>wall {seconds['wall']:.0f} s, CPU {seconds['cpu']:.0f} s (training {seconds['training']:.0f} s, "
            f"held-out segmentation {seconds['held_out_segmentation']:.0f} s)</p>"
            f"<img src='{paths['figure'].name}' alt='image, target and prediction'>\n")


def _summary(dice, seconds, result, paths, settings: DemoSettings) -> str:
    return "\n".join([
        "held-out Dice: " + ", ".join(f"{n} {d:.3f}" for n, d in zip(CLASSES, dice)),
        f"time:    wall {seconds['wall']:.0f} s, CPU {seconds['cpu']:.0f} s (training {seconds['training']:.0f} s "
        f"for {settings.max_iter} iterations, held-out slab {seconds['held_out_segmentation']:.0f} s)",
        f"model:   {result.checkpoint} (run it: niftyport segment IMAGE --config {result.config})",
        f"report:  {paths['report']} ({paths['figure'].name}, {paths['dice_csv'].name})",
    ])
