"""Winograd convolutions for HighRes3DNet's 3x3x3 layers: fewer multiplications, same output.

The implementation measured by ``bench_winograd.py`` (kept beside it, not in the
package: it did not beat oneDNN's direct convolutions by enough to become an
inference mode; see the README's Speed section).

Lavin A., Gray S. "Fast Algorithms for Convolutional Neural Networks." CVPR 2016
(arXiv:1509.09308). The minimal filtering algorithm ``F(m, 3)`` computes ``m``
outputs of a 3-tap correlation from ``m + 2`` inputs with ``m + 2``
multiplications instead of ``3 m``::

    y = A^T [ (G g) * (B^T d) ]        g: 3 taps, d: m + 2 inputs, y: m outputs

Nested over the three axes (the transforms are separable), one output tile of
``m^3`` voxels takes ``(m + 2)^3`` products per input/output channel pair
instead of ``27 m^3``: 3.4x fewer for ``F(2, 3)``, 8x fewer for ``F(4, 3)``.
Summed over the input channels, the products become one matrix product per
transform position: ``(P, T, Cin) @ (P, Cin, Cout)`` with ``P = (m + 2)^3``
positions and ``T`` tiles, on the BLAS of ``torch.bmm``.

Dilation (HighRes3DNet's ``res_2`` and ``res_3`` blocks, dilation 2 and 4):
a dilation-``d`` convolution is ``d^3`` ordinary convolutions on the
sub-sampled grids ``x[i::d, j::d, k::d]`` (NiftyNet's own space-to-batch,
``niftynet/layer/dilatedcontext.py``). Here the sub-grids are never copied
out: a tile's inputs are read ``d`` voxels apart and the sub-grid phase is one
more tile index (:func:`input_tiles`).

Layouts: the network's tensors are torch's ``(N, C, X, Y, Z)``; the functions
below work on the channels-last view ``(N, X, Y, Z, C)`` (what ``full`` mode's
``fast`` engine keeps in memory), so that a tile's channels are contiguous for
the matrix product. Transformed tensors are ``(a, b, c, T, C)``: the transform
positions along x, y, z first, then the tiles, then the channels, so that every
transform step is one matrix product over contiguous leading axes. The tiles
go through the transforms in chunks small enough to stay in a core's cache
(memory-bound steps otherwise dominate), one chunk per core at a time.

Rounding: the transforms add and scale inputs before the products; ``F(4, 3)``'s
larger coefficients cost about 20-40x the float32 error of a direct
convolution per layer (measured by the benchmark).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

#: Lavin & Gray's matrices for F(m, 3), as float64: ``m -> (B^T, G, A^T)``;
#: shapes ``(m+2, m+2)``, ``(m+2, 3)``, ``(m, m+2)``. F(4, 3) interpolates at
#: 0, +-1, +-2 and infinity (their section 4.2).
MATRICES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
    2: (np.array([[1, 0, -1, 0],
                  [0, 1, 1, 0],
                  [0, -1, 1, 0],
                  [0, 1, 0, -1]], dtype=np.float64),
        np.array([[1, 0, 0],
                  [0.5, 0.5, 0.5],
                  [0.5, -0.5, 0.5],
                  [0, 0, 1]], dtype=np.float64),
        np.array([[1, 1, 1, 0],
                  [0, 1, -1, -1]], dtype=np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0],
                  [0, -4, -4, 1, 1, 0],
                  [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]], dtype=np.float64),
        np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]], dtype=np.float64),
        np.array([[1, 1, 1, 1, 1, 0],
                  [0, 1, -1, 2, -2, 0],
                  [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], dtype=np.float64)),
}

#: Bytes of one chunk's transformed input (see :func:`winograd_conv3d`): fits a core's L2 cache.
CHUNK_BYTES = 2 * 2**20


def _check_m(m: int) -> None:
    if m not in MATRICES:
        raise ValueError(f"Winograd tile size m={m!r} is not one of {sorted(MATRICES)}")


def transform_weight(weight: torch.Tensor, m: int) -> torch.Tensor:
    """The Winograd-domain filter ``U = G g G^T`` along each axis, once per model.

    Args:
        weight: ``(Cout, Cin, 3, 3, 3)`` convolution weight (torch's
            ``Conv3d.weight``, cross-correlation taps along x, y, z).
        m: output tile side (2 or 4).

    Returns:
        ``((m+2)^3, Cin, Cout)`` float32 contiguous, on ``weight``'s device,
        computed in float64: position ``(a, b, c)`` at row ``(a * (m+2) + b) * (m+2) + c``.
    """
    _check_m(m)
    if tuple(weight.shape[2:]) != (3, 3, 3):
        raise ValueError(f"Winograd needs a 3x3x3 kernel, got {tuple(weight.shape)}")
    g = torch.from_numpy(MATRICES[m][1]).to(weight.device)
    u = torch.einsum("ai,bj,ck,oxijk->abcxo", g, g, g, weight.detach().double())
    return u.reshape(-1, weight.shape[1], weight.shape[0]).float().contiguous()


def tile_counts(shape, m: int, dilation: int) -> tuple[int, ...]:
    """Tiles per axis and sub-grid phase: ``ceil(ceil(L / d) / m)`` for each side ``L``.

    >>> tile_counts((64, 10, 7), 4, 2)
    (8, 2, 1)
    """
    return tuple(math.ceil(math.ceil(int(n) / dilation) / m) for n in shape)


def pad_input(x: torch.Tensor, m: int, dilation: int,
              workspace: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` zero-padded for its tiles: ``dilation`` voxels before (the 'SAME' padding) and
    up to ``(n m + 2) d`` voxels per axis, ``n`` from :func:`tile_counts`.

    Args:
        x: ``(N, X, Y, Z, C)`` float32, channels last.
        workspace: a 1-D float32 tensor to build it in, if it is large enough
            (reusing memory saves the operating system's page zeroing).

    Returns:
        ``(N, X', Y', Z', C)`` float32 contiguous, ``x`` at offset ``dilation``
        (a view of ``workspace`` when that was used).
    """
    d = dilation
    counts = tile_counts(x.shape[1:4], m, d)
    shape = (x.shape[0],) + tuple((n * m + 2) * d for n in counts) + (x.shape[4],)
    if workspace is not None and workspace.numel() >= math.prod(shape):
        padded = workspace[:math.prod(shape)].view(shape)
    else:
        padded = x.new_empty(shape)
    inner = tuple(slice(d, d + s) for s in x.shape[1:4])
    padded[(slice(None),) + inner] = x
    for axis in range(3):  # zero only the margins: each page is written once
        before = inner[:axis] + (slice(0, d),)
        after = inner[:axis] + (slice(d + x.shape[1 + axis], None),)
        padded[(slice(None),) + before] = 0
        padded[(slice(None),) + after] = 0
        inner = inner[:axis] + (slice(None),) + inner[axis + 1:]
    return padded


