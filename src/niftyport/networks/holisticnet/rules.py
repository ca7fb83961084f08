"""NiftyNet's HolisticNet variable names <-> :class:`~.module.HolisticNet` keys.

NiftyNet (``niftynet/network/holistic_net.py``) names, under the network's
scope (``HolisticNet``): ``conv_1_1_bn_<acti>`` (first layer);
``res_<scale>_<block>`` HighResBlocks (``bn_i``, ``conv_i``, with ``prelu``
``prelu_acti_i``); the four ScoreLayers ``ScoreLayer``, ``ScoreLayer_1``,
``_2``, ``_3`` (scales 1-4; ``conv_fc_0_bn_elu`` and ``conv_bn``) ->
``score_1`` .. ``score_4``; the channel-wise up-sampling of scales 3 and 4,
``channelwise_deconv_upsample[_1]/deconv_<c>/w`` -> ``up_3`` / ``up_4``
(TF kernel ``(k, k, k, out=1, in=1)``); ``MergeLayer/conv[_<c>]/w`` ->
``merge.conv_<c>`` (the first class's scope has no number).
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules
from .architecture import SCALES, SCORE_ACTI, UPSAMPLE_KERNELS

_CONV = "conv3d_dhwio_to_oidhw"


def _numbered(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def niftynet_rules(scope: str = "HolisticNet", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet HolisticNet under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    first = f"{scope}/conv_1_1_bn_{a}"
    res = f"{scope}/res_{{s:\\d+}}_{{b:\\d+}}"
    rules = [Rule(f"{first}/conv_/w", "conv_1_1.conv.weight", _CONV), *bn_rules(f"{first}/bn_", "conv_1_1.bn"),
             Rule(f"{res}/conv_{{i:\\d+}}/w", "res_{s}_{b}.conv_{i}.weight", _CONV),
             *bn_rules(f"{res}/bn_{{i:\\d+}}", "res_{s}_{b}.bn_{i}")]
    if a == "prelu":
        rules += [Rule(f"{first}/prelu_acti_/alpha", "conv_1_1.acti.alpha"),
                  Rule(f"{res}/prelu_acti_{{i:\\d+}}/alpha", "res_{s}_{b}.acti_{i}.alpha")]
    for s in range(1, len(SCALES) + 1):
        score = f"{scope}/{_numbered('ScoreLayer', s - 1)}"
        for tf_layer, layer in ((f"conv_fc_0_bn_{SCORE_ACTI}", "conv_fc_0"), ("conv_bn", "conv_bn")):
            rules += [Rule(f"{score}/{tf_layer}/conv_/w", f"score_{s}.{layer}.conv.weight", _CONV),
                      *bn_rules(f"{score}/{tf_layer}/bn_", f"score_{s}.{layer}.bn")]
    for i, s in enumerate(UPSAMPLE_KERNELS):
        up = f"{scope}/{_numbered('channelwise_deconv_upsample', i)}"
        rules.append(Rule(f"{up}/deconv_{{c:\\d+}}/w", f"up_{s}.deconv_{{c}}.weight", _CONV))
    rules += [Rule(f"{scope}/MergeLayer/conv/w", "merge.conv_0.weight", _CONV),  # first: the reverse wins too
              Rule(f"{scope}/MergeLayer/conv_{{c:[1-9]\\d*}}/w", "merge.conv_{c}.weight", _CONV)]
    return RuleSet(tuple(rules), name=f"HolisticNet NiftyNet rules ({scope}, {a})")
