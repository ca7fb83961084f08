"""``niftyport parcellate``: outputs, refusals and one-line errors for bad input."""
import nibabel as nib
import numpy as np
import pytest

from niftyport.cli import main


def run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(status, err, *fragments):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("niftyport: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def small_t1(path, shape=(14, 13, 12), **kw):
    data = np.random.default_rng(0).gamma(2.0, 50.0, shape).astype(np.float32)
    for key, value in kw.items():
        if key == "nan":
            data.flat[value] = np.nan
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, 1.0, 1.0, 1.0])), path)
    return path


def test_parcellate_writes_next_to_the_input_and_never_over_it(capsys, tmp_path, third_party_pth):
    t1 = small_t1(tmp_path / "t1.nii.gz")
    before = t1.read_bytes()
    status, out, err = run(capsys, "parcellate", t1, "--weights", third_party_pth, "--window", 32,
                           "--device", "cpu", "-q")
    assert status == 0, err
    written = tmp_path / "t1_parcellation.nii.gz"
    assert f"wrote {written}" in out
    img = nib.load(written)
    assert img.shape == (14, 13, 12) and img.get_data_dtype() == np.int32
    assert np.array_equal(img.affine, nib.load(t1).affine)
    assert 0 <= np.asarray(img.dataobj).min() and np.asarray(img.dataobj).max() < 160
    assert t1.read_bytes() == before

    status, _, err = run(capsys, "parcellate", t1, "--weights", third_party_pth, "--window", 32, "-q")
    one_line_error(status, err, str(written), "use --force")
    status, _, err = run(capsys, "parcellate", t1, "-o", t1, "--window", 32, "-q")
    one_line_error(status, err, "is the input file")
    assert t1.read_bytes() == before


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p, "no such file"),
    (lambda p: (p.write_text("not an image"), p)[1], "not"),
    (lambda p: (nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), p), p)[1], "2-D"),
    (lambda p: (nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), p), p)[1], "volumes"),
    (lambda p: small_t1(p, nan=5), "NaN"),
])
def test_bad_images_give_one_line_errors_naming_the_file(capsys, tmp_path, make, fragment):
    path = make(tmp_path / "bad.nii.gz")
    status, _, err = run(capsys, "parcellate", path, "-q")
    one_line_error(status, err, "bad.nii.gz")
    assert fragment.lower() in err.lower()
    assert not (tmp_path / "bad_parcellation.nii.gz").exists()


def test_unknown_config_key_and_missing_image(capsys, tmp_path):
    from niftyport.config import MODEL_ZOO_SETTINGS

    sections = {name: dict(values) for name, values in MODEL_ZOO_SETTINGS.items()}
    sections["NETWORK"]["batch_sise"] = sections["NETWORK"].pop("batch_size")
    ini = tmp_path / "bad.ini"
    ini.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                           for name, values in sections.items()))
    status, _, err = run(capsys, "parcellate", small_t1(tmp_path / "t1.nii.gz"), "--config", ini, "-q")
    one_line_error(status, err, "bad.ini", "batch_sise", "batch_size")
    status, _, err = run(capsys, "parcellate")
    assert status == 2 and "give an IMAGE" in err
