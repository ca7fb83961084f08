"""Make the references of ``tests/test_segment.py`` with NiftyNet's own ``net_segment inference``.

Run with the oracle's Python (NiftyNet 0.6.0 on TensorFlow, ``shared/oracle``)::

    $ORACLE_VENV/bin/python tests/oracle/make_segment_refs.py [CASE ...]   # default: every case
    $ORACLE_VENV/bin/python tests/oracle/make_segment_refs.py list

For each case, in a fresh folder laid out as a NiftyNet model folder:

* the checkpoint: NiftyNet's own graph with seeded random weights, built by
  ``make_network_refs.py`` (the network reference named by the case; its
  variables' digests are checked against ``tests/data/networks/<key>/meta.json``,
  so the weights ``tests/network_refs.py`` regenerates are these);
* the inputs: crops of real T1s from ``shared/data`` written as NIfTI (for two
  modalities, a crop of a second T1 written on the first one's grid);
* a config, and NiftyNet's application run on it, unmodified, in a process of
  its own: ``niftynet.main`` with ``net_segment inference -c config.ini``. Two
  things are patched from outside: UNet3D's ``n_features`` (set after
  construction, as the network references do) and a recorder around
  ``ImageReader.layer_op`` that keeps the sha256 of the preprocessed image
  NiftyNet hands its sampler (padded, normalised, ``(X, Y, Z, 1, M)``).

Kept in ``tests/data/segment/<case>/`` (small): ``meta.json`` (the config
template, the crops and the sha256 of their arrays, the network reference,
the preprocessed image's digest, NiftyNet's output file name, shape, dtype and
affine, versions) and ``reference.npz`` (labels as int16, or probabilities,
float32, of a slab where the volume is large). A network without a reference
in tests/data/networks (:data:`SEGMENT_NETWORKS`: the 2-D DenseVNet, built by
``make_network_refs.py``'s own code from a variant spec) keeps its variable
listing, seed and digests in ``tests/data/segment/_networks/<key>/``.
UNet2D's ``n_fea`` is patched like UNet3D's ``n_features``.

The shared folder is ``$NIFTYPORT_SHARED``, else ``../shared`` beside the repository.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
ORACLE = SHARED / "oracle"
NETWORK_REFS = REPO / "tests" / "data" / "networks"
OUT = REPO / "tests" / "data" / "segment"
HERE = Path(__file__).resolve().parent

#: The real scans the inputs are cut from: file, then the crop's start and size (voxels).
T1 = ("real_t1_chris_1mm_skull.nii.gz", (79, 121, 100), (18, 9, 9))
T2 = ("colin27_ch2_1mm_skull.nii.gz", (80, 100, 98), (18, 9, 9))
TINY = ("real_t1_nipy_tiny_2mm_crop.nii.gz", (0, 0, 0), (33, 41, 25))
#: For UNet2D: three axial slices, and one slice written as a 2-D NIfTI (a fourth item: planar).
SLICES = ("real_t1_chris_1mm_skull.nii.gz", (70, 100, 100), (40, 36, 3))
PLANAR = ("real_t1_chris_1mm_skull.nii.gz", (70, 100, 101), (40, 36, 1), "planar")
TINY_SLAB = ("real_t1_nipy_tiny_2mm_crop.nii.gz", (0, 0, 10), (33, 41, 4))

LANDMARKS = {  # 13 increasing values per modality (the model zoo's T1 line, and a stretched copy)
    "T1": [0.0, 8.06, 15.5, 18.7, 21.5, 26.1, 30.0, 33.8, 38.2, 40.7, 43.5, 51.1, 100.0],
    "T2": [0.0, 12.1, 23.3, 28.1, 32.3, 39.2, 45.0, 50.7, 57.3, 61.1, 65.3, 76.7, 150.0],
}

UNET_CONFIG = """[T1]
path_to_search = {data}
filename_contains = _T1
spatial_window_size = (96, 96, 96)
pixdim = (1.1, 1.1, 1.1)
axcodes = (R, A, S)
interp_order = 1

[T2]
path_to_search = {data}
filename_contains = _T2
spatial_window_size = (96, 96, 96)
pixdim = (1.1, 1.1, 1.1)
axcodes = (R, A, S)
interp_order = 3

