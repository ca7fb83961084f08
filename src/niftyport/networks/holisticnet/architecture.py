"""HolisticNet's constants, size rule and state_dict shapes (torch-free), after ``niftynet/network/holistic_net.py``."""
from __future__ import annotations

from collections.abc import Sequence

#: ``num_features``: width of the first convolution and of every residual block.
N_FEATURES = 70
#: ``num_fea_score_layers``: a ScoreLayer's input width and its 3x3x3 layer's width.
SCORE_FEATURES = (70, 140)
#: ``num_res_blocks``: HighResBlocks per scale.
N_RES_BLOCKS = 3
#: Per scale: the dilation of its residual blocks and whether it runs at half resolution.
SCALES: tuple[tuple[int, bool], ...] = ((1, False), (2, False), (1, True), (2, True))
#: ScoreLayer's own default activation; HolisticNet never passes acti_func to it.
SCORE_ACTI = "elu"
#: Kernel sizes of the channel-wise transposed convolutions that bring scales 3 and 4 back (stride 2).
UPSAMPLE_KERNELS = {3: 2, 4: 1}
#: Side multiple NiftyNet can take: dilation 2 (space-to-batch) on the half-resolution scale 4.
SIDE_MULTIPLE = 4


def check_input(spatial_shape: Sequence[int]) -> None:
    """Every side a multiple of 4: halved by the 2x2x2 pooling, then split by scale 4's dilation 2."""
    from ...errors import InputShapeError

    if any(n % SIDE_MULTIPLE or n <= 0 for n in spatial_shape):
        raise InputShapeError(
            f"HolisticNet needs every spatial side to be a multiple of {SIDE_MULTIPLE} (half resolution, "
            f"then NiftyNet's space-to-batch dilation 2), got {tuple(spatial_shape)}")


def _bn(prefix: str, n: int, tracked: bool = False) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{p}": (n,) for p in ("weight", "bias", "running_mean", "running_var")}
    return shapes | ({f"{prefix}.num_batches_tracked": ()} if tracked else {})


def state_dict_shapes(num_classes: int = 2, in_channels: int = 1,
                      acti_func: str = "relu") -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``HolisticNet(num_classes=..., in_channels=..., acti_func=...).state_dict()``."""
    prelu = acti_func.lower() == "prelu"
    n = N_FEATURES
    shapes = {"conv_1_1.conv.weight": (n, in_channels, 3, 3, 3), **_bn("conv_1_1.bn", n)}
    shapes |= {"conv_1_1.acti.alpha": (n,)} if prelu else {}
    for s in range(1, len(SCALES) + 1):
        for b in range(N_RES_BLOCKS):
            block = f"res_{s}_{b}"
            for i in range(2):
                shapes |= _bn(f"{block}.bn_{i}", n, tracked=True)
                shapes[f"{block}.conv_{i}.weight"] = (n, n, 3, 3, 3)
            shapes |= {f"{block}.acti_{i}.alpha": (n,) for i in range(2)} if prelu else {}
        wide = SCORE_FEATURES[1]
        shapes |= {f"score_{s}.conv_fc_0.conv.weight": (wide, SCORE_FEATURES[0], 3, 3, 3),
                   **_bn(f"score_{s}.conv_fc_0.bn", wide),
                   f"score_{s}.conv_bn.conv.weight": (num_classes, wide, 1, 1, 1),
                   **_bn(f"score_{s}.conv_bn.bn", num_classes)}
    for s, k in UPSAMPLE_KERNELS.items():
        shapes |= {f"up_{s}.deconv_{c}.weight": (1, 1, k, k, k) for c in range(num_classes)}
    shapes |= {f"merge.conv_{c}.weight": (1, len(SCALES), 1, 1, 1) for c in range(num_classes)}
    return shapes
