"""A MONAI bundle of a ported network: niftyport's pipeline, run by ``python -m monai.bundle run``.

Layout (MONAI's bundle specification)::

    LICENSE                      licences: the weights', niftyport's
    configs/metadata.json        every mandatory key; network_data_format with shapes, range, labels
    configs/metadata_schema.json the JSON schema metadata.json names, for offline verify_metadata
    configs/inference.json       the inference workflow (below)
    configs/niftynet_config.ini  the NiftyNet config whose preprocessing it reproduces
    configs/landmarks.txt        its histogram landmarks (when it standardises)
    configs/labels.ctbl          the label table (when known)
    models/model.pt              the state_dict (torch.save), for niftyport.networks.build
    models/model.ts              the same network as TorchScript (no niftyport needed to run it)
    docs/README.md, docs/license.txt

The inference workflow, stage by stage, and where it departs from MONAI's
own transforms (each because MONAI's would change NiftyNet's labels):

=============================  =====================================================================
reading + reorientation        niftyport (``NiftyNetPreprocessd``): NiftyNet's affine repair and
                               memory layout (the layout decides the last bit of the whitening sums);
                               the reorientation is MONAI's ``Orientationd`` in effect
resampling to the config's     niftyport: scipy's spline of the config's ``interp_order``, as NiftyNet;
pixdim                         MONAI's ``Spacingd`` interpolates otherwise
volume padding                 niftyport: ``np.pad(mode=volume_padding_mode)``, as MONAI's ``BorderPadd``
foreground mask, histogram     niftyport: no MONAI equivalent (NiftyNet's landmarks, percentile
standardisation, whitening     cut-offs, ``mean_plus`` mask; ``NormalizeIntensityd`` masks differently)
network                        MONAI's ``SimpleInferer``: one pass over the whole padded volume,
                               niftyport's ``--mode full-eager`` (no window seams). NiftyNet's window
                               grid, border crop and overwrite order (``--mode niftynet``) are not
                               reproduced: MONAI's ``SlidingWindowInferer`` averages overlaps instead
argmax                         MONAI's ``AsDiscreted(argmax=True)``
back to the file's grid        niftyport (``RestoreToInputd``): un-pad, nearest-neighbour resampling,
                               reorientation back, as NiftyNet's aggregator
writing                        MONAI's ``SaveImaged`` (int32, ``<name>_parcellation.nii.gz``)
=============================  =====================================================================
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import NetworkError, OptionError
from .metadata import describe
from .shapes import AxisRule, output_rule, size_rule
from .source import ExportSource

#: The versions a bundle is checked with (``pip install 'niftyport[export]'``).
MONAI_VERSION = "1.6.1"
SCHEMA_FILE = "configs/metadata_schema.json"
CONFIG_FILE = "configs/niftynet_config.ini"
LANDMARKS_FILE = "configs/landmarks.txt"
LABELS_FILE = "configs/labels.ctbl"
_VARIABLES = "nmpqrs"


@dataclass(frozen=True)
class BundleResult:
    """What was written: the bundle folder and its files (relative paths, sorted)."""

    folder: Path
    files: tuple[str, ...]


def spatial_shape_rule(rules: Sequence[AxisRule]) -> list[Any]:
    """MONAI's ``spatial_shape`` expressions: ``"8*n"``, ``"96+8*m"``, ``"*"`` (one variable per axis)."""
    shape: list[Any] = []
    for rule, var in zip(rules, _VARIABLES):
        if rule.step == 1 and rule.minimum <= 1:
            shape.append("*")
        elif rule.minimum % rule.step == 0 and rule.minimum == rule.step:
            shape.append(f"{rule.step}*{var}")
        else:
            shape.append(f"{rule.minimum}+{rule.step}*{var}")
    return shape


# --------------------------------------------------------------------------- the NiftyNet config

