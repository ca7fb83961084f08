"""Which label table names the labels of a label map: given, beside it, or recorded in its header.

niftyport writes its label maps with a short description in the NIfTI
header (``descrip``, e.g. ``niftyport highres3dnet labels``) and, unless told
not to, the label table beside the output (``t1_parcellation.ctbl`` next to
``t1_parcellation.nii.gz``). Commands that read a label map
(``volumes``, ``compare``, ``report``) find the names in this order:

1. ``--labels``: a ``.ctbl`` file, the name of a network whose shipped
   weights come with a table (``highres3dnet``; ``gif`` is the same table),
   or ``none`` for plain ids;
2. a ``.ctbl`` with the label map's stem beside it;
3. the network named by the header's description, if it ships a table;
4. none: labels are called ``label <id>``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ColorTableError, NetworkError
from .colortable import ColorTable, read_ctbl

#: What ``--labels`` accepts besides a file: aliases of a network's shipped table.
ALIASES = {"gif": "highres3dnet"}
#: The header description niftyport writes: ``niftyport <network> labels``.
_DESCRIPTION = re.compile(r"niftyport (\w+) labels")

def description_for(network: str) -> str:
    """The header description of a label map made by ``network`` (NIfTI ``descrip``, 80 bytes at most)."""
    return f"niftyport {network} labels"


def sibling_table_path(label_path: str | os.PathLike) -> Path:
    """``dir/t1_parcellation.nii.gz`` -> ``dir/t1_parcellation.ctbl`` (any volume extension nibabel writes)."""
    from ..image_io import image_suffix

    path = Path(label_path)
    extension = image_suffix(path.name)
    return path.with_name(path.name[: -len(extension)] + ".ctbl") if extension else path.with_suffix(".ctbl")


def network_table(name: str) -> ColorTable:
    """The label table shipped with network ``name``'s weights (``gif`` = HighRes3DNet's GIF table)."""
    from .. import networks

    spec = networks.get(ALIASES.get(name.lower(), name))
    if spec.pretrained is None or spec.pretrained.labels is None:
        raise ColorTableError(f"network {spec.name} ships no label table; give a .ctbl file")
    return read_ctbl(spec.pretrained.labels)


def _header_network(label_path: Path) -> str | None:
    """The network named in a NIfTI header's description, if niftyport wrote it."""
    import nibabel as nib

    try:
        header = nib.load(str(label_path)).header
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError):
        return None  # the caller reports unreadable label maps itself
    descrip = header.get("descrip") if hasattr(header, "get") else None
    if descrip is None:
        return None
    text = bytes(descrip.item() if hasattr(descrip, "item") else descrip).decode("ascii", "replace")
    match = _DESCRIPTION.search(text)
    return match.group(1) if match else None


def table_for(label_path: str | os.PathLike | None, option: str | None) -> ColorTable | None:
    """The label table for the label map at ``label_path``, following the order in the module docstring."""
    if option is not None:
        if option.lower() == "none":
            return None
        if option.lower() in ALIASES or not Path(option).suffix:
            try:
                return network_table(option)
            except NetworkError:
                if not Path(option).exists():
                    raise ColorTableError(f"--labels {option!r}: neither a .ctbl file nor a network with a "
                                          f"shipped table (e.g. gif)") from None
        return read_ctbl(option)
    if label_path is None:
        return None
    sibling = sibling_table_path(label_path)
    if sibling.is_file():
        return read_ctbl(sibling)
    network = _header_network(Path(label_path))
    if network is not None:
        try:
            return network_table(network)
        except (NetworkError, ColorTableError):
            return None
    return None