[SYSTEM]
cuda_devices = ""
num_threads = 2
num_gpus = 1
model_dir = {model_dir}

[NETWORK]
name = unet
activation_function = prelu
batch_size = 2
volume_padding_size = 44
volume_padding_mode = minimum
window_sampling = uniform
histogram_ref_file = {model_dir}/landmarks.txt
norm_type = percentile
cutoff = (0.01, 0.99)
normalisation = True
whitening = True
normalise_foreground_only = True
foreground_type = {foreground_type}
multimod_foreground_type = {fusion}

[INFERENCE]
border = (44, 44, 44)
inference_iter = 1
save_seg_dir = {model_dir}/output
output_interp_order = {output_interp_order}
spatial_window_size = (96, 96, 96)

[SEGMENTATION]
image = T1, T2
num_classes = 8
output_prob = {output_prob}
label_normalisation = False
"""

DENSE_VNET_CONFIG = """[ct]
path_to_search = {data}
filename_contains = _ct
spatial_window_size = ({window}, {window}, {window})
interp_order = 1
axcodes = (A, R, S)

[SYSTEM]
cuda_devices = ""
num_threads = 2
num_gpus = 1
model_dir = {model_dir}

[NETWORK]
name = dense_vnet
batch_size = 1
volume_padding_size = {padding}
window_sampling = resize
whitening = True
normalise_foreground_only = False

[INFERENCE]
border = {border}
inference_iter = 1
save_seg_dir = {model_dir}/output
output_interp_order = 0

[SEGMENTATION]
image = ct
num_classes = 9
output_prob = {output_prob}
label_normalisation = False
"""

LABELS_CONFIG = """[ct]
path_to_search = {data}
filename_contains = _ct
spatial_window_size = (48, 48, 48)
interp_order = 1
axcodes = (A, R, S)

[SYSTEM]
cuda_devices = ""
num_threads = 2
num_gpus = 1
model_dir = {model_dir}

[NETWORK]
name = dense_vnet
batch_size = 3
volume_padding_size = 12
window_sampling = {sampling}
whitening = True
normalise_foreground_only = True
foreground_type = mean_plus
histogram_ref_file = {model_dir}/landmarks.txt

[INFERENCE]
border = (4, 4, 4)
inference_iter = 1
save_seg_dir = {model_dir}/output
output_interp_order = 0

[SEGMENTATION]
image = ct
num_classes = 9
output_prob = False
label_normalisation = True
"""

UNET2D_CONFIG = """[slice]
path_to_search = {data}
filename_contains = _slice
spatial_window_size = {section_window}
axcodes = (A, R, S)
interp_order = 1

[SYSTEM]
cuda_devices = ""
num_threads = 2
num_gpus = 1
model_dir = {model_dir}

[NETWORK]
name = unet_2d
batch_size = 2
volume_padding_size = (92, 92, 0)
window_sampling = {sampling}
whitening = True
normalise_foreground_only = True
foreground_type = {foreground_type}

[INFERENCE]
border = {border}
inference_iter = 1
save_seg_dir = {model_dir}/output
output_interp_order = 0
spatial_window_size = (220, 220, 1)

[SEGMENTATION]
image = slice
num_classes = 5
output_prob = {output_prob}
label_normalisation = False
"""

DENSE_VNET_2D_CONFIG = """[ct]
path_to_search = {data}
filename_contains = _ct
spatial_window_size = (48, 48, 1)
interp_order = 1
axcodes = (A, R, S)

[SYSTEM]
cuda_devices = ""
num_threads = 2
num_gpus = 1
model_dir = {model_dir}

[NETWORK]
name = dense_vnet
batch_size = 3
volume_padding_size = (8, 8, 0)
window_sampling = uniform
whitening = True
normalise_foreground_only = False

[INFERENCE]
border = (4, 4, 4)
inference_iter = 1
save_seg_dir = {model_dir}/output
output_interp_order = 0

