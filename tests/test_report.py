import base64
import csv
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import CTBL, REFERENCE, THIRD_PARTY_PTH, need

from niftyport.cli import main
from niftyport.reporting.colortable import format_ctbl, read_ctbl
from niftyport.network import HighRes3DNet
from niftyport.reporting.plots import conv_kernels
from niftyport.reporting.report import FILES, PreprocessingArrays, ReportInputs, initial_and_pretrained_kernels, write_report

NIFTYNET_OUT = "window_seg_mni152_t1_2mm_LPS_bbox__niftynet_out.nii.gz"
PNGS = ("slices_input.png", "slices_parcellation.png", "slices_reference.png", "slices_difference.png",
        "histogram_input.png", "histogram_preprocessed.png", "foreground_mask.png", "kernels.png")


def _padded_ras_affine(affine: np.ndarray, shape, pad: int = 10) -> np.ndarray:
    """Affine of NiftyNet's padded RAS 1 mm grid for the reference input (approximate: enough
    to place the mask figure)."""
    ornt = nib.orientations.io_orientation(affine)
    ras = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
    one_mm = ras @ np.diag([0.5, 0.5, 0.5, 1.0])
    shift = np.eye(4)
    shift[:3, 3] = -pad
    return one_mm @ shift


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory):
    """A full report of NiftyNet's MNI152 parcellation against a copy with a 10x10x10 block
    of labels shifted by one, with NiftyNet's own preprocessing arrays."""
    out = tmp_path_factory.mktemp("report")
    image = nib.load(need(REFERENCE / "input.nii.gz"))
    labels = np.asanyarray(nib.load(need(REFERENCE / NIFTYNET_OUT)).dataobj).astype(np.int64)
    reference = labels.copy()
    reference[30:40, 40:50, 30:40] += 1
    changed = int((reference != labels).sum())
    stages = np.load(need(REFERENCE / "stages.npz"))
    padded = stages["stage1_padded"][..., 0, 0]
    pre = PreprocessingArrays(padded, stages["stage3_whitened"][..., 0, 0], stages["foreground_mask"][..., 0, 0],
                              _padded_ras_affine(image.affine, image.shape),
                              {"mean_plus threshold": float(np.mean(padded))})
    torch.manual_seed(1)
    table = read_ctbl(need(CTBL))
    inputs = ReportInputs(np.asanyarray(image.dataobj), labels, image.affine, 8.0, table,
                          image_name="input.nii.gz", labels_name="niftynet_out.nii.gz", reference=reference,
                          reference_name="shifted.nii.gz", preprocessing=pre,
                          kernels=initial_and_pretrained_kernels(HighRes3DNet().state_dict()))
    result = write_report(inputs, out)
    return out, result, labels, changed, table


def test_report_writes_every_file_under_fixed_names(reference_report):
    out, result, labels, changed, table = reference_report
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert set(result.files) == set(FILES)
    assert result.compare.n_different == changed == 1000
    data = json.loads((out / "compare.json").read_text())
    assert data["n_different"] == 1000 and data["identical"] is False
    rows = list(csv.DictReader((out / "volumes.csv").open()))
    assert sum(int(r["voxels"]) for r in rows) == np.count_nonzero(labels)
    assert sum(float(r["mm3"]) for r in rows) == 8.0 * np.count_nonzero(labels)
    assert (out / "labels.ctbl").read_text() == format_ctbl(table)
    for name in PNGS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_with_every_png_embedded(reference_report):
    out, *_ = reference_report
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(PNGS)
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in sources]
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert embedded == [(out / name).read_bytes() for name in PNGS]  # page order = figure order
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert "number of different voxels: <b>1000</b> of 585200" in page
    assert "radiological convention" in page
    assert "Left-Hippocampus" in page  # volume table names


def test_rerun_removes_files_of_the_earlier_run(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((12, 14, 10)).astype(np.float32)
    labels = rng.integers(0, 4, size=image.shape)
    affine = np.diag([2.0, 1.0, 1.5, 1.0])
    write_report(ReportInputs(image, labels, affine, 3.0, reference=labels.copy()), tmp_path)
    assert (tmp_path / "compare.json").exists() and (tmp_path / "slices_difference.png").exists()
    (tmp_path / "mine.txt").write_text("not ours")
    result = write_report(ReportInputs(image, labels, affine, 3.0,
                                       notes={"preprocessing": "no preprocessing here"}), tmp_path)
    assert result.compare is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["index.html", "slices_input.png", "slices_parcellation.png", "volumes.csv", "labels.ctbl", "mine.txt"])
    page = (tmp_path / "index.html").read_text()
    assert "Not shown: no preprocessing here" in page and "Not shown: not available" in page
    assert "the built-in palette" in page
    volumes = list(csv.DictReader((tmp_path / "volumes.csv").open()))
    assert sum(float(v["mm3"]) for v in volumes) == 3.0 * np.count_nonzero(labels)


