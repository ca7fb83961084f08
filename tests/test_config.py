import dataclasses
import os
from pathlib import Path

import pytest

from conftest import CONFIG, LANDMARKS, NIFTYNET_HOME, ZOO, need
from niftyport.config import PACKAGED_LANDMARKS, default_config, default_niftynet_home, load_config
from niftyport.errors import ConfigError

MINIMAL = "[SEGMENTATION]\nimage = T1\nnum_classes = 3\n[T1]\n"


def write(tmp_path, text, name="cfg.ini"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_model_zoo_config_values():
    cfg = load_config(need(CONFIG), niftynet_home=NIFTYNET_HOME)
    img = cfg.image
    assert cfg.modality == "Modality0"
    assert (img.interp_order, img.pixdim, img.axcodes) == (0, (1.0, 1.0, 1.0), ("R", "A", "S"))
    assert img.spatial_window_size == (96, 96, 96) and img.filename_contains == ("nii",)
    net = cfg.network
    assert (net.name, net.batch_size, net.volume_padding_size, net.volume_padding_mode) == (
        "highres3dnet", 1, (10, 10, 10), "minimum")
    assert (net.foreground_type, net.multimod_foreground_type, net.norm_type, net.cutoff) == (
        "mean_plus", "and", "percentile", (0.001, 0.999))
    assert net.normalisation and net.whitening and net.normalise_foreground_only
    inf = cfg.inference
    assert (inf.spatial_window_size, inf.border, inf.output_interp_order, inf.inference_iter) == (
        (128, 128, 128), (2, 2, 2), 0, 33000)
    assert inf.output_postfix == "_niftynet_out"
    assert cfg.spatial_window_size == (128, 128, 128)
    seg = cfg.segmentation
    assert (seg.num_classes, seg.output_prob, seg.label_normalisation, seg.softmax) == (160, False, False, True)
    assert cfg.system.cuda_devices == "" and cfg.system.num_threads == 2
    # paths as NiftyNet resolves them
    # (compared resolved: the test-data folder may be reached through a link)
    assert Path(cfg.system.model_dir).resolve() == ZOO.resolve()
    assert Path(net.histogram_ref_file).resolve() == LANDMARKS.resolve()
    assert Path(inf.save_seg_dir).resolve() == ZOO.resolve() / "parcellation_output"
    assert [Path(p).resolve() for p in img.path_to_search] == [NIFTYNET_HOME.resolve() / "data" / "OASIS"]
    assert cfg.source == str(CONFIG)


def test_built_in_config_equals_the_model_zoo_file():
    loaded = load_config(need(CONFIG), niftynet_home=NIFTYNET_HOME)
    built_in = default_config(niftynet_home=NIFTYNET_HOME)
    assert built_in.source is None
    assert Path(built_in.network.histogram_ref_file) == PACKAGED_LANDMARKS
    same = dataclasses.replace(loaded, source=None, network=dataclasses.replace(
        loaded.network, histogram_ref_file=built_in.network.histogram_ref_file))
    assert same == built_in


def test_niftynet_defaults_for_missing_keys(tmp_path):
    path = write(tmp_path, MINIMAL)
    cfg = load_config(path, niftynet_home=tmp_path / "home")
    assert (cfg.image.interp_order, cfg.image.pixdim, cfg.image.axcodes) == (1, (), ())
    net = cfg.network
    assert (net.batch_size, net.foreground_type, net.cutoff, net.normalisation, net.whitening) == (
        2, "otsu_plus", (0.01, 0.99), False, False)
    assert (net.volume_padding_size, net.volume_padding_to_size, net.multimod_foreground_type) == (
        (0, 0, 0), (0,), "and")
    assert (cfg.inference.border, cfg.inference.output_interp_order, cfg.inference.spatial_window_size) == (
        (0, 0, 0), 0, ())
    assert cfg.system.model_dir == str(tmp_path / "model")
    assert net.histogram_ref_file == str(tmp_path / "model" / "histogram_ref_file.txt")
    assert cfg.inference.save_seg_dir == str(tmp_path / "model" / "output")


@pytest.mark.parametrize("key,text,expected", [
    ("axcodes", "(L, p, S)", ("L", "P", "S")),
    ("axcodes", "R,A,S", ("R", "A", "S")),
    ("pixdim", "{0.5, 1, 2.5}", (0.5, 1.0, 2.5)),
    ("pixdim", "", ()),
    ("spatial_window_size", "64", (64, 1, 1)),          # NiftyNet pads with 1s
    ("spatial_window_size", "(64, 32)", (64, 32, 1)),
    ("filename_contains", "T1, brain", ("T1", "brain")),
    ("interp_order", "3", 3),
])
def test_input_section_value_parsing(tmp_path, key, text, expected):
    cfg = load_config(write(tmp_path, MINIMAL + f"{key} = {text}\n"), niftynet_home=tmp_path)
    assert getattr(cfg.image, key) == expected


@pytest.mark.parametrize("line,attr,expected", [
    ("[INFERENCE]\nborder = 3", ("inference", "border"), (3, 3, 3)),
    ("[INFERENCE]\nborder = (1, 2)", ("inference", "border"), (1, 2, 2)),  # last value repeated
    ("[NETWORK]\nwhitening = yes", ("network", "whitening"), True),
    ("[NETWORK]\nwhitening = F", ("network", "whitening"), False),
    ("[NETWORK]\nnormalisation = 1", ("network", "normalisation"), True),
    ("[NETWORK]\ncutoff = (0.999, 0.001)", ("network", "cutoff"), (0.999, 0.001)),
    ("[NETWORK]\nvolume_padding_to_size = 0", ("network", "volume_padding_to_size"), (0, 0, 0)),
    ('[SYSTEM]\ncuda_devices = ""', ("system", "cuda_devices"), ""),
])
def test_other_sections_value_parsing(tmp_path, line, attr, expected):
    cfg = load_config(write(tmp_path, MINIMAL + line + "\n"), niftynet_home=tmp_path)
    assert getattr(getattr(cfg, attr[0]), attr[1]) == expected


@pytest.mark.parametrize("text,pattern", [
    ("[NETWORK]\nforegound_type = mean_plus",
     r"\[NETWORK\] foregound_type: unknown key; did you mean 'foreground_type'\?"),
    ("[NETWORK]\nborder = 2", r"\[NETWORK\] border: unknown key here; it belongs in \[INFERENCE\]"),
    ("[NETWORK]\nforeground_type = mean_pluss",
     r"\[NETWORK\] foreground_type = 'mean_pluss': must be one of .*; did you mean 'mean_plus'\?"),
    ("[NETWORK]\nwhitening = maybe", r"\[NETWORK\] whitening = 'maybe': a boolean is expected"),
    ("[NETWORK]\nbatch_size = two", r"\[NETWORK\] batch_size = 'two': an integer is expected"),
    ("[NETWORK]\ncutoff = (0.1, 2)", r"\[NETWORK\] cutoff = '\(0.1, 2\)': two fractions"),
    ("[NETWORK]\nvolume_padding_mode = minimun",
     r"volume_padding_mode = 'minimun': must be one of .*did you mean 'minimum'\?"),
    ("[NETWROK]\nname = highres3dnet", r"\[NETWROK\]: unknown section .*did you mean \[NETWORK\]\?"),
    ("[INFERENCE]\nborder = -2", r"\[INFERENCE\] border = '-2': border must be non-negative"),
    ("[INFERENCE]\noutput_interp_order = 5", r"output_interp_order = '5': must be one of 0, 1, 2, 3"),
    ("[T1]\naxcodes = (R, L, S)", r"\[T1\] axcodes = '\(R, L, S\)': three axis codes"),
    ("[T1]\npixdim = (1, 1)", r"\[T1\] pixdim = '\(1, 1\)': three positive voxel sizes"),
    ("[T1]\nloader = simpleitk", r"\[T1\] loader = 'simpleitk': niftyport reads images with nibabel only"),
    ("[T1]\nbatch_size = 2", r"\[T1\] batch_size: unknown key here; it belongs in \[NETWORK\]"),
    ("[TRAINING]\nlr = 0.1\nmax_iters = 3", r"\[TRAINING\] max_iters: unknown key; did you mean 'max_iter'\?"),
])
def test_errors_name_file_section_key_value_and_suggest(tmp_path, text, pattern):
    # an extra T1 section is merged by configparser only if repeated: write it separately
    body = MINIMAL.replace("[T1]\n", "") if text.startswith("[T1]") else MINIMAL
    path = write(tmp_path, body + text + "\n")
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(path, niftynet_home=tmp_path)
    assert str(err.value).startswith(f"{path}: ")


def test_training_section_is_accepted(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "[TRAINING]\nlr = 0.1\nmax_iter = 10\n"), niftynet_home=tmp_path)
    assert dict(cfg.training) == {"lr": "0.1", "max_iter": "10"}


