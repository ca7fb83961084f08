"""NiftyNet 0.6.0's optimisers, computed as TensorFlow 1's kernels compute them.

NiftyNet's ``[TRAINING] optimiser`` names (``niftynet/engine/application_factory.py``,
``SUPPORTED_OPTIMIZERS``) select a ``tf.train`` optimiser with the constants
of ``niftynet/engine/application_optimiser.py``:

* ``adam``: ``AdamOptimizer``, beta1 0.9, beta2 0.999, epsilon 1e-8;
* ``gradientdescent``: ``GradientDescentOptimizer``;
* ``momentum``: ``MomentumOptimizer``, momentum 0.9;
* ``nesterov``: ``MomentumOptimizer``, momentum 0.9, ``use_nesterov=True``;
* ``adagrad``: ``AdagradOptimizer``, initial accumulator 0.1;
* ``rmsprop``: ``RMSPropOptimizer``, decay 0.9, momentum 0, epsilon 1e-10.

Each update below is written in the order of operations of TensorFlow's CPU
kernels (``tensorflow/core/kernels/training_ops.cc``), in the variable's
dtype (float32), with every constant rounded to float32 first as TF's
``convert_to_tensor`` does. Where it matters:

* **Adam** is not ``torch.optim.Adam``: the bias correction goes into the
  step size, ``alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power)``, and
  epsilon is added to ``sqrt(v)`` *outside* it:
  ``m += (g - m) * (1 - beta1)``, ``v += (g*g - v) * (1 - beta2)``,
  ``var -= m * alpha / (sqrt(v) + epsilon)``. ``beta1_power`` and
  ``beta2_power`` are float32 numbers that start at ``beta1`` and ``beta2``
  and are multiplied by them after every step (``AdamOptimizer._finish``),
  so a restored checkpoint carries them on (the model zoo's, at iteration
  33000, has ``beta1_power`` 0.0 and ``beta2_power`` 4.578e-15).
* **RMSProp**'s mean square starts at 1, not 0 (``RMSPropOptimizer._create_slots``).
* **Adagrad** divides by ``rsqrt(accum)`` with no epsilon; the accumulator starts at 0.1.

The step functions are pure: tensors in, new tensors out (any shape, the
layout does not matter: every update is element-wise). The optimiser
classes are :class:`torch.optim.Optimizer` subclasses that keep the slots
under their TensorFlow names (:attr:`TFOptimizer.slots`), created for every
parameter when the optimiser is built, as TensorFlow creates them with the
graph, so that a checkpoint's slots can be restored before the first step.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import TrainingError

__all__ = ["OPTIMISERS", "Adagrad", "Adam", "GradientDescent", "Momentum", "Nesterov", "RMSProp", "Slot",
           "TFOptimizer", "adagrad_step", "adam_alpha", "adam_step", "gradient_descent_step", "make_optimiser",
           "momentum_step", "next_power", "rmsprop_step"]

#: NiftyNet's constants (``niftynet/engine/application_optimiser.py``).
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
MOMENTUM = 0.9
ADAGRAD_INITIAL_ACCUMULATOR = 0.1
RMSPROP_DECAY, RMSPROP_MOMENTUM, RMSPROP_EPSILON = 0.9, 0.0, 1e-10


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` rounded to ``like``'s dtype, as a 0-d tensor on its device (TF's constant)."""
    return torch.tensor(value, dtype=like.dtype, device=like.device)


# --------------------------------------------------------------------------- the updates, one per kernel

def gradient_descent_step(var: torch.Tensor, grad: torch.Tensor, *, lr: float) -> torch.Tensor:
    """``ApplyGradientDescent``: ``var - grad * lr``."""
    return var - grad * _scalar(lr, var)


