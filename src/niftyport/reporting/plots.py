"""Figures for checking a port by eye: slices, overlays, histograms, kernel weights.

One function per figure; each takes arrays (and, for images, the ``(4, 4)``
voxel -> RAS+ mm affine) and returns a :class:`matplotlib.figure.Figure`.
Figures are built on matplotlib's Agg canvas without ``pyplot``: nothing is
shown, no display is needed, no global state is touched.
:func:`save_png` writes one PNG deterministically (no timestamp or version
metadata, fixed dpi).

Slice views
-----------
Volumes are first put in RAS voxel order by flipping and permuting axes
(:func:`to_ras`; no resampling, an oblique rotation is ignored for display).
Panels are drawn in world millimetres, so anisotropic voxels keep their shape.
The default ``convention="radiological"`` shows the patient's right on the
image's left in the coronal and axial views (as seen from the feet/front), the
face to the left in the sagittal view, superior and anterior up; every panel
marks its edges with the orientation letters (R/L, A/P, S/I), and the figure
title states the convention. ``convention="neurological"`` mirrors left/right
and anterior/posterior on the horizontal axis.
"""
from __future__ import annotations

import io
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .colortable import ColorTable, fallback_table
from ..outputs import write_bytes_atomic
from ..errors import ImageError, OptionError
from ..preprocessing.orientation import RAS, affine_axcodes, reorient, reoriented_affine

CONVENTIONS = ("radiological", "neurological")
#: Percentiles of the non-zero voxels that set the grey window of "contrast-enhanced" slices.
CONTRAST_PERCENTILES = (0.5, 99.5)
DPI = 100

_CONVENTION_TEXT = {
    "radiological": "radiological convention: patient's right on the image's left "
                    "(coronal, axial); anterior on the left (sagittal)",
    "neurological": "neurological convention: patient's right on the image's right "
                    "(coronal, axial); anterior on the right (sagittal)",
}


# --- geometry -------------------------------------------------------------------------

