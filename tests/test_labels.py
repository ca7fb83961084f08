"""Which table names a label map's labels: --labels, the .ctbl beside it, the network its header names."""
import nibabel as nib
import numpy as np
import pytest

from conftest import CTBL, need, one_line_error
from niftyport.cli import main
from niftyport.errors import ColorTableError
from niftyport.image_io import save_labels
from niftyport.reporting.colortable import read_ctbl, write_ctbl
from niftyport.reporting.labels import description_for, sibling_table_path, table_for


def _zoo_names():
    """The model zoo's table read as plain text: {id: name}."""
    rows = [line.split() for line in need(CTBL).read_text().splitlines() if line.strip() and line[0] != "#"]
    return {int(r[0]): r[1] for r in rows}


def _labels(path, description=""):
    save_labels(path, np.array([[[0, 4], [5, 47]]], dtype=np.int32), np.eye(4), description=description)
    return path


def test_sibling_names():
    assert sibling_table_path("d/t1_parcellation.nii.gz").name == "t1_parcellation.ctbl"
    assert sibling_table_path("d/t1_parcellation.mgz").name == "t1_parcellation.ctbl"


def test_the_header_names_the_network_and_its_shipped_table(tmp_path):
    path = _labels(tmp_path / "seg.nii.gz", description_for("highres3dnet"))
    assert bytes(nib.load(path).header["descrip"].item()).startswith(b"niftyport highres3dnet labels")
    table = table_for(path, None)
    zoo = _zoo_names()
    assert table is not None and {i: table.name(i) for i in zoo} == zoo


def test_without_marker_or_sibling_there_are_no_names(tmp_path):
    assert table_for(_labels(tmp_path / "plain.nii.gz"), None) is None


def test_a_sibling_table_wins_over_the_header_and_the_option_over_both(tmp_path):
    path = _labels(tmp_path / "seg.nii.gz", description_for("highres3dnet"))
    mine = read_ctbl(need(CTBL))
    mine.labels[47] = type(mine.labels[47])(47, "my-structure", (1, 2, 3, 255))
    write_ctbl(mine, sibling_table_path(path))
    assert table_for(path, None).name(47) == "my-structure"
    assert table_for(path, "gif").name(47) == _zoo_names()[47]
    assert table_for(path, "none") is None


def test_unknown_labels_option_is_an_error(tmp_path):
    with pytest.raises(ColorTableError, match="neither a .ctbl file nor a network"):
        table_for(None, "not-a-network")


def test_volumes_names_regions_of_a_niftyport_map_by_default(tmp_path, capsys):
    path = _labels(tmp_path / "seg.nii.gz", description_for("highres3dnet"))
    assert main(["volumes", str(path)]) == 0
    out = capsys.readouterr().out
    assert _zoo_names()[47] in out and _zoo_names()[5] in out
    one_line_error(main(["volumes", str(path), "--labels", "nope"]), capsys.readouterr().err, "nope")
