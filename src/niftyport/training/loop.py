"""One training iteration as NiftyNet runs it, and its console line.

NiftyNet's iteration (``ApplicationDriver.loop_step`` with the
``ApplyGradients`` and ``ConsoleLogger`` handlers) is one ``session.run`` of
the loss and the gradient op: the network runs in training mode (batch norm
with the batch's moments), the loss is computed, the batch-norm moving
averages are updated, then the gradients of the optimised variables are
applied. The loss it prints is therefore the one *before* that
iteration's update.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .batchnorm import BatchNormTraining
from .losses import segmentation_loss
from .optimisers import TFOptimizer

__all__ = ["LossSettings", "format_loss", "train_step"]


@dataclass(frozen=True)
class LossSettings:
    """NiftyNet's ``[TRAINING] loss_type`` and ``[SEGMENTATION] softmax``."""

    loss_type: str = "Dice"
    softmax: bool = True


def train_step(model: nn.Module, optimiser: TFOptimizer, batch_norm: BatchNormTraining, image: torch.Tensor,
               label: torch.Tensor, *, loss: LossSettings = LossSettings(),
               weight_map: torch.Tensor | None = None) -> float:
    """One iteration on one batch; returns the loss (before the update), a Python float.

    ``image`` is ``(N, C_in, X, Y, Z)`` and ``label`` ``(N, 1, X, Y, Z)`` (or
    ``(N, X, Y, Z)``) integer classes, torch's layout; ``model`` is put in
    training mode.
    """
    model.train()
    optimiser.zero_grad(set_to_none=True)
    with batch_norm.capture():
        logits = model(image)
    value = segmentation_loss(logits, label, loss.loss_type, softmax=loss.softmax, weight_map=weight_map)
    value.backward()
    batch_norm.apply()
    optimiser.step()
    return float(value.detach())


def format_loss(value: float) -> str:
    """The log's form of a loss, 7 decimals.

    >>> format_loss(0.81234564)
    'loss 0.8123456'
    """
    return f"loss {value:.7f}"
