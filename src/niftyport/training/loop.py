"""One training iteration as NiftyNet runs it, and its console line.

NiftyNet's iteration (``ApplicationDriver.loop_step`` with the
``ApplyGradients`` and ``ConsoleLogger`` handlers) is one ``session.run`` of
the loss and the gradient op: the network runs in training mode (batch norm
with the batch's moments), the loss is computed, the batch-norm moving
averages are updated, then the gradients of the optimised variables are
applied. The loss it prints is therefore the one *before* that
iteration's update. With ``[NETWORK] decay > 0`` the optimised loss is
``total_loss = loss + regularisation`` (:mod:`.regularisation`); NiftyNet
prints both.

A validation iteration (``validation_every_n``) runs the same graph without
the gradient op: the network is still built with ``is_training=True`` (the
application's action is training), so batch norm normalises with the
batch's moments, but the moving averages are not updated (their update ops
run with ``ApplyGradients`` only, ``engine/handler_gradient.py``) and nothing
is optimised; :func:`validation_step`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batchnorm import BatchNormTraining
from .losses import segmentation_loss
from .optimisers import TFOptimizer

__all__ = ["LossSettings", "StepLosses", "class_overlaps", "format_loss", "train_step", "train_step_losses",
           "validation_step"]


@dataclass(frozen=True)
class LossSettings:
    """NiftyNet's ``[TRAINING] loss_type`` and ``[SEGMENTATION] softmax``."""

    loss_type: str = "Dice"
    softmax: bool = True


@dataclass(frozen=True)
class StepLosses:
    """``loss``: the data loss; ``total_loss``: with the regularisation term (equal without one);
    ``overlaps``: ``(3, C)`` per-class counts of :func:`class_overlaps` (validation only)."""

    loss: float
    total_loss: float
    overlaps: np.ndarray | None = None


def train_step(model: nn.Module, optimiser: TFOptimizer, batch_norm: BatchNormTraining, image: torch.Tensor,
               label: torch.Tensor, *, loss: LossSettings = LossSettings(),
               weight_map: torch.Tensor | None = None,
               regulariser: Callable[[], torch.Tensor] | None = None) -> float:
    """One iteration on one batch; returns the data loss (before the update), a Python float.

    ``image`` is ``(N, C_in, X, Y, Z)`` and ``label`` ``(N, 1, X, Y, Z)`` (or
    ``(N, X, Y, Z)``) integer classes, torch's layout; ``model`` is put in
    training mode. ``regulariser``: the term added to the optimised loss
    (:class:`~niftyport.training.regularisation.Regulariser`); see :func:`train_step_losses`.
    """
    return train_step_losses(model, optimiser, batch_norm, image, label, loss=loss, weight_map=weight_map,
                             regulariser=regulariser).loss


def train_step_losses(model: nn.Module, optimiser: TFOptimizer, batch_norm: BatchNormTraining,
                      image: torch.Tensor, label: torch.Tensor, *, loss: LossSettings = LossSettings(),
                      weight_map: torch.Tensor | None = None,
                      regulariser: Callable[[], torch.Tensor] | None = None) -> StepLosses:
    """As :func:`train_step`, returning the data loss and ``total_loss`` (the one optimised)."""
    model.train()
    optimiser.zero_grad(set_to_none=True)
    with batch_norm.capture():
        logits = model(image)
    value = segmentation_loss(logits, label, loss.loss_type, softmax=loss.softmax, weight_map=weight_map)
    total = value + regulariser() if regulariser is not None else value
    total.backward()
    batch_norm.apply()
    optimiser.step()
    return StepLosses(float(value.detach()), float(total.detach()))


@torch.no_grad()
def validation_step(model: nn.Module, batch_norm: BatchNormTraining, image: torch.Tensor, label: torch.Tensor, *,
                    loss: LossSettings = LossSettings(), weight_map: torch.Tensor | None = None,
                    regulariser: Callable[[], torch.Tensor] | None = None, num_classes: int | None = None
                    ) -> StepLosses:
    """One validation iteration: training-mode forward (batch moments), no update of anything.

    Returns the losses and, with ``num_classes``, the per-class overlap
    counts of the arg-max segmentation (:func:`class_overlaps`).
    """
    model.train()
    with batch_norm.capture():
        logits = model(image)
    batch_norm.discard()
    value = segmentation_loss(logits, label, loss.loss_type, softmax=loss.softmax, weight_map=weight_map)
    total = value + regulariser() if regulariser is not None else value
    overlaps = None
    if num_classes is not None:
        overlaps = class_overlaps(logits.argmax(dim=1).cpu().numpy(), label.reshape(logits.shape[0], *logits.shape[2:])
                                  .cpu().numpy(), num_classes)
    return StepLosses(float(value), float(total), overlaps)


def class_overlaps(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``(3, num_classes)`` int64: per class the voxels in both, in the prediction, in the truth.

    Dice of class ``c`` is ``2 * both / (predicted + true)`` (undefined when
    both are 0); summing the counts over batches gives the Dice of them all.

    >>> class_overlaps(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3).tolist()
    [[1, 1, 1], [1, 2, 1], [1, 1, 2]]
    """
    p, t = np.asarray(prediction).ravel(), np.asarray(truth).ravel().astype(np.int64)
    both = np.bincount(p[p == t], minlength=num_classes)[:num_classes]
    return np.stack([both, np.bincount(p, minlength=num_classes)[:num_classes],
                     np.bincount(t, minlength=num_classes)[:num_classes]]).astype(np.int64)


def format_loss(value: float) -> str:
    """The log's form of a loss, 7 decimals.

    >>> format_loss(0.81234564)
    'loss 0.8123456'
    """
    return f"loss {value:.7f}"
