"""Bad input to ``compare``, ``volumes``, ``report``, ``parcellate`` and ``demo``: exit 2, one line naming
the file, nothing written, inputs untouched (see bad_input.py). No network runs: every input here is
refused before one would."""
import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from bad_input import assert_refused, pickle_payload

SHAPE = (10, 11, 12)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    labels = np.zeros(SHAPE, np.int16)
    labels[2:5, 3:6, 4:8], labels[5:8, 3:6, 4:8] = 3, 7
    nib.save(nib.Nifti1Image(labels, np.eye(4)), folder / "labels.nii.gz")
    nib.save(nib.Nifti1Image(rng.random(SHAPE).astype(np.float32) * 100, np.eye(4)), folder / "t1.nii.gz")
    return folder


@pytest.fixture
def outputs(tmp_path):
    return tmp_path / "out"  # never created by a refused command


def _nifti_bytes(data, affine=np.eye(4)):
    return nib.Nifti1Image(data, affine).to_bytes()


def _claiming(shape, raw):
    """NIfTI bytes whose header declares ``shape`` but whose data are those of ``raw``."""
    header = bytearray(raw[:348])
    struct.pack_into("<8h", header, 40, len(shape), *shape, *([1] * (7 - len(shape))))
    return bytes(header) + raw[348:]


