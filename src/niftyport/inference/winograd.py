"""Winograd F(4, 3) convolutions for the ``full-winograd`` mode: 8x fewer multiplications.

A 3x3x3 'SAME' convolution (stride 1, any dilation) of a channels-last box,
computed on a crop of its output, by the C kernel ``winograd.c`` beside this
file (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016). Nested over the three axes, one output tile of 4^3 voxels takes
6^3 = 216 products per channel pair instead of 27 * 64 = 1728. The input
transform, the 216 small matrix products and the output transform run chunk by
chunk in a core's cache; the separate torch operations of the earlier
experiment (``benchmarks/winograd_conv.py``) spent twice the products' time
moving the transforms through memory, which is why this is C.

The kernel is compiled for the host (``-O3 -march=native``) the first time it
is needed, with the C compiler the Python build uses (``CC``, else ``cc``),
and cached under ``$XDG_CACHE_HOME/niftyport/`` (``~/.cache/niftyport/``) by
a hash of its source, the flags, the compiler and the CPU; no compiler means
the mode refuses to run (:class:`~niftyport.errors.OptionError`), nothing else
needs one. It is called through :mod:`ctypes`, which releases the GIL, on one
thread per core, each taking every ``workers``-th x tile.

Rounding: the transforms scale and add inputs before the products, so each
layer's output differs from a direct convolution's by ~1e-5 of its largest
value (float32); through HighRes3DNet's 20 layers the logits stay within 1e-4
of the largest logit of a float64 pass (``tests/test_winograd_mode.py``).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import OptionError

#: The kernel's source, shipped with the package.
SOURCE = Path(__file__).with_name("winograd.c")

#: Compiler flags: optimised for this CPU (the cache key names the CPU), fused multiply-adds.
CFLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-std=gnu11",
          "-shared", "-fPIC")

#: F(4, 3)'s filter transform ``G`` (Lavin & Gray, section 4.2: points 0, +-1, +-2, infinity).
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)

#: Channel counts the kernel takes: multiples of its 16-float vectors.
CHANNEL_MULTIPLE = 16


def supports(conv: torch.nn.Conv3d) -> bool:
    """Whether the kernel computes ``conv``: 3x3x3, stride 1, padding = dilation (all axes
    equal), one group, channels multiples of 16."""
    d = conv.dilation[0]
    return (tuple(conv.kernel_size) == (3, 3, 3) and tuple(conv.stride) == (1, 1, 1)
            and tuple(conv.dilation) == (d, d, d) and tuple(conv.padding) == (d, d, d)
            and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.in_channels % CHANNEL_MULTIPLE == 0
            and conv.out_channels % CHANNEL_MULTIPLE == 0)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` along each axis, in float64, stored as float32.

    Args:
        weight: ``(Cout, Cin, 3, 3, 3)`` (torch's ``Conv3d.weight``: cross-correlation
            taps along x, y, z).

    Returns:
        ``(216, Cin, Cout)`` float32 contiguous CPU tensor; transform position
        ``(a, b, c)`` (along x, y, z) at row ``(a * 6 + b) * 6 + c``.
    """
    if tuple(weight.shape[2:]) != (3, 3, 3):
        raise ValueError(f"Winograd needs a 3x3x3 kernel, got {tuple(weight.shape)}")
    g = torch.from_numpy(G)
    u = torch.einsum("ai,bj,ck,oxijk->abcxo", g, g, g, weight.detach().cpu().double())
    return u.reshape(216, weight.shape[1], weight.shape[0]).float().contiguous()


def _compiler() -> str | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    exe = shutil.which(cc.split()[0]) if cc else None
    return exe or shutil.which("cc") or shutil.which("gcc")


