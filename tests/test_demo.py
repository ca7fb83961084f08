"""``niftyport demo`` on nilearn's MNI152 template (offline)."""
import nibabel as nib
import numpy as np

from conftest import CTBL, need
from niftyport.cli import main
from niftyport.segmentation import demo


def CTBL_LINES():
    """The model zoo's colour table, read as text (not by niftyport's reader)."""
    return [line for line in need(CTBL).read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_centred_crop_keeps_the_head_centre_and_the_world_coordinates():
    data = np.zeros((50, 60, 40), np.float32)
    data[10:30, 20:50, 5:35] = 1  # the "head": centre (20, 35, 20)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    crop = demo.centred_crop(img, (10, 20, 100))
    assert crop.shape == (10, 20, 40)  # a side larger than the image is kept whole
    # the crop starts at voxel (15, 25, 0): same world position as in the full image
    assert np.allclose(crop.affine[:3, 3], [30.0, 50.0, 0.0])
    assert np.array_equal(np.asarray(crop.dataobj), data[15:25, 25:45, :])


def test_demo_runs_offline_with_the_packaged_weights_and_names_regions(capsys, tmp_path, monkeypatch):
    """No environment variable, no network: the weights and the GIF names shipped in the package."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the demo tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("NIFTYPORT_WEIGHTS", raising=False)
    monkeypatch.setenv("NIFTYPORT_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(demo, "DEMO_FOV", (28, 28, 28))  # one 48^3 window: seconds
    status = main(["demo", "-o", str(tmp_path / "demo"), "--device", "cpu", "-q"])
    out = capsys.readouterr().out
    assert status == 0
    written = tmp_path / "demo" / "mni152_t1_fov_parcellation.nii.gz"
    assert f"output:  {written}" in out
    assert f"report:  {tmp_path / 'demo' / 'report' / 'index.html'}" in out
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
    # the largest regions are named from the GIF table (the model zoo's GIFNiftyNet.ctbl ids)
    regions = out.split("largest regions (cm^3): ")[1].splitlines()[0]
    gif_names = {line.split()[1] for line in CTBL_LINES()}
    named = [part.rsplit(" ", 1)[0] for part in regions.split(", ")]
    assert named and all(n in gif_names for n in named), named
    assert (tmp_path / "demo" / "mni152_t1_fov_parcellation.ctbl").is_file()
    assert (tmp_path / "demo" / "mni152_t1_fov_parcellation_volumes.csv").is_file()
    # a second run refuses to replace the first one's files, unless --force
    assert main(["demo", "-o", str(tmp_path / "demo"), "--device", "cpu", "-q"]) == 2
    assert "--force" in capsys.readouterr().err
    labels = nib.load(written)
    t1 = nib.load(tmp_path / "demo" / "mni152_t1_fov.nii.gz")
    assert labels.shape == t1.shape == (28, 28, 28)
    assert np.array_equal(labels.affine, t1.affine)
    assert len(np.unique(np.asarray(labels.dataobj))) > 1
