"""Shared fixtures: where the real weights, checkpoint and scans live.

They are read from ``../shared`` next to the repository (or the folder named
by ``NIFTYPORT_SHARED``); tests that need them skip with the reason when it
is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Scripts run with the oracle's Python (TensorFlow) to make the references; never collected.
collect_ignore = ["oracle"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
NIFTYNET_HOME = MODELS / "niftynet"
ZOO = NIFTYNET_HOME / "models" / "highres3dnet_brain_parcellation"
CHECKPOINT = ZOO / "models" / "model.ckpt-33000"
VARIABLES_CSV = CHECKPOINT.parent / "variables.csv"  # TensorFlow's own listing: name,shape,dtype,kind
THIRD_PARTY_PTH = MODELS / "highres3dnet_li_parameters-7d297872.pth"
CONFIG = NIFTYNET_HOME / "extensions" / "highres3dnet_brain_parcellation" / "highres3dnet_config_eval.ini"
LANDMARKS = ZOO / "databrain_std_hist_models_otsu.txt"
CTBL = MODELS / "GIFNiftyNet.ctbl"
REFERENCE = SHARED / "reference" / "mni152_2mm_lps_w64"
DATA = SHARED / "data"
ORACLE = SHARED / "oracle"  # NiftyNet's own code as a test-time reference (reference.py)


def need(path: Path) -> Path:
    """Skip the calling test unless ``path`` exists."""
    if not path.exists():
        pytest.skip(f"test data not available: {path.name} (looked in {path.parent}); "
                    "set NIFTYPORT_SHARED to the shared test-data folder")
    return path


@pytest.fixture
def checkpoint_prefix() -> Path:
    need(CHECKPOINT.with_name(CHECKPOINT.name + ".index"))
    return CHECKPOINT


@pytest.fixture
def third_party_pth() -> Path:
    return need(THIRD_PARTY_PTH)


@pytest.fixture
def variables_csv() -> Path:
    return need(VARIABLES_CSV)


@pytest.fixture
def tf_listing(variables_csv) -> dict:
    """TensorFlow's listing of the checkpoint: {name: (shape tuple, dtype name, kind)}."""
    import csv

    with open(variables_csv, newline="") as f:
        return {row["name"]: (() if row["shape"] == "scalar" else tuple(int(n) for n in row["shape"].split("x")),
                              row["dtype"], row["kind"]) for row in csv.DictReader(f)}


@pytest.fixture
def reference_dir() -> Path:
    return need(REFERENCE)


def one_line_error(status: int, err: str, *fragments: str) -> str:
    """Assert the command line's error convention: exit 2 and one line ``niftyport: error: ...``; returns it."""
    assert status == 2, (status, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("niftyport: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