def momentum_step(var: torch.Tensor, accum: torch.Tensor, grad: torch.Tensor, *, lr: float,
                  momentum: float = MOMENTUM, nesterov: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``ApplyMomentum``: returns ``(var, accum)`` after one step.

    ``accum = accum * momentum + grad``; then ``var -= accum * lr``, or with
    ``nesterov`` ``var -= grad * lr + accum * momentum * lr``.
    """
    lr_, mu = _scalar(lr, var), _scalar(momentum, var)
    accum = accum * mu + grad
    if nesterov:
        return var - (grad * lr_ + accum * mu * lr_), accum
    return var - accum * lr_, accum


def adagrad_step(var: torch.Tensor, accum: torch.Tensor, grad: torch.Tensor, *,
                 lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``ApplyAdagrad``: ``accum += grad^2``, ``var -= grad * lr * rsqrt(accum)``; returns ``(var, accum)``."""
    accum = accum + grad * grad
    return var - grad * _scalar(lr, var) * torch.rsqrt(accum), accum


def rmsprop_step(var: torch.Tensor, ms: torch.Tensor, mom: torch.Tensor, grad: torch.Tensor, *, lr: float,
                 decay: float = RMSPROP_DECAY, momentum: float = RMSPROP_MOMENTUM,
                 epsilon: float = RMSPROP_EPSILON) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ApplyRMSProp`` (not centred): returns ``(var, ms, mom)``.

    ``ms += (grad^2 - ms) * (1 - decay)``,
    ``mom = mom * momentum + grad * lr / sqrt(ms + epsilon)``, ``var -= mom``.
    """
    one_minus_rho = _scalar(1.0, var) - _scalar(decay, var)
    ms = ms + (grad * grad - ms) * one_minus_rho
    mom = mom * _scalar(momentum, var) + (grad * _scalar(lr, var)) / torch.sqrt(ms + _scalar(epsilon, var))
    return var - mom, ms, mom


def adam_alpha(lr: float, beta1_power: float, beta2_power: float) -> np.float32:
    """TF's Adam step size ``lr * sqrt(1 - beta2_power) / (1 - beta1_power)``, in float32.

    The first step's, ``lr * sqrt(1 - 0.999) / (1 - 0.9)``, is 6.7e-6 below
    its exact value: in float32, ``1 - 0.999`` is 0.00099998713 and ``1 - 0.9`` 0.100000024.

    >>> alpha = adam_alpha(0.001, 0.9, 0.999)
    >>> alpha.dtype, round(float(alpha) / (0.001 * 0.001 ** 0.5 / 0.1), 7)
    (dtype('float32'), 0.9999933)
    """
    one = np.float32(1.0)
    return np.float32(np.float32(lr) * np.sqrt(one - np.float32(beta2_power)) / (one - np.float32(beta1_power)))


def adam_step(var: torch.Tensor, m: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, *, lr: float,
              beta1_power: float, beta2_power: float, beta1: float = ADAM_BETA1, beta2: float = ADAM_BETA2,
              epsilon: float = ADAM_EPSILON) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ApplyAdam`` (not Nesterov): returns ``(var, m, v)`` after one step.

    ``beta1_power``/``beta2_power`` are the accumulators *before* this step
    (``beta1``/``beta2`` on the first one); advance them with :func:`next_power`.
    """
    one = _scalar(1.0, var)
    alpha = torch.tensor(adam_alpha(lr, beta1_power, beta2_power), dtype=var.dtype, device=var.device)
    m = m + (grad - m) * (one - _scalar(beta1, var))
    v = v + (grad * grad - v) * (one - _scalar(beta2, var))
    return var - (m * alpha) / (torch.sqrt(v) + _scalar(epsilon, var)), m, v


def next_power(power: float, beta: float) -> float:
    """``power * beta`` in float32 (TF's ``beta1_power.assign(beta1_power * beta1)``), as a Python float."""
    return float(np.float32(power) * np.float32(beta))


# --------------------------------------------------------------------------- torch.optim wrappers

@dataclass(frozen=True)
class Slot:
    """One optimiser slot: its key in ``optimizer.state[p]``, its checkpoint suffix, its initial value.

    A parameter stored in a checkpoint as ``<var>`` has this slot as
    ``<var>/<suffix>`` (e.g. ``.../conv_/w/Adam_1``), in the same layout as ``<var>``.
    """

    key: str
    suffix: str
    initial: float = 0.0


class TFOptimizer(torch.optim.Optimizer):
    """Base class: one ``lr`` per group, slots created for every parameter at construction.

    Subclasses set :attr:`name` (NiftyNet's), :attr:`slots` and implement
    :meth:`_update` (one parameter) and, when the optimiser keeps
    accumulators outside its slots, :meth:`_finish` (once per step).
    """

    name: str = ""
    slots: tuple[Slot, ...] = ()

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, **defaults: float):
        if not lr > 0.0:
            raise TrainingError(f"learning rate must be positive, got lr={lr!r}")
        super().__init__(params, {"lr": float(lr), **defaults})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p].update({s.key: torch.full_like(p, s.initial, memory_format=torch.preserve_format)
                                      for s in self.slots})

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient (TF's ``apply_gradients``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state[p], group)
            self._finish(group)
        return loss

    def _update(self, p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    def _finish(self, group: dict) -> None:
        """Once per step and group, after every parameter's update."""


class GradientDescent(TFOptimizer):
    """``tf.train.GradientDescentOptimizer`` (NiftyNet's ``gradientdescent``); no slots."""

    name = "gradientdescent"

    def _update(self, p, grad, state, group):
        p.copy_(gradient_descent_step(p, grad, lr=group["lr"]))


class Momentum(TFOptimizer):
    """``tf.train.MomentumOptimizer(momentum=0.9)`` (NiftyNet's ``momentum``); slot ``<var>/Momentum``."""

    name = "momentum"
    slots = (Slot("momentum", "Momentum"),)
    nesterov = False

    def __init__(self, params, lr: float, momentum: float = MOMENTUM):
        super().__init__(params, lr, momentum=momentum)

    def _update(self, p, grad, state, group):
        var, state["momentum"] = momentum_step(p, state["momentum"], grad, lr=group["lr"],
                                               momentum=group["momentum"], nesterov=self.nesterov)
        p.copy_(var)


class Nesterov(Momentum):
    """``MomentumOptimizer(momentum=0.9, use_nesterov=True)`` (NiftyNet's ``nesterov``)."""

    name = "nesterov"
    nesterov = True


class Adagrad(TFOptimizer):
    """``tf.train.AdagradOptimizer(initial_accumulator_value=0.1)``; slot ``<var>/Adagrad``."""

    name = "adagrad"
    slots = (Slot("accumulator", "Adagrad", ADAGRAD_INITIAL_ACCUMULATOR),)

    def _update(self, p, grad, state, group):
        var, state["accumulator"] = adagrad_step(p, state["accumulator"], grad, lr=group["lr"])
        p.copy_(var)


class RMSProp(TFOptimizer):
    """``tf.train.RMSPropOptimizer(decay=0.9, momentum=0, epsilon=1e-10)``; slots ``RMSProp`` (ms), ``RMSProp_1``."""

    name = "rmsprop"
    slots = (Slot("rms", "RMSProp", 1.0), Slot("momentum", "RMSProp_1"))

    def __init__(self, params, lr: float, decay: float = RMSPROP_DECAY, momentum: float = RMSPROP_MOMENTUM,
                 epsilon: float = RMSPROP_EPSILON):
        super().__init__(params, lr, decay=decay, momentum=momentum, epsilon=epsilon)

    def _update(self, p, grad, state, group):
        var, state["rms"], state["momentum"] = rmsprop_step(
            p, state["rms"], state["momentum"], grad, lr=group["lr"], decay=group["decay"],
            momentum=group["momentum"], epsilon=group["epsilon"])
        p.copy_(var)


class Adam(TFOptimizer):
    """``tf.train.AdamOptimizer(beta1=0.9, beta2=0.999, epsilon=1e-8)``; slots ``Adam`` (m), ``Adam_1`` (v).

    Each group keeps ``beta1_power`` and ``beta2_power`` (float32 values held
    as Python floats, so they travel in ``state_dict()``); TensorFlow has one
    pair per optimiser, which is the same with one group.
    """

    name = "adam"
    slots = (Slot("m", "Adam"), Slot("v", "Adam_1"))

    def __init__(self, params, lr: float, beta1: float = ADAM_BETA1, beta2: float = ADAM_BETA2,
                 epsilon: float = ADAM_EPSILON):
        super().__init__(params, lr, beta1=beta1, beta2=beta2, epsilon=epsilon,
                         beta1_power=float(np.float32(beta1)), beta2_power=float(np.float32(beta2)))

    def _update(self, p, grad, state, group):
        var, state["m"], state["v"] = adam_step(
            p, state["m"], state["v"], grad, lr=group["lr"], beta1_power=group["beta1_power"],
            beta2_power=group["beta2_power"], beta1=group["beta1"], beta2=group["beta2"],
            epsilon=group["epsilon"])
        p.copy_(var)

    def _finish(self, group):
        group["beta1_power"] = next_power(group["beta1_power"], group["beta1"])
        group["beta2_power"] = next_power(group["beta2_power"], group["beta2"])


#: NiftyNet's ``optimiser`` names -> classes.
OPTIMISERS: dict[str, type[TFOptimizer]] = {cls.name: cls for cls in
                                            (Adam, GradientDescent, Momentum, Nesterov, Adagrad, RMSProp)}


def make_optimiser(name: str, params: Iterable[torch.Tensor], lr: float) -> TFOptimizer:
    """The optimiser NiftyNet's ``[TRAINING] optimiser = name`` builds, with NiftyNet's constants."""
    key = str(name).strip().lower()
    if key not in OPTIMISERS:
        raise TrainingError(f"unknown optimiser {name!r} (NiftyNet's: {', '.join(OPTIMISERS)})")
    return OPTIMISERS[key](params, lr)
