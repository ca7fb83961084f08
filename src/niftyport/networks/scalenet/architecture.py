"""ScaleNet's constants and ``state_dict`` shapes (torch-free), after ``niftynet/network/scalenet.py``."""
from __future__ import annotations

from ..highres3dnet.architecture import state_dict_shapes as highres3dnet_shapes

#: ``self.n_features``: channels of each modality's first convolution and of the ScaleBlock.
N_FEATURES = 16
#: Kernel sizes of ScaleBlock's HighResBlocks.
SCALE_BLOCK_KERNELS = (3, 1)
#: ScaleBlock's default activation; ScaleNet does not pass its own.
SCALE_BLOCK_ACTI = "relu"
#: HighRes3DNet's default activation, used by ScaleNet's front end whatever ``acti_func`` says.
FRONT_END_ACTI = "prelu"
#: The front end's prefix in the module's keys.
FRONT_END = "highres3dnet"


def _bn(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{p}": (n,) for p in ("weight", "bias", "running_mean", "running_var")}


def _block(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i, k in enumerate(SCALE_BLOCK_KERNELS):
        shapes |= _bn(f"{prefix}.bn_{i}", n)  # SCALE_BLOCK_ACTI is relu: no alpha
        shapes[f"{prefix}.conv_{i}.weight"] = (n, n, k, k, k)
    return shapes


def state_dict_shapes(num_classes: int = 2, in_channels: int = 2,
                      acti_func: str = "relu") -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``ScaleNet(num_classes=..., in_channels=..., acti_func=...).state_dict()``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for m in range(in_channels):
        shapes[f"conv_{m}.conv.weight"] = (N_FEATURES, 1, 3, 3, 3)
        shapes |= _bn(f"conv_{m}.bn", N_FEATURES)
        if acti_func.lower() == "prelu":
            shapes[f"conv_{m}.acti.alpha"] = (N_FEATURES,)
    for f in range(N_FEATURES):
        shapes |= _block(f"scaleblock.M_F_0_{f}", in_channels)
    for m in range(in_channels):
        shapes |= _block(f"scaleblock.F_M_0_{m}", N_FEATURES)
    front = highres3dnet_shapes(N_FEATURES, num_classes, acti_func=FRONT_END_ACTI)
    return shapes | {f"{FRONT_END}.{k}": v for k, v in front.items()}
