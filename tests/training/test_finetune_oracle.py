"""A model ``niftyport finetune`` wrote, run by NiftyNet 0.6.0's own ``net_segment inference``.

Needs the oracle (``$NIFTYPORT_ORACLE_PYTHON``: the Python of the venv of
``shared/oracle/README.md``); skipped without it. A 3-class head is
fine-tuned for two iterations on a 28^3 crop of the MNI152 template; NiftyNet
(``tests/oracle/run_finetuned_model.py``) reads the generated config, restores
the checkpoint and segments the crop; its labels must be ``niftyport
segment``'s with the same config, voxel for voxel.
"""
from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from niftyport.cli import main
from niftyport.training.demo import tissue_classes

ORACLE_PYTHON = os.environ.get("NIFTYPORT_ORACLE_PYTHON")


def _mni_crop(size: int):
    """A ``size``^3 crop of the MNI152 T1 around the centre of the brain, and its tissue classes."""
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    from niftyport.segmentation.demo import mni152_t1

    box = tuple(slice(c - size // 2, c - size // 2 + size) for c in (98, 116, 80))
    gm = load_mni152_gm_template(resolution=1).get_fdata()[box]
    wm = load_mni152_wm_template(resolution=1).get_fdata()[box]
    image = mni152_t1().slicer[box]
    return image, nib.Nifti1Image(tissue_classes(gm, wm), image.affine)


@pytest.mark.skipif(not ORACLE_PYTHON, reason="set NIFTYPORT_ORACLE_PYTHON to the oracle venv's python")
def test_niftynet_segments_with_the_finetuned_model(tmp_path):
    image, label = _mni_crop(28)
    for folder, img in (("images", image), ("labels", label)):
        (tmp_path / folder).mkdir()
        nib.save(img, tmp_path / folder / "mni-crop.nii.gz")
    out = tmp_path / "model"
    assert main(["finetune", str(tmp_path / "images"), str(tmp_path / "labels"), "--num-classes", "3",
                 "--freeze", "res_1|res_2", "--max-iter", "2", "--window", "8", "--batch-size", "1",
                 "--lr", "0.001", "-o", str(out), "--threads", "2"]) == 0
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(out / "config.ini")
    parser["INFERENCE"]["spatial_window_size"] = "(48, 48, 48)"   # the padded crop: one window
    parser["INFERENCE"]["border"] = "(0, 0, 0)"
    with open(out / "one_window.ini", "w") as f:
        parser.write(f)
    ours = tmp_path / "ours.nii.gz"
    assert main(["segment", str(tmp_path / "images" / "mni-crop.nii.gz"), "--config", str(out / "one_window.ini"),
                 "-o", str(ours), "--device", "cpu", "-q"]) == 0
    script = Path(REPO) / "tests" / "oracle" / "run_finetuned_model.py"
    done = subprocess.run([ORACLE_PYTHON, str(script), str(out / "one_window.ini")], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    theirs = np.asarray(nib.load(out / "output" / "window_seg_mnicrop__niftynet_out.nii.gz").dataobj)
    mine = np.asarray(nib.load(ours).dataobj)
    assert theirs.shape == mine.shape == (28, 28, 28)
    assert len(np.unique(mine)) == 3
    np.testing.assert_array_equal(theirs, mine)
