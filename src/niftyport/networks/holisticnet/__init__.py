"""HolisticNet (``niftynet.network.holistic_net.HolisticNet``): four-scale residual network with fused scores.

Fidon L. et al. "Generalised Wasserstein Dice Score for imbalanced
multi-class segmentation using holistic convolutional networks." BrainLes
(MICCAI) 2017.

Home of the network: :mod:`.architecture` (torch-free constants, size rule,
shapes), :mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
"""
from __future__ import annotations

from .. import NetworkSpec
from .architecture import check_input, state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="holisticnet",
    niftynet_class="niftynet.network.holistic_net.HolisticNet",
    module="niftyport.networks.holisticnet.module:HolisticNet",
    rules=niftynet_rules,
    default_scope="HolisticNet",
    check_input=check_input,
    shapes=state_dict_shapes,
    citation="Fidon et al., BrainLes (MICCAI) 2017",
    notes=(
        "The output is NiftyNet's inference output, the fused score: per class a learnt weighted sum "
        "(MergeLayer WEIGHTED_AVERAGE, 1x1x1 conv without bias) of the 4 scales' softmax probabilities; "
        "not logits, not a distribution.",
        "NiftyNet bug kept: scale 4's ScoreLayer receives is_training=[70, 140] (a truthy list), so both its "
        "batch norms use the statistics of the batch being processed even at inference; a sample's output "
        "depends on the rest of its batch (and on the window size).",
        "ScoreLayers always use elu; acti_func reaches conv_1_1 and the residual blocks only.",
        "Scales 3 and 4 run at half resolution (2x2x2 average pooling); their scores come back by "
        "channel-wise transposed convs, kernel 2 (scale 3) and kernel 1 (scale 4: zero-stuffing, odd voxels "
        "of up-sampled score 4 are 0 before the softmax).",
        "Dilation 2 (scales 2 and 4) is NiftyNet's space-to-batch; here Conv3d(dilation=2), identical for "
        "sides that are multiples of 4, which NiftyNet requires.",
    ),
    status=("matches NiftyNet 0.6.0 (oracle): random + real-image crop, 16x24x16, max|diff| 2e-6; also a batch "
            "of 2 at 12x20x4 (1.2e-6; each sample alone differs by 1e-2, the batch-statistics bug)"),
    # NiftyNet's class: the score, merge and up-sampling layers get no regulariser (checked against NiftyNet's graph)
    unregularised=r"/(MergeLayer|ScoreLayer(_\d+)?|channelwise_deconv_upsample(_\d+)?)/",
)
