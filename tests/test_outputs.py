import os

import pytest

from niftyport.errors import NiftyportError
from niftyport.outputs import atomic_output, check_outputs, write_text_atomic


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz")
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["labels.nii.gz"]


def test_successful_write_replaces_with_usual_permissions(tmp_path):
    target = write_text_atomic(tmp_path / "a.csv", "x,y\n")
    assert target.read_text() == "x,y\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_read_only_file_and_missing_folder_are_refused(tmp_path):
    locked = tmp_path / "locked.txt"
    locked.write_text("keep")
    locked.chmod(0o444)
    with pytest.raises(NiftyportError, match="read-only"):
        write_text_atomic(locked, "new")
    assert locked.read_text() == "keep"
    with pytest.raises(NiftyportError, match="does not exist"):
        write_text_atomic(tmp_path / "nope" / "a.txt", "x")


def test_an_input_is_never_an_output_even_through_a_link(tmp_path):
    src = tmp_path / "t1.nii.gz"
    src.write_bytes(b"")
    link = tmp_path / "link.nii.gz"
    link.symlink_to(src)
    with pytest.raises(NiftyportError, match="is the input file"):
        check_outputs([link], [src])
    with pytest.raises(NiftyportError, match="is the input file"):
        check_outputs([tmp_path / "sub" / ".." / "t1.nii.gz"], [src])
    check_outputs([tmp_path / "out.nii.gz"], [src, None])


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("")
    with pytest.raises(NiftyportError, match="use --force"):
        check_outputs([out], [], force=False)
    check_outputs([out], [], force=True)


def test_a_writer_that_replaces_the_temporary_file_still_gives_usual_permissions(tmp_path):
    """As safetensors does: the writer puts its own (0600) file where the temporary one was."""
    target = tmp_path / "w.safetensors"
    old = os.umask(0o022)
    try:
        with atomic_output(target) as tmp:
            own = tmp_path / "writer-own"
            own.write_bytes(b"data")
            own.chmod(0o600)
            os.replace(own, tmp)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"data" and target.stat().st_mode & 0o777 == 0o644


def test_temporary_files_keep_the_extension_before_a_compression_suffix(tmp_path):
    for name, suffix in (("a.nii.gz", ".nii.gz"), ("b.img.gz", ".img.gz"), ("c.mgz", ".mgz"), ("d.tar.gz", ".tar.gz")):
        with atomic_output(tmp_path / name) as tmp:
            assert tmp.name.endswith(suffix), tmp.name
            tmp.write_bytes(b"")
