"""HighRes3DNetSmall (``niftynet.network.highres3dnet_small.HighRes3DNetSmall``): HighRes3DNet at half resolution.

Li W., Wang G., Fidon L., Ourselin S., Cardoso M. J., Vercauteren T. IPMI 2017
(the small variant: a stride-2 first convolution and a transposed one at the end).
Home of the network: :mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
Source: ``niftynet/network/highres3dnet_small.py``.
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="highres3dnet_small",
    niftynet_class="niftynet.network.highres3dnet_small.HighRes3DNetSmall",
    module="niftyport.networks.highres3dnet_small.module:HighRes3DNetSmall",
    rules=niftynet_rules,
    default_scope="HighRes3DNetSmall",
    check_input=divisible_by(8, "HighRes3DNetSmall (NiftyNet asserts it; it dilates with space-to-batch "
                                "at half resolution)"),
    # conv_0 (1 voxel) + 43 half-resolution voxels (9 blocks: 2 x 3 x (1 + 2 + 4), conv_1: 1), times 2,
    # + the transposed conv's reach: an output voxel sees at most 88 input voxels on either side.
    receptive_field_radius=88,
    citation="Li et al., IPMI 2017",
    notes=("conv_0 is 3x3x3 with stride 2, 'SAME': TF pads 0 voxels before and 1 after each (even) side.",
           "deconv is TF's conv3d_transpose 3x3x3, stride 2, 'SAME' (no bias): output 2n, the first 2n of "
           "the full (2n + 1)-long transposed output.",
           "conv_1 is 3x3x3 (not 1x1x1 as in HighRes3DNet), 80 channels; deconv keeps 80.",
           "Dilated convolutions are NiftyNet's space-to-batch decomposition; here Conv3d(dilation=d), "
           "identical for sides divisible by 8.",
           "Widening shortcuts are zero-padded on the channel axis, diff // 2 channels first."),
    status="matches NiftyNet 0.6.0 (oracle refs highres3dnet_small, highres3dnet_small_prelu), "
           "random + real-image crop, max|diff| 3e-6",
)
