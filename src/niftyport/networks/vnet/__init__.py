"""NiftyNet's VNet (``niftynet.network.vnet.VNet``, ``[NETWORK] name = vnet``).

Milletari F., Navab N., Ahmadi S.-A. "V-Net: fully convolutional neural
networks for volumetric medical image segmentation." 3DV 2016.

Home of the network: :mod:`.architecture` (the torch-free table),
:mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .architecture import DEFAULT_N_FEATURES, MULTIPLE, state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="vnet",
    niftynet_class="niftynet.network.vnet.VNet",
    module="niftyport.networks.vnet.module:VNet",
    rules=niftynet_rules,
    default_scope="VNet",
    options={"n_features": DEFAULT_N_FEATURES},
    check_input=divisible_by(MULTIPLE, "VNet (four stride-2 halvings; NiftyNet asserts 8 but then fails)"),
    shapes=lambda num_classes, in_channels=1, acti_func="relu", n_features=DEFAULT_N_FEATURES: state_dict_shapes(
        num_classes, in_channels, acti_func, n_features),
    citation="Milletari et al., 3DV 2016",
    notes=(("Every block ends with the activation, the last one too: the output is act(conv_1x1x1 + bias), "
            ">= 0 with relu."),
           ("No normalisation; 5x5x5 convs without bias, an activation after each but a block's last; the "
            "residual sum comes before the block's down/up-sampling conv (2x2x2 stride 2, with bias)."),
           ("Bypasses: L1 adds the input tiled n_features[0] times on the channel axis (projected by a 1x1x1 conv "
            "without bias, L1/residual_sum/proj, when in_channels > 1); R4-R1 add the up-sampled tensor alone, "
            "their convs see concat[up, skip] (up first)."),
           "NiftyNet asserts sides divisible by 8, but a side not divisible by 16 fails at a concatenation."),
    status=("matches NiftyNet 0.6.0 (oracle): relu, n_features [2, 4, 8, 16, 32], and prelu with 2 input channels "
            "(projected bypass), 32x16x16; random + real-image crop, max|diff| 1.1e-6"),
    # NiftyNet's class: the bottom block and the down/up-sampling biases get none (checked against NiftyNet's graph)
    unregularised=r"/L4/|/(down|up)sample/b$",
)
