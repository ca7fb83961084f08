"""NiftyNet 0.6.0's segmentation losses (``niftynet/layer/loss_segmentation.py``) in PyTorch.

Two levels, as in NiftyNet:

* one function per loss, on **one batch element** in NiftyNet's flattened
  layout: ``prediction`` ``(V, C)`` (V voxels in x, y, z order, C classes;
  probabilities, or logits for the cross-entropy losses), ``labels`` ``(V,)``
  integer classes (or ``(V, C)`` one-hot for the ``*_Dense`` losses),
  ``weight_map`` ``(V,)`` or None;
* :func:`segmentation_loss`, NiftyNet's ``LossFunction``: takes torch's
  ``(N, C, X, Y, Z)`` logits, applies the softmax over classes unless the loss
  is a cross-entropy one (``CrossEntropy``, ``CrossEntropy_Dense``,
  ``DicePlusXEnt`` take logits: NiftyNet switches its softmax off for any loss
  whose function name starts with ``cross_entropy`` or holds ``xent``),
  computes the loss of each batch element and returns their mean.

The ``[TRAINING] loss_type`` names are NiftyNet's (``SUPPORTED_LOSS_SEGMENTATION``
in ``niftynet/engine/application_factory.py``); :data:`LOSSES` lists them.
``VolEnforcement`` is not ported. Every loss is a float32 computation, as NiftyNet's
(WGDL in float64, then float32, as NiftyNet).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..errors import TrainingError

__all__ = ["LOSSES", "LossSpec", "cross_entropy", "cross_entropy_dense", "dice", "dice_dense",
           "dice_dense_nosquare", "dice_nosquare", "dice_plus_xent", "flatten_batch", "generalised_dice",
           "get_loss", "segmentation_loss", "sensitivity_specificity", "tversky", "wasserstein_dice"]

#: NiftyNet's smoothing constant of the Dice-type losses and SensSpec, Tversky.
EPSILON = 1e-5

#: The label-space distance matrix of NiftyNet's WGDL (``M_tree`` in loss_segmentation.py):
#: background 0, then four classes of the BraTS tree (Fidon et al., BrainLes 2017).
M_TREE = ((0.0, 1.0, 1.0, 1.0, 1.0),
          (1.0, 0.0, 0.6, 0.2, 0.5),
          (1.0, 0.6, 0.0, 0.6, 0.7),
          (1.0, 0.2, 0.6, 0.0, 0.5),
          (1.0, 0.5, 0.7, 0.5, 0.0))


def _one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(V,)`` integer labels -> ``(V, C)`` one-hot in ``like``'s dtype (NiftyNet's ``labels_to_one_hot``)."""
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise TrainingError(f"labels must be integers in [0, {num_classes}) for {num_classes} classes, "
                            f"found {int(labels.min())}..{int(labels.max())}")
    return F.one_hot(labels, num_classes).to(like.dtype)


