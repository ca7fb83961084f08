"""The model zoo entry ``highres3dnet_brain_parcellation``, shipped in ``data/`` beside this module.

* ``highres3dnet_brain_parcellation.safetensors``: the trained weights of the
  zoo's NiftyNet checkpoint ``model.ckpt-33000``, converted by niftyport
  (``niftyport convert``; bit-identical values, niftyport's keys);
* ``GIFNiftyNet.ctbl``: the zoo's 3D Slicer colour table of the 160 GIF labels
  (the network's output index is the table's id);
* ``databrain_std_hist_models_otsu.txt``: the zoo's histogram landmarks;
* ``PROVENANCE.md``: where each came from, their licences, the rebuild command.

Torch-free.
"""
from __future__ import annotations

from pathlib import Path

from .. import Pretrained

DATA = Path(__file__).resolve().parent / "data"

#: The pretrained HighRes3DNet of the NiftyNet model zoo (Li et al., IPMI 2017).
PRETRAINED = Pretrained(
    entry="highres3dnet_brain_parcellation",
    weights=DATA / "highres3dnet_brain_parcellation.safetensors",
    sha256="060922d47ae7dde71691a38d00691fb9d636f5f8a934e875f7651b680dfbb6de",
    labels=DATA / "GIFNiftyNet.ctbl",
    provenance=DATA / "PROVENANCE.md",
    licence="CC BY 4.0 (NiftyNet model zoo entry highres3dnet_brain_parcellation): attribute Li, Wang, Fidon, "
            "Ourselin, Cardoso and Vercauteren, IPMI 2017",
    num_classes=160,
)

#: The zoo entry's histogram landmarks (13 numbers for the modality ``T1``).
LANDMARKS = DATA / "databrain_std_hist_models_otsu.txt"
