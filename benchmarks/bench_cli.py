"""``niftyport parcellate`` as a user runs it, against the tutorial's window loop, in one run.

Table 1 (end to end, one process per row, start to label map written):

  (a) tutorial loop -- the scan preprocessed as NiftyNet does, then every window of
      NiftyNet's grid through eager PyTorch, one at a time, stitched, un-padded, written;
  (b) ``niftyport parcellate SCAN`` with default options (``--mode niftynet``);
  (c) ``niftyport parcellate SCAN --mode full``;
  (f) ``niftyport parcellate SCAN --mode full-winograd`` (its labels also against (c)'s);
  other modes with ``--modes``.

Each row is a child process; its wall time is measured from its start to its
exit, its CPU time (user + system, all threads) and peak resident memory come
from the kernel's accounting of that child (``os.wait4``). The split
(preprocessing, weights, network incl. stitching, restore to the input grid,
writing, and start-up: imports before the command runs) comes from the
``--timings`` JSON ``niftyport parcellate`` writes. The loop runs the same
threads as the command's default (the cores this process may use).

``--loop-windows K`` times only K of the loop's windows (evenly spread over
NiftyNet's grid; every window has the same size and cost) and extrapolates its
network time and CPU time to all of them; the output says so. Labels of (b)
are compared with the loop's on the voxels the timed windows own (all voxels
when every window runs).

Table 2 (engine level): ``benchmarks/bench_inference.py`` on the same scan with
the same budget, the network alone on the preprocessed volume (``--no-engine``
skips it).

    python benchmarks/bench_cli.py --quick                  # smoke run, ~3-5 minutes on 2 cores
    python benchmarks/bench_cli.py                          # the README's figures (~25 minutes)
    python benchmarks/bench_cli.py --loop-windows all       # the whole loop (~45 minutes more)
    python benchmarks/bench_cli.py --input-shape 256,256,180 --no-engine --loop-windows 1   # memory

Not a test: nothing here asserts a time. Exit status 1 if (b)'s labels differ
from the loop's where both were computed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's niftyport, installed or not
sys.path.insert(0, str(REPO / "benchmarks"))
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
DEFAULT_SCAN = SHARED / "data" / "real_t1_chris_1mm_skull.nii.gz"
DEFAULT_WEIGHTS = SHARED / "models" / "highres3dnet_li_parameters-7d297872.pth"
#: --quick: a central crop of the scan (voxels) and NiftyNet windows of this side.
QUICK_CROP, QUICK_WINDOW = 36, 32
STAGES = ("startup", "preprocessing", "weights", "network", "restore", "writing")
LABELS = {"tutorial": "(a) tutorial loop", "niftynet": "(b) niftynet (default)", "full": "(c) full",
          "niftynet-fast": "(d) niftynet-fast", "full-eager": "(e) full-eager",
          "full-winograd": "(f) full-winograd"}


def _env() -> dict:
    extra = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src")] + extra))


def run_child(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; its wall seconds (start to exit), CPU seconds and peak RSS (bytes) from
    ``os.wait4``, and its exit status."""
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime,
            "system": usage.ru_stime, "peak_rss": peak, "minor_faults": usage.ru_minflt,
            "status": child.returncode}


# --- the tutorial loop, in its own process ---------------------------------------------------

