"""UNet2D (``niftynet.network.unet_2d.UNet2D``): NiftyNet's 2-D U-Net with VALID convolutions.

Ronneberger et al., MICCAI 2015. Home of the network: :mod:`.module` (the
``nn.Module``), :mod:`.rules` (NiftyNet's names), :mod:`.shapes` (size rules,
torch-free). Source: ``niftynet/network/unet_2d.py``.
"""
from __future__ import annotations

from .. import NetworkSpec
from .rules import niftynet_rules
from .shapes import check_input, output_shape

SPEC = NetworkSpec(
    name="unet_2d",
    niftynet_class="niftynet.network.unet_2d.UNet2D",
    module="niftyport.networks.unet_2d.module:UNet2D",
    rules=niftynet_rules,
    default_scope="UNet2D",
    spatial_dims=2,
    options={"n_fea": (64, 128, 256, 512, 1024)},
    check_input=check_input,
    output_shape=output_shape,
    citation="Ronneberger et al., MICCAI 2015",
    notes=("2-D: NiftyNet's layout (N, X, Y, C), torch's (N, C, X, Y).",
           "Every 3x3 convolution is VALID and has a bias before its batch norm; the output is smaller than "
           "the input: n - 184 per side, for sides 16k + 124 (k >= 4).",
           "n_fea (the five widths, default 64 ... 1024) is an attribute NiftyNet's layer_op reads: a "
           "narrowed network's checkpoint needs it set.",
           "Skip connections: cropped by (skip - up) // 2 computed from the first spatial axis and applied "
           "to every axis, then TF1 legacy resize_bilinear to the up-sampled size (the identity on valid "
           "sizes), concatenated before the up-sampled map.",
           "Max-pools are 'SAME': odd sides (not valid sizes) are padded at the end; the port reproduces "
           "NiftyNet's graph for those sides too, but check_input refuses them."),
    status="matches NiftyNet 0.6.0 (oracle refs unet2d, unet2d_prelu, and unet2d_offgrid for sides "
           "197 x 213), random + real-image slice, max|diff| 7e-7",
    # NiftyNet's class: the last 1x1 convolution gets no regulariser (checked against NiftyNet's graph)
    unregularised=r"^[^/]+/conv/conv_/",
)
