"""Cohort throughput on a local Dask cluster: scans per hour with 1 and 2 workers, on tiny crops.

Cuts ``--scans`` crops of ``--side``^3 voxels from the shared real 1 mm T1s
(shifted centres, so each crop differs), writes them as a BIDS dataset, and
parcellates it once per layout (workers x torch threads per worker), each
into a fresh output folder, with ``--window`` windows. The figure is the time
from the first task submitted to the last result (the cluster already up),
and the cluster's start-up apart; with the CPU seconds each scan's worker
process used (the figure other jobs on the machine do not change). The crops are far smaller than a head:
the figures compare layouts, they do not predict a real cohort's hours.

    python benchmarks/bench_cohort.py                      # 8 crops of 24^3, layouts 1x1, 1x2, 2x1
    python benchmarks/bench_cohort.py --layouts 1x2,2x1 --scans 16
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's niftyport, installed or not
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
SOURCES = ("real_t1_chris_1mm_skull.nii.gz", "colin27_ch2_1mm_skull.nii.gz")


def make_dataset(root: Path, n: int, side: int) -> Path:
    """``n`` crops of ``side``^3 voxels around the centres of the shared T1s, as ``sub-NN/anat/sub-NN_T1w``."""
    import nibabel as nib
    import numpy as np

    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.10.0"}))
    for i in range(n):
        img = nib.load(SHARED / "data" / SOURCES[i % len(SOURCES)])
        centre = np.asarray(img.shape[:3]) // 2 + (i // len(SOURCES)) * 6 - 12
        crop = img.slicer[tuple(slice(int(c - side // 2), int(c + side - side // 2)) for c in centre)]
        path = root / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(crop, path)
    return root


def run_layout(dataset: Path, out: Path, workers: int, threads: int, window: int) -> dict:
    """One layout: cluster start-up seconds, run seconds, scans per hour."""
    from niftyport.cohort.bids import find_t1w
    from niftyport.cohort.engine import ClusterSpec, open_client, run_tasks
    from niftyport.cohort.run import prepare
    from niftyport.cohort.settings import ConfigSource

    scans = find_t1w(dataset)
    settings = prepare(config=ConfigSource(window=window, border=2), device="cpu", threads=threads)
    start = time.perf_counter()
    with open_client(ClusterSpec(workers=workers, threads_per_worker=threads, dashboard=False)) as client:
        client.wait_for_workers(workers)
        up = time.perf_counter() - start
        t0 = time.perf_counter()
        results = run_tasks(client, scans, out, settings, progress=False)
        seconds = time.perf_counter() - t0
    failed = [r.key for _, r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"scans failed: {failed}")
    cpu = sum(r.cpu_seconds for _, r in results) / len(results)
    return {"workers": workers, "threads": threads, "startup_s": round(up, 1), "run_s": round(seconds, 1),
            "scans_per_hour": round(len(scans) / seconds * 3600), "cpu_s_per_scan": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--side", type=int, default=24, help="crop side in voxels (1 mm)")
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--layouts", default="1x1,1x2,2x1", help="WORKERSxTHREADS,...")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "ds", args.scans, args.side)
        rows = []
        for layout in args.layouts.split(","):
            workers, threads = (int(x) for x in layout.split("x"))
            rows.append(run_layout(dataset, Path(tmp) / f"out-{layout}", workers, threads, args.window))
            print(json.dumps(rows[-1]), flush=True)
    print(f"{args.scans} crops of {args.side}^3 voxels, window {args.window}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| workers x threads | cluster start s | run s | scans/hour | CPU s per scan |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['workers']} x {r['threads']} | {r['startup_s']} | {r['run_s']} | {r['scans_per_hour']} "
              f"| {r['cpu_s_per_scan']} |")


if __name__ == "__main__":
    main()