[SEGMENTATION]
image = ct
num_classes = 9
output_prob = {output_prob}
label_normalisation = False
"""

#: Networks these references need that tests/data/networks has not: key -> (the oracle's base spec, changes).
#: Their variables listing and digests are kept in ``tests/data/segment/_networks/<key>/`` instead.
SEGMENT_NETWORKS = {
    "dense_vnet_2d": ("dense_vnet", {
        "seed": 230, "shape": (1, 48, 48, 1),
        "extra_note": "Variant: a 2-D input, so NiftyNet builds the 2-D DenseVNet (2-D kernels)."}),
}

#: The label mapping NiftyNet keeps beside the landmarks (the user's label values, the network's indices).
LABEL_MAPPING = {"label_label-from": [0, 1, 2, 4, 7, 11, 16, 22, 29], "label_label-to": list(range(9))}

#: case -> what it runs. ``slab``: the z range of the probabilities kept (None: all).
CASES = {
    "unet3d_t1t2_labels": dict(
        network="unet3d_prelu", template=UNET_CONFIG, inputs={"sub1_T1": T1, "sub1_T2": T2},
        values=dict(foreground_type="otsu_plus", fusion="and", output_prob="False", output_interp_order=0),
        attrs={"n_features": [4, 8, 8, 16, 32]}, slab=None,
        what="two modalities (T1, T2), grid sampler, UNet3D (output 88 voxels smaller than its 96^3 "
             "window, border 44; 3 windows along x, the first one repeated last to fill the batch of 2), "
             "per-modality resampling (interp_order 1 and 3), histogram standardisation and whitening "
             "over an otsu 'and' mask, labels"),
    "unet3d_t1t2_prob": dict(
        network="unet3d_prelu", template=UNET_CONFIG, inputs={"sub1_T1": T1, "sub1_T2": T2},
        values=dict(foreground_type="mean_plus", fusion="or", output_prob="True", output_interp_order=1),
        attrs={"n_features": [4, 8, 8, 16, 32]}, slab=None,
        what="as unet3d_t1t2_labels with a mean_plus 'or' mask, output_prob = True and output_interp_order 1"),
    "dense_vnet_resize_labels": dict(
        network="dense_vnet", template=DENSE_VNET_CONFIG, inputs={"case1_ct": TINY},
        values=dict(window=48, padding=0, border="(0, 0, 0)", output_prob="False"), attrs={}, slab=None,
        what="the model zoo's dense_vnet_abdominal_ct settings at a 48^3 window: resize sampler, ARS axcodes, "
             "interp_order 1, no volume padding, border 0, output_interp_order 0, 9 classes; labels"),
    "dense_vnet_resize_prob": dict(
        network="dense_vnet", template=DENSE_VNET_CONFIG, inputs={"case1_ct": TINY},
        values=dict(window=48, padding=2, border="(2, 2, 2)", output_prob="True"), attrs={}, slab=(10, 14),
        what="as dense_vnet_resize_labels with volume padding 2 and border 2 (the aggregator's edge padding), "
             "output_prob = True (probabilities of the slab z = 10..13 kept)"),
    "dense_vnet_zoo144_labels": dict(
        network="dense_vnet", template=DENSE_VNET_CONFIG, inputs={"case1_ct": TINY},
        values=dict(window=144, padding=0, border="(0, 0, 0)", output_prob="False"), attrs={}, slab=None,
        what="the model zoo's dense_vnet_abdominal_ct settings with its 144^3 window; labels"),
    "dense_vnet_zoo144_prob": dict(
        network="dense_vnet", template=DENSE_VNET_CONFIG, inputs={"case1_ct": TINY},
        values=dict(window=144, padding=0, border="(0, 0, 0)", output_prob="True"), attrs={}, slab=(12, 14),
        what="the model zoo's dense_vnet_abdominal_ct settings with its 144^3 window; output_prob = True "
             "(probabilities of the slab z = 12, 13 kept)"),
    "dense_vnet_grid_label_map": dict(
        network="dense_vnet", template=LABELS_CONFIG, inputs={"case1_ct": TINY}, extra_landmarks=LABEL_MAPPING,
        values=dict(sampling="uniform"), attrs={}, slab=None,
        what="DenseVNet through the grid sampler (48^3 windows, border 4, volume padding 12, batches of 3), "
             "whitening over a mean_plus mask, label_normalisation = True: labels mapped back to the values "
             "of histogram_ref_file's label_label-from line"),
    "dense_vnet_resize_label_map": dict(
        network="dense_vnet", template=LABELS_CONFIG, inputs={"case1_ct": TINY}, extra_landmarks=LABEL_MAPPING,
        values=dict(sampling="resize"), attrs={}, slab=None,
        what="as dense_vnet_grid_label_map with the resize sampler: NiftyNet's resize aggregator does not map "
             "the labels back (the written labels are the network's indices)"),
    "unet2d_slices_labels": dict(
        network="unet2d", template=UNET2D_CONFIG, inputs={"sub1_slice": SLICES},
        values=dict(section_window="(220, 220, 1)", sampling="uniform", border="(92, 92, 92)",
                    foreground_type="otsu_plus", output_prob="False"),
        attrs={"n_fea": [16, 32, 64, 128, 256]}, attrs_class="niftynet.network.unet_2d.UNet2D", slab=None,
        what="UNet2D over 2-D windows (220, 220, 1) of a 3-D volume (40 x 36 x 3, reoriented to ARS), slice by "
             "slice: volume padding (92, 92, 0), border 92 on every axis (NiftyNet crops 2-D outputs in x and y "
             "only), output 36 x 36 per window, 3 windows per slice (9, batches of 2), labels"),
    "unet2d_planar_prob": dict(
        network="unet2d", template=UNET2D_CONFIG, inputs={"sub1_slice": PLANAR},
        values=dict(section_window="(220, 220, 1)", sampling="uniform", border="(92, 92, 0)",
                    foreground_type="mean_plus", output_prob="True"),
        attrs={"n_fea": [16, 32, 64, 128, 256]}, attrs_class="niftynet.network.unet_2d.UNet2D", slab=None,
        what="UNet2D on a 2-D NIfTI slice (40 x 36; the section's axcodes not applied, as NiftyNet's 2-D images "
             "are neither reoriented nor resampled), grid sampler, whitening over a mean_plus mask, probabilities"),
    "dense_vnet_2d_labels": dict(
        network="dense_vnet_2d", template=DENSE_VNET_2D_CONFIG, inputs={"case1_ct": TINY_SLAB},
        values=dict(output_prob="False"), attrs={}, slab=None,
        what="DenseVNet on 2-D windows (48, 48, 1) of a CT volume (33 x 41 x 4, reoriented to ARS): NiftyNet "
             "builds the 2-D DenseVNet from the squeezed windows; volume padding (8, 8, 0), border 4, "
             "6 windows per slice (24, batches of 3), labels"),
    "dense_vnet_2d_prob": dict(
        network="dense_vnet_2d", template=DENSE_VNET_2D_CONFIG, inputs={"case1_ct": TINY_SLAB},
        values=dict(output_prob="True"), attrs={}, slab=(1, 3),
        what="as dense_vnet_2d_labels, output_prob = True (probabilities of the slices z = 1, 2 kept)"),
    "unet2d_planar_resize_labels": dict(
        network="unet2d", template=UNET2D_CONFIG, inputs={"sub1_slice": PLANAR},
        values=dict(section_window="(220, 220)", sampling="resize", border="(0, 0, 0)",
                    foreground_type="mean_plus", output_prob="False"),
        attrs={"n_fea": [16, 32, 64, 128, 256]}, attrs_class="niftynet.network.unet_2d.UNet2D", slab=None,
        what="UNet2D on a 2-D NIfTI slice through the resize sampler (a two-value window (220, 220), padded "
             "with 1 to (220, 220, 1)): the padded slice zoomed to 220 x 220, the 36 x 36 output zoomed back; labels"),
}


def crop(spec):
    """The crop of a shared scan: (array in its on-disk dtype, affine of the crop, header zooms)."""
    import nibabel as nib
    import numpy as np

    name, start, size = spec[:3]
    img = nib.load(str(SHARED / "data" / name))
    data = np.asanyarray(img.dataobj)
    data = data.reshape(data.shape[:3])[tuple(slice(s, s + n) for s, n in zip(start, size))]
    data = data.astype(data.dtype.newbyteorder("="))  # native byte order (the tiny crop is big-endian)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.asarray(start, dtype=np.float64) + img.affine[:3, 3]
    return np.ascontiguousarray(data), affine


def write_inputs(case: dict, folder: Path) -> dict:
    """The case's scans as NIfTI files in ``folder``, all on the first one's grid; returns their description."""
    import nibabel as nib
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    described = {}
    first_affine = None
    for stem, spec in case["inputs"].items():
        data, affine = crop(spec)
        planar = spec[3:] == ("planar",)
        if planar:
            data = data[:, :, 0]  # a 2-D NIfTI (header dim[0] = 2)
        first_affine = affine if first_affine is None else first_affine
        nib.save(nib.Nifti1Image(data, first_affine), str(folder / f"{stem}.nii.gz"))
        described[stem] = {"file": spec[0], "start": list(spec[1]), "size": list(spec[2]), "planar": planar,
                           "dtype": str(data.dtype),
                           "sha256": hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()}
    described["affine"] = first_affine.tolist()
    return described


def _build_network(key: str, out_root: str) -> int:
    """Child process: make_network_refs' build of ``key``, with :data:`SEGMENT_NETWORKS` known to it."""
    sys.path.insert(0, str(HERE))
    import make_network_refs

    make_network_refs.VARIANTS.update(SEGMENT_NETWORKS)
    return make_network_refs._one(key, out_root)