def tutorial_phase(args) -> None:
    """(a): NiftyNet's preprocessing, the eager loop over ``--loop-windows`` windows,
    NiftyNet's stitching, the labels back on the scan's grid, written; JSON on stdout."""
    import nibabel as nib
    import torch

    from niftyport.image_io import label_image
    from niftyport.inference.aggregation import GridAggregator
    from niftyport.inference.defaults import default_threads
    from niftyport.inference.engines import conv_steps
    from niftyport.inference.sampling import batch_emission_order, grid_locations
    from niftyport.inference.tiling import grid_owner_map
    from niftyport.preprocessing import load_and_resample, preprocess, restore_to_input_space
    from niftyport.segmentation.pipeline import resolve_config
    from niftyport.weights import load_weights

    torch.set_num_threads(args.threads or default_threads())
    seconds, cpu = {}, {}
    mark = [time.perf_counter(), time.process_time()]

    def lap(stage):
        now = [time.perf_counter(), time.process_time()]
        seconds[stage], cpu[stage] = now[0] - mark[0], now[1] - mark[1]
        mark[:] = now

    cfg = resolve_config(niftynet_home=args.niftynet_home, window=args.window, border=args.border)
    loaded = load_and_resample(args.image, cfg)
    volume = np.ascontiguousarray(preprocess(loaded.data, cfg).whitened, dtype=np.float32)
    lap("preprocessing")
    model = load_weights(args.weights)
    lap("weights")
    window, border = tuple(cfg.spatial_window_size[:3]), tuple(cfg.inference.border)
    locations = grid_locations(volume.shape, window, border)
    order = batch_emission_order(len(locations), cfg.network.batch_size)
    unique = list(dict.fromkeys(int(i) for i in order))
    k = len(unique) if args.loop_windows in (None, "all") else min(int(args.loop_windows), len(unique))
    timed = {unique[int(j)] for j in np.linspace(0, len(unique) - 1, k).round().astype(int)}
    outputs = {}
    with torch.inference_mode():
        for index in unique:
            if index not in timed:
                continue
            x0, y0, z0, x1, y1, z1 = locations[index]
            x = torch.from_numpy(np.ascontiguousarray(volume[x0:x1, y0:y1, z0:z1]))[None, None]
            outputs[index] = model(x).argmax(dim=1)[0].numpy().astype(np.int32)
    aggregator = GridAggregator(volume.shape, border)
    for index in order:
        if int(index) in outputs:
            aggregator.add(outputs[int(index)], locations[index])
    lap("network")
    labels = restore_to_input_space(aggregator.volume, loaded, cfg)
    lap("restore")
    nib.save(label_image(labels, loaded.affine, loaded.header), args.output)
    lap("writing")
    # not timed: which voxels of the label map the timed windows decided (for the label check)
    owner = grid_owner_map(volume.shape, locations, order, border)
    checked = restore_to_input_space(np.isin(owner, list(timed)).astype(np.int32), loaded, cfg)
    np.save(Path(args.output).with_suffix(".checked.npy"), checked.astype(bool))
    flops = len(unique) * int(np.prod(window)) * sum(s.flops for s in conv_steps(model))
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "windows": len(unique), "timed": k,
                      "flops": flops, "threads": torch.get_num_threads()}))


# --- inputs ----------------------------------------------------------------------------------

