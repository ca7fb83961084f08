import struct
import zlib

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import CTBL, DATA, REFERENCE, need

from niftyport.reporting import plots
from niftyport.reporting.colortable import ColorTable, Label, palette_rgba, read_ctbl
from niftyport.errors import ImageError, OptionError
from niftyport.network import HighRes3DNet

NIFTYNET_OUT = "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"
ORIENTATIONS = ["RAS", "LPS", "PIR", "ASL", "LIA"]


def _stored_as(data: np.ndarray, affine: np.ndarray, axcodes: str):
    """The same RAS volume stored with other axis codes (same world positions)."""
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))
    data_t = nib.orientations.apply_orientation(data, ornt)
    return data_t, affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)


def _half_volume(axis: int, positive: bool):
    """A RAS volume (anisotropic voxels) bright on one side of the world origin along ``axis``."""
    shape = (20, 24, 16)
    zooms = np.array([1.0, 1.5, 2.0])
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * zooms
    ijk = np.indices(shape).reshape(3, -1).T
    world = nib.affines.apply_affine(affine, ijk)[:, axis].reshape(shape)
    return ((world > 0) if positive else (world < 0)).astype(np.float32) * 100 + 1, affine


def _rgba(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)


def _panel_halves(fig, view: str):
    """Mean brightness of the (left, right) and (bottom, top) halves of one panel's image."""
    pixels = _rgba(fig)
    ax = next(a for a in fig.axes if a.get_gid() == f"panel:{view}")
    box = ax.images[0].get_window_extent()  # display pixels, origin bottom left; x0 > x1 when flipped
    height = pixels.shape[0]
    x0, x1 = int(np.ceil(min(box.x0, box.x1))) + 2, int(np.floor(max(box.x0, box.x1))) - 2
    y0 = height - int(np.floor(max(box.y0, box.y1))) + 2  # rows counted from the top
    y1 = height - int(np.ceil(min(box.y0, box.y1))) - 2
    panel = pixels[y0:y1, x0:x1].mean(axis=2)
    w, h = panel.shape[1], panel.shape[0]
    return (panel[:, : w // 2 - 2].mean(), panel[:, w // 2 + 2:].mean(),
            panel[h // 2 + 2:].mean(), panel[: h // 2 - 2].mean())


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_to_ras_keeps_world_positions(axcodes):
    rng = np.random.default_rng(0)
    data, affine = rng.random((5, 6, 7)), np.diag([1.0, 2.0, 3.0, 1.0])
    stored, stored_affine = _stored_as(data, affine, axcodes)
    assert nib.aff2axcodes(stored_affine) == tuple(axcodes)
    ras, ras_affine = plots.to_ras(stored, stored_affine)
    np.testing.assert_array_equal(ras, data)
    np.testing.assert_allclose(ras_affine, affine)


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_radiological_patient_left_is_on_the_image_right(axcodes):
    data, affine = _half_volume(axis=0, positive=False)  # bright: patient's left (x < 0)
    fig = plots.slices_figure(*_stored_as(data, affine, axcodes), point_mm=(0.0, 0.0, 0.0), crosshair=False)
    for view in ("coronal", "axial"):
        left, right, _, _ = _panel_halves(fig, view)
        assert right > 150 > 30 > left, (view, left, right)
    assert "radiological convention" in fig._suptitle.get_text()
    letters = {t.get_gid() for ax in fig.axes for t in ax.texts}
    assert {"letter:R", "letter:L", "letter:A", "letter:P", "letter:S", "letter:I"} <= letters


@pytest.mark.parametrize("axcodes", ["RAS", "PIR"])
def test_neurological_mirrors_left_and_right(axcodes):
    data, affine = _half_volume(axis=0, positive=False)
    fig = plots.slices_figure(*_stored_as(data, affine, axcodes), point_mm=(0.0, 0.0, 0.0),
                              convention="neurological", crosshair=False)
    left, right, _, _ = _panel_halves(fig, "coronal")
    assert left > 150 > 30 > right


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "ASL"])
def test_anterior_is_left_in_sagittal_and_up_in_axial(axcodes):
    data, affine = _half_volume(axis=1, positive=True)  # bright: anterior (y > 0)
    fig = plots.slices_figure(*_stored_as(data, affine, axcodes), point_mm=(0.0, 0.0, 0.0), crosshair=False)
    left, right, _, _ = _panel_halves(fig, "sagittal")
    assert left > 150 > 30 > right
    _, _, bottom, top = _panel_halves(fig, "axial")
    assert top > 150 > 30 > bottom


def test_superior_is_up():
    data, affine = _half_volume(axis=2, positive=True)
    fig = plots.slices_figure(*_stored_as(data, affine, "LPS"), point_mm=(0.0, 0.0, 0.0), crosshair=False)
    for view in ("sagittal", "coronal"):
        _, _, bottom, top = _panel_halves(fig, view)
        assert top > 150 > 30 > bottom


def test_anisotropic_voxels_keep_their_shape_in_mm():
    data, affine = _half_volume(axis=0, positive=False)   # 20 x 24 x 16 voxels of 1 x 1.5 x 2 mm
    fig = plots.slices_figure(data, affine, point_mm=(0.0, 0.0, 0.0))
    fig.canvas.draw()
    ax = next(a for a in fig.axes if a.get_gid() == "panel:coronal")
    box = ax.images[0].get_window_extent()
    assert abs(box.width / box.height) == pytest.approx(20 * 1.0 / (16 * 2.0), rel=0.02)


def _side_points(fig):
    """(label id, panel, on the image's right half?) of every structure named in the figure."""
    fig.canvas.draw()
    found = []
    for ax in fig.axes:
        for line in ax.lines:
            gid = line.get_gid() or ""
            if gid.startswith("labelpoint:"):
                x, y = ax.transData.transform((line.get_xdata()[0], line.get_ydata()[0]))
                box = ax.get_window_extent()
                found.append((int(gid.split(":")[1]), ax.get_gid(), x > (box.x0 + box.x1) / 2))
                text = next(t for t in ax.texts if t.get_gid() == f"label:{gid.split(':')[1]}")
                tx = ax.transAxes.transform(text.get_position())[0]
                assert (tx > (box.x0 + box.x1) / 2) == found[-1][2]  # the name is on the same side
    return found


@pytest.mark.parametrize("convention", ["radiological", "neurological"])
def test_real_scan_left_structures_named_on_the_stated_side(convention):
    """Colin27 with its AAL atlas (odd labels = left hemisphere)."""
    t1 = nib.load(need(DATA / "colin27_ch2_1mm_skull.nii.gz"))
    aal = nib.load(need(DATA / "colin27_aal.nii.gz"))
    table = ColorTable({k: Label(k, f"Region{(k + 1) // 2}_{'L' if k % 2 else 'R'}", palette_rgba(k))
                        for k in range(1, 117)})
    fig = plots.plot_parcellation_slices(np.asanyarray(t1.dataobj).astype(np.float32),
                                         np.asanyarray(aal.dataobj), t1.affine, table=table,
                                         convention=convention)
    found = _side_points(fig)
    assert {(panel, label % 2) for label, panel, _ in found} == {
        ("panel:coronal", 0), ("panel:coronal", 1), ("panel:axial", 0), ("panel:axial", 1)}
    for label, panel, on_image_right in found:
        patient_left = label % 2 == 1
        assert on_image_right == (patient_left if convention == "radiological" else not patient_left), (label, panel)


def test_real_niftynet_output_left_structures_on_the_image_right():
    """NiftyNet's parcellation of MNI152 (stored LPS) with the GIF colour table."""
    image = nib.load(need(REFERENCE / "input.nii.gz"))
    labels = nib.load(need(REFERENCE / NIFTYNET_OUT))
    table = read_ctbl(need(CTBL))
    fig = plots.plot_parcellation_slices(np.asanyarray(image.dataobj), np.asanyarray(labels.dataobj),
                                         image.affine, table=table)
    found = _side_points(fig)
    assert len(found) == 4
    for label, panel, on_image_right in found:
        assert on_image_right == table.name(label).startswith("Left-"), (table.name(label), panel)


def test_real_gif_parcellation_pir_file_overlay():
    """The real GIF parcellation is stored PIR; drawn without a T1, over its own label map."""
    img = nib.load(need(DATA / "real_gif_parcellation_fpg_noT1.nii.gz"))
    labels = np.asanyarray(img.dataobj)
    fig = plots.plot_parcellation_slices(labels.astype(np.float32), labels, img.affine)
    legend = [t.get_text() for ax in fig.axes for t in ax.texts if "label " in t.get_text()]
    assert len(legend) >= 10
    data = plots.png_bytes(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_histogram_counts_match_numpy():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(10, 10, 10))
    mask = values > 0.5
    fig = plots.plot_histogram(values, mask=mask, title="t", xlabel="x", bins=16, markers={"thr": 0.5})
    ax = fig.axes[0]
    steps = [p for p in ax.patches if type(p).__name__ == "StepPatch"]
    assert len(steps) == 2
    background, foreground = (s.get_data().values for s in steps)
    edges = np.linspace(values.min(), values.max(), 17)
    np.testing.assert_array_equal(foreground, np.histogram(values[mask], edges)[0])
    np.testing.assert_array_equal(background, np.histogram(values[~mask], edges)[0])
    assert foreground.sum() + background.sum() == 1000
    assert ax.get_yscale() == "log"
    with pytest.raises(ImageError, match="mask shape"):
        plots.plot_histogram(values, mask=mask[:5], title="t", xlabel="x")


def test_conv_kernels_of_highres3dnet_are_the_21_convolutions():
    kernels = plots.conv_kernels(HighRes3DNet().state_dict())
    expected = ["conv_0.conv"] + [f"res_{s}_{b}.conv_{c}" for s in (1, 2, 3) for b in range(3) for c in (0, 1)]
    assert list(kernels) == expected + ["conv_1.conv", "conv_2.conv"]
    assert kernels["res_2_0.conv_0"].shape == (32, 16, 3, 3, 3)


def test_kernel_figure_has_one_panel_per_layer():
    torch.manual_seed(0)
    initial = plots.conv_kernels(HighRes3DNet().state_dict())
    pretrained = {k: v * 0.25 for k, v in initial.items()}
    fig = plots.plot_kernel_distributions(initial, pretrained)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 21
    assert panels[0].get_title().startswith("conv_0.conv\nstd ")
    initial_hist, pretrained_hist = (p.get_data() for p in panels[0].patches)
    a, b = initial["conv_0.conv"], pretrained["conv_0.conv"]
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 61)
    np.testing.assert_allclose(initial_hist.values, np.histogram(a, edges, density=True)[0], rtol=1e-5)
    np.testing.assert_allclose(pretrained_hist.values, np.histogram(b, edges, density=True)[0], rtol=1e-5)
    with pytest.raises(OptionError, match="missing from the initial"):
        plots.plot_kernel_distributions({}, pretrained)


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append(kind)
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(data[pos + 4:pos + 8 + length]) == crc
        pos += 12 + length
    return chunks


