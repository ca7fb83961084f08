"""NiftyNet's No New-Net (``niftynet.network.no_new_net.UNet3D``, ``[NETWORK] name = nonewnet``).

Isensee F., Kickingereder P., Wick W., Bendszus M., Maier-Hein K. H. "No
New-Net." MICCAI BrainLesion Workshop 2018.

Home of the network: :mod:`.architecture` (the torch-free table),
:mod:`.module` (the ``nn.Module``), :mod:`.rules` (NiftyNet's names).
"""
from __future__ import annotations

from .. import NetworkSpec, divisible_by
from .architecture import DEFAULT_N_FEATURES, MULTIPLE, state_dict_shapes
from .rules import niftynet_rules

SPEC = NetworkSpec(
    name="nonewnet",
    niftynet_class="niftynet.network.no_new_net.UNet3D",
    module="niftyport.networks.nonewnet.module:NoNewNet",
    rules=niftynet_rules,
    default_scope="NoNewNet",
    options={"n_features": DEFAULT_N_FEATURES},
    check_input=divisible_by(MULTIPLE, "No New-Net (four 2x2x2 max-poolings)"),
    shapes=lambda num_classes, in_channels=1, acti_func="leakyrelu", n_features=DEFAULT_N_FEATURES: (
        state_dict_shapes(num_classes, in_channels, acti_func, n_features)),
    citation="Isensee et al., MICCAI BrainLes 2018",
    notes=(("Instance norm is TF1 contrib's instance_norm (per sample and channel over the spatial axes, biased "
            "variance, eps 1e-5 from ConvolutionalLayer); no batch norm, no biases."),
           "The final 1x1x1 conv has no norm, no activation, no bias: the output is the logits.",
           ("Up-sampling is LinearResizeLayer x2: TF1 resize_bilinear with legacy sampling (src = dst / 2, the "
            "last voxel repeated; not torch's interpolate), (Y, Z) first, then X."),
           "Skip connections are concatenated before the up-sampled tensor (concat[skip, up]).",
           "leakyrelu (the class default) is NiftyNet's 0.51 x + 0.49 |x| (slope 0.02).",
           ("NiftyNet names layers by width (<width>_in_<acti>, _1/_2 for repeats in a block); the module keys "
            "follow (e.g. R1_FC.10_in_1), so a checkpoint of narrowed widths needs n_features set.")),
    status=("matches NiftyNet 0.6.0 (oracle): leakyrelu, n_features [10, 20, 40, 80, 160], 32x16x16, max|diff| 3.9e-4"
            " of max|out| 5.8 (NiftyNet's own float32 output is 2e-4 from a float64 run: the 2-voxel instance norm at"
            " the bottom amplifies rounding); prelu, 16^3 (1-voxel bottom), max|diff| 1.3e-5"),
    # NiftyNet's class: instance norm takes no regulariser (checked against NiftyNet's graph)
    unregularised=r"/InstanceNorm/(beta|gamma)$",
)