def _cpu_key() -> str:
    """What the compiled code depends on besides the source: the CPU's features."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "niftyport"


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The compiled kernel, built on first use (see the module's docstring).

    Raises:
        OptionError: no C compiler, or the build failed.
    """
    cc = _compiler()
    if cc is None:
        raise OptionError("--mode full-winograd builds a small C kernel on first use and needs "
                          "a C compiler (cc, gcc or $CC); none was found")
    source = SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(b"\0".join([source, " ".join(CFLAGS).encode(), version.encode(),
                                     _cpu_key().encode()])).hexdigest()[:16]
    target = _cache_dir() / f"winograd-{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            folder = target.parent
        except OSError:
            folder = Path(tempfile.mkdtemp(prefix="niftyport-"))
            target = folder / target.name
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        try:
            done = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise OptionError(f"{SOURCE.name}: the C compiler failed: "
                                  f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
            os.replace(tmp, target)  # whole or absent, also with several processes at once
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(target))
    i, p = ctypes.c_int, ctypes.c_void_p
    lib.wino_conv3d.argtypes = [p, i, i, i, i, p, i, ctypes.POINTER(_Fuse), p,
                                i, i, i, i, i, i, i, i, i, i]
    lib.wino_conv3d.restype = i
    lib.wino_tiles.argtypes = [i, i, p, p]
    lib.wino_tiles.restype = i
    return lib


