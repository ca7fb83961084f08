"""NiftyNet's ScaleNet variable names <-> :class:`~.module.ScaleNet` keys.

NiftyNet (``niftynet/network/scalenet.py``) names, under the network's
scope (``ScaleNet``): ``conv_<m>_bn_<acti>/{conv_,bn_,prelu_acti_}`` per
modality; ``scaleblock/M_F_0_<f>`` and ``scaleblock/F_M_0_<m>``
HighResBlocks (``bn_i``, ``conv_i``; relu, so no alphas); and
``HighRes3DNet/...``, the front end with PReLU, whose names are HighRes3DNet's
own (:func:`niftyport.networks.highres3dnet.rules.niftynet_rules`), mapped
onto ``highres3dnet.<key>``.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules
from ..highres3dnet.rules import niftynet_rules as highres3dnet_rules
from .architecture import FRONT_END, FRONT_END_ACTI

_CONV = "conv3d_dhwio_to_oidhw"


def _front_end_rules(scope: str) -> tuple[Rule, ...]:
    inner = highres3dnet_rules(f"{scope}/HighRes3DNet", acti_func=FRONT_END_ACTI)
    return tuple(Rule(r.source, f"{FRONT_END}.{r.target}", r.transform) for r in inner.rules)


def niftynet_rules(scope: str = "ScaleNet", *, acti_func: str = "relu", **_: object) -> RuleSet:
    """Rules for a NiftyNet ScaleNet under name scope ``scope`` whose ``acti_func`` is ``acti_func``."""
    a = acti_func.lower()
    first = f"{scope}/conv_{{m:\\d+}}_bn_{a}"
    block = f"{scope}/scaleblock/{{block:[MF]_[FM]_\\d+_\\d+}}"
    rules = [Rule(f"{first}/conv_/w", "conv_{m}.conv.weight", _CONV), *bn_rules(f"{first}/bn_", "conv_{m}.bn")]
    if a == "prelu":
        rules.append(Rule(f"{first}/prelu_acti_/alpha", "conv_{m}.acti.alpha"))
    rules += [Rule(f"{block}/conv_{{i:\\d+}}/w", "scaleblock.{block}.conv_{i}.weight", _CONV),
              *bn_rules(f"{block}/bn_{{i:\\d+}}", "scaleblock.{block}.bn_{i}")]  # relu: no alphas
    rules += _front_end_rules(scope)
    return RuleSet(tuple(rules), name=f"ScaleNet NiftyNet rules ({scope}, {a})")
