"""MSNet (``util/MSNet.py`` of github.com/taigw/brats17): the anisotropic W-Net, T-Net and E-Net.

Wang G., Li W., Ourselin S., Vercauteren T. "Automatic brain tumor
segmentation using cascaded anisotropic convolutional neural networks."
BrainLes 2017 (MICCAI workshop), LNCS 10670, pp. 178-190. The BraTS 2017
cascade: W-Net (whole tumour) and T-Net (tumour core) down-sample twice
in-plane, E-Net (enhancing core) once; one network per view (axial, sagittal,
coronal). Built from NiftyNet's layers; packaged in NiftyNet's model zoo as
``anisotropic_nets_brats_challenge``.

Home of the network: :mod:`.architecture` (torch-free size rules and
table), :mod:`.module` (the ``nn.Module``), :mod:`.rules` (TF names).
"""
from __future__ import annotations

from .. import NetworkSpec
from .architecture import BASE_CHNS, check_input, output_shape
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="msnet",
    niftynet_class="util.MSNet.MSNet",
    module="niftyport.networks.msnet.module:MSNet",
    rules=niftynet_rules,
    default_scope="MSNet",
    options={"downsample_twice": True, "base_chns": list(BASE_CHNS)},
    check_input=check_input,
    output_shape=output_shape,
    citation="Wang et al., BrainLes 2017 (github.com/taigw/brats17, util/MSNet.py)",
    default_num_classes=2,
    notes=(
        ("Batch norm always normalises with the statistics of the batch fed (test.py builds every net "
         "with is_training=True; the checkpoints' moving averages are the untrained 0/1): one sample's "
         "output depends on the rest of its batch, so feed the batches the reference feeds (test.py: "
         "batch_size 5 sub-volumes along the slice axis, the last batch topped up with N(0, 1) noise)."),
        ("The first spatial axis (D, torch's X) is the slice axis: the output keeps the central D - 8 "
         "slices (four 3x1x1 VALID fuse convs; the p1/p2 branches are cropped by 2/1 slices to match)."),
        ("downsample_twice=True (W-Net, T-Net): in-plane sides must be multiples of 4; False (E-Net): "
         "multiples of 2. SPEC.check_input applies W-Net's rule, which fits every variant; the module "
         "checks its own. TF also accepts 4k+3 for W-Net/T-Net (output one voxel larger): refused here."),
        ("Dilated 1x3x3 convs (dilation 2 and 3 in-plane) are TF's space-to-batch; the same as a dilated "
         "SAME convolution for any size (sides not divisible by 3 included)."),
        ("Up-sampling is a 1x3x3 stride-1x2x2 SAME transposed conv (output exactly 2n), then BN and PReLU; "
         "the three branches are concatenated p1, p2, p3 (7 * num_classes channels) before final_pred, "
         "a 1x3x3 conv with no bias: the output is logits (test.py applies softmax)."),
        "E-Net's p1 branch is pred1, a plain 1x3x3 conv without BN or activation.",
        ("block1_1's shortcut zero-pads the 4 input channels into channels 14..17 of 32 (NiftyNet's "
         "ElementwiseLayer SUM: diff // 2 zeros first)."),
        ("TensorFlow's CPU kernels sum batch-norm moments in float32 (for the 4-channel input in plain "
         "sequence): at the checkpoints' full training shapes (up to 2M voxels per channel) TF's own "
         "variances are off by up to 6e-3 relative, so TF-CPU outputs differ from this (float32 ~ float64) "
         "port by up to ~0.6% of max|logit| there; at small shapes by ~1e-5."),
        ("A batch norm over one value per channel (batch 1, 9 x 4 x 4 input) gives beta, as TF does "
         "(torch's batch_norm refuses it; BatchStatsNorm in module.py)."),
        ("The T-Net graphs were saved by TF 1.2, whose tf.nn.moments uses the shifted formula "
         "(mean(x - s), s = mean(x)); the same statistics in exact arithmetic."),
        ("acti_func: MSNet's default and every published checkpoint use prelu (prelu(x) = relu(x) + "
         "alpha * (x - |x|) / 2); in_channels is 4 (FLAIR, T1, T1ce, T2). The registry's build() "
         "defaults are relu and 1 channel, so pass in_channels=4, acti_func='prelu' with these checkpoints."),
    ),
    status=("matches TF (MSNet.py's graph on NiftyNet 0.6.0 layers, bitwise equal to the saved MetaGraphs) "
            "with the real W/T/E-Net checkpoints: small random + real-T1 inputs max|diff| 4e-5 .. 5e-4 "
            "(max|logit| 7 .. 34); the 9 MetaGraphs at their full shapes 9e-3 .. 8.6e-2 (max|logit| 15 .. 67, "
            "argmax agreement >= 99.99%), the excess being TF-CPU's float32 moment sums"),
    # taigw's BraTS code, not a NiftyNet network: which variables it regularises is not verified
    unregularised=None,
)