def test_identical_reference_reports_zero_different_voxels(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((8, 9, 10)).astype(np.float32)
    labels = rng.integers(0, 3, size=image.shape)
    result = write_report(ReportInputs(image, labels, np.eye(4), 1.0, reference=labels.copy()), tmp_path)
    assert result.compare.n_different == 0 and all(c.dice == 1.0 for c in result.compare.labels)
    assert "number of different voxels: <b>0</b>" in (tmp_path / "index.html").read_text()


def test_kernels_of_initial_and_pretrained_weights():
    torch.manual_seed(5)
    pretrained = HighRes3DNet(num_classes=7).state_dict()
    initial, kernels = initial_and_pretrained_kernels(pretrained, seed=0)
    assert len(initial) == len(kernels) == 21
    assert initial["conv_2.conv"].shape == (7, 80, 1, 1, 1)
    torch.manual_seed(0)
    np.testing.assert_array_equal(initial["res_3_2.conv_1"],
                                  conv_kernels(HighRes3DNet(num_classes=7).state_dict())["res_3_2.conv_1"])


# --- command line --------------------------------------------------------------------------------

def test_cli_report_on_the_reference_scan(tmp_path, capsys):
    image, labels = need(REFERENCE / "input.nii.gz"), need(REFERENCE / NIFTYNET_OUT)
    out = tmp_path / "report"
    args = ["report", str(image), str(labels), "--reference", str(labels), "--labels", str(need(CTBL)),
            "--weights", str(need(THIRD_PARTY_PTH)), "-o", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "number of different voxels: 0 (0.0000 %)" in captured.out
    assert (out / "kernels.png").exists() and (out / "slices_difference.png").exists()
    assert json.loads((out / "compare.json").read_text())["n_different"] == 0
    page = (out / "index.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == len([p for p in out.iterdir() if p.suffix == ".png"])


def test_cli_report_refuses_other_grids(tmp_path, capsys):
    image = need(REFERENCE / "input.nii.gz")
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.int16), np.eye(4)), other)
    assert main(["report", str(image), str(other), "-o", str(tmp_path / "r")]) == 2
    assert "are on different grids" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --- headless Chromium: does the page show every image? ------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@pytest.fixture(scope="module")  # module scope: set up before the module-scoped report
def chromium() -> str:
    """Path of a Chromium binary; skips the test (before other fixtures run) when there is none."""
    return _chromium()


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no Chromium binary found on PATH (looked for {', '.join(CHROMIUM_NAMES)}); "
                "install one (Debian: apt-get install chromium) to check that the report renders")


class DevTools:
    """The Chrome DevTools Protocol over ``--remote-debugging-pipe``: JSON messages ending in NUL,
    commands written to the browser's fd 3, answers and events read from its fd 4."""

    def __init__(self, binary: str, profile: Path, timeout: float = 90.0):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def as_fds_3_and_4():  # in the child, before exec; dup2 to another fd clears close-on-exec
            import fcntl
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=as_fds_3_and_4)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self._events: list[dict] = []
        self._deadline = time.monotonic() + timeout

    def _message(self) -> dict:
        while b"\0" not in self._buffer:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            if select.select([self._from_browser], [], [], left)[0]:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit status {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str, session: str) -> dict:
        while True:
            for k, message in enumerate(self._events):
                if message.get("method") == event and message.get("sessionId") == session:
                    return self._events.pop(k)
            self._events.append(self._message())

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def render_images(binary: str, page: Path, profile: Path) -> tuple[list[dict], bytes]:
    """Open ``page`` in headless Chromium; after its load event, every <img>'s state and a
    full-page screenshot (PNG bytes)."""
    browser = DevTools(binary, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride",
                     {"width": 1300, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", session)
        expression = ("Array.from(document.images, i => ({src: i.src.slice(0, 21), complete: i.complete, "
                      "width: i.naturalWidth, height: i.naturalHeight, shown: i.getBoundingClientRect().width}))")
        images = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                              session=session)["result"]["value"]
        shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                            session=session)["data"]
        return images, base64.b64decode(shot)
    finally:
        browser.close()


def test_report_renders_in_headless_chromium(chromium, reference_report, tmp_path):
    out, *_ = reference_report
    images, screenshot = render_images(chromium, out / "index.html", tmp_path / "profile")
    assert len(images) == len(PNGS)
    for image, name in zip(images, PNGS):
        width, height = struct_size((out / name).read_bytes())
        assert image["src"] == "data:image/png;base64"
        assert image["complete"] and (image["width"], image["height"]) == (width, height), (name, image)
        assert image["shown"] > 100, (name, image)
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    page_height = struct_size(screenshot)[1]
    assert page_height > sum(struct_size((out / n).read_bytes())[1] for n in PNGS[:4])


def test_chromium_check_detects_a_broken_image(chromium, tmp_path):
    """The check above can fail: an undecodable image loads 'complete' with naturalWidth 0."""
    good = base64.b64encode(_one_pixel_png()).decode()
    page = tmp_path / "page.html"
    page.write_text(f'<!DOCTYPE html><html><body><img src="data:image/png;base64,{good}">'
                    '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"></body></html>')
    images, _ = render_images(chromium, page, tmp_path / "profile")
    assert [(i["complete"], i["width"]) for i in images] == [(True, 1), (True, 0)]


def _one_pixel_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


def struct_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
