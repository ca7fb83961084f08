"""NiftyNet's HighRes3DNet variable names <-> :class:`~.module.HighRes3DNet` keys, and the third-party port's.

NiftyNet (``niftynet/network/highres3dnet.py``) names its layers
``conv_0_bn_<acti>`` and ``conv_1_bn_<acti>`` (ConvolutionalLayers with the
activation), ``conv_2_bn`` (the last, without), and ``res_S_B`` for the
HighResBlocks (``bn_0``, ``conv_0``, ``bn_1``, ``conv_1``, and with ``prelu``
``prelu_acti_0`` / ``prelu_acti_1``), all under the network's name scope
(``HighRes3DNet`` by default).
"""
from __future__ import annotations

from ...mapping import BOOKKEEPING_KEYS, Rule, RuleSet, bn_rules

_CONV = "conv3d_dhwio_to_oidhw"


def niftynet_rules(scope: str = "HighRes3DNet", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet HighRes3DNet under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    rules = [
        Rule(f"{scope}/conv_{{n:[01]}}_bn_{a}/conv_/w", "conv_{n}.conv.weight", _CONV),
        *bn_rules(f"{scope}/conv_{{n:[01]}}_bn_{a}/bn_", "conv_{n}.bn"),
        Rule(f"{scope}/conv_2_bn/conv_/w", "conv_2.conv.weight", _CONV),
        *bn_rules(f"{scope}/conv_2_bn/bn_", "conv_2.bn"),
        Rule(f"{scope}/res_{{stage:\\d+}}_{{block:\\d+}}/conv_{{i:\\d+}}/w",
             "res_{stage}_{block}.conv_{i}.weight", _CONV),
        *bn_rules(f"{scope}/res_{{stage:\\d+}}_{{block:\\d+}}/bn_{{i:\\d+}}", "res_{stage}_{block}.bn_{i}"),
    ]
    if a == "prelu":
        rules += [Rule(f"{scope}/conv_{{n:[01]}}_bn_prelu/prelu_acti_/alpha", "conv_{n}.acti.alpha"),
                  Rule(f"{scope}/res_{{stage:\\d+}}_{{block:\\d+}}/prelu_acti_{{i:\\d+}}/alpha",
                       "res_{stage}_{block}.acti_{i}.alpha")]
    suffix = "" if (scope, a) == ("HighRes3DNet", "relu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"HighRes3DNet NiftyNet rules{suffix}")


#: The model zoo's network (scope ``HighRes3DNet``, ReLU).
HIGHRES3DNET_NIFTYNET_RULES = niftynet_rules()

_BN_PARAM = "{param:weight|bias|running_mean|running_var}"

#: The third-party PyTorch port's ``state_dict`` (``block.0`` = conv_0, ``block.1..3`` = the
#: three dilation stages, ``block.4`` = conv_1, ``block.6`` = conv_2; ``block.5`` is its
#: parameter-free dropout) -> :class:`~.module.HighRes3DNet`. Same layouts, so no transform.
HIGHRES3DNET_THIRD_PARTY_RULES = RuleSet(
    rules=(
        Rule("block.0.convolutional_block.1.weight", "conv_0.conv.weight"),
        Rule(f"block.0.convolutional_block.2.{_BN_PARAM}", "conv_0.bn.{param}"),
        Rule(r"block.{stage:[1-9]}.dilation_block.{block:\d+}.residual_block.{i:\d+}"
             f".convolutional_block.0.{_BN_PARAM}", "res_{stage}_{block}.bn_{i}.{param}"),
        Rule(r"block.{stage:[1-9]}.dilation_block.{block:\d+}.residual_block.{i:\d+}"
             ".convolutional_block.3.weight", "res_{stage}_{block}.conv_{i}.weight"),
        Rule("block.4.convolutional_block.0.weight", "conv_1.conv.weight"),
        Rule(f"block.4.convolutional_block.1.{_BN_PARAM}", "conv_1.bn.{param}"),
        Rule("block.6.convolutional_block.0.weight", "conv_2.conv.weight"),
        Rule(f"block.6.convolutional_block.1.{_BN_PARAM}", "conv_2.bn.{param}"),
    ),
    ignore_source=BOOKKEEPING_KEYS,
    name="HighRes3DNet third-party .pth rules",
)
