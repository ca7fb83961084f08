"""DeepMedic (``niftynet.network.deepmedic.DeepMedic``): two-pathway 3-D CNN for lesion segmentation.

Kamnitsas K. et al. "Efficient multi-scale 3D CNN with fully connected CRF
for accurate brain lesion segmentation." Medical Image Analysis 36, 2017.

Home of the network: :mod:`.architecture` (torch-free table and size rules),
:mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
"""
from __future__ import annotations

from .. import NetworkSpec
from .architecture import check_input, output_shape, state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="deepmedic",
    niftynet_class="niftynet.network.deepmedic.DeepMedic",
    module="niftyport.networks.deepmedic.module:DeepMedic",
    rules=niftynet_rules,
    default_scope="DeepMedic",
    check_input=check_input,
    output_shape=output_shape,
    shapes=state_dict_shapes,
    citation="Kamnitsas et al., Medical Image Analysis 2017",
    notes=(
        "Output side = input side - 48 (57 -> 9, 105 -> 57); every input side must be odd, a multiple of 3 "
        "and > 48 (NiftyNet's asserts).",
        "Every layer, the last 1x1x1 one included, is conv -> BN -> activation: the output is "
        "acti(BN(conv)), not logits (with relu it is never negative).",
        "The sub-sampled pathway reads voxels 3i+1 (DownSampleLayer 'CONSTANT': a VALID stride-3 conv with "
        "a centre-one kernel) and is up-sampled by replication (nearest, 3x3x3 blocks).",
        "The normal pathway is the input less 16 voxels per side (CropLayer); the pathways are "
        "concatenated normal first.",
        "acti_func: the class default is prelu, but NiftyNet's applications always pass [NETWORK] "
        "activation_function (default relu), as build() does.",
    ),
    status=("matches NiftyNet 0.6.0 (oracle): relu and prelu, random + real-image crop, 57^3 -> 9^3, max|diff| 7e-7; "
            "also 2x(57, 63, 51)x2 channels with elu and 3 classes, and 150 classes (1.4e-6)"),
)
