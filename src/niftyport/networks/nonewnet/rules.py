"""NiftyNet's No New-Net variable names <-> :class:`~.module.NoNewNet` keys.

``niftynet/network/no_new_net.py`` names its 3x3x3 ``ConvolutionalLayer``\\ s
``<width>_in_<acti>`` (``_1``, ``_2`` appended to repeats inside a block)
with ``conv_/w``, ``in_/InstanceNorm/{gamma,beta}`` (TF1 contrib's
``instance_norm``) and, for ``prelu``, ``prelu_acti_/alpha``; the last
1x1x1 conv is ``R1_FC/<num_classes>/conv_/w``. Blocks ``L1``-``L4``,
``bottom``, ``R4``-``R2``, ``R1_FC`` under the scope (``NoNewNet``). The
module's keys drop ``_<acti>`` from the layer name.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet

_CONV = "conv3d_dhwio_to_oidhw"
_BLOCK = "{block:L[1-4]|bottom|R[2-4]|R1_FC}"
_WIDTH = "{width:\\d+}"
_DUP = "{dup:(?:_\\d+)?}"


def niftynet_rules(scope: str = "NoNewNet", *, acti_func: str = "leakyrelu", **_: object) -> RuleSet:
    """Rules for a NiftyNet No New-Net under name scope ``scope`` built with activation ``acti_func``."""
    a = acti_func.lower()
    source = f"{scope}/{_BLOCK}/{_WIDTH}_in_{a}{_DUP}"
    target = f"{_BLOCK}.{_WIDTH}_in{_DUP}"
    rules = [
        Rule(f"{source}/conv_/w", f"{target}.conv.weight", _CONV),
        Rule(f"{source}/in_/InstanceNorm/gamma", f"{target}.norm.weight"),
        Rule(f"{source}/in_/InstanceNorm/beta", f"{target}.norm.bias"),
        Rule(f"{scope}/R1_FC/{_WIDTH}{_DUP}/conv_/w", f"R1_FC.{_WIDTH}{_DUP}.conv.weight", _CONV),
    ]
    if a == "prelu":
        rules.append(Rule(f"{source}/prelu_acti_/alpha", f"{target}.acti.alpha"))
    suffix = "" if (scope, a) == ("NoNewNet", "leakyrelu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"No New-Net NiftyNet rules{suffix}")