def build_checkpoint(key: str, folder: Path, keep: dict | None = None) -> Path:
    """``folder/models/model.ckpt-1``: NiftyNet's graph of reference ``key`` with its seeded weights.

    A key of tests/data/networks is checked against its digests there; one of
    :data:`SEGMENT_NETWORKS` gets its seed, digests and variable rows put into ``keep``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        script = HERE / "make_network_refs.py"
        rc = subprocess.call([sys.executable, __file__, "_net", key, tmp], stdout=subprocess.DEVNULL)
        if rc:
            raise SystemExit(f"{key}: building the network failed (exit {rc})")
        digests = json.loads(subprocess.check_output(
            [sys.executable, str(script), "_digests", str(Path(tmp) / key / "model.ckpt-1")]))
        if key in SEGMENT_NETWORKS:
            import csv

            meta = json.loads((Path(tmp) / key / "meta.json").read_text())
            with open(Path(tmp) / key / "variables.csv", newline="") as f:
                rows = [{k: row[k] for k in ("name", "shape", "dtype", "trainable", "kind", "init")}
                        for row in csv.DictReader(f)]
            keep.update(key=key, seed=int(meta["random_values"].split("default_rng(")[1].split(")")[0]),
                        constructor_kwargs=meta["constructor_kwargs"], input_shape=meta["input_shape"],
                        variable_sha256=digests, rows=rows)
        else:
            expected = json.loads((NETWORK_REFS / key / "meta.json").read_text())["variable_sha256"]
            if digests != expected:
                raise SystemExit(f"{key}: the checkpoint differs from tests/data/networks/{key}")
        models = folder / "models"
        models.mkdir(parents=True, exist_ok=True)
        for f in (Path(tmp) / key).iterdir():
            if f.name.startswith("model.ckpt-1."):
                shutil.copy(f, models / f.name)
        (models / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1"\n'
                                           'all_model_checkpoint_paths: "model.ckpt-1"\n')
    return models / "model.ckpt-1"


def _run_niftynet(config: str, attrs_json: str, record: str, attrs_class: str = "niftynet.network.unet.UNet3D") -> int:
    """Child process: NiftyNet's application on ``config``, with the two outside patches."""
    sys.path.insert(0, str(ORACLE))
    sys.path.insert(0, str(ORACLE / "networks"))
    import nn_compat_networks  # noqa: F401  (the oracle's shims, before niftynet)
    import nn_compat  # noqa: F401
    import numpy as np
    import importlib

    import niftynet.io.image_reader as image_reader

    attrs = json.loads(attrs_json)
    if attrs:
        module_name, _, class_name = attrs_class.rpartition(".")
        klass = getattr(importlib.import_module(module_name), class_name)
        original_init = klass.__init__

        def narrowed_init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            for name, value in attrs.items():
                setattr(self, name, list(value))
        klass.__init__ = narrowed_init

    original_layer_op = image_reader.ImageReader.layer_op

    def recording_layer_op(self, *args, **kwargs):
        image_id, data, interp = original_layer_op(self, *args, **kwargs)
        if data and "image" in data:
            array = np.asarray(data["image"])
            with open(record, "a") as f:
                f.write(json.dumps({"shape": list(array.shape), "dtype": str(array.dtype),
                                    "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest(),
                                    "interp_orders": {k: list(v) for k, v in interp.items()}}) + "\n")
        return image_id, data, interp
    image_reader.ImageReader.layer_op = recording_layer_op

    from niftynet import main as niftynet_main
    os.chdir(os.path.dirname(config))
    sys.argv = ["net_segment", "inference", "-c", config]
    return niftynet_main()


