"""Which checkpoint variables are model weights, and why the others are not.

A NiftyNet training checkpoint holds much more than the network: optimizer
slots, moving-average shadow copies, zero-debias accumulators of the
batch-norm statistics and counters. The rules below say, as data, which
variables are dropped and why; the first rule that matches wins, and a
variable no rule matches is a model variable (kind ``"model"``).

The kinds are named as TensorFlow names the variables (the last scope of the
name), e.g. ``HighRes3DNet/res_2_1/conv_0/w/Adam_1`` is of kind ``Adam_1``.

>>> classify("HighRes3DNet/res_2_1/conv_0/w/ExponentialMovingAverage", (3, 3, 3, 32, 32)).kind
'ExponentialMovingAverage'
>>> classify("HighRes3DNet/res_2_1/conv_0/w", (3, 3, 3, 32, 32)).kept
True
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class DropRule:
    """Drop a variable whose whole name matches ``pattern`` (or, with ``empty_shape``, whose shape has no elements)."""

    kind: str
    reason: str
    pattern: str | None = None
    empty_shape: bool = False
    _regex: re.Pattern | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_regex", re.compile(self.pattern))

    def matches(self, name: str, shape: Sequence[int]) -> bool:
        if self._regex is not None and self._regex.fullmatch(name):
            return True
        return self.empty_shape and (len(shape) == 0 or 0 in tuple(shape))


#: The drop rules, most specific first. Names come from TensorFlow 1.x:
#: optimizer slots (``tf.train.AdamOptimizer`` and friends), ``tf.train.ExponentialMovingAverage``
#: shadow variables and ``moving_averages.assign_moving_average(zero_debias=True)``
#: (used by NiftyNet's ``BNLayer``, niftynet/layer/bn.py), whose ``biased`` and
#: ``local_step`` variables sit under a doubled scope name.
DROP_RULES: tuple[DropRule, ...] = (
    DropRule("Adam", "Adam optimizer slot: running mean of the gradient", r".+/Adam"),
    DropRule("Adam_1", "Adam optimizer slot: running mean of the squared gradient", r".+/Adam_1"),
    DropRule("beta1_power", "Adam bias-correction accumulator (beta1 to the power of the step)", r"(.+/)?beta1_power"),
    DropRule("beta2_power", "Adam bias-correction accumulator (beta2 to the power of the step)", r"(.+/)?beta2_power"),
    DropRule("optimizer_slot", "optimizer slot of another optimizer (momentum, RMSProp, Adagrad, Adadelta)",
             r".+/(Momentum|RMSProp|RMSProp_1|Adagrad|Adadelta|Adadelta_1)"),
    DropRule("global_step", "training step counter", r"(.+/)?global_step"),
    DropRule("biased", "zero-debias accumulator of a batch-norm moving average (training only)", r".+/biased"),
    DropRule("local_step", "zero-debias step counter of a batch-norm moving average (training only)", r".+/local_step"),
    DropRule("ExponentialMovingAverage",
             "moving-average shadow copy of a weight (tf.train.ExponentialMovingAverage), not the trained value",
             r".+/ExponentialMovingAverage"),
    DropRule("object_graph", "object-graph description of a TensorFlow 2 checkpoint", r"_CHECKPOINTABLE_OBJECT_GRAPH"),
    DropRule("empty", "empty shape: a scalar or zero-size variable is no layer parameter", empty_shape=True),
)

MODEL_KIND = "model"
MODEL_REASON = "model variable"


@dataclass(frozen=True)
class Classification:
    kind: str
    kept: bool
    reason: str


def classify(name: str, shape: Sequence[int], rules: Sequence[DropRule] = DROP_RULES) -> Classification:
    """Kind of the variable ``name`` of shape ``shape``, whether it is kept, and why (first matching rule)."""
    for rule in rules:
        if rule.matches(name, shape):
            return Classification(rule.kind, False, rule.reason)
    return Classification(MODEL_KIND, True, MODEL_REASON)