def _bad_image(folder, kind):
    """``(path, expected problem)`` of a damaged or impossible image file."""
    noise = np.random.default_rng(1).integers(0, 30000, SHAPE).astype(np.int16)
    raw = _nifti_bytes(noise)
    packed = gzip.compress(raw)
    cases = {
        "missing": ("missing.nii.gz", None, "no such file"),
        "empty": ("empty.nii.gz", b"", "empty file"),
        "not an image": ("notes.nii.gz", b"just some text\n" * 20, "not an image nibabel can read"),
        "not an image, plain name": ("notes.nii", b"just some text\n" * 40, "not an image nibabel can read"),
        "truncated nii": ("cut.nii", raw[:1000], "truncated: the header declares 2,992 bytes"),
        "truncated nii.gz": ("cut.nii.gz", packed[: len(packed) // 2], "damaged or truncated"),
        "corrupt nii.gz": ("flip.nii.gz", packed[:200] + bytes([packed[200] ^ 0xFF]) + packed[201:],
                           "damaged or truncated"),
        "more voxels than the file": ("claim.nii", _claiming((10, 11, 13), raw), "truncated: the header declares"),
        "more voxels than the stream": ("claim.nii.gz", gzip.compress(_claiming((10, 11, 13), raw)),
                                        "the stream holds 2,992"),
        "more than gzip can hold": ("bomb.nii.gz", gzip.compress(_claiming((1000, 1000, 100), raw)),
                                    "more than a"),
        "4000^3 voxels": ("huge.nii", _claiming((4000, 4000, 4000), raw), "4000 x 4000 x 4000 voxels of int16"),
        "truncated mgz": ("cut.mgz", None, "damaged or truncated"),
    }
    name, data, problem = cases[kind]
    path = folder / name
    if kind == "truncated mgz":
        nib.save(nib.MGHImage(noise.astype(np.float32), np.eye(4)), path)
        path.write_bytes(path.read_bytes()[:-100])
    elif data is not None:
        path.write_bytes(data)
    return path, problem


IMAGE_DAMAGE = ["missing", "empty", "not an image", "not an image, plain name", "truncated nii", "truncated nii.gz",
                "corrupt nii.gz", "more voxels than the file", "more voxels than the stream", "more than gzip can hold",
                "4000^3 voxels", "truncated mgz"]


@pytest.mark.parametrize("kind", IMAGE_DAMAGE)
@pytest.mark.parametrize("command", ["volumes", "compare first", "compare second", "report image", "report labels",
                                     "parcellate"])
def test_damaged_or_impossible_images(capsys, inputs, outputs, command, kind):
    bad, problem = _bad_image(inputs, kind)
    labels, t1 = inputs / "labels.nii.gz", inputs / "t1.nii.gz"
    args = {"volumes": ["volumes", bad, "-o", outputs / "v.csv"],
            "compare first": ["compare", bad, labels, "--json", outputs / "c.json"],
            "compare second": ["compare", labels, bad, "--json", outputs / "c.json"],
            "report image": ["report", bad, labels, "-o", outputs / "report"],
            "report labels": ["report", t1, bad, "-o", outputs / "report"],
            "parcellate": ["parcellate", bad, "-o", outputs / "p.nii.gz"]}[command]
    assert_refused(capsys, args, names=bad, inputs=inputs, outputs=outputs, problem=problem)


LABEL_PROBLEMS = {"float": "non-integer value 0.5", "negative": "negative label -3", "other grid": "",
                  "4-D": "expected a 3-D label map, got shape (10, 11, 12, 2); several volumes"}


@pytest.mark.parametrize("command,kind", [(c, k) for c in ("volumes", "compare", "report") for k in LABEL_PROBLEMS
                                          if (c, k) != ("volumes", "other grid")])  # one map has no other grid
def test_label_maps_that_are_not_label_maps_of_this_grid(capsys, inputs, outputs, command, kind):
    labels = np.asanyarray(nib.load(inputs / "labels.nii.gz").dataobj)
    bad = inputs / "bad_labels.nii.gz"
    problem = LABEL_PROBLEMS[kind]
    data, affine = {"float": (labels + 0.5, np.eye(4)), "4-D": (np.stack([labels, labels], -1), np.eye(4)),
                    "negative": (labels - 3, np.eye(4)), "other grid": (labels, np.diag([2.0, 2, 2, 1]))}[kind]
    nib.save(nib.Nifti1Image(data.astype(np.float32 if kind == "float" else np.int16), affine), bad)
    args = {"volumes": ["volumes", bad, "-o", outputs / "v.csv"],
            "compare": ["compare", inputs / "labels.nii.gz", bad, "--json", outputs / "c.json"],
            "report": ["report", inputs / "t1.nii.gz", bad, "-o", outputs / "report"]}[command]
    names = bad
    if kind == "other grid":  # two files at fault: the message names both, first
        first = inputs / ("labels.nii.gz" if command == "compare" else "t1.nii.gz")
        names, problem = None, f"{first} and {bad} are on different grids"
    assert_refused(capsys, args, names=names, inputs=inputs, outputs=outputs, problem=problem)


def test_parcellate_checks_the_scan_against_max_memory_before_reading(capsys, inputs, outputs):
    scan = inputs / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(2).random((64, 64, 64)).astype(np.float32), np.eye(4)), scan)
    message = assert_refused(capsys, ["parcellate", scan, "-o", outputs / "p.nii.gz", "--max-memory", "1M"],
                             names=scan, inputs=inputs, outputs=outputs)
    assert message == ("the header declares 64 x 64 x 64 voxels of float32 (262,144 voxels), about 3 MiB to read; "
                       "more than the memory budget of 1 MiB (max_memory, default 3/4 of this machine's memory)")


def test_non_finite_scan(capsys, inputs, outputs):
    data = np.random.default_rng(3).random(SHAPE).astype(np.float32)
    data[1, 2, 3] = np.nan
    scan = inputs / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), scan)
    for args in (["parcellate", scan, "-o", outputs / "p.nii.gz"],
                 ["report", scan, inputs / "labels.nii.gz", "-o", outputs / "report"]):
        assert_refused(capsys, args, names=scan, inputs=inputs, outputs=outputs, problem="1 NaN and 0 infinite")


# --------------------------------------------------------------------------- weights and options (parcellate, demo)