def to_ras(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute the first three axes of ``volume`` so that they run R, A, S.

    ``volume``: ``(X, Y, Z, ...)`` any dtype; ``affine``: ``(4, 4)`` voxel -> RAS+ mm.
    Returns the reoriented array (a view where possible) and its affine; world
    positions are unchanged (:mod:`niftyport.orientation`).
    """
    affine = np.asarray(affine, dtype=np.float64)
    volume = np.asanyarray(volume)
    axcodes = affine_axcodes(affine)
    return reorient(volume, axcodes, RAS), reoriented_affine(affine, volume.shape[:3], axcodes, RAS)


def _axis_coords(affine_ras: np.ndarray, shape: Sequence[int]) -> list[tuple[float, float]]:
    """World position (mm) of the first and last voxel centre along each RAS voxel axis."""
    origin = affine_ras[:3, 3]
    spacing = np.sqrt((affine_ras[:3, :3] ** 2).sum(axis=0))
    return [(float(origin[i]), float(origin[i] + (shape[i] - 1) * spacing[i])) for i in range(3)]


def _spacing(affine_ras: np.ndarray) -> np.ndarray:
    return np.sqrt((affine_ras[:3, :3] ** 2).sum(axis=0))


def world_to_index(point_mm: Sequence[float], affine_ras: np.ndarray, shape: Sequence[int]) -> tuple[int, int, int]:
    """Nearest voxel index (clipped to the volume) of a RAS+ mm point, in the RAS grid."""
    ijk = np.linalg.solve(affine_ras, np.r_[np.asarray(point_mm, float), 1.0])[:3]
    return tuple(int(np.clip(np.rint(v), 0, n - 1)) for v, n in zip(ijk, shape[:3]))  # type: ignore[return-value]


def _inside(point_mm: Sequence[float], affine_ras: np.ndarray, shape: Sequence[int]) -> bool:
    ijk = np.linalg.solve(affine_ras, np.r_[np.asarray(point_mm, float), 1.0])[:3]
    return bool(np.all(ijk > -0.5) and np.all(ijk < np.asarray(shape[:3]) - 0.5))


def centre_of_mass_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """RAS+ mm centre of the non-zero voxels of ``mask`` (volume centre if empty)."""
    mask = np.asarray(mask)
    idx = np.argwhere(mask != 0)
    centre = idx.mean(axis=0) if len(idx) else (np.asarray(mask.shape[:3]) - 1) / 2.0
    return (np.asarray(affine, float) @ np.r_[centre, 1.0])[:3]


def contrast_window(volume: np.ndarray, percentiles: Sequence[float] = CONTRAST_PERCENTILES) -> tuple[float, float]:
    """Grey window ``(low, high)``: percentiles of the non-zero finite voxels."""
    values = np.asarray(volume, dtype=np.float64)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, percentiles)
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


# --- figures --------------------------------------------------------------------------

@dataclass(frozen=True)
class _View:
    name: str
    fixed: int               # RAS axis held constant
    horizontal: int          # RAS axis drawn left-right
    vertical: int            # RAS axis drawn bottom-top
    flip_horizontal: bool    # radiological: decreasing world coordinate to the right
    letters: tuple[str, str, str, str]   # left, right, bottom, top edge letters


def _views(convention: str) -> tuple[_View, ...]:
    if convention not in CONVENTIONS:
        raise OptionError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
    radio = convention == "radiological"
    return (
        _View("sagittal", 0, 1, 2, radio, ("A", "P", "I", "S") if radio else ("P", "A", "I", "S")),
        _View("coronal", 1, 0, 2, radio, ("R", "L", "I", "S") if radio else ("L", "R", "I", "S")),
        _View("axial", 2, 0, 1, radio, ("R", "L", "P", "A") if radio else ("L", "R", "P", "A")),
    )


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _plane(volume: np.ndarray, view: _View, index: int) -> np.ndarray:
    """2-D plane ``(vertical, horizontal)`` for imshow(origin="lower")."""
    plane = np.take(volume, index, axis=view.fixed)
    # remaining axes are in increasing order; horizontal < vertical for every view
    return plane.T


def slices_figure(volume: np.ndarray, affine: np.ndarray, *,
                  labels: np.ndarray | None = None, table: ColorTable | None = None,
                  highlight: np.ndarray | None = None, highlight_rgba=(1.0, 0.0, 0.0, 0.8),
                  point_mm: Sequence[float] | None = None, title: str = "",
                  convention: str = "radiological", window: tuple[float, float] | None = None,
                  alpha: float = 0.5, legend: bool = False, name_sides: bool = False,
                  crosshair: bool = True):
    """Sagittal, coronal and axial slices through ``point_mm`` with crosshairs.

    ``volume``: ``(X, Y, Z)`` intensities; ``affine``: ``(4, 4)`` voxel -> RAS+ mm;
    ``labels``: optional integer ``(X, Y, Z)`` map drawn over it with ``table``'s
    colours (``alpha`` opacity, label 0 transparent); ``highlight``: optional boolean
    ``(X, Y, Z)`` drawn in ``highlight_rgba``. ``point_mm``: RAS+ mm point the
    slices pass through (default, or when it lies outside this volume: the centre of
    the labels, else of the highlight, else of the volume).
    ``window``: grey ``(low, high)``; default :func:`contrast_window`.
    ``legend`` lists the labels seen in the three slices; ``name_sides`` writes the
    name of the largest right-side and left-side structure where it lies in the
    coronal and axial slices (text artists get ``gid="label:<id>"``).
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ImageError(f"slices: expected a 3-D volume, got shape {volume.shape}")
    for name, extra in (("labels", labels), ("highlight", highlight)):
        if extra is not None and np.shape(extra) != volume.shape:
            raise ImageError(f"slices: {name} shape {np.shape(extra)} differs from the volume's {volume.shape}")
    views = _views(convention)
    vol, aff = to_ras(volume, affine)
    lab = to_ras(np.asarray(labels), affine)[0] if labels is not None else None
    hil = to_ras(np.asarray(highlight, bool), affine)[0] if highlight is not None else None
    if point_mm is None or not _inside(point_mm, aff, vol.shape):
        # default, or a point outside this volume (another grid): the centre of what is drawn
        focus = labels if labels is not None else highlight if highlight is not None else None
        if focus is None or not np.any(focus):
            focus = np.ones(volume.shape, dtype=bool)
        point_mm = centre_of_mass_mm(focus, affine)
    index = world_to_index(point_mm, aff, vol.shape)
    point_ras = (aff @ np.r_[index, 1.0])[:3]
    coords = _axis_coords(aff, vol.shape)
    half = _spacing(aff) / 2
    low, high = window if window is not None else contrast_window(volume)
    if lab is not None and table is None:
        table = fallback_table(np.unique(lab))
    lut = table.lut(int(lab.max())) if lab is not None else None

    widths = [coords[v.horizontal][1] - coords[v.horizontal][0] + 2 * half[v.horizontal] for v in views]
    heights = [coords[v.vertical][1] - coords[v.vertical][0] + 2 * half[v.vertical] for v in views]
    panel_h = 4.0
    fig_w = sum(w / max(heights) * panel_h for w in widths) + 0.6
    legend_entries = 0
    seen: list[tuple[int, int]] = []
    if legend and lab is not None:
        counts: dict[int, int] = {}
        for v in views:
            values, n = np.unique(_plane(lab, v, index[v.fixed]), return_counts=True)
            for val, c in zip(values, n):
                if val != 0:
                    counts[int(val)] = counts.get(int(val), 0) + int(c)
        seen = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        legend_entries = min(len(seen), 30)
    legend_h = 0.0 if not legend_entries else 0.3 + 0.22 * ((legend_entries + 2) // 3)
    width_chars = int(max(fig_w, 9.0) * 13)
    title_lines = textwrap.wrap(title, width_chars) + [_CONVENTION_TEXT[convention]]
    title_text = "\n".join(title_lines)
    title_h = 0.3 + 0.2 * len(title_lines)
    total_h = panel_h + 0.5 + title_h + legend_h
    fig = _new_figure(max(fig_w, 9.0), total_h)
    top = 1 - title_h / total_h
    bottom = (legend_h + 0.2) / total_h
    grid = fig.add_gridspec(1, 3, width_ratios=widths, left=0.03, right=0.97,
                            top=top, bottom=bottom, wspace=0.12)
    fig.suptitle(title_text, fontsize=10)

    for col, view in enumerate(views):
        ax = fig.add_subplot(grid[0, col])
        ax.set_gid(f"panel:{view.name}")
        h0, h1 = coords[view.horizontal]
        v0, v1 = coords[view.vertical]
        extent = (h0 - half[view.horizontal], h1 + half[view.horizontal],
                  v0 - half[view.vertical], v1 + half[view.vertical])
        ax.imshow(_plane(vol, view, index[view.fixed]), cmap="gray", vmin=low, vmax=high,
                  origin="lower", extent=extent, interpolation="nearest", aspect="equal")
        if lab is not None:
            rgba = lut[_plane(lab, view, index[view.fixed])].copy()
            rgba[..., 3] *= alpha
            ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest", aspect="equal")
        if hil is not None:
            plane = _plane(hil, view, index[view.fixed])
            rgba = np.zeros(plane.shape + (4,), dtype=np.float32)
            rgba[plane] = highlight_rgba
            ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest", aspect="equal")
        if view.flip_horizontal:
            ax.set_xlim(extent[1], extent[0])
        else:
            ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        if crosshair:
            ax.axvline(point_ras[view.horizontal], color="yellow", lw=0.7, alpha=0.8)
            ax.axhline(point_ras[view.vertical], color="yellow", lw=0.7, alpha=0.8)
        axis_name = "xyz"[view.fixed]
        ax.set_title(f"{view.name}  {axis_name} = {point_ras[view.fixed]:.1f} mm "
                     f"(voxel {index[view.fixed]})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for text, (x, y, ha, va) in zip(view.letters, ((0.01, 0.5, "left", "center"),
                                                        (0.99, 0.5, "right", "center"),
                                                        (0.5, 0.01, "center", "bottom"),
                                                        (0.5, 0.99, "center", "top"))):
            ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, color="white",
                    fontsize=11, fontweight="bold", gid=f"letter:{text}",
                    bbox=dict(facecolor="black", alpha=0.5, pad=1.5, lw=0))
        if name_sides and lab is not None and view.name != "sagittal":
            _name_sides(ax, view, _plane(lab, view, index[view.fixed]), extent, table)

    if legend_entries:
        _draw_legend(fig, seen[:legend_entries], len(seen), table, legend_h / total_h)
    return fig


