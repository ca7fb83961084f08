"""NiftyNet's batch inference: inputs found by the config, outputs named as NiftyNet names them."""
import csv

import nibabel as nib
import numpy as np
import torch

from niftyport.segmentation.batch import parcellate_subjects
from niftyport.segmentation.pipeline import resolve_config, run_parcellation


class Threshold(torch.nn.Module):
    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x], dim=1)


def test_every_subject_written_and_listed_in_inferred_csv(tmp_path):
    data_dir, rng = tmp_path / "data", np.random.default_rng(0)
    data_dir.mkdir()
    for name in ("sub-02_T1w.nii.gz", "sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz"):
        nib.save(nib.Nifti1Image(rng.gamma(2.0, 50.0, (14, 13, 12)).astype(np.float32), np.eye(4)),
                 data_dir / name)
    cfg = resolve_config(None, window=32, border=2).replace(
        image={"path_to_search": (str(data_dir),), "filename_contains": ("T1w",)},
        save_seg_dir=str(tmp_path / "out"))
    written = parcellate_subjects(cfg, model=Threshold(), device="cpu")
    assert [p.name for p in written] == ["window_seg_sub01___niftynet_out.nii.gz",
                                         "window_seg_sub02___niftynet_out.nii.gz"]
    with open(tmp_path / "out" / "inferred.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["sub01_", str(written[0])], ["sub02_", str(written[1])]]
    single = run_parcellation(data_dir / "sub-02_T1w.nii.gz", config=cfg, model=Threshold(), device="cpu")
    assert np.array_equal(np.asarray(nib.load(written[1]).dataobj), single.labels)
