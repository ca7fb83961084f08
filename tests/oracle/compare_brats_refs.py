"""Compare ``niftyport brats`` with a reference of ``make_brats_refs.py`` (run with niftyport's Python).

Runs :func:`niftyport.segmentation.brats.segment_brats` with the reference's
fill mode (``random`` for ``test.py``'s), seed, config and crop on the same input, and prints how
many batches are bit-identical (sha256), the largest softmax difference at
the stored points, the argmax counts per batch and the differing labels. For
the references too large for the tests (``brain17``: the whole brain at the
published shapes, minutes per engine). Usage::

    python tests/oracle/compare_brats_refs.py [NAME] [--refs DIR] [--threads N]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "tests"))

from brats_inputs import write_channels


def main(argv: list[str]) -> None:
    import torch

    from niftyport.segmentation import brats

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", default="brain17")
    parser.add_argument("--refs", type=Path, default=REPO / "tests" / "data" / "brats")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = json.loads((args.refs / f"{args.name}.json").read_text())
    with np.load(args.refs / f"{args.name}.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    config_file = meta["config"]
    config = (brats.CONFIG17 if config_file == "test_all_class.txt" else brats.read_config(REPO / config_file))
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_channels(SHARED / "data", Path(tmp), crop=meta.get("crop", "small"))
        t0 = time.time()
        img, res = brats.segment_brats(*paths, weights_dir=SHARED / "models" / "brats17",
                                       fill=meta.get("fill", "random"), seed=meta["seed"], config=config,
                                       device="cpu", result=True, record=True)
        seconds = time.time() - t0
    same = 0
    worst = 0.0
    for i, ((net, batch, prob), ref) in enumerate(zip(res.batches, meta["batches"])):
        digest = hashlib.sha256(np.ascontiguousarray(batch).tobytes()).hexdigest()
        same += digest == ref["input_sha256"] and net.scope == re.sub(r"_\d+$", "", ref["scope"])
        diff = float(np.abs(prob[..., 1].reshape(-1)[arrays[f"batch{i}_where"]] - arrays[f"batch{i}_p1"]).max())
        worst = max(worst, diff)
        ours = int((prob[..., 1] > prob[..., 0]).sum())
        print(f"batch {i:2d} {net.scope:13s} {list(batch.shape)!s:22s} max|dp| {diff:.2e} "
              f"argmax=1: {ours} (TF {ref['argmax_1']}), TF's smallest margin {ref['min_margin']:.2e}")
    labels = np.asarray(img.dataobj)
    differ = int((labels != arrays["labels"]).sum())
    print(f"{args.name}: {same} of {len(meta['batches'])} batches bit-identical ({len(res.batches)} formed), "
          f"max|dp| {worst:.2e}; labels differ in {differ} of {labels.size} voxels; "
          f"ours {dict(zip(*map(list, np.unique(labels, return_counts=True))))}, TF {meta['label_counts']}; "
          f"{seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