def _name_sides(ax, view: _View, plane: np.ndarray, extent, table: ColorTable) -> None:
    """Write the largest right-side and left-side structure names at their centroids."""
    n_v, n_h = plane.shape
    hs = np.linspace(extent[0], extent[1], n_h + 1)
    vs = np.linspace(extent[2], extent[3], n_v + 1)
    hc, vc = (hs[:-1] + hs[1:]) / 2, (vs[:-1] + vs[1:]) / 2
    values, counts = np.unique(plane, return_counts=True)
    best: dict[str, tuple[int, int]] = {}
    for val, c in zip(values, counts):
        side = table.side(int(val)) if val else ""
        if side and c > best.get(side, (0, 0))[1]:
            best[side] = (int(val), int(c))
    x_left, x_right = ax.get_xlim()
    for side, (val, _) in sorted(best.items()):
        rows, cols = np.nonzero(plane == val)
        x, y = float(hc[cols].mean()), float(vc[rows].mean())
        ax.plot([x], [y], marker="o", ms=3, color="white", gid=f"labelpoint:{val}")
        # the name goes in the bottom corner of the half of the panel where the structure is
        on_left = (x - x_left) / (x_right - x_left) < 0.5
        ax.annotate(table.name(val), (x, y), xytext=(0.02 if on_left else 0.98, 0.07),
                    textcoords="axes fraction", ha="left" if on_left else "right",
                    fontsize=7, color="black", gid=f"label:{val}",
                    bbox=dict(facecolor="white", alpha=0.85, pad=1.0, lw=0),
                    arrowprops=dict(arrowstyle="-", color="white", lw=0.8))


