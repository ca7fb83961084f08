"""NiftyNet's ToyNet variable names <-> :class:`~.module.ToyNet` keys.

``niftynet/network/toynet.py`` builds two ``ConvolutionalLayer``\\ s under the
network's scope (``ToyNet`` by default): ``conv_input_bn_relu`` (ReLU whatever
``acti_func`` says) and ``conv_output_bn`` (no activation), each with
``conv_/w`` and a ``bn_`` batch norm.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_CONV = "conv3d_dhwio_to_oidhw"


def niftynet_rules(scope: str = "ToyNet", **_: object) -> RuleSet:
    """Rules for a NiftyNet ToyNet under name scope ``scope`` (``acti_func`` does not change its names)."""
    rules = []
    for layer, key in (("conv_input_bn_relu", "conv_input"), ("conv_output_bn", "conv_output")):
        rules += [Rule(f"{scope}/{layer}/conv_/w", f"{key}.conv.weight", _CONV),
                  *bn_rules(f"{scope}/{layer}/bn_", f"{key}.bn")]
    suffix = "" if scope == "ToyNet" else f" ({scope})"
    return RuleSet(tuple(rules), name=f"ToyNet NiftyNet rules{suffix}")
