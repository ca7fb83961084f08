"""L1/L2 weight regularisation as NiftyNet 0.6.0 adds ``[NETWORK] decay`` to the training loss.

``SegmentationApplication.initialise_network``
(``niftynet/application/segmentation_application.py``) gives the network
``w_regularizer = b_regularizer = l2_regularizer(decay)`` (``l1_regularizer``
for ``reg_type = L1``; any other ``reg_type``, or ``decay = 0``, none). Each
layer that receives it (``ConvLayer``'s kernel and bias, ``BNLayer``'s
``beta`` and ``gamma``, PReLU's ``alpha`` ... ``layer/convolution.py``,
``layer/bn.py``, ``layer/activation.py``) creates its variable with that
regulariser, which adds one scalar to ``REGULARIZATION_LOSSES``:

* L2: ``decay * sum(w ** 2) / 2`` (``tf.nn.l2_loss``), L1: ``decay * sum(|w|)``.

The application then trains on ``loss = data_loss + mean(those scalars)`` --
the *mean* over the regularised variables, not their sum -- prints both
(``total_loss``, and ``loss``, the data loss alone) and uses ``total_loss``
for validation and early stopping. Which variables a network regularises is
its own code's choice (DenseVNet passes the regularisers to no layer,
UNet3D not to its up-sampling layers ...): each network's
:attr:`~niftyport.networks.NetworkSpec.unregularised` says which of its
trainable variables are left out, checked against NiftyNet's graphs.
Frozen variables (``vars_to_freeze``) keep their term, as in NiftyNet.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TrainingError
from ..mapping import RuleSet

__all__ = ["Regulariser", "make_regulariser", "regularisation_term", "regularised_names"]


def regularised_names(trainable: Iterable[str], unregularised: str | None) -> list[str]:
    """The trainable variables (NiftyNet's names) that carry NiftyNet's regulariser, in the given order.

    >>> regularised_names(["N/conv/w", "N/up_2x2_bn/deconv_/w"], r"/up_2x2_bn/")
    ['N/conv/w']
    """
    if unregularised is None:
        raise TrainingError("which variables this network regularises is not known: use [NETWORK] decay = 0")
    names = list(trainable)
    if not unregularised:
        return names
    pattern = re.compile(unregularised)
    return [name for name in names if not pattern.search(name)]


def regularisation_term(tensors: Iterable[torch.Tensor], decay: float, reg_type: str = "L2") -> torch.Tensor:
    """``mean_i(decay * sum(w_i ** 2) / 2)`` (L2) or ``mean_i(decay * sum(|w_i|))`` (L1), float32, differentiable.

    >>> round(float(regularisation_term([torch.tensor([1.0, 2.0]), torch.tensor([3.0])], 0.1)), 6)
    0.35
    """
    kind = reg_type.lower()
    if kind not in ("l1", "l2"):
        raise TrainingError(f"[NETWORK] reg_type = {reg_type}: NiftyNet knows L1 and L2")
    scale = torch.tensor(decay, dtype=torch.float32)
    terms = [scale.to(t.device) * (t.square().sum() / 2 if kind == "l2" else t.abs().sum()) for t in tensors]
    if not terms:
        raise TrainingError("no variable carries a regulariser")
    return torch.stack(terms).mean()


@dataclass(frozen=True)
class Regulariser:
    """The regularisation term of one model: ``names`` (NiftyNet's) of the ``parameters`` it sums."""

    names: tuple[str, ...]
    parameters: tuple[nn.Parameter, ...]
    decay: float
    reg_type: str = "L2"

    def __call__(self) -> torch.Tensor:
        return regularisation_term(self.parameters, self.decay, self.reg_type)


def make_regulariser(model: nn.Module, rules: RuleSet, *, decay: float, reg_type: str = "L2",
                     unregularised: str | None = "") -> Regulariser | None:
    """NiftyNet's regulariser for ``model`` (None when ``decay <= 0``, as NiftyNet adds nothing then).

    ``unregularised``: the network's :attr:`~niftyport.networks.NetworkSpec.unregularised`.
    Every trainable variable counts, frozen ones included.
    """
    if decay <= 0:
        return None
    from .state import _model_variables

    keys = _model_variables(model, rules)
    params = dict(model.named_parameters())
    trainable = {keys[k][0]: params[k] for k in params if k in keys}
    names = regularised_names(trainable, unregularised)
    regulariser = Regulariser(tuple(names), tuple(trainable[n] for n in names), float(decay), reg_type)
    regulariser()  # checks reg_type and that something is regularised
    return regulariser