def _draw_legend(fig, seen, total: int, table: ColorTable, height_frac: float) -> None:
    ax = fig.add_axes((0.03, 0.01, 0.94, max(height_frac - 0.02, 0.01)))
    ax.set_axis_off()
    ax.set_xlim(0, 3)
    rows = (len(seen) + 2) // 3
    ax.set_ylim(rows + (1 if total > len(seen) else 0), 0)
    for k, (label, _) in enumerate(seen):
        col, row = k % 3, k // 3
        colour = np.asarray(table.rgba(label), float) / 255.0
        colour[3] = 1.0
        ax.add_patch(_rectangle((col + 0.01, row + 0.15), 0.05, 0.7, colour))
        ax.text(col + 0.08, row + 0.5, f"{label}  {table.name(label)}", va="center", fontsize=7)
    if total > len(seen):
        ax.text(0.01, rows + 0.5, f"... and {total - len(seen)} more labels in these slices",
                va="center", fontsize=7)


def _rectangle(xy, w, h, colour):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, facecolor=colour, edgecolor="black", lw=0.3)


def plot_input_slices(volume: np.ndarray, affine: np.ndarray, *, point_mm=None,
                      convention: str = "radiological"):
    """The input image, contrast-enhanced (grey window = percentiles of non-zero voxels)."""
    low, high = contrast_window(volume)
    return slices_figure(volume, affine, point_mm=point_mm, convention=convention,
                         window=(low, high),
                         title=f"input, grey window {low:.4g}..{high:.4g} "
                               f"({CONTRAST_PERCENTILES[0]}-{CONTRAST_PERCENTILES[1]} percentiles "
                               "of non-zero voxels)")


def plot_parcellation_slices(volume: np.ndarray, labels: np.ndarray, affine: np.ndarray, *,
                             table: ColorTable | None = None, point_mm=None, title: str = "parcellation",
                             convention: str = "radiological"):
    """A label map over the input, coloured by ``table``, with a legend and side names."""
    return slices_figure(volume, affine, labels=labels, table=table, point_mm=point_mm,
                         title=title, convention=convention, legend=True, name_sides=True)


