"""DenseVNet (``niftynet.network.dense_vnet.DenseVNet``): the model zoo's abdominal CT segmentation network.

Gibson E. et al. "Automatic multi-organ segmentation on abdominal CT with
dense V-networks." IEEE Transactions on Medical Imaging 37(8), 2018.

Home of the network: :mod:`.architecture` (hyper-parameters and shapes,
torch-free), :mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .architecture import state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="dense_vnet",
    niftynet_class="niftynet.network.dense_vnet.DenseVNet",
    module="niftyport.networks.dense_vnet.module:DenseVNet",
    rules=niftynet_rules,
    default_scope="DenseVNet",
    options={"hyperparams": {}, "spatial_dims": 3},
    check_input=divisible_by(8, "DenseVNet (NiftyNet: 2 ** len(dilation_rates), with its 3 dense blocks)"),
    shapes=state_dict_shapes,
    citation="Gibson et al., IEEE TMI 2018",
    default_num_classes=9,
    notes=(
        ("acti_func is ignored, as in NiftyNet: the dense blocks' convs, skip and down convs use ReLU; the "
         "initial 5x5x5 stride-2 conv has BN and no activation; the final conv has a bias, no BN, no activation."),
        ("The input is average-pooled (3, stride 2, SAME) with the padded voxels left out of each average "
         "(TF's avg_pool), then batch-normalised (scope 'batch_norm', one channel per input channel); this "
         "half-resolution map is both the first feature map of the final conv and part of the first block's input."),
        ("Dense blocks: each conv sees the concatenation of the block input and every earlier conv's output; the "
         "skip conv and the stride-2 down conv see the whole stack (with use_bdo, at inference, the stack "
         "without the block input). Skips are resized to the half-resolution grid."),
        ("Every resize is NiftyNet's LinearResizeLayer: TF1 legacy resize_bilinear (src = dst * in / out, no "
         "half-pixel offset, clamped), Z then Y then X; not torch's interpolate."),
        ("use_prior: the prior variable (1, P, P, P, 1) (P = prior_size, 24) is resized to the half-resolution "
         "grid, its log taken and added to the logits before the final resize to the input size."),
        "Strided convs use TF's SAME padding (the extra zero at the end of each axis).",
        ("hyperparams are merged over NiftyNet's defaults for each network; NiftyNet itself updates its class "
         "dict, so in one NiftyNet process a second DenseVNet inherits the first one's hyperparams."),
        ("Refused as NiftyNet 0.6.0 refuses them: dilation rates other than 1, use_dense_connections=False, "
         "use_coords=True. augmentation_scale acts only in training (ignored here). Spatial sides must be "
         "multiples of 2 ** len(dilation_rates) (8 by default; the module checks its own)."),
        ("A down conv of the last block (n_down_channels[-1] not None) holds weights but its output is unused, "
         "as in NiftyNet; it is not run."),
        ("2-D DenseVNets: spatial_dims=2 (inputs (N, C, X, Y)); their kernels need rules(scope, spatial_dims=2), "
         "which networks.load does not pass yet."),
    ),
    status=("matches NiftyNet 0.6.0 (oracle), random + real-image inputs: refs dense_vnet and dense_vnet_prior "
            "at 16^3 (tests; max|diff| 1.3e-6 / 1.2e-6), their full oracle TF checkpoints at 48x40x32 (2.4e-6 / "
            "2.5e-6) and the model zoo's 144^3 window (3.5e-6). Checked once against the oracle, not in the "
            "tests: use_bdo (8.6e-7), 2-D (6.7e-7), 2-D with prior and use_bdo (7.7e-7), and 2 input channels "
            "with 2 narrower blocks, a last down conv, seg_kernel_size 5, prior_size 10 (4.9e-7)."),
    # NiftyNet's class: DenseVNet passes no regulariser to any layer (checked against NiftyNet's graph)
    unregularised=".",
)
