"""One family of exceptions for everything a user can get wrong.

Every message names the file, parameter or variable at fault and the value
found, on one line, so that the command line can print it as
``niftyport: error: <message>`` and exit non-zero without a traceback.
"""
from __future__ import annotations


class NiftyportError(Exception):
    """Base class: a problem with the user's input, not a bug in niftyport."""


class CheckpointError(NiftyportError):
    """A TensorFlow checkpoint cannot be read, or is corrupt."""


class MappingError(NiftyportError):
    """Checkpoint variables do not map onto the PyTorch module (missing, unexpected, wrong shape)."""


class WeightsError(NiftyportError):
    """Pretrained weights cannot be found, downloaded or verified."""


class ImageError(NiftyportError):
    """An image file is missing, not NIfTI, or not a single 3-D volume of finite numbers."""


class ConfigError(NiftyportError):
    """A NiftyNet ``.ini`` configuration has an unknown key or an invalid value."""


class ColorTableError(NiftyportError):
    """A colour table (3D Slicer ``.ctbl``) cannot be read or holds an invalid line."""


class GridError(NiftyportError):
    """Two images that must share a voxel grid differ in shape or affine."""


class OptionError(NiftyportError):
    """An option (command line or keyword argument) has an invalid value."""


class NetworkError(NiftyportError):
    """An unknown network name, option or activation, or weights that do not fit the network."""


class InputShapeError(NiftyportError):
    """An input whose spatial size the network cannot take (NiftyNet's size rules)."""


class CohortError(NiftyportError):
    """A cohort's inputs or outputs are invalid: a BIDS dataset, a scan list, a derivatives folder, a cluster."""


class TrainingError(NiftyportError):
    """A training setting (optimiser, loss, restore or freeze pattern, starting checkpoint) cannot be used."""
