"""ToyNet (``niftynet.network.toynet.ToyNet``): NiftyNet's two-layer test network.

Home of the network: :mod:`.module` (the ``nn.Module``) and :mod:`.rules`
(NiftyNet's variable names). Source: ``niftynet/network/toynet.py``.
"""
from __future__ import annotations

from .. import NetworkSpec
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="toynet",
    niftynet_class="niftynet.network.toynet.ToyNet",
    module="niftyport.networks.toynet.module:ToyNet",
    rules=niftynet_rules,
    default_scope="ToyNet",
    receptive_field_radius=1,
    notes=("acti_func is accepted and ignored, as in NiftyNet: conv_input always uses ReLU and "
           "conv_output has no activation (NiftyNet's own default acti_func, 'prelu', is never used).",
           "Both convolutions have batch norm and no bias; every spatial size is accepted ('SAME', stride 1).",
           "NiftyNet's ToyNet also runs on 2-D inputs (its kernels follow the input's rank); this port is 3-D."),
    status="matches NiftyNet 0.6.0 (oracle refs toynet and toynet_prelu), random + real-image crop, "
           "max|diff| 4e-7",
)