def _zoo_ini() -> str:
    """The model zoo's config as ``.ini`` text (what :func:`niftyport.config.default_config` holds)."""
    from ..config import MODEL_ZOO_SETTINGS

    lines = []
    for section, values in MODEL_ZOO_SETTINGS.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _config(source: ExportSource, config: str | os.PathLike | None):
    """``(Config, ini text, landmarks file or None)`` of the pipeline the bundle reproduces."""
    from ..config import PACKAGED_LANDMARKS, default_config, load_config

    if config is None:
        if source.spec.name != "highres3dnet":
            raise OptionError(f"a MONAI bundle of {source.spec.name} needs the NiftyNet config it was trained "
                              "with (--config): the built-in one is HighRes3DNet's model zoo config")
        cfg, text = default_config(), _zoo_ini()
    else:
        cfg, text = load_config(config), Path(config).read_text(encoding="utf-8")
    name = (cfg.network.name or source.spec.name).lower()
    if name != source.spec.name:
        raise OptionError(f"{config}: [NETWORK] name = {cfg.network.name} but the weights are {source.spec.name}")
    landmarks = None
    if cfg.network.normalisation and cfg.network.histogram_ref_file:
        landmarks = Path(cfg.network.histogram_ref_file)
        if not landmarks.is_file():
            landmarks = PACKAGED_LANDMARKS if config is None else landmarks
        if not landmarks.is_file():
            raise OptionError(f"{config}: histogram_ref_file {landmarks} not found")
    return cfg, text, landmarks


# --------------------------------------------------------------------------- metadata.json

def _metadata(source: ExportSource, meta: dict, cfg) -> dict:
    """``configs/metadata.json``: MONAI's mandatory keys, then niftyport's own document under ``niftyport``."""
    import numpy
    import torch

    rules = size_rule(source.spec)
    b = source.build
    labels = meta["labels"] or {str(i): f"class {i}" for i in range(b.num_classes)}
    image = cfg.image
    preprocessing = (f"reoriented to {''.join(image.axcodes) or 'the file axes'}, resampled to "
                     f"{image.pixdim or 'the file voxel size'} mm (order {image.interp_order}), padded by "
                     f"{cfg.network.volume_padding_size} ({cfg.network.volume_padding_mode})"
                     + (", histogram-standardised (NiftyNet landmarks)" if cfg.network.normalisation else "")
                     + (", whitened over the foreground (mean 0, std 1 there; unbounded)" if cfg.network.whitening
                        else ""))
    spatial = spatial_shape_rule(rules)
    entry = meta["weights"]["model_zoo_entry"]
    weights = f"the NiftyNet model zoo weights {entry}" if source.shipped else "converted weights"
    return {
        "schema": SCHEMA_FILE,
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by niftyport {__version__}"},
        "monai_version": MONAI_VERSION,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"niftyport": __version__, "nibabel": _version("nibabel"),
                                      "scipy": _version("scipy")},
        "optional_packages_version": {},
        "name": f"{source.spec.name} (NiftyNet) via niftyport",
        "task": f"{source.spec.name}: NiftyNet's {source.spec.niftynet_class} segmentation, "
                "reproduced in PyTorch by niftyport",
        "description": (f"NiftyNet's {source.spec.niftynet_class} ({source.spec.citation}) with {weights} "
                        f"(state sha256 {source.state_sha256}), run with NiftyNet's preprocessing: {preprocessing}."),
        "authors": "NiftyNet network: " + (source.spec.citation or "see references") + "; port: niftyport developers",
        "copyright": "see LICENSE (weights: " + meta["weights"]["licence"] + "; niftyport: Apache-2.0)",
        "data_source": f"the NiftyNet model zoo entry {entry}" if source.shipped else "that of the weights",
        "data_type": "nibabel",
        "image_classes": f"{b.in_channels}-channel image after NiftyNet's preprocessing ({preprocessing})",
        "label_classes": f"{b.num_classes} classes: {meta['label_source']}",
        "pred_classes": f"{b.num_classes} channels of network output (argmax = class); after postprocessing one "
                        "int32 label map on the input file's grid",
        "eval_metrics": {},
        "intended_use": "research; not for clinical use",
        "references": [source.spec.citation] if source.spec.citation else [],
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": "MR" if source.shipped else "n/a",
                "num_channels": b.in_channels, "spatial_shape": spatial, "dtype": "float32", "value_range": [],
                "is_patch_data": False,
                "channel_def": {str(c): f"modality {c} after NiftyNet's preprocessing" for c in range(b.in_channels)}}},
            "outputs": {"pred": {
                "type": "image", "format": "labels", "num_channels": b.num_classes,
                "spatial_shape": _output_shape(source, spatial, rules), "dtype": "float32", "value_range": [],
                "is_patch_data": False, "channel_def": labels}},
            "post_processed_outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": 1, "spatial_shape": ["*"] * len(rules),
                "dtype": "int32", "value_range": [0, b.num_classes - 1], "is_patch_data": False,
                "channel_def": {"0": "class index (the label table: network_data_format outputs pred channel_def)"}}},
        },
        "niftyport": meta,
    }