@pytest.mark.parametrize("segmentation,pattern", [
    ("image = T1, T2\nnum_classes = 3", r"image = 'T2': no such input section; did you mean 'T1'\?"),
    ("image = T1, T1\nnum_classes = 3", r"image = 'T1, T1': names \[T1\] more than once"),
    ("image = T2\nnum_classes = 3", r"image = 'T2': no such input section; did you mean 'T1'\?"),
    ("num_classes = 3", "names no input section"),
    ("image = T1", r"num_classes = -1: must be at least 2"),
])
def test_image_modality_checks(tmp_path, segmentation, pattern):
    text = f"[SEGMENTATION]\n{segmentation}\n[T1]\n"
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path, text), niftynet_home=tmp_path)


def test_several_image_modalities_keep_their_order_and_their_own_sections(tmp_path):
    text = ("[SEGMENTATION]\nimage = T2, T1\nnum_classes = 3\n"
            "[T1]\ninterp_order = 0\naxcodes = (R, A, S)\nspatial_window_size = (16, 16, 16)\n"
            "[T2]\ninterp_order = 3\npixdim = (2, 2, 2)\nspatial_window_size = (24, 24, 24)\n")
    cfg = load_config(write(tmp_path, text), niftynet_home=tmp_path)
    assert cfg.modalities == ("T2", "T1") and cfg.modality == "T2" and cfg.image.name == "T2"
    assert [s.interp_order for s in cfg.images] == [3, 0]
    assert cfg.images[0].pixdim == (2.0, 2.0, 2.0) and cfg.images[1].axcodes == ("R", "A", "S")
    # NiftyNet's window of the stacked image is the last modality's
    assert cfg.section_window == (16, 16, 16) == cfg.spatial_window_size


