"""Re-export: the HighRes3DNet module now lives in :mod:`niftyport.networks.highres3dnet.module`."""
from .networks.highres3dnet.module import BN_EPS, BN_MOMENTUM, RECEPTIVE_FIELD_RADIUS, ConvBN, HighRes3DNet, HighResBlock  # noqa: F401