def _output_shape(source: ExportSource, spatial: list[Any], rules: Sequence[AxisRule]) -> list[Any]:
    out = output_rule(source.spec, rules)
    if any(o != {"scale": 1, "offset": 0} for o in out):
        raise NetworkError(f"a MONAI bundle needs a network whose output has its input's size; {source.spec.name}'s "
                           f"output is {out} (NiftyNet's border handling is not reproduced)")
    return list(spatial)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def metadata_schema() -> dict:
    """The JSON schema ``metadata.json`` names: the mandatory keys of MONAI's bundle specification.

    Written by niftyport from MONAI's ``mb_specification.rst`` (the keys it
    calls mandatory, the tensor keys of ``network_data_format``), plus the
    ``schema`` and ``required_packages_version`` keys MONAI's later schemas require.
    """
    tensor = {"type": "object", "required": ["type", "format", "num_channels", "spatial_shape", "dtype",
                                              "value_range", "is_patch_data", "channel_def"],
              "properties": {"type": {"type": "string"}, "format": {"type": "string"},
                             "modality": {"type": "string"}, "num_channels": {"type": "integer", "minimum": 1},
                             "spatial_shape": {"type": "array", "items": {"type": ["integer", "string"]}},
                             "dtype": {"type": "string"}, "value_range": {"type": "array", "items": {"type": "number"}},
                             "is_patch_data": {"type": "boolean"}, "channel_def": {"type": "object"}}}
    io = {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/tensor"}}
    strings = ["version", "monai_version", "pytorch_version", "numpy_version", "task", "description", "authors",
               "copyright"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": ("MONAI bundle metadata.json (mandatory keys of MONAI's bundle specification), "
                  "niftyport's transcription"),
        "$defs": {"tensor": tensor},
        "type": "object",
        "required": ["schema", *strings, "required_packages_version", "optional_packages_version",
                     "network_data_format"],
        "properties": {**{k: {"type": "string"} for k in ["schema", *strings]},
                       "required_packages_version": {"type": "object"},
                       "optional_packages_version": {"type": "object"},
                       "changelog": {"type": "object"}, "references": {"type": "array"},
                       "network_data_format": {"type": "object", "required": ["inputs", "outputs"],
                                               "properties": {"inputs": io, "outputs": io,
                                                              "post_processed_outputs": io}}},
    }


# --------------------------------------------------------------------------- inference.json

def inference_config(source: ExportSource, *, landmarks: bool) -> dict:
    """``configs/inference.json``: MONAI's ConfigParser syntax; see the module docstring for the stages."""
    b = source.build
    paths = {"config_file": "@niftynet_config", "landmarks_file": "@landmarks"}
    return {
        "imports": ["$import glob", "$import os", "$import numpy", "$import torch",
                    "$import niftyport.export.monai_transforms"],
        "bundle_root": ".",
        "dataset_dir": "$@bundle_root + '/sample'",
        "output_dir": "$@bundle_root + '/eval'",
        "datalist": "$list(sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*'))))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "niftynet_config": f"$@bundle_root + '/{CONFIG_FILE}'",
        "landmarks": f"$@bundle_root + '/{LANDMARKS_FILE}'" if landmarks else None,
        "network_def": {"_target_": "niftyport.networks.build", "name": source.spec.name,
                        "num_classes": b.num_classes, "in_channels": b.in_channels, "acti_func": b.acti_func,
                        **{k: list(v) if isinstance(v, tuple) else v for k, v in b.options.items()}},
        "network": "$@network_def.to(@device).eval()",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "niftyport.export.monai_transforms.NiftyNetPreprocessd", "keys": "image", **paths}]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': f} for f in @datalist]",
                    "transform": "@preprocessing"},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "niftyport.export.monai_transforms.RestoreToInputd", "keys": "pred", **paths},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "parcellation",
             "output_ext": ".nii.gz", "output_dtype": "$numpy.int32", "resample": False, "separate_folder": False,
             "print_log": False}]},
        "initialize": ["$torch.set_grad_enabled(False)",
                       "$@network.load_state_dict(torch.load(@bundle_root + '/models/model.pt', "
                       "map_location=@device, weights_only=True))"],
        "run": ["$[@postprocessing(dict(d, pred=@inferer(d['image'][None].to(@device), @network)[0].cpu())) "
                "for d in @dataset]"],
    }