def make_input(scan: Path, tmp: Path, quick: bool, shape, home: Path) -> Path:
    """The scan the rows parcellate: as given; with ``quick`` its central
    :data:`QUICK_CROP` ^3 voxels; with ``shape`` the 1 mm RAS scan fitted into it."""
    import nibabel as nib

    if not quick and not shape:
        return scan
    img = nib.load(scan)
    if shape:
        from bench_inference import fit_to

        from niftyport.preprocessing import load_and_resample
        from niftyport.segmentation.pipeline import resolve_config

        data = fit_to(load_and_resample(scan, resolve_config(niftynet_home=home)).data, shape)
        out = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4))
    else:
        data = np.asanyarray(img.dataobj)
        lo = [(n - QUICK_CROP) // 2 for n in data.shape[:3]]
        out = img.slicer[tuple(slice(a, a + QUICK_CROP) for a in lo)]
    path = tmp / ("input" + "".join(scan.suffixes))
    nib.save(out, path)
    return path


def stage_split(timings: dict, wall: float) -> dict:
    """Wall seconds per :data:`STAGES`; start-up is the process's wall time the command's own
    clock did not see (interpreter, imports, option parsing)."""
    seconds = dict(timings["seconds"])
    split = {s: seconds.get(s, 0.0) for s in STAGES if s != "startup"}
    split["startup"] = max(0.0, wall - sum(seconds.values()))
    return split


def fmt_gib(n: float) -> str:
    return f"{n / 2**30:.2f}G"


# --- main ------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scan", nargs="?", type=Path, default=DEFAULT_SCAN, help="T1 NIfTI (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: a central {QUICK_CROP}^3 crop of the scan, {QUICK_WINDOW}^3 windows "
                        "(--window on every row), all loop windows")
    p.add_argument("--modes", nargs="+", default=["niftynet", "full", "full-winograd"],
                   choices=[m for m in LABELS if m != "tutorial"], help="command rows (default: %(default)s)")
    p.add_argument("--loop-windows", default=None,
                   help="time K of the loop's windows and extrapolate, or 'all' (default: 4; all with --quick)")
    p.add_argument("--no-loop", action="store_true", help="skip the tutorial loop")
    p.add_argument("--no-engine", action="store_true", help="skip table 2 (bench_inference.py)")
    p.add_argument("--input-shape", type=lambda t: tuple(int(v) for v in t.split(",")),
                   help="fit the 1 mm scan into this shape first, e.g. 256,256,180 (a memory test)")
    p.add_argument("--threads", type=int, help="--threads for every row (default: the command's default)")
    p.add_argument("--niftynet-home", type=Path,
                   help="--niftynet-home for every row (default: none, as a user runs it)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                   help="weights for the loop (the command uses its shipped ones: the same values)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--image", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--window", type=int, help=argparse.SUPPRESS)
    p.add_argument("--border", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase == "tutorial":
        tutorial_phase(args)
        return 0
    if args.loop_windows is None:
        args.loop_windows = "all" if args.quick else "4"

    from bench_inference import machine

    from niftyport.inference.defaults import default_max_memory, default_threads, format_bytes

    budget = format_bytes(default_max_memory())
    threads = args.threads or default_threads()
    window = ["--window", str(QUICK_WINDOW)] if args.quick else []
    home = ["--niftynet-home", str(args.niftynet_home)] if args.niftynet_home else []
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = make_input(args.scan, tmp, args.quick, args.input_shape, args.niftynet_home)
        import nibabel as nib

        print(f"{args.scan.name}{' (crop)' if args.quick else ''}"
              f"{f' fitted into {args.input_shape}' if args.input_shape else ''}: "
              f"{nib.load(image).shape[:3]} voxels; the command's defaults here: --max-memory {budget}, "
              f"--threads {threads}")
        print(machine())
        if not args.no_loop:
            out = tmp / "tutorial.nii.gz"
            cmd = [sys.executable, __file__, "--phase", "tutorial", "--image", str(image), "--output", str(out),
                   "--loop-windows", str(args.loop_windows), "--weights", str(args.weights),
                   "--threads", str(threads)] + home
            if args.quick:
                cmd += ["--window", str(QUICK_WINDOW)]
            r = run_child(cmd, tmp / "tutorial.log")
            if r["status"]:
                sys.stderr.write((tmp / "tutorial.log").read_text())
                return r["status"]
            info = json.loads((tmp / "tutorial.log").read_text().strip().splitlines()[-1])
            scale = info["windows"] / info["timed"]
            extra_wall = info["seconds"]["network"] * (scale - 1)
            extra_cpu = info["cpu_seconds"]["network"] * (scale - 1)
            info["seconds"]["network"] *= scale
            r.update(info, wall=r["wall"] + extra_wall, cpu=r["cpu"] + extra_cpu,
                     extrapolated=scale > 1, labels=str(out))
            results["tutorial"] = r
            note = (f" ({info['timed']} of {info['windows']} windows timed, extrapolated)"
                    if scale > 1 else "")
            print(f"  {LABELS['tutorial']:<24} {r['wall']:8.1f} s{note}", flush=True)
        for mode in args.modes:
            out, timings = tmp / f"{mode}.nii.gz", tmp / f"{mode}.json"
            cmd = [sys.executable, "-c", "import sys; from niftyport.cli import main; sys.exit(main())",
                   "parcellate", str(image), "-o", str(out),
                   "--timings", str(timings)] + home + window
            cmd += [] if mode == "niftynet" else ["--mode", mode]
            cmd += ["--threads", str(args.threads)] if args.threads else []
            r = run_child(cmd, tmp / f"{mode}.log")
            if r["status"]:
                sys.stderr.write((tmp / f"{mode}.log").read_text()[-4000:])
                return r["status"]
            r.update(json.loads(timings.read_text()), labels=str(out))
            results[mode] = r
            print(f"  {LABELS[mode]:<24} {r['wall']:8.1f} s   (niftyport parcellate{' ' if cmd[-1] else ''}"
                  f"{' '.join(cmd[cmd.index('parcellate') + 2:])})", flush=True)
        status = report(results, tmp)

    if not args.no_engine:
        engine = engine_table(args, budget, results.get("tutorial"))
    else:
        engine = None
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": machine(), "max_memory": budget, "threads": threads, "quick": args.quick,
             "input_shape": args.input_shape, "loop_windows": args.loop_windows,
             "results": {m: {k: v for k, v in r.items() if k != "labels"} for m, r in results.items()},
             "engine": engine}, indent=2))
    return status


