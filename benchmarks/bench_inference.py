"""Inference speed: the tutorial's eager window loop against niftyport's modes, in one run.

Times, on one real scan preprocessed as NiftyNet does (1 mm, padded, whitened):

  (a) tutorial  -- NiftyNet's window grid, eager PyTorch, one window at a time;
  (b) niftynet  -- ``run_mode("niftynet")``: the same labels, computed faster;
  (c) full      -- ``run_mode("full")``: whole-volume output in halo tiles;
  (d) niftynet-fast -- only with ``--modes``;
  (f) full-winograd -- ``run_mode("full-winograd")``: as (c), Winograd F(4,3) convolutions.

niftyport's modes compute only the voxels that survive un-padding, as
``niftyport parcellate`` does; labels are compared there.

Each one runs in a fresh Python process (so its peak resident memory is its
own), on the same input and thread count. Prints wall time, work, effective
GFLOP/s, peak RSS, the ratios a/b and a/c, and whether (b)'s labels equal
(a)'s. Not a test: nothing here asserts a time.

    python benchmarks/bench_inference.py --quick     # a smoke run (a 56^3 crop, 32^3 windows)
    python benchmarks/bench_inference.py             # the full head at 1 mm, 128^3 windows
    python benchmarks/bench_inference.py --device cuda   # the same on a GPU (TF32 off)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's niftyport, installed or not
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
DEFAULT_SCAN = SHARED / "data" / "real_t1_chris_1mm_skull.nii.gz"
DEFAULT_HOME = SHARED / "models" / "niftynet"
DEFAULT_WEIGHTS = SHARED / "models" / "highres3dnet_li_parameters-7d297872.pth"
QUICK_SHAPE, QUICK_WINDOW = (56, 56, 56), 32
LABELS = {"tutorial": "(a) tutorial loop", "niftynet": "(b) niftynet", "full": "(c) full",
          "niftynet-fast": "(d) niftynet-fast", "full-eager": "(e) full-eager",
          "full-winograd": "(f) full-winograd"}


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def tutorial_loop(model, volume, window, border, batch_size, device="cpu"):
    """The tutorial's inference: every window of NiftyNet's grid through eager PyTorch, one at a
    time, argmax, cropped by ``border`` and written in NiftyNet's order."""
    import torch

    from niftyport.inference.aggregation import GridAggregator
    from niftyport.inference.sampling import batch_emission_order, grid_locations

    locations = grid_locations(volume.shape, window, border)
    aggregator = GridAggregator(volume.shape, border)
    for index in batch_emission_order(len(locations), batch_size):
        x0, y0, z0, x1, y1, z1 = locations[index]
        x = torch.from_numpy(np.ascontiguousarray(volume[x0:x1, y0:y1, z0:z1]))[None, None]
        with torch.inference_mode():
            labels = model(x.to(device)).argmax(dim=1)[0].cpu().numpy().astype(np.int32)
        aggregator.add(labels, locations[index])
    return aggregator.volume, len(locations) * int(np.prod(window))


def phase(args) -> None:
    """One timed run in this process; prints a JSON line."""
    import torch

    from niftyport.inference.engines import conv_steps, run_mode
    from niftyport.weights import load_weights

    if args.threads:
        torch.set_num_threads(args.threads)
    volume = np.load(args.input)
    device = torch.device(args.device)
    if device.type == "cuda":  # as niftyport's modes run: no TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = load_weights(args.weights).to(device)
    window, border = (args.window,) * 3, (args.border,) * 3
    steps_flops = sum(s.flops for s in conv_steps(model))
    stats: dict = {}
    cpu_start = time.process_time()
    start = time.perf_counter()
    if args.phase == "tutorial":
        labels, voxels = tutorial_loop(model, volume, window, border, args.batch_size, device)
        stats["flops"] = voxels * steps_flops
    else:
        keep = None if not args.keep else (args.keep[:3], args.keep[3:])
        labels = run_mode(args.phase, model, volume, window=window, border=border,
                          batch_size=args.batch_size, max_memory=args.max_memory, stats=stats,
                          device=device, keep=keep)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    np.save(args.output, labels)
    print(json.dumps({"phase": args.phase, "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "flops": stats.get("flops"), "peak_rss": _peak_rss(),
                      "peak_gpu": (torch.cuda.max_memory_allocated(device)
                                   if device.type == "cuda" else None),
                      "threads": torch.get_num_threads()}))


