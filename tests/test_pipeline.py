"""The chained pipeline: plumbing with a stand-in network, and the NiftyNet reference end to end."""
import nibabel as nib
import numpy as np
import pytest
import torch
from nibabel.orientations import axcodes2ornt, ornt_transform

from niftyport.errors import ConfigError, NiftyportError
from niftyport.segmentation.pipeline import parcellate, resolve_config, run_parcellation

from conftest import CHECKPOINT, CONFIG, NIFTYNET_HOME, REFERENCE, need


class Threshold(torch.nn.Module):
    """Label 1 where the network input is above 0, else 0 (monotonic in the intensity)."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x], dim=1)


def scan(axcodes, zooms, shape=(20, 18, 16), seed=0):
    """A random positive image stored in the given orientation (nibabel reorients it)."""
    rng = np.random.default_rng(seed)
    data = rng.gamma(2.0, 50.0, size=shape).astype(np.float32)
    ras = nib.Nifti1Image(data, np.diag([*map(float, zooms), 1.0]))
    return ras.as_reoriented(ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(tuple(axcodes))))


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR", "LIA"])
def test_labels_come_back_on_the_input_grid(axcodes):
    img = scan(axcodes, (1.0, 1.0, 1.0))
    assert "".join(nib.aff2axcodes(img.affine)) == axcodes
    cfg = resolve_config(None, window=32, border=2)
    out = run_parcellation(img, config=cfg, model=Threshold(), device="cpu").to_image()
    assert out.shape == img.shape
    assert np.array_equal(out.affine, img.affine)
    assert out.get_data_dtype() == np.int32
    labels = np.asarray(out.dataobj)
    data = np.asarray(img.dataobj)
    assert set(np.unique(labels)) == {0, 1}
    # the label is a threshold of each voxel's own intensity: nothing moved or flipped
    assert data[labels == 1].min() > data[labels == 0].max()


@pytest.mark.parametrize("axcodes", ["LPS", "PIR", "LIA", "ASR"])
def test_any_orientation_gives_the_ras_result_reoriented(axcodes):
    """Anisotropic voxels are resampled to 1 mm and back; orientation must not matter."""
    zooms = (2.0, 1.5, 1.25)
    ras = scan("RAS", zooms, shape=(14, 12, 18), seed=3)
    other = scan(axcodes, zooms, shape=(14, 12, 18), seed=3)
    cfg = resolve_config(None, window=32, border=2)
    ras_labels = run_parcellation(ras, config=cfg, model=Threshold(), device="cpu").to_image()
    out = run_parcellation(other, config=cfg, model=Threshold(), device="cpu").to_image()
    expected = ras_labels.as_reoriented(ornt_transform(axcodes2ornt(tuple("RAS")),
                                                       axcodes2ornt(tuple(axcodes))))
    assert np.array_equal(out.affine, other.affine)
    assert np.allclose(expected.affine, other.affine)
    assert np.array_equal(np.asarray(out.dataobj), np.asarray(expected.dataobj))
    assert 0 < np.asarray(out.dataobj).mean() < 1


def test_num_classes_mismatch_is_a_config_error():
    cfg = resolve_config(None, window=32, border=2)
    with pytest.raises(ConfigError, match="num_classes = 160 but the weights have 2"):
        run_parcellation(scan("RAS", (1, 1, 1)), config=cfg,
                         model=type("TwoClasses", (Threshold,), {"num_classes": 2})(), device="cpu")


def test_unknown_mode_and_device():
    with pytest.raises(NiftyportError, match="--mode 'fastest'"):
        run_parcellation(scan("RAS", (1, 1, 1)), model=Threshold(), mode="fastest")
    with pytest.raises(NiftyportError, match="--device 'gpu0'"):
        run_parcellation(scan("RAS", (1, 1, 1)), model=Threshold(), device="gpu0")


@pytest.mark.slow
def test_reference_end_to_end_zero_differing_voxels():
    """NiftyNet's own run on the MNI152 2 mm LPS input: every voxel of the label map."""
    need(REFERENCE)
    cfg = resolve_config(need(CONFIG), niftynet_home=NIFTYNET_HOME, window=64, border=2)
    ref = nib.load(REFERENCE / "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz")
    out = parcellate(REFERENCE / "input.nii.gz", config=cfg, weights=CHECKPOINT, device="cpu")
    assert out.shape == ref.shape
    assert np.array_equal(out.affine, ref.affine)
    differing = int((np.asarray(out.dataobj) != np.asarray(ref.dataobj)).sum())
    assert differing == 0
