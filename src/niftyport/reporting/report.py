"""A self-contained HTML report of one parcellation, with its figures as PNG files.

:func:`write_report` takes arrays (:class:`ReportInputs`) and writes into one
folder, always under the same names (:data:`FILES`):

======================== ==========================================================
``index.html``           the page; every image embedded as a base64 ``data:`` URI,
                         no scripts, no external resources
``slices_input.png``     orthogonal slices of the contrast-enhanced input
``slices_parcellation.png`` the parcellation over the input, colour table colours
``slices_reference.png`` the reference parcellation (with ``reference``)
``slices_difference.png`` voxels where the two differ (with ``reference``)
``histogram_input.png``  intensities before preprocessing (with ``preprocessing``)
``histogram_preprocessed.png`` network input after preprocessing (same)
``foreground_mask.png``  the foreground mask over the padded image (same)
``kernels.png``          kernel weights of every convolution, initial vs pretrained
``volumes.csv``          label volumes (see :mod:`niftyport.volumes`)
``compare.json``         the comparison with the reference (with ``reference``)
``labels.ctbl``          the colour table used, as a 3D Slicer file
======================== ==========================================================

Files of an earlier run that this run does not produce (say, ``compare.json``
when no reference is given now) are removed, so the folder always matches its
``index.html``. Only those names are ever touched.
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import __version__
from .colortable import ColorTable, fallback_table, format_ctbl
from ..outputs import write_text_atomic
from .compare import CompareResult, compare_labels
from ..errors import GridError, NiftyportError, OptionError
from .plots import (CONTRAST_PERCENTILES, centre_of_mass_mm, plot_difference_slices, plot_histogram,
                    plot_input_slices, plot_kernel_distributions, plot_mask_slices,
                    plot_parcellation_slices, save_png)
from .volumes import LabelVolume, format_volumes_csv, label_volumes

FILES = (
    "index.html", "slices_input.png", "slices_parcellation.png", "slices_reference.png",
    "slices_difference.png", "histogram_input.png", "histogram_preprocessed.png",
    "foreground_mask.png", "kernels.png", "volumes.csv", "compare.json", "labels.ctbl",
)


@dataclass(frozen=True)
class PreprocessingArrays:
    """Arrays of the preprocessing stage, all on one grid (NiftyNet: padded RAS 1 mm).

    ``raw``: float32 ``(X, Y, Z)`` intensities before normalisation (padded input);
    ``preprocessed``: float32 ``(X, Y, Z)`` network input (standardised + whitened);
    ``mask``: bool ``(X, Y, Z)`` foreground; ``affine``: ``(4, 4)`` voxel -> RAS+ mm
    of that grid; ``markers``: named intensities drawn on the input histogram
    (e.g. the ``mean_plus`` threshold).
    """

    raw: np.ndarray
    preprocessed: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    markers: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows.

    ``image``: float ``(X, Y, Z)`` input; ``labels``: int ``(X, Y, Z)`` parcellation on
    the same grid; ``affine``: ``(4, 4)`` voxel -> RAS+ mm of that grid; ``voxel_mm3``:
    volume of one voxel; ``reference``: optional int ``(X, Y, Z)`` second parcellation
    on the same grid; ``kernels``: optional ``(initial, pretrained)`` dicts of layer
    name -> weight array; ``notes``: lines shown where a section is missing and why.
    """

    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    voxel_mm3: float
    table: ColorTable | None = None
    image_name: str = "input"
    labels_name: str = "parcellation"
    reference: np.ndarray | None = None
    reference_name: str = "reference"
    preprocessing: PreprocessingArrays | None = None
    kernels: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]] | None = None
    notes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    """Paths written (name -> path) and the comparison with the reference, if any."""

    files: Mapping[str, Path]
    compare: CompareResult | None
    volumes: Sequence[LabelVolume]


@dataclass
class _Figure:
    file: str
    title: str
    caption: str
    png: bytes


