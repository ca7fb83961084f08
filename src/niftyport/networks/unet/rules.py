"""NiftyNet's UNet3D variable names <-> :class:`~.module.UNet3D` keys.

``niftynet/network/unet.py`` names each ``ConvolutionalLayer``
``<width>_bn_<acti>`` (``_1``, ``_2`` appended to repeats inside a block) with
``conv_/w``, ``bn_/{gamma,beta,moving_mean,moving_variance}`` and, for
``prelu``, ``prelu_acti_/alpha``; the up-sampling layers are ``up_2x2_bn``
(``deconv_/w``, a ``(k, k, k, out, in)`` kernel, and ``bn_/...``). All under
the blocks ``L1``-``L4``, ``R3``, ``R2``, ``R1_FC`` of the scope (``UNet``).
The module's keys drop ``_<acti>`` from the layer name, so the same rules
serve every width.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_CONV = "conv3d_dhwio_to_oidhw"  # also turns TF's (k, k, k, out, in) transposed kernels into torch's (in, out, k...)
_BLOCK = "{block:L[1-4]|R[23]|R1_FC}"
_LAYER = "{width:\\d+}_bn"
_DUP = "{dup:(?:_\\d+)?}"


def niftynet_rules(scope: str = "UNet", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet UNet3D under name scope ``scope`` built with activation ``acti_func``."""
    a = acti_func.lower()
    source = f"{scope}/{_BLOCK}/{_LAYER}_{a}{_DUP}"
    target = f"{_BLOCK}.{_LAYER}{_DUP}"
    rules = [
        Rule(f"{source}/conv_/w", f"{target}.conv.weight", _CONV),
        *bn_rules(f"{source}/bn_", f"{target}.bn"),
        Rule(f"{scope}/{_BLOCK}/up_2x2_bn/deconv_/w", f"{_BLOCK}.up_2x2_bn.deconv.weight", _CONV),
        *bn_rules(f"{scope}/{_BLOCK}/up_2x2_bn/bn_", f"{_BLOCK}.up_2x2_bn.bn"),
    ]
    if a == "prelu":
        rules.append(Rule(f"{source}/prelu_acti_/alpha", f"{target}.acti.alpha"))
    suffix = "" if (scope, a) == ("UNet", "relu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"UNet3D NiftyNet rules{suffix}")
