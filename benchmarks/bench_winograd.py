"""Winograd F(2,3) / F(4,3) convolutions against the ``fast`` engine's direct ones, in one run.

Variants: oneDNN's direct channels-last convolution (what ``full`` mode runs);
the torch-operation Winograd of :mod:`winograd_conv` (the first experiment,
kept beside this file); and the C kernel of ``--mode full-winograd``
(:mod:`niftyport.inference.winograd`, the transforms and products fused chunk
by chunk in a core's cache).

Two parts, each timing the variants interleaved (so that load from other jobs
hits all alike) and reporting ratios to the direct convolution:

``layers`` (default)
    one HighRes3DNet convolution per width (16, 32, 64 channels with dilation
    1, 2, 4) on a cube of ``--side`` voxels, batch 1: oneDNN's direct
    channels-last convolution (``torch.mkldnn_convolution``, what ``full``
    mode runs) against :func:`winograd_conv.winograd_conv3d` with the weights
    transformed once beforehand (as a model run would), each with its largest
    error relative to a float64 convolution.
``--network``
    the whole pretrained HighRes3DNet on crops of NiftyNet's reference input
    (``../shared/reference/mni152_2mm_lps_w64``): logits error against float64
    eager PyTorch and label differences on a 48^3 crop, then the time of one
    pass over a ``--net-side`` crop, with Winograd for the layers of at least
    ``c`` channels and direct convolutions for the rest.

Not a test: nothing asserts a time.

    python benchmarks/bench_winograd.py                          # layers at 64^3 and 96^3
    python benchmarks/bench_winograd.py --side 128 --layers 64 --chunk-mb 1,2,4
    python benchmarks/bench_winograd.py --network --net-side 96
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's niftyport, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))  # winograd_conv
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
WEIGHTS = SHARED / "models" / "highres3dnet_li_parameters-7d297872.pth"
REFERENCE = SHARED / "reference" / "mni152_2mm_lps_w64" / "stages.npz"

#: (in, out, dilation): HighRes3DNet's 3x3x3 convolutions (res_1, res_2, res_3).
LAYERS = ((16, 16, 1), (32, 32, 2), (64, 64, 4))


def _interleaved(variants: dict, repeat: int) -> dict:
    """Best wall time of each ``name -> fn`` over ``repeat`` interleaved rounds."""
    times = {name: float("inf") for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def bench_layer(side: int, cin: int, cout: int, dilation: int, *, ms=(4,), chunk_mb=(2.0,),
                workers_list=(2,), repeat: int = 3) -> list[dict]:
    """Times and errors of one layer: the direct convolution, then each Winograd variant."""
    import torch
    from winograd_conv import transform_weight, winograd_conv3d

    gen = torch.Generator().manual_seed(side + cin + dilation)
    x = torch.randn(1, cin, side, side, side, generator=gen).contiguous(
        memory_format=torch.channels_last_3d)
    w = (torch.randn(cout, cin, 3, 3, 3, generator=gen) / (27 * cin) ** 0.5).contiguous(
        memory_format=torch.channels_last_3d)
    d = dilation
    # float64 reference on the low corner (a float64 convolution takes much memory):
    # the outputs [0, c) depend on the inputs [0, c + d) only
    c = min(side, 48)
    ref = torch.nn.functional.conv3d(x[:, :, :c + d, :c + d, :c + d].double(), w.double(),
                                     padding=d, dilation=d)[:, :, :c, :c, :c]
    variants = {"direct (oneDNN, channels-last)":
                lambda: torch.mkldnn_convolution(x, w, None, [d] * 3, [1] * 3, [d] * 3, 1)}
    workspace = torch.empty(((side + 16) ** 3) * cin)  # reused between calls, as a model run would
    for m in ms:
        u = transform_weight(w, m)
        for mb in chunk_mb:
            for k in workers_list:
                variants[f"F({m},3) {mb:g} MB x{k}"] = (
                    lambda u=u, m=m, mb=mb, k=k: winograd_conv3d(
                        x, u, m=m, dilation=d, chunk_bytes=int(mb * 2**20), workers=k,
                        workspace=workspace))
    from niftyport.inference import winograd

    if winograd.supports(torch.nn.Conv3d(cin, cout, 3, padding=d, dilation=d)):
        u_c = winograd.transform_weight(w)
        out = torch.empty(x.shape[:1] + (cout,) + x.shape[2:]).contiguous(
            memory_format=torch.channels_last_3d)  # reused, as full-winograd's buffers are
        variants["F(4,3) C kernel (full-winograd)"] = (
            lambda: winograd.conv3d(x, u_c, dilation=d, out=out))
    errors = {name: float((fn()[:, :, :c, :c, :c].double() - ref).abs().max() / ref.abs().max())
              for name, fn in variants.items()}
    times = _interleaved(variants, repeat)
    base = next(iter(times.values()))
    return [{"layer": f"{cin}->{cout} d{d} {side}^3", "variant": name, "seconds": t,
             "ratio": base / t, "error": errors[name]} for name, t in times.items()]


# --- the whole network ------------------------------------------------------------------------

def network_forward(model, x, conv3, conv1):
    """HighRes3DNet's forward (ReLU) as ``module.py`` computes it, with the 3x3x3 convolutions
    run by ``conv3(conv, x)`` and the 1x1x1 ones by ``conv1(conv, x)``; ``(N, C, X, Y, Z)``."""
    from torch.nn import functional as F

    h = model.conv_0.bn(conv3(model.conv_0.conv, x)).relu_()
    for name in model.block_names:
        block = getattr(model, name)
        t = conv3(block.conv_0, block.bn_0(h).relu_())
        t = conv3(block.conv_1, block.bn_1(t).relu_())
        shortcut = h if block.channel_pad == (0, 0) else F.pad(h, (0, 0, 0, 0, 0, 0, *block.channel_pad))
        h = t + shortcut
    if model.conv_1 is not None:
        h = model.conv_1.bn(conv1(model.conv_1.conv, h)).relu_()
    return model.conv_2.bn(conv1(model.conv_2.conv, h))


def _direct(conv, x):
    import torch

    w = conv.weight.contiguous(memory_format=torch.channels_last_3d)
    return torch.mkldnn_convolution(x.contiguous(memory_format=torch.channels_last_3d), w, None,
                                    list(conv.padding), [1] * 3, list(conv.dilation), 1)


def winograd_convs(model, min_channels: int, m: int = 4):
    """``conv3`` for :func:`network_forward`: Winograd for the 3x3x3 convolutions with at least
    ``min_channels`` output channels (weights transformed once), direct for the others."""
    import torch
    from winograd_conv import transform_weight, winograd_conv3d

    weights = {id(c): transform_weight(c.weight, m) for c in model.modules()
               if isinstance(c, torch.nn.Conv3d) and c.kernel_size == (3, 3, 3)
               and c.out_channels >= min_channels}
    workspace = [torch.empty(0)]

    def conv3(conv, x):
        if id(conv) not in weights:
            return _direct(conv, x)
        need = x[0, 0].numel() * 2 * x.shape[1] * x.shape[0]  # ample for the padded copy
        if workspace[0].numel() < need:
            workspace[0] = torch.empty(need)
        return winograd_conv3d(x, weights[id(conv)], m=m, dilation=conv.dilation[0],
                               workspace=workspace[0])

    return conv3


def kernel_convs(model):
    """``conv3`` for :func:`network_forward`: the C kernel of ``--mode full-winograd`` for every
    3x3x3 convolution it takes (not fused here: the same steps as the other variants)."""
    import torch

    from niftyport.inference import winograd

    weights = {id(c): winograd.transform_weight(c.weight) for c in model.modules()
               if isinstance(c, torch.nn.Conv3d) and winograd.supports(c)}

    def conv3(conv, x):
        if id(conv) not in weights:
            return _direct(conv, x)
        return winograd.conv3d(x, weights[id(conv)], dilation=conv.dilation[0])

    return conv3


def bench_network(side: int, repeat: int, widths=(64, 32, 16)) -> None:
    import numpy as np
    import torch

    from niftyport.weights import load_weights

    model = load_weights(WEIGHTS).eval()
    volume = np.load(REFERENCE)["stage3_whitened"][..., 0, 0]
    centre = np.array(volume.shape) // 2

    def crop(n):
        lo = centre - n // 2
        v = np.ascontiguousarray(volume[lo[0]:lo[0] + n, lo[1]:lo[1] + n, lo[2]:lo[2] + n])
        return torch.from_numpy(v)[None, None].contiguous(memory_format=torch.channels_last_3d)

    variants = {"direct (oneDNN, channels-last)": _direct}
    variants |= {f"F(4,3) for >= {c} channels": winograd_convs(model, c) for c in widths}
    variants["F(4,3) C kernel, >= 16 channels"] = kernel_convs(model)
    with torch.inference_mode():
        x = crop(48)
        ref = model.double()(x.double())
        model.float()
        print("whole network, 48^3 crop of the reference input: error against float64 eager")
        print(f"{'variant':<34} {'max|diff| / max|logit|':>24} {'labels differ':>14}")
        eager = model(x.contiguous())
        for name, fn in {"eager PyTorch": None, **variants}.items():
            got = eager if fn is None else network_forward(model, x, fn, _direct)
            err = float((got.double() - ref).abs().max() / ref.abs().max())
            flips = int((got.argmax(1) != ref.argmax(1)).sum())
            print(f"{name:<34} {err:24.2e} {flips:8d} of {ref[0, 0].numel()}")
        x = crop(side)
        runs = {name: (lambda fn=fn: network_forward(model, x, fn, _direct).argmax(1))
                for name, fn in variants.items()}
        labels = {name: fn() for name, fn in runs.items()}
        times = _interleaved(runs, repeat)
    base = next(iter(times.values()))
    first = next(iter(labels.values()))
    print(f"\nwhole network, {side}^3 crop, best of {repeat} interleaved")
    print(f"{'variant':<34} {'s':>8} {'speed-up':>9} {'labels differ from direct':>26}")
    for name, t in times.items():
        print(f"{name:<34} {t:8.2f} {base / t:8.2f}x {int((labels[name] != first).sum()):18d} "
              f"of {first.numel()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", default="64,96", help="cube sides, comma-separated")
    parser.add_argument("--layers", default="16,32,64", help="layer widths to run (16, 32, 64)")
    parser.add_argument("--ms", default="2,4", help="tile sides m of F(m,3), comma-separated")
    parser.add_argument("--chunk-mb", default="2", help="chunk sizes in MB, comma-separated")
    parser.add_argument("--workers", default="2", help="Winograd worker threads, comma-separated")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the direct convolutions)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--network", action="store_true", help="the whole network instead of layers")
    parser.add_argument("--net-side", type=int, default=96, help="crop side for --network timing")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, oneDNN {torch.backends.mkldnn.is_available()}")
    if args.network:
        bench_network(args.net_side, args.repeat)
        return
    print(f"{'layer':<18} {'variant':<32} {'s':>8} {'speed-up':>9} {'max err / max':>14}")
    with torch.inference_mode():
        for side in (int(s) for s in args.side.split(",")):
            for cin, cout, d in LAYERS:
                if str(cin) not in args.layers.split(","):
                    continue
                for row in bench_layer(side, cin, cout, d, ms=[int(m) for m in args.ms.split(",")],
                                       chunk_mb=[float(c) for c in args.chunk_mb.split(",")],
                                       workers_list=[int(k) for k in args.workers.split(",")],
                                       repeat=args.repeat):
                    print(f"{row['layer']:<18} {row['variant']:<32} {row['seconds']:8.3f} "
                          f"{row['ratio']:8.2f}x {row['error']:14.2e}")


if __name__ == "__main__":
    main()