def write_report(inputs: ReportInputs, out_dir: str | os.PathLike, *,
                 convention: str = "radiological", point_mm: Sequence[float] | None = None) -> ReportResult:
    """Draw every figure, write the PNGs, ``volumes.csv``, ``labels.ctbl`` (and
    ``compare.json``) and ``index.html`` into ``out_dir`` (created if needed).

    ``point_mm``: RAS+ mm point every slice figure passes through (default: the
    centre of the parcellation's labelled voxels).
    """
    image = np.asarray(inputs.image)
    labels = np.asarray(inputs.labels)
    if image.ndim != 3:
        raise GridError(f"report: image {inputs.image_name} must be 3-D, got shape {image.shape}")
    if labels.shape != image.shape:
        raise GridError(f"report: parcellation {inputs.labels_name} shape {labels.shape} differs "
                        f"from image {inputs.image_name} shape {image.shape}")
    if inputs.reference is not None and np.shape(inputs.reference) != image.shape:
        raise GridError(f"report: reference {inputs.reference_name} shape {np.shape(inputs.reference)} "
                        f"differs from image shape {image.shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    present = np.unique(labels)
    if inputs.reference is not None:
        present = np.union1d(present, np.unique(inputs.reference))
    table = inputs.table if inputs.table is not None else fallback_table(present)
    if point_mm is None:
        point_mm = centre_of_mass_mm(labels > 0, inputs.affine)  # the volume's centre if unlabelled

    figures: list[_Figure] = []

    def add(file: str, title: str, caption: str, fig) -> None:
        figures.append(_Figure(file, title, caption, save_png(fig, out / file)))
        fig.clear()

    low_p, high_p = CONTRAST_PERCENTILES
    add("slices_input.png", "Input: orthogonal slices",
        f"{inputs.image_name}, contrast-enhanced (grey window from the {low_p}th to the {high_p}th "
        "percentile of the non-zero voxels). Yellow lines: the crosshair through the point shown "
        "in the three views.",
        plot_input_slices(image, inputs.affine, point_mm=point_mm, convention=convention))
    add("slices_parcellation.png", "Parcellation",
        f"{inputs.labels_name} over the input, coloured with {_table_source(table)}; the legend "
        "lists the labels seen in these slices, largest first; the largest right- and left-side "
        "structure of each coronal and axial slice is named where it lies.",
        plot_parcellation_slices(image, labels, inputs.affine, table=table, point_mm=point_mm,
                                 title=f"parcellation: {inputs.labels_name}", convention=convention))
    result = None
    if inputs.reference is not None:
        reference = np.asarray(inputs.reference)
        add("slices_reference.png", "Reference parcellation",
            f"{inputs.reference_name}, same colours and slices.",
            plot_parcellation_slices(image, reference, inputs.affine, table=table, point_mm=point_mm,
                                     title=f"reference: {inputs.reference_name}", convention=convention))
        add("slices_difference.png", "Difference map",
            "Red: voxels whose label differs between the parcellation and the reference. The "
            "slices pass through the centre of the differing voxels (or the usual point when "
            "there are none).",
            plot_difference_slices(image, labels, reference, inputs.affine, convention=convention,
                                   point_mm=None if np.any(labels != reference) else point_mm,
                                   names=(inputs.labels_name, inputs.reference_name)))
        result = compare_labels(labels, reference, voxel_mm3=inputs.voxel_mm3, table=table,
                                name_a=inputs.labels_name, name_b=inputs.reference_name)
    pre = inputs.preprocessing
    if pre is not None:
        add("histogram_input.png", "Intensity histogram before preprocessing",
            "Intensities of the padded input on the preprocessing grid, foreground (the mask below) "
            "and background apart.",
            plot_histogram(pre.raw, mask=pre.mask, title="input intensities before preprocessing",
                           xlabel="intensity (input units)", markers=pre.markers))
        add("histogram_preprocessed.png", "Intensity histogram after preprocessing",
            "The network input after histogram standardisation and whitening: the foreground "
            "should have mean 0 and standard deviation 1.",
            plot_histogram(pre.preprocessed, mask=pre.mask,
                           title=_whitened_title(pre.preprocessed, pre.mask),
                           xlabel="preprocessed intensity (foreground z-score)"))
        add("foreground_mask.png", "Foreground mask",
            "Cyan: the foreground mask used by histogram standardisation and whitening, over the "
            "padded input on the preprocessing grid.",
            plot_mask_slices(pre.raw, pre.mask, pre.affine, point_mm=point_mm, convention=convention))
    if inputs.kernels is not None:
        initial, pretrained = inputs.kernels
        add("kernels.png", "Kernel-weight distributions",
            f"Weights of each of the {len(pretrained)} convolution layers: a randomly initialised "
            "network (grey, fixed seed) against the pretrained one (blue), as densities on a log scale.",
            plot_kernel_distributions(initial, pretrained))

    volumes = label_volumes(labels, inputs.voxel_mm3, table)
    texts = {"volumes.csv": format_volumes_csv(volumes), "labels.ctbl": format_ctbl(table)}
    if result is not None:
        texts["compare.json"] = result.to_json()
    for name, text in texts.items():
        write_text_atomic(out / name, text)
    page = render_html(inputs, figures, volumes, table, result, convention=convention)
    write_text_atomic(out / "index.html", page)
    written = {f.file: out / f.file for f in figures}
    written.update({name: out / name for name in texts})
    written["index.html"] = out / "index.html"
    for name in FILES:  # remove what an earlier run left and this one did not write
        if name not in written and (out / name).is_file():
            (out / name).unlink()
    return ReportResult(written, result, volumes)


def _table_source(table: ColorTable) -> str:
    if table.source == "built-in palette":
        return "the built-in palette (no colour table given)"
    return f"the colour table {Path(table.source).name}"


def _whitened_title(values: np.ndarray, mask: np.ndarray) -> str:
    fg = np.asarray(values, dtype=np.float64)[np.asarray(mask, bool)]
    if fg.size == 0:
        return "network input after preprocessing"
    return (f"network input after preprocessing: foreground mean {fg.mean():.3g}, "
            f"std {fg.std():.4g}")


# --- HTML -----------------------------------------------------------------------------

_CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td.name, th.name { text-align: left; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #555; vertical-align: middle; }
.ok { color: #060; font-weight: bold; } .bad { color: #a00; font-weight: bold; }
.note { color: #555; font-style: italic; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
dt { font-weight: bold; } dd { margin: 0; }
"""


def render_html(inputs: ReportInputs, figures: Sequence[_Figure], volumes: Sequence[LabelVolume],
                table: ColorTable, result: CompareResult | None, *, convention: str) -> str:
    """The report page as one HTML string; images are ``data:image/png;base64`` URIs."""
    e = html.escape
    by_file = {f.file: f for f in figures}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>niftyport report: {e(inputs.labels_name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>niftyport report: {e(inputs.labels_name)}</h1>",
        "<dl>",
        f"<dt>input</dt><dd>{e(inputs.image_name)}</dd>",
        f"<dt>parcellation</dt><dd>{e(inputs.labels_name)}</dd>",
    ]
    if inputs.reference is not None:
        parts.append(f"<dt>reference</dt><dd>{e(inputs.reference_name)}</dd>")
    shape = "&times;".join(str(s) for s in np.shape(inputs.image))
    parts += [
        f"<dt>grid</dt><dd>{shape} voxels of {inputs.voxel_mm3:g} mm<sup>3</sup></dd>",
        f"<dt>colour table</dt><dd>{e(_table_source(table))}</dd>",
        f"<dt>display</dt><dd>{e(convention)} convention: "
        + ("the patient's right is on the image's left in coronal and axial views, the face "
           "points left in sagittal views" if convention == "radiological" else
           "the patient's right is on the image's right in coronal and axial views, the face "
           "points right in sagittal views")
        + "; every panel is marked with R/L, A/P, S/I.</dd>",
        f"<dt>niftyport</dt><dd>{e(__version__)}</dd>",
        "</dl>",
    ]
    if result is not None:
        parts += _compare_html(result)
    sections = [
        ("Slices", ["slices_input.png", "slices_parcellation.png", "slices_reference.png",
                    "slices_difference.png"], None),
        ("Preprocessing", ["histogram_input.png", "histogram_preprocessed.png", "foreground_mask.png"],
         "preprocessing"),
        ("Network weights", ["kernels.png"], "kernels"),
    ]
    for heading, files, note_key in sections:
        parts.append(f"<h2>{e(heading)}</h2>")
        shown = [by_file[f] for f in files if f in by_file]
        for fig in shown:
            data = base64.b64encode(fig.png).decode("ascii")
            parts.append(
                f'<figure id="{e(fig.file)}"><figcaption><b>{e(fig.title)}</b> '
                f"({e(fig.file)})</figcaption>"
                f'<img src="data:image/png;base64,{data}" alt="{e(fig.title)}">'
                f"<figcaption>{e(fig.caption)}</figcaption></figure>")
        if not shown:
            reason = inputs.notes.get(note_key or "", "not available")
            parts.append(f'<p class="note">Not shown: {e(reason)}</p>')
    parts += _volumes_html(volumes, table)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _compare_html(result: CompareResult, top: int = 25) -> list[str]:
    e = html.escape
    status = ('<span class="ok">identical</span>' if result.identical
              else '<span class="bad">different</span>')
    rows = [c for c in result.labels if c.differing][:top]
    out = [
        "<h2>Comparison with the reference</h2>",
        f"<p>{status}: number of different voxels: <b>{result.n_different}</b> of {result.n_voxels} "
        f"({result.percent_different:.4f} %); mean Dice over labels &gt; 0: "
        f"{result.mean_dice:.6f}. Details: compare.json.</p>",
    ]
    if rows:
        out.append(f"<p>Labels that differ, worst first ({len(rows)} of "
                   f"{sum(1 for c in result.labels if c.differing)}):</p>")
        out.append('<table><tr><th>id</th><th class="name">name</th><th>Dice</th>'
                   "<th>voxels (parcellation)</th><th>voxels (reference)</th>"
                   "<th>mm<sup>3</sup> (parcellation)</th><th>mm<sup>3</sup> (reference)</th></tr>")
        for c in rows:
            out.append(f'<tr><td>{c.label}</td><td class="name">{e(c.name)}</td><td>{c.dice:.5f}</td>'
                       f"<td>{c.voxels_a}</td><td>{c.voxels_b}</td><td>{c.mm3_a:.1f}</td>"
                       f"<td>{c.mm3_b:.1f}</td></tr>")
        out.append("</table>")
    return out


def _volumes_html(volumes: Sequence[LabelVolume], table: ColorTable) -> list[str]:
    e = html.escape
    total_vox = sum(v.voxels for v in volumes)
    total_mm3 = sum(v.mm3 for v in volumes)
    out = [
        "<h2>Label volumes</h2>",
        f"<p>{len(volumes)} labels other than background; {total_vox} voxels, "
        f"{total_mm3:.1f} mm<sup>3</sup> in all (volumes.csv). Asymmetry = (right &minus; left) / "
        "mean(right, left), for structures named with Right-/Left-.</p>",
        '<table><tr><th>id</th><th></th><th class="name">name</th><th>side</th><th>voxels</th>'
        "<th>mm<sup>3</sup></th><th>other side</th><th>asymmetry</th></tr>",
    ]
    for v in volumes:
        r, g, b, _ = table.rgba(v.id)
        other = "" if v.contralateral is None else str(v.contralateral)
        asym = "" if v.asymmetry is None else f"{v.asymmetry:+.3f}"
        out.append(f'<tr><td>{v.id}</td><td><span class="swatch" style="background: rgb({r},{g},{b})">'
                   f'</span></td><td class="name">{e(v.name)}</td><td>{e(v.side)}</td>'
                   f"<td>{v.voxels}</td><td>{v.mm3:.1f}</td><td>{other}</td><td>{asym}</td></tr>")
    out.append("</table>")
    return out


# --- gathering the optional arrays ------------------------------------------------------

def initial_and_pretrained_kernels(pretrained_state: Mapping[str, object], *, seed: int = 0,
                                   num_classes: int | None = None):
    """Conv kernels of a freshly initialised HighRes3DNet (``torch.manual_seed(seed)``)
    and of ``pretrained_state`` (a state dict), as two ordered dicts name -> array.
    """
    import torch

    from ..network import HighRes3DNet
    from .plots import conv_kernels

    pretrained = conv_kernels(pretrained_state)
    if not pretrained:
        raise OptionError("weights: no convolution kernels found in the state dict")
    if num_classes is None:
        last = pretrained.get("conv_2.conv")
        num_classes = int(last.shape[0]) if last is not None else 160
    torch.manual_seed(seed)
    initial = conv_kernels(HighRes3DNet(num_classes=num_classes).state_dict())
    return initial, pretrained


def kernels_from_weights(source: str | os.PathLike | None) -> tuple[tuple | None, str]:
    """``(initial, pretrained)`` kernels for the report, or None and the reason why not.

    ``source``: anything :func:`niftyport.weights.load_state_dict` reads; when None,
    only weights already on this machine are used (``$NIFTYPORT_WEIGHTS``, the file
    shipped in the package, or the cache): the report never downloads.
    """
    from .. import weights

    if source is None:
        try:
            source = weights.resolve_weights(None, download=False)
        except NiftyportError as exc:
            return None, f"no pretrained weights on this machine ({exc}); pass --weights"
    return initial_and_pretrained_kernels(weights.load_state_dict(source)), ""


def network_space_affine(loaded, config) -> np.ndarray:
    """Voxel -> RAS+ mm affine of the padded arrays of :func:`niftyport.preprocessing.preprocess`.

    ``loaded``: a :class:`niftyport.preprocessing.Loaded`; ``config``: its
    :class:`niftyport.config.Config`. Composes the reorientation (exact), the
    resampling (``scipy.ndimage.zoom`` maps output index ``j`` to input index
    ``j * (n_in - 1) / (n_out - 1)``: first and last voxel centres stay put) and
    the volume padding (``before`` voxels added at the start of each axis).
    """
    from ..preprocessing.orientation import permute_like, reoriented_affine
    from ..preprocessing.padding import pad_widths

    affine = np.asarray(loaded.affine, dtype=np.float64)
    shape = tuple(loaded.original_shape)
    if loaded.output_axcodes:
        affine = reoriented_affine(affine, shape, loaded.axcodes, loaded.output_axcodes)
        shape = permute_like(shape, loaded.axcodes, loaded.output_axcodes)
    in_shape = np.asarray(shape, dtype=np.float64)
    out_shape = np.asarray(loaded.data.shape[:3])
    scale = np.where(out_shape > 1, (in_shape - 1) / np.maximum(out_shape - 1, 1), 1.0)
    net = config.network
    widths = pad_widths(loaded.data.shape, net.volume_padding_size, net.volume_padding_to_size)
    steps = np.eye(4)
    steps[:3, :3] = np.diag(scale)
    steps[:3, 3] = -np.asarray([w[0] for w in widths]) * scale
    return affine @ steps


def preprocessing_from_image(image: str | os.PathLike, config_path: str | os.PathLike | None = None
                             ) -> tuple[PreprocessingArrays | None, str]:
    """Run niftyport's preprocessing on ``image`` for the histogram and mask figures.

    Returns the arrays on the padded grid the network sees (NiftyNet's model zoo:
    RAS, 1 mm, 10 voxels of padding), or None and the reason why not.
    ``config_path``: a NiftyNet ``.ini`` (default: the built-in model-zoo settings).
    """
    from .. import config as config_module
    from .. import preprocessing

    config = (config_module.load_config(config_path) if config_path is not None
              else config_module.default_config())
    try:
        loaded = preprocessing.load_and_resample(image, config)
        pre = preprocessing.preprocess(loaded.data, config)
    except NiftyportError as exc:  # e.g. no foreground: the rest of the report still helps
        return None, f"preprocessing failed: {exc}"
    padded = np.asarray(pre.padded, dtype=np.float32)
    markers = {}
    if config.network.foreground_type == "mean_plus":
        markers["mean_plus threshold"] = float(np.mean(padded, dtype=np.float32))
    return PreprocessingArrays(padded, np.asarray(pre.whitened, dtype=np.float32), np.asarray(pre.mask, bool),
                               network_space_affine(loaded, config), markers), ""


def _load_scan(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(data float32 (X, Y, Z), affine (4, 4) float64)`` of the input scan, as niftyport reads it."""
    from ..image_io import load_image

    img = load_image(path)
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)


def report_files(image: str | os.PathLike, parcellation: str | os.PathLike, output: str | os.PathLike, *,
                 reference: str | os.PathLike | None = None, table: ColorTable | None = None,
                 weights: str | os.PathLike | None = None, config_path: str | os.PathLike | None = None,
                 convention: str = "radiological", force: bool = False,
                 other_inputs: Sequence[str | os.PathLike | None] = ()) -> tuple[ReportResult, dict[str, str]]:
    """The report of a scan and its label map (files in, folder out): ``(result, notes)``.

    Checks that the maps share the scan's grid and that no output would
    replace an input (or an existing file, unless ``force``) before anything
    is computed; ``notes`` says why a section was left out.
    """
    from ..outputs import check_outputs
    from .compare import check_same_grid
    from .volumes import load_label_image

    scan, affine = _load_scan(image)
    labels = load_label_image(parcellation)
    check_same_grid(scan.shape, affine, labels.data.shape, labels.affine, name_a=image, name_b=parcellation)
    ref = None
    if reference:
        ref = load_label_image(reference)
        check_same_grid(labels.data.shape, labels.affine, ref.data.shape, ref.affine,
                        name_a=parcellation, name_b=reference)
    check_outputs([Path(output) / name for name in FILES],
                  [image, parcellation, reference, config_path, *other_inputs], force=force)
    notes = {}
    pre, notes["preprocessing"] = preprocessing_from_image(image, config_path)
    kernels, notes["kernels"] = kernels_from_weights(weights)
    inputs = ReportInputs(scan, labels.data, labels.affine, labels.voxel_mm3, table,
                          image_name=Path(image).name, labels_name=Path(parcellation).name,
                          reference=None if ref is None else ref.data,
                          reference_name=Path(reference).name if reference else "reference",
                          preprocessing=pre, kernels=kernels, notes=notes)
    return write_report(inputs, output, convention=convention), notes
