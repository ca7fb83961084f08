"""Cohorts: BIDS discovery, derivatives naming, and real runs on a local Dask cluster.

The cohort is 4 crops of the shared real T1s laid out as a BIDS dataset (one
of them a truncated gzip), run as ``niftyport bids ... participant`` on a
``LocalCluster`` of 2 worker processes over loopback. Expected labels come
from ``run_parcellation`` on each crop in this process; the BIDS names are
checked against the derivative filename rules of the BIDS schema
(``bidsschematools``, installed with ``bids-validator``).
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from niftyport.cli import main
from niftyport.cli.cohort import expand_list_options
from niftyport.cohort.bids import entities, find_t1w
from niftyport.cohort.derivatives import ScanOutputs, read_volumes_tsv
from niftyport.cohort.scans import scans_from
from niftyport.errors import CohortError

from conftest import DATA, need, one_line_error

needs_dask = pytest.mark.skipif(find_spec("distributed") is None,
                                reason="the cohort extra is not installed: pip install 'niftyport[cohort]'")

#: (BIDS path, shared T1, half side of the central crop in voxels)
CROPS = (("sub-01/anat/sub-01_T1w.nii.gz", "real_t1_chris_1mm_skull.nii.gz", 12),
         ("sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz", "colin27_ch2_1mm_skull.nii.gz", 12),
         ("sub-03/anat/sub-03_T1w.nii.gz", "real_t1_robex_ref_1p5mm_skull.nii.gz", 8))
CORRUPT = "sub-04/anat/sub-04_T1w.nii.gz"
GOOD_KEYS = ("sub-01", "sub-02_ses-1", "sub-03")
RUN_OPTIONS = ("--window", "40", "--border", "2", "--device", "cpu", "-q")


def cli(*args) -> tuple[int, str, str]:
    """Run the command line in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


def central_crop(name: str, half: int) -> nib.Nifti1Image:
    img = nib.load(need(DATA / name))
    centre = np.asarray(img.shape[:3]) // 2
    return img.slicer[tuple(slice(int(c - half), int(c + half)) for c in centre)]


def make_dataset(root: Path) -> Path:
    """The 4-scan BIDS dataset, with a T2w image and a JSON sidecar that are not scans."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0"}))
    for relative, source, half in CROPS:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        nib.save(central_crop(source, half), root / relative)
    good = (root / CROPS[0][0]).read_bytes()
    (root / CORRUPT).parent.mkdir(parents=True)
    (root / CORRUPT).write_bytes(good[: len(good) // 2])  # a truncated gzip: the header reads, the voxels do not
    nib.save(central_crop(CROPS[1][1], 12), root / "sub-01/anat/sub-01_T2w.nii.gz")
    (root / "sub-01/anat/sub-01_T1w.json").write_text("{}")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("bids") / "ds")


@pytest.fixture(scope="module")
def expected(dataset) -> dict[str, np.ndarray]:
    """``run_parcellation``'s labels of each good crop (what ``niftyport parcellate`` writes)."""
    from niftyport.segmentation.pipeline import resolve_config, run_parcellation

    cfg = resolve_config(None, window=40, border=2)
    return {key: run_parcellation(dataset / relative, config=cfg, device="cpu", threads=1).labels
            for key, (relative, _, _) in zip(GOOD_KEYS, CROPS)}


@pytest.fixture(scope="module")
def participant_run(dataset):
    """``niftyport bids DS DS/derivatives/niftyport participant`` on 2 local worker processes."""
    out = dataset / "derivatives" / "niftyport"
    start = time.perf_counter()
    status, stdout, stderr = cli("bids", dataset, out, "participant", "--workers", 2, "--threads-per-worker", 1,
                                 *RUN_OPTIONS)
    return status, stdout, stderr, out, time.perf_counter() - start


def outputs_of(out: Path) -> dict[str, ScanOutputs]:
    scans = {s.key: s for s in find_t1w(out.parent.parent)}
    return {key: ScanOutputs.of(out, scans[key]) for key in GOOD_KEYS}


