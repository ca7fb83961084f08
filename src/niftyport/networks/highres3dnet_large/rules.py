"""NiftyNet's HighRes3DNetLarge variable names <-> :class:`~.module.HighRes3DNetLarge` keys.

``niftynet/network/highres3dnet_large.py`` names its layers, under the
network's scope (``HighRes3DNet`` by default, the same as HighRes3DNet's):
``conv_0_bn_<acti>``, ``res_S_B`` (HighResBlocks), ``conv_1_bn_<acti>``
(3x3x3), ``conv_2_bn_<acti>`` (1x1x1) and ``conv_3_bn`` (1x1x1, no
activation). HighRes3DNet's checkpoints end in ``conv_2_bn`` instead and have
no ``conv_3``, so neither network's rules map the other's names.
"""
from __future__ import annotations

from ...mapping import RuleSet
from ..highres3dnet_small.rules import conv_bn_rules, highres_block_rules


def niftynet_rules(scope: str = "HighRes3DNet", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet HighRes3DNetLarge under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    rules = [*conv_bn_rules(scope, "conv_0", "conv_0", a),
             *highres_block_rules(scope, a),
             *conv_bn_rules(scope, "conv_1", "conv_1", a),
             *conv_bn_rules(scope, "conv_2", "conv_2", a),
             *conv_bn_rules(scope, "conv_3", "conv_3", None)]
    suffix = "" if (scope, a) == ("HighRes3DNet", "relu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"HighRes3DNetLarge NiftyNet rules{suffix}")
