"""Compare niftyport's MSNet with the saved TF MetaGraphs at their fixed shapes (run with niftyport's Python).

Reads what ``make_msnet_refs.py full OUTDIR`` wrote (``OUTDIR/<ckpt>/{input,
output}.npy``, TF layout), runs :func:`niftyport.networks.load` on the same
checkpoint and input, and prints max|diff| per checkpoint (and the acceptance
bound ``1e-4 * max(1, max|TF|)``). Usage::

    python tests/oracle/compare_msnet_full.py OUTDIR [--float64]
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from niftyport import networks

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))


def compare(folder: Path, dtype: torch.dtype) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    theirs = np.load(folder / "output.npy")
    model = networks.load("msnet", SHARED / "models" / "brats17" / f"{meta['checkpoint']}.ckpt", num_classes=2,
                          in_channels=4, acti_func="prelu", downsample_twice=meta["downsample_twice"]).to(dtype)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.load(folder / "input.npy"), -1, 1))).to(dtype)
    with torch.no_grad():
        ours = np.moveaxis(model(x).double().numpy(), 1, -1)
    diff = np.abs(ours - theirs)
    agree = float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))
    return {"checkpoint": meta["checkpoint"], "shape": meta["input_shape"], "max_abs_diff": float(diff.max()),
            "bound": 1e-4 * max(1.0, float(np.abs(theirs).max())), "max_abs_tf": float(np.abs(theirs).max()),
            "argmax_agreement": agree}


def main(argv: list[str]) -> None:
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    dtype = torch.float64 if "--float64" in argv else torch.float32
    out_dir = Path([a for a in argv if not a.startswith("--")][0])
    for folder in sorted(p for p in out_dir.iterdir() if (p / "output.npy").is_file()):
        r = compare(folder, dtype)
        print(f"{r['checkpoint']:22s} {r['shape']!s:22s} max|diff| {r['max_abs_diff']:.3g} "
              f"(bound {r['bound']:.3g}, max|TF| {r['max_abs_tf']:.3g}) argmax agreement {r['argmax_agreement']:.6f}")


if __name__ == "__main__":
    main(sys.argv[1:])
