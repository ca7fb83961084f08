"""HighRes3DNet (``niftynet.network.highres3dnet.HighRes3DNet``): the model zoo's brain parcellation network.

Li W., Wang G., Fidon L., Ourselin S., Cardoso M. J., Vercauteren T. "On the
compactness, efficiency, and representation of 3D convolutional networks:
brain parcellation as a pretext task." IPMI 2017.

Home of the network: :mod:`.architecture` (the torch-free table),
:mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names), :mod:`.zoo`
(the model zoo entry's weights, labels and landmarks, shipped in ``data/``).
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .architecture import RECEPTIVE_FIELD_RADIUS, state_dict_shapes
from .rules import niftynet_rules
from .zoo import PRETRAINED

SPEC = NetworkSpec(
    name="highres3dnet",
    niftynet_class="niftynet.network.highres3dnet.HighRes3DNet",
    module="niftyport.networks.highres3dnet.module:HighRes3DNet",
    rules=niftynet_rules,
    default_scope="HighRes3DNet",
    options={"hidden_1x1": True},
    check_input=divisible_by(8, "HighRes3DNet (NiftyNet dilates with space-to-batch)"),
    receptive_field_radius=RECEPTIVE_FIELD_RADIUS,
    shapes=lambda num_classes=160, in_channels=1, acti_func="relu", hidden_1x1=True: state_dict_shapes(
        in_channels, num_classes, hidden_1x1=hidden_1x1, acti_func=acti_func),
    citation="Li et al., IPMI 2017",
    default_num_classes=160,
    pretrained=PRETRAINED,
    status="matches NiftyNet 0.6.0 (oracle: relu and prelu, random + real-image crop, max|diff| < 1e-5); "
           "model zoo weights: 0 voxels off NiftyNet's own run",
    notes=("Dilated convolutions are NiftyNet's space-to-batch decomposition; here Conv3d(dilation=d), "
           "identical for sides divisible by 8.",
           "Widening shortcuts are zero-padded on the channel axis, diff // 2 channels first."),
)
