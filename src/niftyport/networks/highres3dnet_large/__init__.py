"""HighRes3DNetLarge (``niftynet.network.highres3dnet_large.HighRes3DNetLarge``): HighRes3DNet, one more 3x3x3 layer.

Li W., Wang G., Fidon L., Ourselin S., Cardoso M. J., Vercauteren T. IPMI 2017
(the large variant). Home of the network: :mod:`.module` (the ``nn.Module``),
:mod:`.rules` (NiftyNet's names). Source: ``niftynet/network/highres3dnet_large.py``.
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="highres3dnet_large",
    niftynet_class="niftynet.network.highres3dnet_large.HighRes3DNetLarge",
    module="niftyport.networks.highres3dnet_large.module:HighRes3DNetLarge",
    rules=niftynet_rules,
    default_scope="HighRes3DNet",
    check_input=divisible_by(8, "HighRes3DNetLarge (NiftyNet asserts it; it dilates with space-to-batch)"),
    receptive_field_radius=1 + 2 * 3 * (1 + 2 + 4) + 1,  # conv_0, nine residual blocks, conv_1
    citation="Li et al., IPMI 2017",
    notes=("NiftyNet's default name scope is 'HighRes3DNet', HighRes3DNet's own: the layer names tell them "
           "apart (this one has conv_2_bn_<acti> and conv_3_bn, HighRes3DNet conv_2_bn).",
           "conv_1 is 3x3x3 with 64 channels, conv_2 1x1x1 with 64 channels and the activation, conv_3 the "
           "classifier (BN, no activation).",
           "NiftyNet passes keep_prob to conv_2 (class default 0.5) and tf.nn.dropout ignores is_training: "
           "NiftyNet's inference drops out unless keep_prob=1.0. This port never does (keep_prob=1.0).",
           "Dilated convolutions are NiftyNet's space-to-batch decomposition; here Conv3d(dilation=d), "
           "identical for sides divisible by 8.",
           "Widening shortcuts are zero-padded on the channel axis, diff // 2 channels first."),
    status="matches NiftyNet 0.6.0 (oracle refs highres3dnet_large, highres3dnet_large_prelu), "
           "random + real-image crop, max|diff| 8e-6",
)