def test_missing_segmentation_section_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"\[SEGMENTATION\] section missing"):
        load_config(write(tmp_path, "[NETWORK]\nbatch_size = 1\n"), niftynet_home=tmp_path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.ini")
    with pytest.raises(ConfigError, match="not a valid .ini file"):
        load_config(write(tmp_path, "batch_size = 1\n"), niftynet_home=tmp_path)


def test_relative_paths_resolve_against_home_then_model_dir(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "models" / "zoo").mkdir(parents=True)
    (home / "data" / "scans").mkdir(parents=True)
    text = MINIMAL.replace("[T1]\n", "[T1]\npath_to_search = data/scans, /abs/else\n") + (
        "[SYSTEM]\nmodel_dir = models/zoo\n[NETWORK]\nhistogram_ref_file = hist.txt\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path, text), niftynet_home=home)
    assert cfg.system.model_dir == str(home / "models" / "zoo")
    assert cfg.network.histogram_ref_file == str(home / "models" / "zoo" / "hist.txt")
    assert cfg.image.path_to_search == (str(home / "data" / "scans"), "/abs/else")
    # a folder of that name in the working directory wins, as in NiftyNet
    (tmp_path / "models" / "zoo").mkdir(parents=True)
    cfg = load_config(tmp_path / "cfg.ini", niftynet_home=home)
    assert cfg.system.model_dir == str(tmp_path / "models" / "zoo")


def test_absolute_histogram_file_is_kept(tmp_path):
    text = MINIMAL + f"[NETWORK]\nhistogram_ref_file = {tmp_path / 'h.txt'}\n"
    assert load_config(write(tmp_path, text), niftynet_home=tmp_path).network.histogram_ref_file == str(
        tmp_path / "h.txt")


def test_default_home_reads_niftynet_global_config(tmp_path, monkeypatch):
    (tmp_path / "config.ini").write_text(f"[global]\nhome = {tmp_path / 'nn'}\n")
    monkeypatch.setenv("niftynet_config_home", str(tmp_path))
    assert default_niftynet_home() == tmp_path / "nn"
    monkeypatch.setenv("niftynet_config_home", str(tmp_path / "empty"))
    assert default_niftynet_home() == Path(os.path.expanduser("~/niftynet"))


def test_replace_overrides_like_the_command_line(tmp_path):
    cfg = default_config(niftynet_home=tmp_path)
    new = cfg.replace(spatial_window_size=64, border="(3, 3, 3)", batch_size=4, image={"interp_order": 3})
    assert new.inference.spatial_window_size == (64, 64, 64)
    assert new.spatial_window_size == (64, 64, 64)
    assert new.inference.border == (3, 3, 3)
    assert new.network.batch_size == 4 and new.image.interp_order == 3
    assert cfg.inference.border == (2, 2, 2)  # the original is unchanged
    assert new.replace(pixdim=(2.0, 2.0, 2.0)).image.pixdim == (2.0, 2.0, 2.0)
    moved = cfg.replace(histogram_ref_file="other.txt")
    assert moved.network.histogram_ref_file == os.path.join(cfg.system.model_dir, "other.txt")


def test_replace_validates(tmp_path):
    cfg = default_config(niftynet_home=tmp_path)
    with pytest.raises(ConfigError, match=r"override 'bordr': unknown key; did you mean 'border'\?"):
        cfg.replace(bordr=2)
    with pytest.raises(ConfigError, match=r"\[INFERENCE\] border = -1: border must be non-negative"):
        cfg.replace(border=-1)
    with pytest.raises(ConfigError, match=r"\[NETWORK\] foreground_type = 'otsu': .*did you mean 'otsu_plus'"):
        cfg.replace(network={"foreground_type": "otsu"})
    with pytest.raises(ConfigError, match=r"\[INFERENCE\] spatial_window_size"):
        dataclasses.replace(cfg.inference, spatial_window_size=(64, 0, 64))