def _weights(weight_map: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``(V, 1)`` voxel weights (ones without a map), broadcast over the classes."""
    if weight_map is None:
        return torch.ones((like.shape[0], 1), dtype=like.dtype, device=like.device)
    return weight_map.reshape(-1, 1).to(like.dtype)


# --------------------------------------------------------------------------- one batch element

def dice(prediction: torch.Tensor, labels: torch.Tensor, weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``Dice``: 1 - mean over classes of ``(2 sum(w g p) + eps) / (sum(w p^2) + sum(w g) + eps)``.

    Squared prediction in the denominator (Milletari et al. 2016); g the
    one-hot labels, w the voxel weights (1 without a map), eps 1e-5.
    """
    one_hot, w = _one_hot(labels, prediction.shape[1], prediction), _weights(weight_map, prediction)
    numerator = 2.0 * (w * one_hot * prediction).sum(0)
    denominator = (w * prediction.square()).sum(0) + (w * one_hot).sum(0)
    return 1.0 - ((numerator + EPSILON) / (denominator + EPSILON)).mean()


def dice_nosquare(prediction: torch.Tensor, labels: torch.Tensor,
                  weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``Dice_NS``: as :func:`dice` with ``sum(w p)`` instead of ``sum(w p^2)``."""
    one_hot, w = _one_hot(labels, prediction.shape[1], prediction), _weights(weight_map, prediction)
    numerator = 2.0 * (w * one_hot * prediction).sum(0)
    denominator = (w * prediction).sum(0) + (w * one_hot).sum(0)
    return 1.0 - ((numerator + EPSILON) / (denominator + EPSILON)).mean()


def _no_weights(weight_map: torch.Tensor | None, loss: str) -> None:
    if weight_map is not None:
        raise TrainingError(f"{loss} takes no weight map (NiftyNet raises NotImplementedError)")


def dice_dense(prediction: torch.Tensor, one_hot: torch.Tensor, weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``Dice_Dense``: labels given as ``(V, C)`` scores; 1 - mean of ``(2 sum(g p) + eps) / (sum(p^2) + sum(g^2) + eps)``."""
    _no_weights(weight_map, "Dice_Dense")
    one_hot = one_hot.reshape(prediction.shape).to(prediction.dtype)
    numerator = 2.0 * (prediction * one_hot).sum(0)
    denominator = prediction.square().sum(0) + one_hot.square().sum(0)
    return 1.0 - ((numerator + EPSILON) / (denominator + EPSILON)).mean()


def dice_dense_nosquare(prediction: torch.Tensor, one_hot: torch.Tensor,
                        weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``Dice_Dense_NS``: as :func:`dice_dense` with ``sum(p) + sum(g)`` in the denominator."""
    _no_weights(weight_map, "Dice_Dense_NS")
    one_hot = one_hot.reshape(prediction.shape).to(prediction.dtype)
    numerator = 2.0 * (prediction * one_hot).sum(0)
    denominator = prediction.sum(0) + one_hot.sum(0)
    return 1.0 - ((numerator + EPSILON) / (denominator + EPSILON)).mean()


def generalised_dice(prediction: torch.Tensor, labels: torch.Tensor, weight_map: torch.Tensor | None = None, *,
                     type_weight: str = "Square") -> torch.Tensor:
    """``GDSC``: generalised Dice loss (Sudre et al., DLMIA 2017), NiftyNet 0.6.0's variant.

    Per class c: ``ref_c = sum(w g)``, ``seg_c = sum(w p)``, ``inter_c = sum(w g p)``;
    weights ``1 / ref_c^2`` (``Square``), ``1 / ref_c`` (``Simple``) or 1
    (``Uniform``); a class absent from the labels (infinite weight) gets the
    largest finite weight (0 when none is finite). Then
    ``1 - 2 sum(W inter) / sum(W max(seg + ref, 1))`` with no epsilon; a
    0/0 score counts as 1 (loss 0).
    """
    one_hot, w = _one_hot(labels, prediction.shape[1], prediction), _weights(weight_map, prediction)
    ref = (w * one_hot).sum(0)
    intersect = (w * one_hot * prediction).sum(0)
    seg = (w * prediction).sum(0)
    if type_weight == "Square":
        weights = torch.reciprocal(ref.square())
    elif type_weight == "Simple":
        weights = torch.reciprocal(ref)
    elif type_weight == "Uniform":
        weights = torch.ones_like(ref)
    else:
        raise TrainingError(f"unknown type_weight {type_weight!r} (NiftyNet's: Square, Simple, Uniform)")
    infinite = torch.isinf(weights)
    largest = torch.where(infinite, torch.zeros_like(weights), weights).max()
    weights = torch.where(infinite, largest, weights)
    score = 2.0 * (weights * intersect).sum() / (weights * torch.clamp(seg + ref, min=1.0)).sum()
    score = torch.where(torch.isnan(score), torch.ones_like(score), score)
    return 1.0 - score


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``CrossEntropy``: softmax cross-entropy of the logits, mean over voxels.

    With a weight map: ``sum(ce * w) / max(sum(w), 1e-6)``.
    """
    _one_hot(labels, logits.shape[1], logits)  # the same range check
    entropy = F.cross_entropy(logits, labels.long(), reduction="none")
    if weight_map is None:
        return entropy.mean()
    w = weight_map.reshape(-1).to(logits.dtype)
    return (entropy * w / torch.clamp(w.sum(), min=1e-6)).sum()


def cross_entropy_dense(logits: torch.Tensor, one_hot: torch.Tensor,
                        weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``CrossEntropy_Dense``: softmax cross-entropy against ``(V, C)`` label scores, mean over voxels."""
    _no_weights(weight_map, "CrossEntropy_Dense")
    one_hot = one_hot.reshape(logits.shape).to(logits.dtype)
    return -(one_hot * F.log_softmax(logits, dim=1)).sum(1).mean()


def dice_plus_xent(logits: torch.Tensor, labels: torch.Tensor,
                   weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``DicePlusXEnt`` (Isensee et al., No-New-Net): ``(C,)`` per-class losses, cross-entropy plus negative Dice.

    ``xent - (2 sum(w g s) + eps) / (sum(w s) + sum(w g) + eps)`` per class,
    s the softmax of the logits (no square). NiftyNet returns this vector
    per batch element and averages it with the batch, so the loss is
    ``xent - mean over classes of the Dice``.
    """
    xent = cross_entropy(logits, labels, weight_map)
    soft = torch.softmax(logits, dim=1)
    one_hot, w = _one_hot(labels, logits.shape[1], logits), _weights(weight_map, logits)
    numerator = 2.0 * (w * one_hot * soft).sum(0)
    denominator = (w * soft).sum(0) + (w * one_hot).sum(0)
    return -(numerator + EPSILON) / (denominator + EPSILON) + xent


def sensitivity_specificity(prediction: torch.Tensor, labels: torch.Tensor, weight_map: torch.Tensor | None = None,
                            *, r: float = 0.05) -> torch.Tensor:
    """``SensSpec`` (Brosch et al., MICCAI 2015), NiftyNet's form; the weight map is ignored, as NiftyNet does.

    With ``e = (g - p)^2``: ``sum over classes of r * sum(e g) / (sum(g) + eps)
    + (1 - r) * sum(e (1 - g)) / (sum(1 - g) + eps)``, r 0.05.
    """
    one_hot = _one_hot(labels, prediction.shape[1], prediction)
    one_cold = 1.0 - one_hot
    error = (one_hot - prediction).square()
    first = (error * one_hot).sum(0) / (one_hot.sum(0) + EPSILON)
    second = (error * one_cold).sum(0) / (one_cold.sum(0) + EPSILON)
    return (r * first + (1.0 - r) * second).sum()


def tversky(prediction: torch.Tensor, labels: torch.Tensor, weight_map: torch.Tensor | None = None, *,
            alpha: float = 0.5, beta: float = 0.5) -> torch.Tensor:
    """``Tversky`` (Salehi et al. 2017), summed over all classes at once as NiftyNet does.

    ``tp = sum(w p g)``, ``fp = alpha sum(w p (1 - g))``, ``fn = beta sum(w (1 - p) g)``;
    ``1 - tp / (tp + fp + fn + eps)``.
    """
    one_hot, w = _one_hot(labels, prediction.shape[1], prediction), _weights(weight_map, prediction)
    tp = (w * prediction * one_hot).sum()
    fp = alpha * (w * prediction * (1.0 - one_hot)).sum()
    fn = beta * (w * (1.0 - prediction) * one_hot).sum()
    return 1.0 - tp / (tp + fp + fn + EPSILON)


def wasserstein_dice(prediction: torch.Tensor, labels: torch.Tensor,
                     weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """``WGDL``: generalised Wasserstein Dice loss (Fidon et al. 2017) with NiftyNet's :data:`M_TREE`.

    Per voxel ``delta = sum_ij M[i, j] p_i g_j``; ``tp = sum over voxels of
    M[0, label] (1 - delta)``; ``1 - 2 tp / (2 tp + sum(delta))``, in float64.
    At most 5 classes (the size of the matrix); the weight map is ignored, as NiftyNet does.
    """
    num_classes = prediction.shape[1]
    if num_classes > len(M_TREE):
        raise TrainingError(f"WGDL is defined for at most {len(M_TREE)} classes (NiftyNet's M_tree), "
                            f"got {num_classes}")
    m = torch.tensor(M_TREE, dtype=torch.float64, device=prediction.device)[:num_classes, :num_classes]
    one_hot = _one_hot(labels, num_classes, prediction).double()
    p = prediction.double()
    delta = ((p @ m) * one_hot).sum(1)
    true_pos = ((one_hot @ m[0]) * (1.0 - delta)).sum()
    return (1.0 - 2.0 * true_pos / (2.0 * true_pos + delta.sum())).to(prediction.dtype)


# --------------------------------------------------------------------------- NiftyNet's LossFunction

@dataclass(frozen=True)
class LossSpec:
    """A loss of :data:`LOSSES`: its function, whether it takes logits (no softmax first), dense labels."""

    function: Callable[..., torch.Tensor]
    takes_logits: bool = False
    dense_labels: bool = False


#: NiftyNet's ``loss_type`` names.
LOSSES: dict[str, LossSpec] = {
    "CrossEntropy": LossSpec(cross_entropy, takes_logits=True),
    "CrossEntropy_Dense": LossSpec(cross_entropy_dense, takes_logits=True, dense_labels=True),
    "Dice": LossSpec(dice),
    "Dice_NS": LossSpec(dice_nosquare),
    "Dice_Dense": LossSpec(dice_dense, dense_labels=True),
    "Dice_Dense_NS": LossSpec(dice_dense_nosquare, dense_labels=True),
    "Tversky": LossSpec(tversky),
    "GDSC": LossSpec(generalised_dice),
    "DicePlusXEnt": LossSpec(dice_plus_xent, takes_logits=True),
    "WGDL": LossSpec(wasserstein_dice),
    "SensSpec": LossSpec(sensitivity_specificity),
}


def get_loss(loss_type: str) -> LossSpec:
    """The :class:`LossSpec` of NiftyNet's ``loss_type`` (exact name, as NiftyNet's factory wants it)."""
    if loss_type in LOSSES:
        return LOSSES[loss_type]
    close = [name for name in LOSSES if name.lower() == str(loss_type).lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise TrainingError(f"unknown loss_type {loss_type!r}{hint} (NiftyNet's: {', '.join(LOSSES)})")


def flatten_batch(x: torch.Tensor, *, channels: bool) -> torch.Tensor:
    """Torch layout -> NiftyNet's flattened per-element layout.

    ``channels=True``: ``(N, C, *spatial)`` -> ``(N, V, C)`` (channels last,
    voxels in x, y, z order as NiftyNet reshapes ``(N, X, Y, Z, C)``);
    ``channels=False``: ``(N, *spatial)`` or ``(N, 1, *spatial)`` -> ``(N, V)``.
    """
    if channels:
        return x.movedim(1, -1).reshape(x.shape[0], -1, x.shape[1])
    return x.reshape(x.shape[0], -1)


def segmentation_loss(logits: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor,
                      loss_type: str = "Dice", *, softmax: bool = True,
                      weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """NiftyNet's ``LossFunction``: the mean over the batch of the loss of each element.

    Args:
        logits: ``(N, C, *spatial)`` network output (torch layout), or a list of
            them (NiftyNet's multi-scale case: the mean of their losses).
        labels: ``(N, *spatial)`` or ``(N, 1, *spatial)`` integer classes; for the
            ``*_Dense`` losses ``(N, C, *spatial)`` scores.
        loss_type: a name of :data:`LOSSES`.
        softmax: NiftyNet's ``[SEGMENTATION] softmax``: apply the softmax over
            classes first (ignored by the cross-entropy losses, which take logits).
        weight_map: ``(N, *spatial)`` or ``(N, 1, *spatial)`` voxel weights.

    Returns a 0-d tensor (float32 for float32 logits).
    """
    spec = get_loss(loss_type)
    if isinstance(logits, (list, tuple)):
        return torch.stack([segmentation_loss(x, labels, loss_type, softmax=softmax, weight_map=weight_map)
                            for x in logits]).mean()
    prediction = flatten_batch(logits, channels=True)
    if softmax and not spec.takes_logits:
        prediction = torch.softmax(prediction, dim=-1)
    truth = flatten_batch(labels, channels=spec.dense_labels)
    weights = None if weight_map is None else flatten_batch(weight_map, channels=False)
    if truth.shape[:2] != prediction.shape[:2]:
        raise TrainingError(f"labels of shape {tuple(labels.shape)} do not match logits of shape "
                            f"{tuple(logits.shape)} ({loss_type})")
    per_element = [spec.function(prediction[b], truth[b], None if weights is None else weights[b])
                   for b in range(prediction.shape[0])]
    return torch.stack(per_element).mean()
