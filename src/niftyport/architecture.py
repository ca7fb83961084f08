"""Re-export: HighRes3DNet's architecture table now lives in :mod:`niftyport.networks.highres3dnet.architecture`."""
from .networks.highres3dnet.architecture import FIRST_CHANNELS, HIDDEN_1x1_CHANNELS, RECEPTIVE_FIELD_RADIUS, STAGES, Stage, state_dict_shapes  # noqa: F401