def plot_difference_slices(volume: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray,
                           affine: np.ndarray, *, point_mm=None, names=("a", "b"),
                           convention: str = "radiological"):
    """Voxels whose labels differ between two maps, in red over the input."""
    differ = np.asarray(labels_a) != np.asarray(labels_b)
    n = int(differ.sum())
    if point_mm is None and n:
        point_mm = centre_of_mass_mm(differ, affine)
    return slices_figure(volume, affine, highlight=differ, point_mm=point_mm, convention=convention,
                         title=f"difference map: {n} voxels differ between {names[0]} and {names[1]} (red)")


def plot_mask_slices(volume: np.ndarray, mask: np.ndarray, affine: np.ndarray, *, point_mm=None,
                     convention: str = "radiological"):
    """The foreground mask (translucent cyan) over the image it was computed on."""
    mask = np.asarray(mask, bool)
    return slices_figure(volume, affine, highlight=mask, highlight_rgba=(0.0, 0.9, 1.0, 0.35),
                         point_mm=point_mm, convention=convention,
                         title=f"foreground mask: {int(mask.sum())} of {mask.size} voxels "
                               f"({100.0 * mask.mean():.1f} %)")


def plot_histogram(values: np.ndarray, *, mask: np.ndarray | None = None, title: str,
                   xlabel: str, bins: int = 256, markers: Mapping[str, float] | None = None):
    """Histogram of all voxel values; with ``mask``, foreground and background apart.

    ``values``: any-shape float array; ``mask``: same-shape boolean foreground.
    ``markers``: named values drawn as vertical lines (e.g. a threshold). Counts on a
    log scale so that the background peak does not hide the brain's.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    fig = _new_figure(8.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    data = values[finite]
    if data.size == 0:
        raise ImageError(f"histogram '{title}': no finite values")
    lo, hi = float(data.min()), float(data.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != values.shape:
            raise ImageError(f"histogram '{title}': mask shape {mask.shape} differs from {values.shape}")
        background = values[finite & ~mask]
        foreground = values[finite & mask]
        ax.stairs(np.histogram(background, edges)[0], edges, fill=True, color="0.6",
                  label=f"background ({background.size} voxels)")
        ax.stairs(np.histogram(foreground, edges)[0], edges, fill=True, color="tab:blue", alpha=0.8,
                  label=f"foreground ({foreground.size} voxels)")
    else:
        ax.stairs(np.histogram(data, edges)[0], edges, fill=True, color="tab:blue",
                  label=f"all {data.size} voxels")
    ax.legend(fontsize=8)
    for name, x in (markers or {}).items():
        ax.axvline(x, color="tab:red", lw=1)
        ax.text(x, 0.98, f" {name} = {x:.4g}", color="tab:red", fontsize=8, va="top",
                transform=ax.get_xaxis_transform())
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("voxels (log scale)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def conv_kernels(state_dict: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The convolution kernels of a HighRes3DNet state dict, in network order.

    Keys ending in ``conv.weight``, ``.conv_0.weight`` or ``.conv_1.weight`` with 5-D
    values ``(C_out, C_in, D, H, W)``; returned as float32 numpy arrays.
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("conv.weight", ".conv_0.weight", ".conv_1.weight")):
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            if array.ndim == 5:
                out[key[: -len(".weight")]] = array.astype(np.float32)
    return out


def plot_kernel_distributions(initial: Mapping[str, np.ndarray], pretrained: Mapping[str, np.ndarray],
                              *, columns: int = 7, bins: int = 60):
    """Histograms of every convolution kernel's weights: initial (grey) vs pretrained (blue).

    ``initial``/``pretrained``: layer name -> weight array (any shape), e.g. from
    :func:`conv_kernels`; the layers of ``pretrained`` are drawn in its order and
    must all be in ``initial``.
    """
    missing = [k for k in pretrained if k not in initial]
    if missing:
        raise OptionError(f"kernel plot: layers {missing} are missing from the initial weights")
    names = list(pretrained)
    if not names:
        raise OptionError("kernel plot: no convolution kernels given")
    rows = (len(names) + columns - 1) // columns
    fig = _new_figure(2.3 * columns, 2.0 * rows + 0.8)
    fig.suptitle(f"kernel-weight distributions of all {len(names)} convolution layers: "
                 "randomly initialised (grey) vs pretrained (blue); density, log scale", fontsize=11)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, columns, k + 1)
        a = np.asarray(initial[name], dtype=np.float64).ravel()
        b = np.asarray(pretrained[name], dtype=np.float64).ravel()
        lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        ax.stairs(np.histogram(a, edges, density=True)[0], edges, fill=True, color="0.55", alpha=0.7)
        ax.stairs(np.histogram(b, edges, density=True)[0], edges, fill=True, color="tab:blue", alpha=0.6)
        ax.set_title(f"{name}\nstd {a.std():.3g} -> {b.std():.3g}", fontsize=7)
        ax.set_yscale("log")  # both shapes stay visible when one distribution is far narrower
        ax.tick_params(labelsize=6)
        ax.set_yticks([], minor=True)
        ax.set_yticks([])
    height = 2.0 * rows + 0.8
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.35 / height, top=1 - 0.95 / height,
                        wspace=0.15, hspace=0.55 * rows / (rows + 0.4))
    return fig


def png_bytes(fig) -> bytes:
    """Render ``fig`` to PNG bytes at :data:`DPI`, without time or version metadata."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def save_png(fig, path: str | os.PathLike) -> bytes:
    """Write ``fig`` as PNG to ``path`` atomically; returns the bytes written."""
    data = png_bytes(fig)
    write_bytes_atomic(Path(path), data)
    return data


