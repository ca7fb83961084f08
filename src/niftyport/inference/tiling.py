"""Where the network runs: boxes, halos, owned regions and tile plans.

Every convolution of HighRes3DNet is 'SAME' with zero padding, so a voxel's
logits depend on the input within the receptive-field radius (43 voxels)
*and* on where the domain the network ran on ends: zeros enter at the
domain's faces, at every layer. The domain is the window in NiftyNet's
inference and the whole padded volume in a whole-volume pass. Any box of the
domain (a *region*) can therefore be computed on its own, from the input
box ``region`` grown by 43 voxels and cut at the domain's faces, and gives
the logits the domain-wide pass gives there.

Each convolution only needs its output where the later layers will read it:
after layer ``l`` that is the region grown by the radii of the layers still
to come (cut at the domain). Computing every layer only there (the halo
shrinks layer by layer) is what makes small regions cheap. The arithmetic
cost model of this module counts a convolution over its whole *input* box,
as :mod:`niftyport.inference` runs it (the convolution pads every face, then
the result is cropped: cropping keeps the floating-point result bit for bit,
while padding only some faces does not).

Worked example, one axis of a window ``[0, 128)`` whose voxels ``[2, 36)``
are the region: the input box is ``[0, 36 + 43) = [0, 79)``; the last
convolution of the network (dilation 4) reads ``[0, 40)``, its output is
kept on ``[0, 36)``. A voxel ``[36, 40)`` of that last input is exact because
``[0, 40)`` was kept from ``[0, 44)`` one layer earlier, and so on back to
the input: the face at 0 is the window's own face, so its zero padding is
the one NiftyNet's window had.

Boxes are half-open voxel index ranges ``[lo, hi)`` per axis, in the voxel
order of the array they index (here: the padded volume, RAS).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import OptionError


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of voxels ``[lo, hi)`` (int voxel indices, 3 axes).

    >>> Box((0, 0, 0), (10, 10, 10)).grow(3, Box((0, 0, 0), (12, 20, 20)))
    Box(lo=(0, 0, 0), hi=(12, 13, 13))
    """

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    def __post_init__(self):
        object.__setattr__(self, "lo", tuple(int(v) for v in self.lo))
        object.__setattr__(self, "hi", tuple(int(v) for v in self.hi))

    @classmethod
    def of_shape(cls, shape) -> Box:
        """The box ``[0, shape)``."""
        return cls((0, 0, 0), tuple(shape))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(max(h - lo, 0) for lo, h in zip(self.lo, self.hi))

    @property
    def size(self) -> int:
        """Number of voxels."""
        return math.prod(self.shape)

    def grow(self, radius: int, within: Box) -> Box:
        """The box grown by ``radius`` voxels on every face, cut at ``within``'s faces."""
        return Box(tuple(max(a - radius, w) for a, w in zip(self.lo, within.lo)),
                   tuple(min(b + radius, w) for b, w in zip(self.hi, within.hi)))

    def slices(self, origin: tuple[int, int, int] = (0, 0, 0)) -> tuple[slice, slice, slice]:
        """Index this box in an array whose element 0 sits at voxel ``origin``."""
        return tuple(slice(a - o, b - o) for a, b, o in zip(self.lo, self.hi, origin))


@dataclass(frozen=True)
class ConvStep:
    """One convolution in forward order: its radius (voxels), FLOPs per output voxel and
    the larger of its input and output channel counts (what its activations weigh)."""

    radius: int
    flops: int
    channels: int = 1


def remaining_radii(steps) -> list[int]:
    """Radius still to come *including* each step: how far its input box reaches.

    >>> remaining_radii([ConvStep(1, 0), ConvStep(2, 0), ConvStep(0, 0)])
    [3, 2, 0]
    """
    radii = [s.radius for s in steps]
    return [sum(radii[i:]) for i in range(len(radii))]


def region_work(region: Box, domain: Box, steps) -> int:
    """FLOPs to compute ``region`` of ``domain``: each convolution over its input box.

    ``steps``: the :class:`ConvStep` of the network in forward order.
    """
    return sum(s.flops * region.grow(r, domain).size
               for s, r in zip(steps, remaining_radii(steps)))


def input_box(region: Box, domain: Box, steps) -> Box:
    """The input voxels that ``region`` needs: grown by the total radius, cut at ``domain``."""
    return region.grow(sum(s.radius for s in steps), domain)