# --------------------------------------------------------------------------- LICENSE and README

def _licence(source: ExportSource, meta: dict) -> str:
    weights = meta["weights"]["licence"]
    return (f"Licences of this bundle\n=======================\n\n"
            f"models/model.pt, models/model.ts (the trained weights of {source.spec.name}): {weights}.\n"
            + ("configs/labels.ctbl and configs/landmarks.txt come from the same NiftyNet model zoo entry, under the "
               "same licence.\n" if source.shipped else "")
            + f"\nThe configuration files and the pipeline they run (niftyport {__version__}, reproducing "
            "NiftyNet's algorithms, themselves Apache-2.0): Apache License 2.0, "
            "http://www.apache.org/licenses/LICENSE-2.0\n")


def _readme(source: ExportSource, meta: dict, files: Sequence[str]) -> str:
    spec, b = source.spec, source.build
    rule = ", ".join(f"{s['axis']}: {s['rule']}" for s in meta["input"]["spatial"])
    return f"""# {spec.name} (NiftyNet) as a MONAI bundle

NiftyNet's `{spec.niftynet_class}` ({spec.citation}), run in PyTorch by niftyport {__version__}
with NiftyNet's own preprocessing and postprocessing. Input: a NIfTI scan; output: an int32 label map
({b.num_classes} classes; names in `configs/metadata.json`, `network_data_format.outputs.pred.channel_def`)
on the scan's own grid.

```bash
pip install 'monai=={MONAI_VERSION}' jsonschema fire   # and niftyport {__version__} (its repository: '.[export]')
python -m monai.bundle verify_metadata --meta_file configs/metadata.json --filepath {SCHEMA_FILE}
python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
    --dataset_dir /path/to/scans --output_dir /path/to/labels     # every *.nii* there -> <name>_parcellation.nii.gz
```

`verify_metadata` runs offline: the schema `metadata.json` names (`{SCHEMA_FILE}`) ships in the bundle.
It is niftyport's transcription of the mandatory keys of MONAI's bundle specification; MONAI's published
schema files were not at hand when it was written.

## Pipeline and where it departs from MONAI's transforms

NiftyNet's reader, resampling, padding, foreground mask, histogram standardisation and whitening are
niftyport's (`niftyport.export.monai_transforms.NiftyNetPreprocessd`): MONAI's `LoadImaged` +
`Spacingd` + `NormalizeIntensityd` would give other network inputs (another interpolation, another
foreground mask, another memory layout for the float32 sums) and so other labels. The network runs
through MONAI's `SimpleInferer` on the whole padded volume at once, as `niftyport parcellate --mode
full-eager` does: no window seams. NiftyNet's own window grid, border crop and overwrite order
(`niftyport parcellate`, default mode) are not reproduced: the labels differ from NiftyNet's near its
window borders. MONAI's `AsDiscreted(argmax=True)` takes the labels, niftyport's `RestoreToInputd`
maps them back to the scan's grid (un-padding, nearest-neighbour resampling, reorientation) and
MONAI's `SaveImaged` writes them.

A whole head at 1 mm needs several GB for one pass; on a small machine use `niftyport parcellate`
(tiled, same labels as `--mode full-eager` within ties) instead.

## Network

- input `(N, {b.in_channels}, X, Y, Z)` float32, sides {rule}
- output `(N, {b.num_classes}, X, Y, Z)`: {meta['output']['meaning']}
- weights: state sha256 `{source.state_sha256}` ({meta['weights']['licence']})
- `models/model.pt`: state_dict for `niftyport.networks.build({spec.name!r}, num_classes={b.num_classes}, \
in_channels={b.in_channels}, acti_func={b.acti_func!r})`; `models/model.ts`: the same network as
  TorchScript (`torch.jit.load`, no niftyport), bit for bit the eager network.

Files: {', '.join(files)}.
"""


