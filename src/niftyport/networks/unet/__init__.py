"""NiftyNet's UNet3D (``niftynet.network.unet.UNet3D``, ``[NETWORK] name = unet``).

Çiçek Ö., Abdulkadir A., Lienkamp S. S., Brox T., Ronneberger O. "3D U-Net:
learning dense volumetric segmentation from sparse annotation." MICCAI 2016.

Home of the network: :mod:`.architecture` (the torch-free table and size
rules), :mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
"""
from __future__ import annotations

from .. import NetworkSpec
from .architecture import BORDER, DEFAULT_N_FEATURES, check_input, output_shape, state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="unet",
    niftynet_class="niftynet.network.unet.UNet3D",
    module="niftyport.networks.unet.module:UNet3D",
    rules=niftynet_rules,
    default_scope="UNet",
    options={"n_features": DEFAULT_N_FEATURES},
    check_input=check_input,
    output_shape=output_shape,
    shapes=lambda num_classes, in_channels=1, acti_func="relu", n_features=DEFAULT_N_FEATURES: state_dict_shapes(
        num_classes, in_channels, acti_func, n_features),
    citation="Çiçek et al., MICCAI 2016",
    notes=((f"The output is the centre of the last layer's map: NiftyNet's CropLayer drops {BORDER} voxels per side "
            f"(output = input - {2 * BORDER} per axis); every side must be a multiple of 8 and >= 89."),
           ("Every conv (3x3x3 SAME, no bias) has batch norm and the activation, the final 1x1x1 one too: the "
            "output is act(BN(conv)), >= 0 with relu."),
           "The 2x2x2 stride-2 up-sampling layers (up_2x2_bn) have batch norm but no activation.",
           "Skip connections are concatenated before the up-sampled tensor (concat[skip, up]).",
           ("The class default acti_func is prelu; NiftyNet's applications pass the config's activation_function "
            "(default relu)."),
           ("NiftyNet names layers by width (<width>_bn_<acti>, _1/_2 for repeats in a block); the module keys "
            "follow (e.g. R3.64_bn_1), so a checkpoint of narrowed widths needs n_features set.")),
    status=("matches NiftyNet 0.6.0 (oracle): relu, n_features [8, 16, 32, 64, 128], 96x104x96 -> 8x16x8, and prelu, "
            "2 channels, repeated layer names; random + real-image crop, max|diff| 4.5e-7"),
    # NiftyNet's class: the up-sampling layers get no regulariser (checked against NiftyNet's graph)
    unregularised=r"/up_2x2_bn/",
)