def region_values(region: Box, domain: Box, steps) -> int:
    """The largest activation (values: channels x voxels) a convolution of ``region`` reads;
    memory is a few such activations."""
    return max(s.channels * region.grow(r, domain).size for s, r in zip(steps, remaining_radii(steps)))


# --- tile plans -------------------------------------------------------------------------------

def split_axis(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut into ``parts`` nearly equal consecutive pieces.

    >>> split_axis(0, 10, 3)
    [(0, 3), (3, 7), (7, 10)]
    """
    n = hi - lo
    cuts = [lo + (k * n + parts // 2) // parts for k in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def split_box(region: Box, splits: tuple[int, int, int]) -> list[Box]:
    """``region`` cut into ``splits[0] x splits[1] x splits[2]`` tiles (x slowest)."""
    axes = [split_axis(lo, hi, n) for lo, hi, n in zip(region.lo, region.hi, splits)]
    return [Box((x[0], y[0], z[0]), (x[1], y[1], z[1]))
            for x in axes[0] for y in axes[1] for z in axes[2]]


def tiles_of_size(region: Box, tile) -> list[Box]:
    """``region`` cut into tiles of ``tile`` voxels from its low corner; the last ones are smaller.

    >>> [b.shape for b in tiles_of_size(Box((0, 0, 0), (5, 4, 4)), (3, 4, 4))]
    [(3, 4, 4), (2, 4, 4)]
    """
    tile = _three(tile, "tile")
    axes = [[(a, min(a + t, hi)) for a in range(lo, hi, t)]
            for lo, hi, t in zip(region.lo, region.hi, tile)]
    return [Box((x[0], y[0], z[0]), (x[1], y[1], z[1]))
            for x in axes[0] for y in axes[1] for z in axes[2]]


@dataclass(frozen=True)
class TilePlan:
    """Tiles covering a region: ``splits`` per axis, total ``work`` (FLOPs) and the
    largest activation any tile reads (``max_values``: :func:`region_values`)."""

    tiles: tuple[Box, ...]
    splits: tuple[int, int, int]
    work: int
    max_values: int


def _axis_tables(lo: int, hi: int, dlo: int, dhi: int, reach: list[int], max_parts: int):
    """Per number of parts n and reach r: the summed and the largest length of the pieces
    grown by r (cut at the domain ``[dlo, dhi)``)."""
    sums = np.zeros((max_parts, len(reach)), dtype=np.float64)
    longest = np.zeros((max_parts, len(reach)), dtype=np.float64)
    for n in range(1, max_parts + 1):
        pieces = split_axis(lo, hi, n)
        for j, r in enumerate(reach):
            lengths = [min(b + r, dhi) - max(a - r, dlo) for a, b in pieces]
            sums[n - 1, j] = sum(lengths)
            longest[n - 1, j] = max(lengths)
    return sums, longest


def plan_tiles(region: Box, domain: Box, steps, *, max_values: int, max_parts: int = 32) -> TilePlan:
    """The even tiling of ``region`` with the least work whose activations fit the budget.

    Tries every ``(nx, ny, nz)`` with up to ``max_parts`` tiles per axis (no
    more than the region's length); each tile is computed from its own input
    box (tile grown by 43 voxels, cut at ``domain``), so more tiles mean more
    halo work but smaller activations. Among the plans whose tiles all have
    :func:`region_values` of at most ``max_values``, returns the one with the
    least :func:`region_work` summed over tiles (ties: fewer tiles).

    Raises:
        OptionError: not even the finest tiling fits ``max_values``.
    """
    reach = remaining_radii(steps)
    flops = np.array([s.flops for s in steps], dtype=np.float64)
    channels = np.array([s.channels for s in steps], dtype=np.float64)
    tables = [_axis_tables(lo, hi, dlo, dhi, reach, max(1, min(max_parts, hi - lo)))
              for lo, hi, dlo, dhi in zip(region.lo, region.hi, domain.lo, domain.hi)]
    (sx, mx), (sy, my), (sz, mz) = tables
    # The grown pieces of an even tiling are products of the grown pieces of each axis:
    # work[nx, ny, nz] = sum_l flops_l * Sx[nx, l] * Sy[ny, l] * Sz[nz, l], and the
    # largest tile at each layer is the product of the largest piece of each axis.
    work = np.einsum("l,il,jl,kl->ijk", flops, sx, sy, sz)
    values = np.einsum("l,il,jl,kl->ijkl", channels, mx, my, mz).max(axis=-1)
    fits = values <= max_values
    if not fits.any():
        raise OptionError(
            f"max_memory is too small: the smallest tiles of a {region.shape} region still read "
            f"{int(values.min())} activation values, the budget allows {int(max_values)}")
    count = np.add.outer(np.add.outer(np.arange(len(mx)), np.arange(len(my))), np.arange(len(mz)))
    key = np.where(fits, work, np.inf)
    best = min(zip(key.ravel(), count.ravel(), range(key.size)))[2]
    nx, ny, nz = np.unravel_index(best, key.shape)
    splits = (int(nx) + 1, int(ny) + 1, int(nz) + 1)
    tiles = tuple(split_box(region, splits))
    return TilePlan(tiles=tiles, splits=splits,
                    work=sum(region_work(t, domain, steps) for t in tiles),
                    max_values=max(region_values(t, domain, steps) for t in tiles))


# --- NiftyNet's grid: which window's output survives where ------------------------------------

def grid_owner_map(shape, locations: np.ndarray, order: np.ndarray, border) -> np.ndarray:
    """Which window's output NiftyNet keeps at each voxel of the padded volume.

    Args:
        shape: spatial shape ``(X, Y, Z)`` of the padded volume.
        locations: ``(n, 6)`` window rows ``(x0, y0, z0, x1, y1, z1)``
            (:func:`niftyport.sampling.grid_locations`).
        order: window indices in the order NiftyNet writes them
            (:func:`niftyport.sampling.batch_emission_order`).
        border: voxels cropped from each side of each output window.

    Returns:
        ``(X, Y, Z)`` int32: index of the window written *last* at the voxel
        (the aggregator overwrites), -1 where no cropped window reaches.
    """
    from .aggregation import cropped_location

    owner = np.full(tuple(int(s) for s in shape), -1, dtype=np.int32)
    for index in order:
        x0, y0, z0, x1, y1, z1 = cropped_location(locations[index], border)
        owner[x0:x1, y0:y1, z0:z1] = index
    return owner


def owned_regions(owner: np.ndarray, locations: np.ndarray, border) -> list[tuple[int, Box]]:
    """For each window that keeps at least one voxel: its index and the bounding box of
    those voxels (padded-volume voxel indices), in increasing window index."""
    from .aggregation import cropped_location

    out = []
    for index in range(len(locations)):
        x0, y0, z0, x1, y1, z1 = cropped_location(locations[index], border)
        mine = owner[x0:x1, y0:y1, z0:z1] == index
        if not mine.any():
            continue
        lo, hi = [], []
        for axis in range(3):
            hit = np.flatnonzero(mine.any(axis=tuple(a for a in range(3) if a != axis)))
            lo.append(hit[0])
            hi.append(hit[-1] + 1)
        out.append((index, Box(np.add(lo, (x0, y0, z0)), np.add(hi, (x0, y0, z0)))))
    return out


# --- memory budgets --------------------------------------------------------------------------

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
          "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_memory(text) -> int:
    """A memory size in bytes from ``'8G'``, ``'512M'``, ``'1.5GiB'`` or a plain byte count.

    Units are binary (``K`` = 1024 bytes, ``G`` = 2**30 bytes); ``GB`` and
    ``GiB`` mean the same.

    >>> parse_memory("8G"), parse_memory("512m"), parse_memory(1024)
    (8589934592, 536870912, 1024)
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        if not match or match.group(2).upper() not in _UNITS:
            raise OptionError(f"--max-memory {text!r}: expected a size such as 8G, 512M or 1.5GiB")
        value, unit = float(match.group(1)), match.group(2).upper()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise OptionError(f"--max-memory {text!r}: must be more than 0 bytes")
    return size


def _three(value, name: str) -> tuple[int, int, int]:
    values = (value,) * 3 if np.isscalar(value) else tuple(value)
    if len(values) != 3 or any(int(v) != v or v < 1 for v in values):
        raise OptionError(f"{name} {value!r}: expected one positive integer or three")
    return tuple(int(v) for v in values)