def plot_label_slice(volume: np.ndarray, labels: np.ndarray, affine: np.ndarray, *,
                     table: ColorTable | None = None, view: str = "axial", title: str = "",
                     convention: str = "radiological", alpha: float = 0.5, width: float = 3.0):
    """One slice of a label map over its scan, through the labels' centre: a cohort's QC thumbnail.

    ``volume``, ``labels``: ``(X, Y, Z)`` on one grid (``labels`` integer), ``affine``
    ``(4, 4)`` voxel -> RAS+ mm; ``view``: ``"sagittal"``, ``"coronal"`` or ``"axial"``;
    ``width``: inches. Orientation letters mark the panel's edges (``convention``
    as in :func:`slices_figure`).
    """
    views = {v.name: v for v in _views(convention)}
    if view not in views:
        raise OptionError(f"view: expected one of {tuple(views)}, got {view!r}")
    if np.shape(labels) != np.shape(volume) or np.ndim(volume) != 3:
        raise ImageError(f"label slice: labels {np.shape(labels)} and volume {np.shape(volume)} must be one 3-D grid")
    v = views[view]
    vol, aff = to_ras(np.asarray(volume), affine)
    lab = to_ras(np.asarray(labels), affine)[0]
    index = world_to_index(centre_of_mass_mm(labels, affine), aff, vol.shape)[v.fixed]
    coords, half = _axis_coords(aff, vol.shape), _spacing(aff) / 2
    extent = (coords[v.horizontal][0] - half[v.horizontal], coords[v.horizontal][1] + half[v.horizontal],
              coords[v.vertical][0] - half[v.vertical], coords[v.vertical][1] + half[v.vertical])
    aspect = (extent[3] - extent[2]) / max(extent[1] - extent[0], 1e-6)
    fig = _new_figure(width, width * aspect + 0.35)
    ax = fig.add_axes((0.0, 0.0, 1.0, width * aspect / (width * aspect + 0.35)))
    low, high = contrast_window(volume)
    ax.imshow(_plane(vol, v, index), cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent,
              interpolation="nearest", aspect="equal")
    lut = (table or fallback_table(np.unique(lab))).lut(int(max(lab.max(), 0)))
    rgba = lut[np.clip(_plane(lab, v, index), 0, None)].copy()
    rgba[..., 3] *= alpha
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest", aspect="equal")
    ax.set_xlim(*((extent[1], extent[0]) if v.flip_horizontal else (extent[0], extent[1])))
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    for text, (x, y, ha) in zip(v.letters[:2], ((0.02, 0.5, "left"), (0.98, 0.5, "right"))):
        ax.text(x, y, text, transform=ax.transAxes, ha=ha, va="center", color="white", fontsize=9,
                fontweight="bold", gid=f"letter:{text}")
    fig.suptitle(title or f"{view} voxel {index}", fontsize=8, y=0.995, va="top")
    return fig
