"""ScaleNet (``niftynet.network.scalenet.ScaleNet``): a multimodal network with a HighRes3DNet front end.

Fidon L. et al. "Scalable multimodal convolutional networks for brain
tumour segmentation." MICCAI 2017.

Home of the network: :mod:`.architecture` (torch-free constants and shapes),
:mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names). The
front end is :mod:`niftyport.networks.highres3dnet`'s module and rules.
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .architecture import state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="scalenet",
    niftynet_class="niftynet.network.scalenet.ScaleNet",
    module="niftyport.networks.scalenet.module:ScaleNet",
    rules=niftynet_rules,
    default_scope="ScaleNet",
    check_input=divisible_by(8, "ScaleNet (its HighRes3DNet front end asserts it)"),
    shapes=state_dict_shapes,
    citation="Fidon et al., MICCAI 2017",
    notes=(
        "Needs at least 2 input modalities (channels); each gets its own first 3x3x3 layer (conv_<m>).",
        "acti_func only reaches those first layers: ScaleBlock's HighResBlocks use relu (ScaleBlock's "
        "default) and the HighRes3DNet front end uses prelu (its class default), whatever is configured.",
        "ScaleBlock 'AVERAGE': per feature a HighResBlock across modalities (M_F_0_f), per modality one "
        "across features (F_M_0_m), kernels (3, 1), residual; then the mean over modalities.",
        "The front end's variables live under ScaleNet/HighRes3DNet/ (HighRes3DNet's names); its "
        "dilations are Conv3d(dilation=d), identical to NiftyNet's space-to-batch for sides divisible by 8.",
    ),
    status=("matches NiftyNet 0.6.0 (oracle): 2 modalities, random + real-image crops, 16x24x8, max|diff| 5e-6; "
            "also 24x32x16 (8e-6) and a batch of 2 with 3 modalities, 16x8x8 (2e-6)"),
    # NiftyNet's class: only the per-modality convolutions get the regulariser (checked against NiftyNet's graph)
    unregularised=r"/(HighRes3DNet|scaleblock)/",
)