# --------------------------------------------------------------------------- writing

def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _fill(folder: Path, source: ExportSource, config: str | os.PathLike | None,
          shape: Sequence[int] | None) -> None:
    """Write every file of the bundle into the empty ``folder``."""
    import torch

    from .torchscript import export_torchscript

    cfg, ini, landmarks = _config(source, config)
    for sub in ("configs", "models", "docs"):
        (folder / sub).mkdir()
    ts_meta = export_torchscript(source, folder / "models" / "model.ts", shape=shape)
    torch.save(source.model.state_dict(), folder / "models" / "model.pt")
    meta = describe(source, {"format": "monai-bundle", "torchscript_check": ts_meta["export"]["check"],
                             "inferer": "SimpleInferer (whole padded volume: niftyport --mode full-eager)"})
    (folder / CONFIG_FILE).write_text(ini, encoding="utf-8")
    if landmarks is not None:
        shutil.copyfile(landmarks, folder / LANDMARKS_FILE)
    pretrained = source.spec.pretrained
    if source.shipped and pretrained is not None and pretrained.labels is not None and meta["labels"]:
        shutil.copyfile(pretrained.labels, folder / LABELS_FILE)
    _write_json(folder / "configs" / "metadata.json", _metadata(source, meta, cfg))
    _write_json(folder / SCHEMA_FILE, metadata_schema())
    _write_json(folder / "configs" / "inference.json", inference_config(source, landmarks=landmarks is not None))
    licence = _licence(source, meta)
    (folder / "LICENSE").write_text(licence, encoding="utf-8")
    (folder / "docs" / "license.txt").write_text(licence, encoding="utf-8")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) + ["docs/README.md"]
    (folder / "docs" / "README.md").write_text(_readme(source, meta, files), encoding="utf-8")


def export_monai_bundle(source: ExportSource, folder: str | os.PathLike, *, config: str | os.PathLike | None = None,
                        shape: Sequence[int] | None = None, force: bool = False) -> BundleResult:
    """Write the MONAI bundle of ``source`` into ``folder`` (whole or not at all; ``force`` replaces one).

    ``config``: the NiftyNet ``.ini`` whose preprocessing the bundle
    reproduces (default: HighRes3DNet's model zoo config, HighRes3DNet only).
    ``shape``: where the TorchScript copy is traced and checked.
    """
    folder = Path(folder)
    if folder.exists() and not force:
        raise OptionError(f"output {folder} exists; use --force to overwrite it")
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"output {folder} is a file, not a bundle folder")
    parent = folder.parent if str(folder.parent) else Path(".")
    if not parent.is_dir():
        raise OptionError(f"{folder}: output folder {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    try:
        _fill(tmp, source, config, shape)
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=parent))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return BundleResult(folder, tuple(files))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