# --------------------------------------------------------------------------- BIDS discovery (no Dask)

def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_find_t1w_reads_subjects_sessions_and_skips_other_files(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{}")
    _touch(tmp_path, "sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T1w.json", "sub-01/anat/sub-01_T2w.nii.gz",
           "sub-02/ses-a/anat/sub-02_ses-a_run-1_T1w.nii", "sub-02/ses-b/anat/sub-02_ses-b_acq-fast_T1w.nii.gz",
           "sub-02/ses-b/func/sub-02_ses-b_task-rest_bold.nii.gz", "derivatives/x/sub-09/anat/sub-09_T1w.nii.gz",
           "sourcedata/sub-08/anat/sub-08_T1w.nii.gz")
    scans = find_t1w(tmp_path)
    assert [s.key for s in scans] == ["sub-01", "sub-02_ses-a_run-1", "sub-02_ses-b_acq-fast"]
    assert [(s.subject, s.session) for s in scans] == [("01", ""), ("02", "a"), ("02", "b")]
    assert scans[1].out_stem == "sub-02/ses-a/anat/sub-02_ses-a_run-1_desc-gif"
    assert scans[1].source == "bids:raw:sub-02/ses-a/anat/sub-02_ses-a_run-1_T1w.nii"
    assert [s.key for s in find_t1w(tmp_path, participant_labels=("sub-02",), session_labels=("b",))] == \
        ["sub-02_ses-b_acq-fast"]
    assert [s.key for s in find_t1w(tmp_path, session_labels=("ses-a",))] == ["sub-02_ses-a_run-1"]


def test_find_t1w_refuses_unknown_labels_mismatched_names_and_non_bids_folders(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{}")
    _touch(tmp_path, "sub-01/anat/sub-01_T1w.nii.gz")
    with pytest.raises(CohortError, match="no participant 07"):
        find_t1w(tmp_path, participant_labels=("07",))
    with pytest.raises(CohortError, match="no session x"):
        find_t1w(tmp_path, session_labels=("x",))
    with pytest.raises(CohortError, match="letters and digits"):
        find_t1w(tmp_path, participant_labels=("0_1",))
    _touch(tmp_path, "sub-02/anat/sub-03_T1w.nii.gz")
    with pytest.raises(CohortError, match="says sub-03 but it lies in sub-02"):
        find_t1w(tmp_path)
    with pytest.raises(CohortError, match="not a BIDS dataset"):
        find_t1w(tmp_path / "sub-01")


def test_entities_and_bids_apps_label_lists():
    assert entities("sub-01_ses-2_acq-x_run-3_T1w.nii.gz") == {"sub": "01", "ses": "2", "acq": "x", "run": "3"}
    for name in ("sub-01_T1w.nii.gz.bak", "sub-01_desc-gif_dseg.nii.gz", "sub-01_run-1_run-2_T1w.nii",
                 "sub_01_T1w.nii.gz", "sub-01_T1map.nii.gz"):
        assert entities(name) is None, name
    assert expand_list_options(["a", "b", "participant", "--participant_label", "01", "02", "--session-label", "x",
                                "y", "--workers", "2"]) == \
        ["a", "b", "participant", "--participant_label", "01", "--participant_label", "02", "--session-label", "x",
         "--session-label", "y", "--workers", "2"]


def test_scans_from_csv_folder_and_glob(tmp_path):
    _touch(tmp_path, "imgs/a.nii.gz", "imgs/b c.nii", "imgs/notes.txt", "imgs/a_desc-gif_dseg.nii.gz",
           "imgs/deeper/d.nii.gz")
    assert [(s.key, s.path.name) for s in scans_from(str(tmp_path / "imgs"))] == [("a", "a.nii.gz"),
                                                                                 ("b_c", "b c.nii")]
    assert [s.key for s in scans_from(str(tmp_path / "imgs" / "**" / "*.nii.gz"))] == ["a", "d"]
    listing = tmp_path / "scans.csv"
    listing.write_text("id,path\nx1,imgs/a.nii.gz\n,imgs/deeper/d.nii.gz\n")
    scans = scans_from(str(listing))
    assert [(s.key, s.path) for s in scans] == [("d", tmp_path / "imgs/deeper/d.nii.gz"),
                                                ("x1", tmp_path / "imgs/a.nii.gz")]
    assert scans[1].out_stem == "x1_desc-gif"
    listing.write_text("id,path\nsame,imgs/a.nii.gz\nsame,imgs/deeper/d.nii.gz\n")
    with pytest.raises(CohortError, match="same id 'same'"):
        scans_from(str(listing))
    listing.write_text("file\nimgs/a.nii.gz\n")
    with pytest.raises(CohortError, match="no 'path' column"):
        scans_from(str(listing))
    with pytest.raises(CohortError, match="no such file"):
        scans_from(str(tmp_path / "missing.csv"))


def test_import_niftyport_and_the_file_modules_need_no_dask():
    code = ("import sys, niftyport, niftyport.cli, niftyport.cohort.run, niftyport.cohort.group; "
            "bad = [m for m in ('dask', 'distributed', 'tensorflow') if m in sys.modules]; "
            "assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_bad_arguments_exit_2_with_one_line(dataset, tmp_path):
    out = tmp_path / "out"
    one_line_error(*cli("bids", dataset, out, "participant", "--participant-label", "99", "01")[::2],
                   "no participant 99")
    one_line_error(*cli("bids", dataset / "sub-01", out, "participant")[::2], "not a BIDS dataset")
    one_line_error(*cli("bids", dataset, out, "participant", "--scheduler", "tcp://127.0.0.1:1",
                        "--workers", "2")[::2], "--scheduler")
    one_line_error(*cli("bids", dataset, dataset, "participant", *RUN_OPTIONS)[::2], "is the input")
    one_line_error(*cli("bids", dataset, out, "sideways")[::2], "sideways")
    one_line_error(*cli("bids", dataset, out, "participant", "--mode", "fastest")[::2], "fastest")
    one_line_error(*cli("cohort", tmp_path / "none.csv", "-o", out)[::2], "no such file")
    (out / "x").mkdir(parents=True)
    (out / "x" / "dataset_description.json").write_text('{"GeneratedBy": [{"Name": "fmriprep"}]}')
    one_line_error(*cli("bids", dataset, out / "x", "participant", *RUN_OPTIONS)[::2], "not made by niftyport")
    assert not (out / "x" / "dseg.tsv").exists()


# --------------------------------------------------------------------------- the cohort on Dask

@needs_dask
def test_participant_run_gives_parcellates_labels_and_one_error_row(participant_run, expected):
    status, stdout, stderr, out, seconds = participant_run
    assert status == 1, (stdout, stderr)
    assert "3 done, 0 already done, 1 failed" in stdout
    assert "dashboard http://127.0.0.1:" in stderr
    for key, outputs in outputs_of(out).items():
        img = nib.load(outputs.labels)
        assert img.get_data_dtype() == np.int32
        assert np.array_equal(np.asarray(img.dataobj), expected[key]), key
    rows = (out / "errors.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["scan", "participant_id", "session_id", "path", "error"]
    assert len(rows) == 2
    scan, participant, session, path, error = rows[1].split("\t")
    assert (scan, participant, session, path) == ("sub-04", "sub-04", "n/a", str(out.parent.parent / CORRUPT))
    assert "truncated gzip stream" in error and "EOFError" in error


@needs_dask
def test_sidecars_record_settings_input_and_threads_set_in_the_task(participant_run):
    out = participant_run[3]
    from niftyport.networks import get

    for key, outputs in outputs_of(out).items():
        record = json.loads(outputs.sidecar.read_text())
        assert record["Sources"] == [f"bids:raw:{outputs.labels.parent.relative_to(out).as_posix()}/"
                                     f"{key}_T1w.nii.gz"]
        settings = record["niftyport"]["settings"]
        assert settings["weights_sha256"] == get("highres3dnet").pretrained.sha256
        assert settings["window"] == [40, 40, 40] and settings["inference"]["border"] == [2, 2, 2]
        run = record["niftyport"]["run"]
        assert run["threads"] == 1 and run["worker"].startswith("tcp://127.0.0.1:")
        assert run["max_memory"] > 0  # 70% of the worker's memory limit
        assert record["niftyport"]["input"]["size"] == (out.parent.parent / record["Sources"][0][9:]).stat().st_size


@needs_dask
def test_dataset_files_and_volumes(participant_run, expected):
    from niftyport import __version__
    from niftyport.networks import get
    from niftyport.reporting.labels import network_table

    out = participant_run[3]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["DatasetLinks"] == {"raw": "../.."}
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "niftyport" and generated["Version"] == __version__
    assert get("highres3dnet").pretrained.sha256 in generated["Description"]
    table = network_table("highres3dnet")
    rows = [line.split("\t") for line in (out / "dseg.tsv").read_text().splitlines()]
    assert rows[0] == ["index", "name", "color"] and len(rows) == len(table.ids) + 1
    for index, name, colour in rows[1:]:
        r, g, b, _ = table.rgba(int(index))
        assert name == table.name(int(index)) and colour == f"#{r:02x}{g:02x}{b:02x}"
    for key, outputs in outputs_of(out).items():
        values, counts = np.unique(expected[key], return_counts=True)
        voxel = abs(np.linalg.det(nib.load(outputs.labels).affine[:3, :3]))
        assert read_volumes_tsv(outputs.volumes) == pytest.approx(
            {int(v): c * voxel for v, c in zip(values, counts) if v != 0})


def derivative_rules():
    """Regular expressions of the BIDS schema's derivative and common file rules."""
    schema_mod = pytest.importorskip("bidsschematools.schema", reason="bids-validator/bidsschematools not installed")
    rules_mod = pytest.importorskip("bidsschematools.rules")
    schema = schema_mod.load_schema()
    return [rule["regex"] for top in ("common", "deriv") for group in schema.rules.files[top].values()
            for rule in rules_mod.regexify_filename_rules(group, schema, level=1)]


def bids_problems(root: Path, rules: list[str]) -> list[str]:
    """Files under ``root`` that neither match a schema rule nor ``.bidsignore`` (dotfiles are not looked at)."""
    ignore = [p for p in (root / ".bidsignore").read_text().split() if p] if (root / ".bidsignore").exists() else []
    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        if any(relative.startswith(p) if p.endswith("/") else fnmatch.fnmatch(path.name, p) for p in ignore):
            continue
        if not any(re.match(rule, relative) for rule in rules):
            problems.append(relative)
    return problems


@needs_dask
def test_outputs_follow_the_bids_derivative_naming_rules(participant_run, dataset, tmp_path):
    rules = derivative_rules()
    out = participant_run[3]
    assert bids_problems(out, rules) == []
    # control: the check fails on names outside the rules
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "sub-01/anat/sub-01_desc-gif_labels.nii.gz").write_bytes(b"")
    (copy / "sub-01/anat/sub-01_ses-1_desc-gif_dseg.nii.gz").write_bytes(b"")  # session entity, no session folder
    assert bids_problems(copy, rules) == ["sub-01/anat/sub-01_desc-gif_labels.nii.gz",
                                          "sub-01/anat/sub-01_ses-1_desc-gif_dseg.nii.gz"]
    # the inputs themselves are raw BIDS names for the bids-validator package
    validator = pytest.importorskip("bids_validator").BIDSValidator()
    assert all(validator.is_bids("/" + relative) for relative, _, _ in CROPS)


@needs_dask
def test_rerun_does_no_work(participant_run):
    out = participant_run[3]
    before = {p: p.stat().st_mtime_ns for o in outputs_of(out).values() for p in o.all}
    status, stdout, _ = cli("bids", out.parent.parent, out, "participant", "--workers", 1, *RUN_OPTIONS)
    assert status == 1  # the corrupt scan is tried again and fails again
    assert "0 done, 3 already done, 1 failed" in stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before


@needs_dask
def test_changed_settings_are_redone_a_touched_input_is_not(participant_run, dataset, tmp_path):
    from niftyport.cohort.engine import ClusterSpec
    from niftyport.cohort.run import prepare, run_participants
    from niftyport.cohort.settings import ConfigSource

    out = tmp_path / "out"
    shutil.copytree(participant_run[3], out)
    outputs = outputs_of(participant_run[3])
    sidecar = out / outputs["sub-03"].sidecar.relative_to(participant_run[3])
    record = json.loads(sidecar.read_text())
    record["niftyport"]["settings"]["inference"]["border"] = [3, 3, 3]
    sidecar.write_text(json.dumps(record))
    os.utime(dataset / CROPS[0][0])  # same bytes, new time: the SHA-256 says it is the same input
    anat = out / "sub-01" / "anat"
    (anat / ".sub-01_desc-gif_dseg.nii.gz.ab_cd123.nii.gz").write_bytes(b"half")  # a killed writer's temporary
    (anat / ".keep").write_bytes(b"")
    scans = find_t1w(dataset, participant_labels=("01", "02", "03"))
    settings = prepare(config=ConfigSource(window=40, border=2), device="cpu")
    summary = run_participants(scans, out, settings, cluster=ClusterSpec(workers=1, threads_per_worker=1,
                                                                        processes=False, dashboard=False),
                               bids_dir=dataset, progress=False, echo=lambda s: None)
    assert (summary.done, summary.skipped, summary.failed) == (("sub-03",), ("sub-01", "sub-02_ses-1"), ())
    assert json.loads(sidecar.read_text())["niftyport"]["settings"]["inference"]["border"] == [2, 2, 2]
    assert summary.exit_status == 0 and (out / "errors.tsv").read_text().count("\n") == 1
    assert sorted(p.name for p in anat.glob(".*")) == [".keep"]


@needs_dask
def test_group_writes_the_volume_table_and_the_qc_page(participant_run):
    out = participant_run[3]
    status, stdout, stderr = cli("bids", out.parent.parent, out, "group")
    assert status == 0, stderr
    lines = (out / "group" / "label_volumes_mm3.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["participant_id", "session_id", "scan"]
    assert [line.split(",")[:3] for line in lines[1:]] == [["sub-01", "n/a", "sub-01"],
                                                           ["sub-02", "ses-1", "sub-02_ses-1"],
                                                           ["sub-03", "n/a", "sub-03"]]
    from niftyport.reporting.labels import network_table

    names = {network_table("highres3dnet").name(i): i for i in range(160)}
    for line, outputs in zip(lines[1:], outputs_of(out).values()):
        volumes = read_volumes_tsv(outputs.volumes)
        row = dict(zip(header[3:], map(float, line.split(",")[3:])))
        assert row == pytest.approx({name: volumes.get(names[name], 0.0) for name in header[3:]})
    page = (out / "group" / "qc.html").read_text()
    assert page.count("<img ") == 3 and "sub-04" in page and "truncated gzip stream" in page
    status, _, stderr = cli("bids", out.parent.parent, out, "group", "--participant-label", "03")
    assert status == 0 and (out / "group" / "label_volumes_mm3.csv").read_text().count("\n") == 2
    assert sorted(p.name for p in (out / "group" / "qc").iterdir()) == ["sub-03.png"]


@needs_dask
def test_qc_page_renders_in_headless_chromium(participant_run, tmp_path):
    from test_report import _chromium, render_images, struct_size

    binary = _chromium()
    out = participant_run[3]
    assert cli("bids", out.parent.parent, out, "group")[0] == 0
    images, _ = render_images(binary, out / "group" / "qc.html", tmp_path / "profile")
    assert len(images) == 3
    for image, key in zip(images, GOOD_KEYS):
        width, height = struct_size((out / "group" / "qc" / f"{key}.png").read_bytes())
        assert image["complete"] and (image["width"], image["height"]) == (width, height), (key, image)
        assert image["shown"] == 200


@needs_dask
def test_a_killed_worker_loses_no_scan_and_leaves_no_partial_file(dataset, expected, tmp_path):
    from distributed import Client, LocalCluster

    from niftyport.cohort.engine import ClusterSpec
    from niftyport.cohort.run import prepare, run_participants
    from niftyport.cohort.settings import ConfigSource

    scans = find_t1w(dataset, participant_labels=("01", "02", "03"))
    settings = prepare(config=ConfigSource(window=40, border=2), device="cpu", threads=1)
    out = tmp_path / "out"
    killed: list[tuple[str, int]] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      memory_limit="2GiB") as cluster, Client(cluster, set_as_default=False) as watcher:
        pids = watcher.run(os.getpid)
        stop = threading.Event()

        def kill_first_busy_worker():
            while not stop.is_set() and not killed:
                busy = [(address, keys) for address, keys in watcher.processing().items() if keys and address in pids]
                if busy:
                    killed.append((busy[0][1][0], pids[busy[0][0]]))
                    os.kill(pids[busy[0][0]], signal.SIGKILL)
                time.sleep(0.02)

        killer = threading.Thread(target=kill_first_busy_worker)
        killer.start()
        try:
            summary = run_participants(scans, out, settings, cluster=ClusterSpec(scheduler=cluster.scheduler_address),
                                       bids_dir=dataset, progress=False, echo=lambda s: None)
        finally:
            stop.set()
            killer.join()
    assert killed, "no worker was seen running a task"
    key, pid = killed[0]
    assert summary.exit_status == 0 and sorted(summary.done) == sorted(GOOD_KEYS)
    rows = {row.key: row for row in summary.rows}
    assert rows[key.split("-", 1)[1].rsplit("-", 1)[0]].pid != pid  # the killed scan was redone elsewhere
    for scan in scans:
        outputs = ScanOutputs.of(out, scan)
        assert np.array_equal(np.asarray(nib.load(outputs.labels).dataobj), expected[scan.key])
        record = json.loads(outputs.sidecar.read_text())
        assert record["niftyport"]["run"]["max_memory"] == int(2**31 * 0.7)
        read_volumes_tsv(outputs.volumes)
    assert [p.name for p in out.rglob(".*")] == [".bidsignore"]


@needs_dask
def test_cohort_command_on_a_folder(dataset, expected, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(dataset / CROPS[2][0], folder / "t1_c.nii.gz")
    status, stdout, stderr = cli("cohort", folder, "-o", folder, "--workers", 1, *RUN_OPTIONS)
    assert status == 0, stderr
    labels = nib.load(folder / "t1_c_desc-gif_dseg.nii.gz")
    assert np.array_equal(np.asarray(labels.dataobj), expected["sub-03"])
    assert (folder / "group" / "label_volumes_mm3.csv").read_text().splitlines()[1].startswith("n/a,n/a,t1_c,")
    assert "already done" in cli("cohort", folder, "-o", folder, *RUN_OPTIONS)[1]  # its own output is no scan


def test_a_local_cluster_leaves_this_process_environment_as_it_was(monkeypatch):
    # Dask's nanny writes MALLOC_TRIM_THRESHOLD_ into os.environ for the workers it spawns;
    # niftyport gives the environment back, so a later run here keeps glibc's malloc defaults.
    pytest.importorskip("distributed", reason="dask not installed (pip install '.[cohort]')")
    from niftyport.cohort.engine import ClusterSpec, open_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(os.environ)
    with open_client(ClusterSpec(workers=1, processes=True, dashboard=False)) as client:
        assert client.submit(os.getenv, "MALLOC_TRIM_THRESHOLD_").result() is not None  # the worker's
    assert dict(os.environ) == before