def fit_to(data: np.ndarray, shape) -> np.ndarray:
    """``data`` centred in ``shape``: cropped, or padded with its minimum (a size test only)."""
    out = np.full(shape, data.min(), dtype=data.dtype)
    src, dst = [], []
    for n, m in zip(data.shape, shape):
        a, b = max(0, (n - m) // 2), max(0, (m - n) // 2)
        k = min(n, m)
        src.append(slice(a, a + k))
        dst.append(slice(b, b + k))
    out[tuple(dst)] = data[tuple(src)]
    return out


def prepare(scan: Path, home: Path, quick: bool, shape=None):
    """The network input: NiftyNet's preprocessing of ``scan`` (model-zoo config), the
    resampled scan first fitted to ``shape`` if given; and the box of it that survives
    un-padding (what niftyport's modes compute, as ``niftyport parcellate`` runs them)."""
    from types import SimpleNamespace

    from niftyport.segmentation.pipeline import resolve_config
    from niftyport.preprocessing import load_and_resample, preprocess, scan_region

    cfg = resolve_config(niftynet_home=home)
    data = load_and_resample(scan, cfg).data
    if shape:
        data = fit_to(data, shape)
    volume = preprocess(data, cfg).whitened
    lo, hi = scan_region(SimpleNamespace(data=data), cfg)
    if quick:  # a crop of the inside: nothing to skip
        c = [n // 2 for n in volume.shape]
        volume = volume[tuple(slice(m - q // 2, m - q // 2 + q) for m, q in zip(c, QUICK_SHAPE))]
        lo, hi = (0, 0, 0), volume.shape
    return np.ascontiguousarray(volume, dtype=np.float32), tuple(lo) + tuple(hi)


def machine(device: str = "cpu") -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}, torch {torch.__version__}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scan", nargs="?", type=Path, default=DEFAULT_SCAN, help="T1 NIfTI (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: a central {QUICK_SHAPE[0]}^3 crop with {QUICK_WINDOW}^3 windows")
    p.add_argument("--modes", nargs="+", default=["tutorial", "niftynet", "full", "full-winograd"],
                   choices=list(LABELS), help="what to time (default: %(default)s)")
    p.add_argument("--window", type=int, help="window side (default 128, 32 with --quick)")
    p.add_argument("--border", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--max-memory", default="8G", help="budget for niftyport's modes (default %(default)s)")
    p.add_argument("--niftynet-home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--input-shape", type=lambda t: tuple(int(v) for v in t.split(",")),
                   help="fit the 1 mm scan into this shape first, e.g. 256,256,180 (a memory test)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--keep", type=lambda t: tuple(int(v) for v in t.split(",")), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.window is None:
        args.window = QUICK_WINDOW if args.quick else 128
    if args.phase:
        phase(args)
        return 0

    volume, keep = prepare(args.scan, args.niftynet_home, args.quick, args.input_shape)
    inside = tuple(slice(a, b) for a, b in zip(keep[:3], keep[3:]))
    print(f"{args.scan.name}: network input {volume.shape} (1 mm, padded), "
          f"{args.window}^3 windows, border {args.border}")
    print(machine(args.device))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "input.npy", volume)
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--phase", mode, "--input", str(Path(tmp) / "input.npy"),
                   "--output", str(Path(tmp) / f"{mode}.npy"), "--window", str(args.window),
                   "--border", str(args.border), "--batch-size", str(args.batch_size),
                   "--max-memory", args.max_memory, "--weights", str(args.weights),
                   "--device", args.device, "--keep", ",".join(map(str, keep))]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(REPO / "src")] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            results[mode]["labels"] = np.load(Path(tmp) / f"{mode}.npy")
            r = results[mode]
            print(f"  {LABELS[mode]:<20} {r['seconds']:8.1f} s", flush=True)

    base = results.get("tutorial")
    nominal = base["flops"] if base else None
    print(f"\n{'':<20} {'time s':>8} {'CPU s':>8} {'work TFLOP':>10} {'GFLOP/s':>8} "
          f"{'effective':>9} {'peak RSS':>9} {'speed-up':>8}")
    for mode, r in results.items():
        work = r["flops"] or 0
        eff = f"{nominal / r['seconds'] / 1e9:9.1f}" if nominal else f"{'-':>9}"
        ratio = f"{base['seconds'] / r['seconds']:7.2f}x" if base else f"{'-':>8}"
        print(f"{LABELS[mode]:<20} {r['seconds']:8.1f} {r.get('cpu_seconds', float('nan')):8.0f} "
              f"{work / 1e12:10.2f} {work / r['seconds'] / 1e9:8.1f} {eff} "
              f"{r['peak_rss'] / 2**30:8.2f}G {ratio}")
    for mode, r in results.items():
        if r.get("peak_gpu"):
            print(f"{LABELS[mode]:<20} peak GPU memory {r['peak_gpu'] / 2**30:.2f}G")
    print("work: convolution FLOPs executed; effective: the tutorial loop's FLOPs / time; "
          f"threads: {next(iter(results.values()))['threads']}; CPU s well under threads x time "
          "means other jobs shared the CPU")
    status = 0
    if base:
        for mode, r in results.items():
            if mode == "tutorial":
                continue
            differ = int((r["labels"][inside] != base["labels"][inside]).sum())
            what = "identical labels" if differ == 0 else f"{differ} voxels differ"
            print(f"{LABELS[mode]} vs (a), on the voxels un-padding keeps: {what}")
            if mode == "niftynet" and differ:
                print("ERROR: niftynet mode must give the tutorial loop's labels", file=sys.stderr)
                status = 1
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": machine(args.device), "shape": list(volume.shape), "window": args.window,
             "results": {m: {k: v for k, v in r.items() if k != "labels"} for m, r in results.items()}},
            indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