class _Fuse(ctypes.Structure):
    """``struct fuse`` of ``winograd.c``: what is applied around the convolution."""

    _fields_ = [("pre_scale", ctypes.c_void_p), ("pre_shift", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("post_scale", ctypes.c_void_p),
                ("post_shift", ctypes.c_void_p), ("post_relu", ctypes.c_int),
                ("residual", ctypes.c_void_p), ("rx", ctypes.c_int), ("ry", ctypes.c_int),
                ("rz", ctypes.c_int), ("rc", ctypes.c_int), ("r_lo", ctypes.c_int * 3),
                ("c_lo", ctypes.c_int)]


def affine(bn: torch.nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``x * scale + shift`` (float64 arithmetic, float32 results).

    ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``:
    what ``bn(x)`` computes, in one rounding of its own.
    """
    var, mean = bn.running_var.detach().double(), bn.running_mean.detach().double()
    weight = torch.ones_like(var) if bn.weight is None else bn.weight.detach().double()
    bias = torch.zeros_like(var) if bn.bias is None else bn.bias.detach().double()
    scale = weight / torch.sqrt(var + bn.eps)
    return scale.float().contiguous(), (bias - mean * scale).float().contiguous()


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _vector(t: torch.Tensor | None, n: int, what: str) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.detach().float().contiguous().cpu()
    if t.shape != (n,):
        raise ValueError(f"{what} has shape {tuple(t.shape)}, expected ({n},)")
    return t


def conv3d(x: torch.Tensor, u: torch.Tensor, *, dilation: int, lo=(0, 0, 0), shape=None,
           bias: torch.Tensor | None = None, pre=None, post=None, relu: bool = False,
           residual: torch.Tensor | None = None, residual_lo=(0, 0, 0), channel_lo: int = 0,
           out: torch.Tensor | None = None, workers: int | None = None) -> torch.Tensor:
    """A 3x3x3 'SAME' convolution of ``x`` (zero padding ``dilation``), computed on one crop,
    with what surrounds it in a residual block fused in.

    The same, up to rounding, as::

        h = F.conv3d(F.relu(x * pre[0] + pre[1]), w, bias, padding=d, dilation=d)[crop]
        h = h * post[0] + post[1];  h = F.relu(h) if relu;  h + residual[crop of residual]

    (per-channel ``pre``/``post`` broadcast over the channel axis; each step only where
    given), for ``u = transform_weight(w)``.

    Args:
        x: ``(N, Cin, X, Y, Z)`` float32 CPU tensor (channels-last memory is used as is;
            other layouts are copied to it).
        u: ``(216, Cin, Cout)`` from :func:`transform_weight`.
        dilation: the convolution's dilation ``d``.
        lo, shape: the output crop: voxels ``lo`` to ``lo + shape`` of the convolution
            (default: all of it).
        bias: ``(Cout,)`` or None.
        pre: ``(scale, shift)`` of ``Cin`` each (e.g. :func:`affine` of a batch norm):
            ReLU(batch norm) of the input, before its zero padding.
        post: ``(scale, shift)`` of ``Cout`` each, applied to the output; ``relu`` after it.
        residual: ``(N, Cr, RX, RY, RZ)`` float32 added last: output voxel ``(0, 0, 0)`` at
            its voxel ``residual_lo``, its channels to output channels ``channel_lo`` to
            ``channel_lo + Cr`` (the zero-padded shortcut of a widening block).
        out: an ``(N, Cout, *shape)`` float32 channels-last tensor to write into (a
            recycled buffer; it must not overlap ``x`` or ``residual``), else a new one.
        workers: threads (one C call each; default: torch's thread count).

    Returns:
        ``(N, Cout, *shape)`` float32 in ``torch.channels_last_3d`` memory format.
    """
    n, cin, *spatial = x.shape
    cout = u.shape[2]
    shape = tuple(spatial) if shape is None else tuple(int(s) for s in shape)
    lo = tuple(int(v) for v in lo)
    if u.shape[:2] != (216, cin) or cin % CHANNEL_MULTIPLE or cout % CHANNEL_MULTIPLE:
        raise ValueError(f"Winograd weights {tuple(u.shape)} do not fit input {tuple(x.shape)}")
    if any(a < 0 or a + s > t for a, s, t in zip(lo, shape, spatial)):
        raise ValueError(f"crop {lo} + {shape} is outside the input {tuple(spatial)}")
    lib = library()
    x = x.contiguous(memory_format=torch.channels_last_3d)
    keep = [x]  # tensors whose memory the C calls read: alive until they return
    fuse = _Fuse()
    if pre is not None:
        scale, shift = (_vector(t, cin, "pre") for t in pre)
        keep += [scale, shift]
        fuse.pre_scale, fuse.pre_shift = scale.data_ptr(), shift.data_ptr()
    if bias is not None:
        keep.append(_vector(bias, cout, "bias"))
        fuse.bias = keep[-1].data_ptr()
    if post is not None:
        scale, shift = (_vector(t, cout, "post") for t in post)
        keep += [scale, shift]
        fuse.post_scale, fuse.post_shift = scale.data_ptr(), shift.data_ptr()
    fuse.post_relu = int(bool(relu))
    if residual is not None:
        residual = residual.contiguous(memory_format=torch.channels_last_3d)
        rc, *rshape = residual.shape[1:]
        residual_lo = tuple(int(v) for v in residual_lo)
        if (residual.shape[0] != n or channel_lo < 0 or channel_lo + rc > cout
                or any(a < 0 or a + s > t for a, s, t in zip(residual_lo, shape, rshape))):
            raise ValueError(f"residual {tuple(residual.shape)} at {residual_lo}, channel "
                             f"{channel_lo} does not cover the output {(n, cout) + shape}")
        keep.append(residual)
        fuse.rx, fuse.ry, fuse.rz, fuse.rc, fuse.c_lo = *rshape, rc, int(channel_lo)
        fuse.r_lo[:] = residual_lo
    if out is None:
        out = torch.empty((n, cout) + shape, dtype=torch.float32,
                          memory_format=torch.channels_last_3d)
    elif (tuple(out.shape) != (n, cout) + shape or out.dtype != torch.float32
          or not out.is_contiguous(memory_format=torch.channels_last_3d)):
        raise ValueError(f"out {tuple(out.shape)} is not a channels-last float32 "
                         f"{(n, cout) + shape}")
    tiles = lib.wino_tiles(shape[0], int(dilation), None, None)
    workers = max(1, min(torch.get_num_threads() if workers is None else int(workers), tiles))

    def call(i: int, w: int) -> None:
        if residual is not None:
            sample = _Fuse.from_buffer_copy(fuse)
            sample.residual = residual[i].data_ptr()
        else:
            sample = fuse
        rc = lib.wino_conv3d(x[i].data_ptr(), *spatial, cin, u.data_ptr(), cout,
                             ctypes.byref(sample), out[i].data_ptr(), *lo, *shape,
                             int(dilation), w, tiles, workers)
        if rc != 0:
            raise MemoryError("the Winograd kernel could not allocate its chunk buffers")

    jobs = [(i, w) for i in range(n) for w in range(workers)]
    if workers == 1:
        for job in jobs:
            call(*job)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(call, *job) for job in jobs]:
                done.result()
    del keep
    return out


def flops(shape, cin: int, cout: int, dilation: int) -> int:
    """Multiply-add FLOPs (x2) of the products over an output of ``shape`` (tiles rounded up)."""
    tiles = math.prod(-(-(-(-int(s) // dilation)) // 4) * dilation for s in shape)
    return 2 * tiles * 216 * cin * cout