def _bad_weights(folder, kind, marker):
    path = folder / {"missing": "none.pth", "empty": "w.safetensors", "text": "w.pth", "payload": "evil.pth",
                     "wrong tensors": "w2.safetensors"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not weights at all\n")
    elif kind == "payload":
        pickle_payload(path, marker)
    elif kind == "wrong tensors":
        from safetensors.numpy import save_file

        save_file({"conv_0.conv.weight": np.zeros((2, 2), np.float32)}, path)
    return path


WEIGHTS_PROBLEMS = {"missing": "not found", "empty": "empty file", "text": "not a torch.save file of tensors",
                    "payload": "it holds pickled code or objects, which are never run", "wrong tensors": ""}


@pytest.mark.parametrize("kind", list(WEIGHTS_PROBLEMS))
@pytest.mark.parametrize("command", ["parcellate", "demo"])
def test_bad_weights(capsys, inputs, outputs, tmp_path, monkeypatch, command, kind):
    monkeypatch.delenv("NIFTYPORT_WEIGHTS", raising=False)
    marker = tmp_path / "payload_ran"
    weights = _bad_weights(inputs, kind, marker)
    scan = inputs / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(4).random((24, 24, 24)).astype(np.float32), np.eye(4)), scan)
    args = {"parcellate": ["parcellate", scan, "-o", outputs / "p.nii.gz", "--weights", weights],
            "demo": ["demo", "-o", outputs, "--weights", weights]}[command]
    names, problem = weights, WEIGHTS_PROBLEMS[kind]
    if kind == "wrong tensors":  # a mapping error names the keys, not the file
        names = None
    if kind == "missing":  # the weights resolver's own wording
        names, problem = None, f"weights {weights} not found"
    assert_refused(capsys, args, names=names, inputs=inputs, outputs=outputs, problem=problem)
    assert not marker.exists()


@pytest.mark.parametrize("option,problem", [(["--mode", "fastest"], "'fastest' is not one of"),
                                            (["--device", "tpu"], "'tpu' is not one of"),
                                            (["--max-memory", "lots"], "--max-memory 'lots'")])
def test_demo_options_are_checked_before_anything_is_written(capsys, inputs, outputs, option, problem):
    assert_refused(capsys, ["demo", "-o", outputs, *option], names=None, inputs=inputs, outputs=outputs,
                   problem=problem)


def test_a_4000_cubed_header_fails_fast_in_a_real_process(inputs, outputs):
    """The console entry point, not only main(): one line on stderr, status 2, no MemoryError."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import niftyport

    huge, _ = _bad_image(inputs, "4000^3 voxels")
    env = dict(os.environ, PYTHONPATH=str(Path(niftyport.__file__).parents[1]))
    code = "import sys; from niftyport.cli import main; sys.exit(main())"
    run = subprocess.run([sys.executable, "-c", code, "parcellate", str(huge), "-o", str(outputs / "p.nii.gz")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"niftyport: error: {huge}: the header declares 4000 x 4000 x 4000 voxels of int16 (64,000,000,000 voxels), "
        "about 596 GiB to read; more than the memory budget of "), run.stderr
    assert not outputs.exists()


@pytest.mark.parametrize("command", ["volumes", "parcellate"])
def test_a_pair_without_its_image_file(capsys, inputs, outputs, command):
    labels = np.asanyarray(nib.load(inputs / "labels.nii.gz").dataobj)
    nib.save(nib.Nifti1Pair(labels, np.eye(4)), inputs / "pair.hdr")
    (inputs / "pair.img").unlink()
    args = {"volumes": ["volumes", inputs / "pair.hdr", "-o", outputs / "v.csv"],
            "parcellate": ["parcellate", inputs / "pair.hdr", "-o", outputs / "p.hdr"]}[command]
    assert_refused(capsys, args, names=inputs / "pair.img", inputs=inputs, outputs=outputs,
                   problem=f"no such file (the voxel data of {inputs / 'pair.hdr'})")
