"""``niftyport demo`` on nilearn's MNI152 template (offline)."""
import nibabel as nib
import numpy as np

from niftyport.segmentation import demo
from niftyport.cli import main


def test_centred_crop_keeps_the_head_centre_and_the_world_coordinates():
    data = np.zeros((50, 60, 40), np.float32)
    data[10:30, 20:50, 5:35] = 1  # the "head": centre (20, 35, 20)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    crop = demo.centred_crop(img, (10, 20, 100))
    assert crop.shape == (10, 20, 40)  # a side larger than the image is kept whole
    # the crop starts at voxel (15, 25, 0): same world position as in the full image
    assert np.allclose(crop.affine[:3, 3], [30.0, 50.0, 0.0])
    assert np.array_equal(np.asarray(crop.dataobj), data[15:25, 25:45, :])


def test_demo_runs_offline_on_a_small_field_of_view(capsys, tmp_path, monkeypatch, third_party_pth):
    monkeypatch.setattr(demo, "DEMO_FOV", (28, 28, 28))  # one 48^3 window: seconds
    monkeypatch.setenv("NIFTYPORT_WEIGHTS", str(third_party_pth))
    status = main(["demo", "-o", str(tmp_path / "demo"), "--device", "cpu", "-q"])
    out = capsys.readouterr().out
    assert status == 0
    written = tmp_path / "demo" / "mni152_t1_fov_parcellation.nii.gz"
    assert f"output: {written}" in out
    labels = nib.load(written)
    t1 = nib.load(tmp_path / "demo" / "mni152_t1_fov.nii.gz")
    assert labels.shape == t1.shape == (28, 28, 28)
    assert np.array_equal(labels.affine, t1.affine)
    assert len(np.unique(np.asarray(labels.dataobj))) > 1
