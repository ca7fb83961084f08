"""NiftyNet's HighRes3DNetSmall variable names <-> :class:`~.module.HighRes3DNetSmall` keys.

``niftynet/network/highres3dnet_small.py`` names its layers, under the
network's scope (``HighRes3DNetSmall`` by default): ``conv_0_bn_<acti>``
(stride 2), ``res_S_B`` (HighResBlocks: ``bn_0``, ``conv_0``, ``bn_1``,
``conv_1``, and with ``prelu`` ``prelu_acti_0`` / ``prelu_acti_1``),
``conv_1_bn_<acti>`` (3x3x3), ``deconv_bn_<acti>`` (transposed, ``deconv_/w``)
and ``conv_2_bn`` (1x1x1, no activation).
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_CONV = "conv3d_dhwio_to_oidhw"
_BLOCK = "res_{stage:\\d+}_{block:\\d+}"


def highres_block_rules(scope: str, acti_func: str) -> list[Rule]:
    """Rules for every ``HighResBlock`` (``<scope>/res_S_B/...``) -> ``res_S_B.*`` of the highres3dnet module."""
    rules = [Rule(f"{scope}/{_BLOCK}/conv_{{i:\\d+}}/w", "res_{stage}_{block}.conv_{i}.weight", _CONV),
             *bn_rules(f"{scope}/{_BLOCK}/bn_{{i:\\d+}}", "res_{stage}_{block}.bn_{i}")]
    if acti_func == "prelu":
        rules.append(Rule(f"{scope}/{_BLOCK}/prelu_acti_{{i:\\d+}}/alpha", "res_{stage}_{block}.acti_{i}.alpha"))
    return rules


def conv_bn_rules(scope: str, layer: str, key: str, acti_func: str | None, *, kernel: str = "conv_") -> list[Rule]:
    """Rules for one NiftyNet ``ConvolutionalLayer``/``DeconvolutionalLayer`` named ``layer`` -> ``ConvBN`` ``key``.

    NiftyNet's scope is ``<layer>_bn_<acti>`` (``<layer>_bn`` without activation);
    ``kernel`` is the kernel's scope (``conv_``, or ``deconv_`` for a transposed one).
    """
    name = f"{layer}_bn" if acti_func is None else f"{layer}_bn_{acti_func}"
    rules = [Rule(f"{scope}/{name}/{kernel}/w", f"{key}.conv.weight", _CONV),
             *bn_rules(f"{scope}/{name}/bn_", f"{key}.bn")]
    if acti_func == "prelu":
        rules.append(Rule(f"{scope}/{name}/prelu_acti_/alpha", f"{key}.acti.alpha"))
    return rules


def niftynet_rules(scope: str = "HighRes3DNetSmall", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet HighRes3DNetSmall under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    rules = [*conv_bn_rules(scope, "conv_0", "conv_0", a),
             *highres_block_rules(scope, a),
             *conv_bn_rules(scope, "conv_1", "conv_1", a),
             *conv_bn_rules(scope, "deconv", "deconv", a, kernel="deconv_"),
             *conv_bn_rules(scope, "conv_2", "conv_2", None)]
    suffix = "" if (scope, a) == ("HighRes3DNetSmall", "relu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"HighRes3DNetSmall NiftyNet rules{suffix}")