def versions() -> dict:
    """Versions of what made the reference (read without importing TensorFlow)."""
    import importlib.metadata as metadata

    def version(*names):
        for n in names:
            try:
                return metadata.version(n)
            except metadata.PackageNotFoundError:
                continue
        return None
    return {n: version(*alts) for n, alts in {"niftynet": ("niftynet",), "tensorflow": ("tensorflow-cpu", "tensorflow"),
                                              "numpy": ("numpy",), "scipy": ("scipy",), "nibabel": ("nibabel",)}.items()}


def make(name: str) -> None:
    import nibabel as nib
    import numpy as np

    case = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = write_inputs(case, work / "data")
        network = {}
        build_checkpoint(case["network"], work, network)
        landmarks = {**LANDMARKS, **case.get("extra_landmarks", {})}
        (work / "landmarks.txt").write_text("".join(f"{k} {' '.join(map(str, v))}\n" for k, v in landmarks.items()))
        config = work / "config.ini"
        config.write_text(case["template"].format(data=work / "data", model_dir=work, **case["values"]))
        record = work / "record.jsonl"
        rc = subprocess.call([sys.executable, __file__, "_run", str(config), json.dumps(case["attrs"]), str(record),
                              case.get("attrs_class", "niftynet.network.unet.UNet3D")])
        if rc:
            raise SystemExit(f"{name}: net_segment inference failed (exit {rc})")
        rows = [line.split(",") for line in (work / "output" / "inferred.csv").read_text().splitlines()]
        (subject, path), = rows
        img = nib.load(path)
        output = np.asanyarray(img.dataobj)
        meta = {
            "case": name, "what": case["what"], "network_ref": case["network"], "network_attrs": case["attrs"],
            "config_template": case["template"], "config_values": case["values"],
            "landmarks": landmarks, "inputs": inputs, "subject": subject, "output_file": os.path.basename(path),
            "output_shape": list(output.shape), "output_dtype": str(output.dtype),
            "output_affine": img.affine.tolist(),
            "preprocessed": [json.loads(line) for line in record.read_text().splitlines()],
            "slab": case["slab"],
            "network_class": case.get("attrs_class", "niftynet.network.unet.UNet3D"),
            "versions": versions(),
        }
        dest = OUT / name
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        if output.dtype.kind in "iu":
            np.savez_compressed(dest / "reference.npz", labels=output.astype(np.int16))
        else:
            lo, hi = case["slab"] or (0, output.shape[2])
            np.savez_compressed(dest / "reference.npz", probabilities=output[:, :, lo:hi].astype(np.float32))
        (dest / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        if network:  # the weights' recipe, shared by the cases: tests regenerate them (tests/network_refs.py's draws)
            import csv

            folder = OUT / "_networks" / network["key"]
            folder.mkdir(parents=True, exist_ok=True)
            rows = network.pop("rows")
            (folder / "meta.json").write_text(json.dumps(network, indent=1) + "\n")
            with open(folder / "variables.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        print(f"{name}: {meta['output_file']} {output.shape} {output.dtype}, {size / 1e3:.0f} kB", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_net"]:
        return _build_network(argv[1], argv[2])
    if argv[:1] == ["_run"]:
        return _run_niftynet(*argv[1:5]) or 0
    if argv[:1] == ["list"]:
        print("\n".join(CASES))
        return 0
    for name in argv or list(CASES):
        make(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
