"""One HighRes3DNet convolution: Winograd F(2,3) / F(4,3) against the ``fast`` engine's direct one.

For each layer size of HighRes3DNet (16, 32, 64 channels with dilation 1, 2, 4)
on a cube of ``--side`` voxels (batch 1, the run's threads), times
:func:`niftyport.inference.winograd.winograd_conv3d` and oneDNN's direct
channels-last convolution (``torch.mkldnn_convolution``, what ``full`` mode
runs), interleaved in one run, and prints the ratio and each one's largest
error relative to a float64 convolution of the same data. The weight
transform is done once beforehand (as a model does). Not a test: nothing
asserts a time.

    python benchmarks/bench_winograd.py                 # 64^3 and 96^3, all layer sizes
    python benchmarks/bench_winograd.py --side 128 --chunk-mb 16,64,256
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's niftyport, installed or not

#: (in, out, dilation): HighRes3DNet's 3x3x3 convolutions (res_1, res_2, res_3).
LAYERS = ((16, 16, 1), (32, 32, 2), (64, 64, 4))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_layer(side: int, cin: int, cout: int, dilation: int, *, ms=(2, 4), chunk_mb=(2,),
                workers_list=(1, 2), repeat: int = 3) -> list[dict]:
    """Times and errors of one layer: the direct convolution, then each Winograd variant."""
    import torch

    from niftyport.inference.winograd import transform_weight, winograd_conv3d

    gen = torch.Generator().manual_seed(side + cin + dilation)
    x = torch.randn(1, cin, side, side, side, generator=gen).contiguous(
        memory_format=torch.channels_last_3d)
    w = (torch.randn(cout, cin, 3, 3, 3, generator=gen) / (27 * cin) ** 0.5).contiguous(
        memory_format=torch.channels_last_3d)
    d = dilation
    ref = torch.nn.functional.conv3d(x.double(), w.double(), padding=d, dilation=d)
    scale = float(ref.abs().max())
    direct = lambda: torch.mkldnn_convolution(x, w, None, [d] * 3, [1] * 3, [d] * 3, 1)  # noqa: E731
    variants = [("direct (oneDNN, channels-last)", direct, None)]
    for m in ms:
        u = transform_weight(w, m)
        for mb in chunk_mb:
            for workers in workers_list:
                variants.append((f"F({m},3) {mb} MB x{workers}",
                                 lambda u=u, m=m, mb=mb, k=workers: winograd_conv3d(
                                     x, u, m=m, dilation=d, chunk_bytes=int(mb * 2**20), workers=k), m))
    errors = {name: float((fn().double() - ref).abs().max()) / scale for name, fn, _ in variants}
    times = {name: [] for name, _, _ in variants}
    for _ in range(repeat):  # interleaved, so that load from other jobs hits all alike
        for name, fn, _ in variants:
            times[name].append(_best(fn, 1))
    base = min(times[variants[0][0]])
    return [dict(layer=f"{cin}->{cout} d{d} {side}^3", variant=name, seconds=min(times[name]),
                 ratio=base / min(times[name]), error=errors[name]) for name, _, _ in variants]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", default="64,96", help="cube sides, comma-separated")
    parser.add_argument("--chunk-mb", default="2", help="Winograd chunk sizes in MB, comma-separated")
    parser.add_argument("--ms", default="2,4", help="tile sides m of F(m,3)")
    parser.add_argument("--workers", default="1,2", help="Winograd worker threads, comma-separated")
    parser.add_argument("--layers", default="16,32,64", help="which layer widths (16, 32, 64)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, "
          f"oneDNN {torch.backends.mkldnn.is_available()}")
    print(f"{'layer':<18} {'variant':<34} {'s':>8} {'speed-up':>9} {'max err / max':>14}")
    for side in (int(s) for s in args.side.split(",")):
        for cin, cout, d in LAYERS:
            if str(cin) not in args.layers.split(","):
                continue
            for row in bench_layer(side, cin, cout, d, ms=[int(m) for m in args.ms.split(",")],
                                   workers_list=[int(k) for k in args.workers.split(",")],
                                   chunk_mb=[float(c) for c in args.chunk_mb.split(",")],
                                   repeat=args.repeat):
                print(f"{row['layer']:<18} {row['variant']:<34} {row['seconds']:8.3f} "
                      f"{row['ratio']:8.2f}x {row['error']:14.2e}")


if __name__ == "__main__":
    main()
