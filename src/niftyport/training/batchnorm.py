"""Batch norm in training mode as NiftyNet's ``BNLayer`` trains it (``niftynet/layer/bn.py``).

In training, NiftyNet normalises with the batch's moments (``tf.nn.moments``
over every axis but the channels: the mean and the *biased* variance) and
updates the moving statistics with
``moving_averages.assign_moving_average(decay=0.9)``, whose default
``zero_debias=True`` keeps, for each statistic ``S/moving_mean``, two more
variables, ``S/S/moving_mean/biased`` and ``S/S/moving_mean/local_step``
(float32), and sets (``tensorflow/python/training/moving_averages.py``,
``_zero_debias``; ``d = 1 - decay`` rounded to float32)::

    biased     -= (biased - value) * d
    local_step += 1
    average     = biased / (1 - (1 - d) ** local_step)

So the moving average is rebuilt from ``biased`` and ``local_step``: the
stored ``moving_mean`` itself is never read by the update. The update runs
before the gradients are applied (``ApplyGradients`` depends on the batch-norm
update ops, ``niftynet/engine/handler_gradient.py``).

torch's ``BatchNorm`` differs twice: its running variance takes the
*unbiased* batch variance, and it has no debiasing. :class:`BatchNormTraining`
switches torch's own update off during the forward pass and applies TF's.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..networks.layers import BatchNorm

__all__ = ["DECAY", "BatchNormTraining", "Debias", "batch_norm_modules", "moments", "zero_debiased_update"]

#: ``BNLayer``'s ``moving_decay``.
DECAY = 0.9


@dataclass
class Debias:
    """The zero-debias accumulators of one moving statistic: ``biased`` (the statistic's shape), ``local_step`` (0-d).

    Both float32, as TensorFlow creates them (zeros for a fresh average).
    """

    biased: torch.Tensor
    local_step: torch.Tensor

    @classmethod
    def fresh(cls, like: torch.Tensor) -> "Debias":
        return cls(torch.zeros_like(like), torch.zeros((), dtype=like.dtype, device=like.device))


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tf.nn.moments`` over every axis but the channels of ``x`` ``(N, C, *spatial)``: ``(mean, variance)``, ``(C,)``.

    The variance is the biased one, ``mean((x - mean)^2)``.

    >>> mean, var = moments(torch.tensor([[[1.0, 2.0, 3.0, 6.0]]]))
    >>> mean.tolist(), var.tolist()
    ([3.0], [3.5])
    """
    axes = [0, *range(2, x.dim())]
    mean = x.mean(dim=axes)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return mean, (x - mean.reshape(shape)).square().mean(dim=axes)


def zero_debiased_update(debias: Debias, value: torch.Tensor, decay: float = DECAY) -> tuple[Debias, torch.Tensor]:
    """TF's ``assign_moving_average(zero_debias=True)``: the new accumulators and the new moving average.

    >>> d, avg = zero_debiased_update(Debias.fresh(torch.zeros(1)), torch.tensor([5.0]))
    >>> round(avg.item(), 5), d.local_step.item()     # a fresh average is the first value
    (5.0, 1.0)
    """
    dtype = value.dtype
    d = torch.tensor(np.float32(1.0 - decay), dtype=dtype, device=value.device)
    biased = debias.biased - (debias.biased - value) * d
    local_step = debias.local_step + 1
    bias_factor = 1 - torch.pow(1 - d, local_step)
    return Debias(biased, local_step), biased / bias_factor


def batch_norm_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}`` of the batch norms of ``model`` (torch's and :class:`~niftyport.networks.layers.BatchNorm`)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, BatchNorm))}


class BatchNormTraining:
    """The batch norms of a model, trained as NiftyNet trains them.

    ``debias`` holds one :class:`Debias` per moving statistic, keyed by the
    module's buffer key (``"conv_0.bn.running_mean"``, ``"...running_var"``).
    Use::

        bn = BatchNormTraining(model)
        with bn.capture():            # forward: batch moments, torch's update off
            logits = model(image)
        ...backward...
        bn.apply()                    # TF's update of running_mean / running_var

    The model must be in training mode for the forward pass.
    """

    def __init__(self, model: nn.Module, decay: float = DECAY):
        self.decay = decay
        self.modules = batch_norm_modules(model)
        self.debias: dict[str, Debias] = {}
        for name, m in self.modules.items():
            for stat in ("running_mean", "running_var"):
                self.debias[f"{name}.{stat}"] = Debias.fresh(getattr(m, stat))
        self._moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @contextmanager
    def capture(self):
        """Forward passes inside see batch statistics, leave the buffers alone, and record the moments."""
        hooks, tracked = [], {}
        for name, m in self.modules.items():
            hooks.append(m.register_forward_pre_hook(self._recorder(name)))
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                tracked[name] = m.track_running_stats
                m.track_running_stats = False
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()
            for name, flag in tracked.items():
                self.modules[name].track_running_stats = flag

    def _recorder(self, name: str):
        def record(module: nn.Module, inputs: tuple) -> None:
            if not module.training:
                from ..errors import TrainingError

                raise TrainingError(f"batch norm {name!r} is in eval mode during a training forward pass")
            with torch.no_grad():
                self._moments[name] = moments(inputs[0].detach())
        return record

    @torch.no_grad()
    def apply(self) -> None:
        """Update every recorded module's moving statistics the TF way; forget the moments."""
        for name, (mean, variance) in self._moments.items():
            m = self.modules[name]
            for stat, value in (("running_mean", mean), ("running_var", variance)):
                key = f"{name}.{stat}"
                self.debias[key], average = zero_debiased_update(self.debias[key], value, self.decay)
                getattr(m, stat).copy_(average)
        self._moments.clear()

    def discard(self) -> None:
        """Forget the recorded moments without updating anything (a validation forward pass)."""
        self._moments.clear()
