"""MSNet's TensorFlow variable names <-> :class:`~.module.MSNet` keys.

The graph of ``util/MSNet.py`` (github.com/taigw/brats17) names, under the
network's scope (``MSNet_WT32``, ``MSNet_TC32sg``, ``MSNet_EN32cr`` ... in
the published checkpoints; the class default is ``MSNet``):

* ``block<s>_<i>/{bn_k, conv_k, <acti>_acti_k}`` for the ResBlocks (k = 0, 1),
  ``block<s>_<i>/residual_sum/proj/w`` when a shortcut needs a projection;
* ``<layer>_bn_<acti>/{conv_, bn_, <acti>_acti_}`` for the ConvolutionalLayers
  ``fuse1..4``, ``downsample1/2`` and ``feature_expand1..3``;
* ``pred_up<...>_bn_<acti>/{deconv_, bn_, <acti>_acti_}`` for the
  DeconvolutionalLayers (kernels ``(1, 3, 3, out, in)``);
* ``pred1/w`` and ``final_pred/w`` (plain ConvLayers, no bias).
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_CONV = "conv3d_dhwio_to_oidhw"  # also turns TF's (k..., out, in) transposed kernels into torch's (in, out, k...)
_BLOCK = r"{block:block[1-4]_[1-3]}"
_CONV_LAYER = r"{layer:fuse[1-4]|downsample[12]|feature_expand[1-3]}"
_DECONV_LAYER = r"{layer:pred_up1|pred_up[23]_[12]}"


def niftynet_rules(scope: str = "MSNet", *, acti_func: str = "prelu", **_: object) -> RuleSet:
    """Rules for an MSNet graph under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    rules = [
        Rule(f"{scope}/{_BLOCK}/conv_{{k:[01]}}/w", "{block}.conv_{k}.weight", _CONV),
        *bn_rules(f"{scope}/{_BLOCK}/bn_{{k:[01]}}", "{block}.bn_{k}"),
        Rule(f"{scope}/{_BLOCK}/residual_sum/proj/w", "{block}.proj.weight", _CONV),
        Rule(f"{scope}/{_CONV_LAYER}_bn_{a}/conv_/w", "{layer}.conv.weight", _CONV),
        *bn_rules(f"{scope}/{_CONV_LAYER}_bn_{a}/bn_", "{layer}.bn"),
        Rule(f"{scope}/{_DECONV_LAYER}_bn_{a}/deconv_/w", "{layer}.deconv.weight", _CONV),
        *bn_rules(f"{scope}/{_DECONV_LAYER}_bn_{a}/bn_", "{layer}.bn"),
        Rule(f"{scope}/{{layer:pred1|final_pred}}/w", "{layer}.weight", _CONV),
    ]
    if a == "prelu":
        rules += [
            Rule(f"{scope}/{_BLOCK}/prelu_acti_{{k:[01]}}/alpha", "{block}.acti_{k}.alpha"),
            Rule(f"{scope}/{_CONV_LAYER}_bn_prelu/prelu_acti_/alpha", "{layer}.acti.alpha"),
            Rule(f"{scope}/{_DECONV_LAYER}_bn_prelu/prelu_acti_/alpha", "{layer}.acti.alpha"),
        ]
    return RuleSet(tuple(rules), name=f"MSNet NiftyNet rules ({scope}, {a})")
