"""NiftyNet's DeepMedic variable names <-> :class:`~.module.DeepMedic` keys.

NiftyNet (``niftynet/network/deepmedic.py``) names its layers
``normal_conv_bn_<acti>[_i]``, ``downsample_conv_bn_<acti>[_i]`` (i = 1..7)
and ``conv_1x1x1_<width>_bn_<acti>[_i]`` (150, 150, ``num_classes``), each
holding ``conv_/w``, ``bn_/{gamma,beta,moving_mean,moving_variance}`` and
with ``prelu`` ``prelu_acti_/alpha``. The module keeps the scope less
``_bn_<acti>``: ``conv_1x1x1_150_1.bn.running_var``.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_CONV = "conv3d_dhwio_to_oidhw"
_LAYER = r"{layer:normal_conv|downsample_conv|conv_1x1x1_\d+}"
_INDEX = r"{index:(?:_\d+)?}"


def niftynet_rules(scope: str = "DeepMedic", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet DeepMedic under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    source = f"{scope}/{_LAYER}_bn_{a}{_INDEX}"
    target = "{layer}{index}"
    rules = [Rule(f"{source}/conv_/w", f"{target}.conv.weight", _CONV), *bn_rules(f"{source}/bn_", f"{target}.bn")]
    if a == "prelu":
        rules.append(Rule(f"{source}/prelu_acti_/alpha", f"{target}.acti.alpha"))
    return RuleSet(tuple(rules), name=f"DeepMedic NiftyNet rules ({scope}, {a})")