def test_png_output_is_deterministic_without_metadata(tmp_path):
    data, affine = _half_volume(axis=0, positive=False)
    first = plots.save_png(plots.plot_input_slices(data, affine), tmp_path / "a.png")
    second = plots.save_png(plots.plot_input_slices(data, affine), tmp_path / "b.png")
    assert first == second == (tmp_path / "a.png").read_bytes()
    chunks = _png_chunks(first)
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert b"tEXt" not in chunks and b"iTXt" not in chunks and b"tIME" not in chunks
    width, height = struct.unpack(">II", first[16:24])
    assert width >= 900 and height >= 400


def test_input_checks():
    with pytest.raises(ImageError, match="expected a 3-D volume"):
        plots.slices_figure(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(ImageError, match="labels shape"):
        plots.slices_figure(np.zeros((4, 4, 4)), np.eye(4), labels=np.zeros((4, 4, 5), int))
    with pytest.raises(OptionError, match="convention"):
        plots.slices_figure(np.zeros((4, 4, 4)), np.eye(4), convention="left")


def test_point_outside_the_volume_falls_back_to_its_centre():
    data, affine = _half_volume(axis=0, positive=False)
    fig = plots.slices_figure(data, affine, point_mm=(500.0, 0.0, 0.0))
    titles = [ax.get_title() for ax in fig.axes if ax.get_gid() == "panel:sagittal"]
    # centre of a 20-voxel axis: index 9.5, rounded to 10, at x = -9.5 + 10 = 0.5 mm
    assert titles == ["sagittal  x = 0.5 mm (voxel 10)"]