def report(results: dict, tmp: Path) -> int:
    import nibabel as nib

    base = results.get("tutorial")
    print(f"\nTable 1: end to end, one process each (wall seconds; CPU s: user + system of the process)")
    head = "".join(f"{s:>9}" for s in ("start-up", "prep", "weights", "network", "restore", "writing"))
    print(f"{'':<24} {'total s':>8}{head} {'CPU s':>8} {'sys s':>6} {'GFLOP/s':>8} {'peak RSS':>9} {'speed-up':>8}")
    for mode, r in results.items():
        split = stage_split(r, r["wall"])
        cols = "".join(f"{split[s]:9.1f}" for s in STAGES)
        flops = r.get("flops")
        rate = f"{flops / r['seconds']['network'] / 1e9:8.1f}" if flops else f"{'-':>8}"
        ratio = f"{base['wall'] / r['wall']:7.2f}x" if base else f"{'-':>8}"
        print(f"{LABELS[mode]:<24} {r['wall']:8.1f}{cols} {r['cpu']:8.0f} {r['system']:6.0f} {rate} "
              f"{fmt_gib(r['peak_rss']):>9} {ratio}")
    if base and base.get("extrapolated"):
        print(f"(a): {base['timed']} of its {base['windows']} windows timed; its network time, total and "
              "CPU s are extrapolated to all windows (start-up, prep, restore and writing measured; "
              "its sys s and peak RSS are those of the timed run)")
    first = next(iter(results.values()))
    print(f"threads {first.get('threads')}; GFLOP/s: convolution FLOPs executed / network seconds; "
          "CPU s well under threads x total means other jobs shared the CPU")
    status = 0
    if base:
        ref = np.asarray(nib.load(base["labels"]).dataobj)
        checked = np.load(Path(base["labels"]).with_suffix(".checked.npy"))
        for mode, r in results.items():
            if mode == "tutorial":
                continue
            got = np.asarray(nib.load(r["labels"]).dataobj)
            differ = int((got[checked] != ref[checked]).sum())
            share = f"{checked.mean():.0%} of the scan's voxels" if not checked.all() else "every voxel"
            print(f"{LABELS[mode]} vs (a) on {share}: "
                  f"{'identical labels' if differ == 0 else f'{differ} voxels differ'}")
            if mode == "niftynet" and differ:
                print("ERROR: niftynet mode must give the tutorial loop's labels", file=sys.stderr)
                status = 1
    if "full" in results and "full-winograd" in results:  # the same function, other arithmetic
        full = np.asarray(nib.load(results["full"]["labels"]).dataobj)
        wino = np.asarray(nib.load(results["full-winograd"]["labels"]).dataobj)
        print(f"{LABELS['full-winograd']} vs {LABELS['full']} on every voxel: "
              f"{int((full != wino).sum())} of {full.size} voxels differ")
    return status


def engine_table(args, budget: str, base: dict | None) -> dict | None:
    """Table 2: ``bench_inference.py`` (network only, on the preprocessed volume)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "engine.json"
        cmd = [sys.executable, str(REPO / "benchmarks" / "bench_inference.py"), str(args.scan),
               "--modes", *args.modes, "--max-memory", budget, "--json", str(out),
               "--weights", str(args.weights)]
        cmd += ["--niftynet-home", str(args.niftynet_home)] if args.niftynet_home else []
        cmd += ["--quick"] if args.quick else []
        cmd += ["--input-shape", ",".join(map(str, args.input_shape))] if args.input_shape else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
        if done.returncode or not out.exists():
            sys.stderr.write(done.stderr[-4000:])
            return None
        engine = json.loads(out.read_text())
    loop = base["seconds"]["network"] if base and not args.quick else None
    print(f"\nTable 2: engine level (bench_inference.py: the network alone on the preprocessed "
          f"volume, --max-memory {budget}{', its own 56^3 crop' if args.quick else ''})")
    print(f"{'':<24} {'time s':>8} {'CPU s':>8} {'work TFLOP':>10} {'GFLOP/s':>8} {'peak RSS':>9} "
          f"{'vs (a) network':>14}")
    for mode, r in engine["results"].items():
        ratio = f"{loop / r['seconds']:13.2f}x" if loop else f"{'-':>14}"
        print(f"{LABELS[mode]:<24} {r['seconds']:8.1f} {r['cpu_seconds']:8.0f} {r['flops'] / 1e12:10.2f} "
              f"{r['flops'] / r['seconds'] / 1e9:8.1f} {fmt_gib(r['peak_rss']):>9} {ratio}")
    if loop:
        print("vs (a) network: the loop's network time in table 1 (its windows alone) / this time")
    return engine


if __name__ == "__main__":
    sys.exit(main())
