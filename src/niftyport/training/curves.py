"""The training curves beside the log: loss per iteration, validation loss and Dice, as one PNG.

Drawn on matplotlib's Agg canvas without ``pyplot`` (no global state, no
display), written to a temporary file and renamed (:func:`~niftyport.outputs.atomic_output`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..outputs import atomic_output

__all__ = ["CURVES_NAME", "write_curves"]

#: the PNG, in ``model_dir`` beside the CSV logs
CURVES_NAME = "training_curves.png"
#: per-class Dice lines are drawn up to this many classes (else only the mean)
MAX_CLASS_LINES = 10


def write_curves(path: Path, training: Sequence[tuple[int, float, float]],
                 validation: Sequence[tuple[int, float, float, np.ndarray]] = ()) -> Path:
    """Write the PNG ``path``.

    ``training``: ``(iteration, loss, total_loss)`` rows; ``validation``:
    ``(iteration, loss, total_loss, dice)`` rows, ``dice`` ``(C,)`` per class
    (NaN for a class in neither segmentation). The top panel has the losses
    (``total_loss`` only where it differs, i.e. with regularisation), the
    bottom one the validation Dice: the mean over the foreground classes
    (1 .. C-1, NaNs left out) and, for few classes, each class.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6 if validation else 3.5), dpi=90)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.97, bottom=0.09 if validation else 0.15, hspace=0.08)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if validation else 1, 1, sharex=True, squeeze=False)[:, 0]
    it, loss, total = (np.array([row[k] for row in training], dtype=np.float64) for k in range(3))
    ax = axes[0]
    ax.plot(it, loss, lw=1, label="loss (training)")
    if np.any(total != loss):
        ax.plot(it, total, lw=1, label="total_loss (training)")
    if validation:
        v_it = np.array([row[0] for row in validation])
        ax.plot(v_it, [row[1] for row in validation], "o-", ms=3, lw=1, label="loss (validation)")
        dice = np.array([row[3] for row in validation], dtype=np.float64)
        bottom = axes[1]
        if dice.shape[1] > 1:
            with np.errstate(invalid="ignore"):
                foreground = dice[:, 1:]
                counts = np.sum(~np.isnan(foreground), axis=1)
                mean = np.where(counts > 0, np.nansum(foreground, axis=1) / np.maximum(counts, 1), np.nan)
            bottom.plot(v_it, mean, "o-", ms=3, lw=1.5, color="black", label="mean (foreground)")
        if dice.shape[1] <= MAX_CLASS_LINES:
            for c in range(dice.shape[1]):
                bottom.plot(v_it, dice[:, c], lw=0.8, alpha=0.7, label=f"class {c}")
        bottom.set_ylabel("validation Dice")
        bottom.set_ylim(-0.02, 1.02)
        bottom.legend(fontsize=7, ncol=2)
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    axes[-1].set_xlabel("iteration")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