def input_tiles(padded: torch.Tensor, m: int, dilation: int) -> torch.Tensor:
    """The overlapping input tiles of a padded tensor, as a strided view (no copy).

    Tile ``(t, p)`` along an axis (tile index ``t``, sub-grid phase ``p < d``)
    reads the padded voxels ``(t m + j) d + p`` for ``j < m + 2``; its outputs
    are the voxels ``(t m + i) d + p``, ``i < m``, of the convolution.

    Args:
        padded: ``(N, X', Y', Z', C)`` from :func:`pad_input`.

    Returns:
        a view ``(j_x, j_y, j_z, N, t_x, p_x, t_y, p_y, t_z, p_z, C)`` with
        ``j < m + 2``, ``t`` the tile counts, ``p < d``.
    """
    d = dilation
    n, sx, sy, sz, c = padded.shape
    counts = [(s // d - 2) // m for s in (sx, sy, sz)]
    st = padded.stride()
    shape = (m + 2,) * 3 + (n, counts[0], d, counts[1], d, counts[2], d, c)
    strides = (d * st[1], d * st[2], d * st[3], st[0],
               m * d * st[1], st[1], m * d * st[2], st[2], m * d * st[3], st[3], st[4])
    return padded.as_strided(shape, strides, padded.storage_offset())


def _matrices(m: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 ``B^T``, ``B^T (x) B^T``, ``A^T``, ``A^T (x) A^T`` of F(m, 3) on ``device``
    (Kronecker products: the transform of two axes in one matrix product)."""
    bt, _, at = (torch.from_numpy(a) for a in MATRICES[m])
    return tuple(t.to(device, torch.float32) for t in (bt, torch.kron(bt, bt), at, torch.kron(at, at)))


def transform_tiles(tiles: torch.Tensor, m: int, mats=None) -> torch.Tensor:
    """``B^T d B`` along each axis: ``(m+2, m+2, m+2, *rest)`` tiles (any strides) to the
    ``((m+2)^3, R)`` float32 Winograd-domain input, ``R`` = the product of ``rest``.

    Two matrix products over the leading axes of a contiguous tensor: x with
    ``B^T``, then y and z at once with ``B^T (x) B^T`` (fewer, larger products
    ran faster than one per axis on the benchmark's CPU)."""
    bt, bt2, _, _ = _matrices(m, tiles.device) if mats is None else mats
    k = m + 2
    d = torch.matmul(bt, tiles.contiguous().view(k, -1)).view(k, k * k, -1)   # along x
    return torch.matmul(bt2, d).view(k ** 3, -1)                               # along y, z


def untransform(products: torch.Tensor, m: int, mats=None) -> torch.Tensor:
    """``A^T M A`` along each axis: ``((m+2)^3, R)`` Winograd-domain outputs to
    ``(m, m, m, R)`` output voxels (intra-tile offsets along x, y, z first)."""
    _, _, at, at2 = _matrices(m, products.device) if mats is None else mats
    k = m + 2
    y = torch.matmul(at, products.view(k, -1)).view(m, k * k, -1)   # along x
    return torch.matmul(at2, y).view(m, m, m, -1)                    # along y, z


def _chunks(counts: tuple[int, ...], n: int, d: int, tiles_per_chunk: int):
    """Rectangular chunks of the tile grid: ``(batch, t_x, p_x, t_y range, p_y range)``,
    each holding about ``tiles_per_chunk`` tiles (whole z rows of tiles, at least one)."""
    row = counts[2] * d                      # tiles along z (with their phases)
    rows_y = max(1, tiles_per_chunk // row)  # (t_y, p_y) rows per chunk
    for b in range(n):
        for tx in range(counts[0]):
            for px in range(d):
                if rows_y >= d:
                    step = rows_y // d
                    for ty in range(0, counts[1], step):
                        yield b, tx, px, slice(ty, min(ty + step, counts[1])), slice(0, d)
                else:
                    for ty in range(counts[1]):
                        for py in range(0, d, rows_y):
                            yield b, tx, px, slice(ty, ty + 1), slice(py, min(py + rows_y, d))


def _parallel(fn, items: list, workers: int) -> None:
    """``fn(item)`` for every item, on ``workers`` threads of one torch thread each."""
    if workers <= 1 or len(items) < 2:
        for item in items:
            fn(item)
        return
    old = torch.get_num_threads()
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def worker(part) -> None:  # the caller's autograd modes are thread-local: carry them over
        torch.set_num_threads(1)
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            for item in part:
                fn(item)

    try:
        torch.set_num_threads(1)
        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(worker, items[i::workers]) for i in range(workers)]:
                done.result()
    finally:
        torch.set_num_threads(old)


def winograd_conv3d(x: torch.Tensor, u: torch.Tensor, *, m: int, dilation: int = 1,
                    chunk_bytes: int = CHUNK_BYTES, workers: int | None = None,
                    workspace: torch.Tensor | None = None) -> torch.Tensor:
    """A 3x3x3 'SAME' convolution (stride 1, zero padding ``dilation``, no bias) by Winograd.

    The same as ``F.conv3d(x, w, padding=d, dilation=d)`` up to rounding, for
    ``u = transform_weight(w, m)``.

    Args:
        x: ``(N, Cin, X, Y, Z)`` float32 (best in ``torch.channels_last_3d``).
        u: ``((m+2)^3, Cin, Cout)`` from :func:`transform_weight`.
        m: output tile side (2 or 4).
        dilation: the convolution's dilation ``d`` (its padding is ``d``).
        chunk_bytes: tiles go through the transforms in chunks whose transformed
            input takes about this many bytes: small enough to stay in the CPU's
            cache between the steps, large enough for efficient matrix products.
        workers: chunks run on this many threads at once, each with one torch
            thread (default: torch's thread count), so each core keeps its own
            chunk in its cache; torch's thread count is restored afterwards.
        workspace: passed to :func:`pad_input`.

    Returns:
        ``(N, Cout, X, Y, Z)`` float32 in ``torch.channels_last_3d`` memory format.
    """
    _check_m(m)
    n, cin, *spatial = x.shape
    cout = u.shape[2]
    d, k = dilation, m + 2
    mats = _matrices(m, x.device)
    tiles = input_tiles(pad_input(x.permute(0, 2, 3, 4, 1), m, d, workspace), m, d)
    counts = tile_counts(spatial, m, d)
    out = x.new_empty((n,) + tuple(t * m * d for t in counts) + (cout,))
    grid = out.view(n, counts[0], m, d, counts[1], m, d, counts[2], m, d, cout)
    per_tile = k ** 3 * max(cin, cout) * 4
    chunks = list(_chunks(counts, n, d, max(1, chunk_bytes // per_tile)))

    def run(chunk) -> None:
        b, tx, px, ty, py = chunk
        v = transform_tiles(tiles[:, :, :, b, tx, px, ty, py], m, mats)
        products = torch.bmm(v.view(k ** 3, v.shape[1] // cin, cin), u)
        y = untransform(products.view(k ** 3, -1), m, mats)
        y = y.view(m, m, m, ty.stop - ty.start, py.stop - py.start, counts[2], d, cout)
        grid[b, tx, :, px, ty, :, py].copy_(y.permute(0, 3, 1, 4, 5, 2, 6, 7))

    _parallel(run, chunks, torch.get_num_threads() if workers is None else workers)
    out = out[:, :spatial[0], :spatial[1], :spatial[2]].permute(0, 4, 1, 2, 3)
    return out.contiguous(memory_format=torch.channels_last_3d)


def winograd_flops(shape, cin: int, cout: int, m: int, dilation: int = 1) -> int:
    """Multiply-add FLOPs (x2) of the products stage over a ``shape`` output (tiles rounded up)."""
    tiles = math.prod(tile_counts(shape, m, dilation)) * dilation ** 3
    return 2 * tiles * (m + 2) ** 3 * cin * cout
