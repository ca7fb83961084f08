"""NiftyNet's UNet2D variable names <-> :class:`~.module.UNet2D` keys.

``niftynet/network/unet_2d.py`` creates, under the network's scope (``UNet2D``
by default), nine ``TwoLayerConv`` blocks that TensorFlow uniquifies as
``TwoConv``, ``TwoConv_1`` ... ``TwoConv_8`` (encoder 0-4, decoder 5-8), each
with ``conv_bn_<acti>`` and ``conv_bn_<acti>_1`` (``conv_/w``, ``conv_/b``,
``bn_``, and with ``prelu`` ``prelu_acti_/alpha``); four up-sampling
``deconv_bn_<acti>``, ``deconv_bn_<acti>_1`` ... ``_3`` (``deconv_/w``,
``deconv_/b``, ``bn_``); and the classifier ``conv`` (``conv_/w``, ``conv_/b``).
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_CONV = "conv2d_hwio_to_oihw"  # also turns the transposed kernels (k, k, out, in) into torch's (in, out, k, k)


def _numbered(base: str, key: str) -> list[tuple[str, str]]:
    """``(NiftyNet scope, module key)`` templates for TF's uniquified ``base``, ``base_1``, ``base_2`` ..."""
    return [(base, f"{key}.0"), (f"{base}_{{i:[1-9]\\d*}}", f"{key}.{{i}}")]


def _conv_bn_acti(scope: str, key: str, acti_func: str, kernel: str) -> list[Rule]:
    rules = [Rule(f"{scope}/{kernel}/w", f"{key}.conv.weight", _CONV),
             Rule(f"{scope}/{kernel}/b", f"{key}.conv.bias"),
             *bn_rules(f"{scope}/bn_", f"{key}.bn")]
    if acti_func == "prelu":
        rules.append(Rule(f"{scope}/prelu_acti_/alpha", f"{key}.acti.alpha"))
    return rules


def niftynet_rules(scope: str = "UNet2D", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet UNet2D under name scope ``scope`` with activation ``acti_func``."""
    a = acti_func.lower()
    rules = []
    for block, block_key in _numbered(f"{scope}/TwoConv", "blocks"):
        for j, layer in enumerate((f"conv_bn_{a}", f"conv_bn_{a}_1")):
            rules += _conv_bn_acti(f"{block}/{layer}", f"{block_key}.conv_{j}", a, "conv_")
    for up, up_key in _numbered(f"{scope}/deconv_bn_{a}", "ups"):
        rules += _conv_bn_acti(up, up_key, a, "deconv_")
    rules += [Rule(f"{scope}/conv/conv_/w", "classifier.weight", _CONV),
              Rule(f"{scope}/conv/conv_/b", "classifier.bias")]
    suffix = "" if (scope, a) == ("UNet2D", "relu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"UNet2D NiftyNet rules{suffix}")
