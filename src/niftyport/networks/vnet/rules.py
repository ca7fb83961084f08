"""NiftyNet's VNet variable names <-> :class:`~.module.VNet` keys.

``niftynet/network/vnet.py``: blocks ``L1``-``L4``, ``V_``, ``R4``-``R1``
under the scope (``VNet``), each with ``conv_<i>/w`` (5x5x5, no bias),
``downsample/{w,b}``, ``upsample/{w,b}`` (a ``(k, k, k, out, in)`` transposed
kernel) or ``conv_1x1x1/{w,b}``, for ``prelu`` ``prelu_activation[_<i>]/alpha``,
and, when the input has several channels, ``L1/residual_sum/proj/w``.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet

_CONV = "conv3d_dhwio_to_oidhw"  # also turns TF's (k, k, k, out, in) transposed kernels into torch's (in, out, k...)
_BLOCK = "{block:L[1-4]|V_|R[1-4]}"
_TAIL = "{tail:downsample|upsample|conv_1x1x1}"


def niftynet_rules(scope: str = "VNet", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet VNet under name scope ``scope`` built with activation ``acti_func``."""
    a = acti_func.lower()
    rules = [
        Rule(f"{scope}/{_BLOCK}/conv_{{i:\\d+}}/w", f"{_BLOCK}.conv_{{i}}.weight", _CONV),
        Rule(f"{scope}/{_BLOCK}/{_TAIL}/w", f"{_BLOCK}.{_TAIL}.weight", _CONV),
        Rule(f"{scope}/{_BLOCK}/{_TAIL}/b", f"{_BLOCK}.{_TAIL}.bias"),
        Rule(f"{scope}/{_BLOCK}/residual_sum/proj/w", f"{_BLOCK}.proj.weight", _CONV),
    ]
    if a == "prelu":
        rules.append(Rule(f"{scope}/{_BLOCK}/prelu_activation{{dup:(?:_\\d+)?}}/alpha",
                          f"{_BLOCK}.acti{{dup}}.alpha"))
    suffix = "" if (scope, a) == ("VNet", "relu") else f" ({scope}, {a})"
    return RuleSet(tuple(rules), name=f"VNet NiftyNet rules{suffix}")
