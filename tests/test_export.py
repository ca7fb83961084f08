"""Exports for today's tools: TorchScript (bit for bit), ONNX (onnxruntime within 1e-5), the MONAI bundle.

Every registered network is exported, whatever the registry holds when the
tests run: with the oracle's weights of its reference case when there is one
(``tests/data/networks``: NiftyNet's own small random variables, realistic
scales), else freshly initialised; at the smallest valid input with sides
>= 8. The expected outputs are eager PyTorch's on the same input.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import DATA, REPO, need, one_line_error
from network_refs import REFS, load_ref, ref_keys
from niftyport import networks
from niftyport.export.shapes import size_rule, smallest_shape
from niftyport.export.source import BuildArgs, from_model

SPECS = networks.specs()
#: onnxruntime within this of eager PyTorch, relative to max(1, max|output|).
TOLERANCE = 1e-5
T1 = DATA / "real_t1_chris_1mm_skull.nii.gz"
TINY_T1 = DATA / "real_t1_nipy_tiny_2mm_crop.nii.gz"


def _meta(key):
    return json.loads((REFS / key / "meta.json").read_text())


def _ref_key(spec):
    """The first oracle reference of ``spec``'s NiftyNet class with its weights (relu before prelu), or None."""
    keys = [k for k in ref_keys() if _meta(k).get("class") == spec.niftynet_class
            and (REFS / k / "variables.csv").is_file()]
    return sorted(keys, key=lambda k: ("prelu" in k, k))[0] if keys else None


def _recorded_kwargs(spec):
    """Constructor arguments a reference without regenerable weights records (``niftyport_kwargs``), or {}."""
    keys = sorted(k for k in ref_keys() if k.split("_")[0] == spec.name and "niftyport_kwargs" in _meta(k))
    return dict(_meta(keys[0])["niftyport_kwargs"]) if keys else {}


def _case(spec):
    """``(ExportSource, spatial shape)``: the network with small weights, its smallest valid input >= 8."""
    key = _ref_key(spec)
    if key is not None:
        ref = load_ref(key)
        kwargs = {**ref.constructor_kwargs, **ref.attributes}
        in_channels = int(ref.meta["input_shape"][-1])
        model = networks.load(spec.name, ref.variables, in_channels=in_channels, **kwargs)
    else:  # freshly initialised, seeded, with the arguments a reference records
        torch.manual_seed(0)
        kwargs = {"num_classes": spec.default_num_classes or 3, **_recorded_kwargs(spec)}
        in_channels = int(kwargs.pop("in_channels", 1))
        model = networks.build(spec.name, in_channels=in_channels, **kwargs)
    num_classes = kwargs.pop("num_classes", spec.default_num_classes)
    build = BuildArgs(num_classes, in_channels, kwargs.pop("acti_func", "relu"), kwargs)
    return from_model(spec, model, build), smallest_shape(size_rule(spec), 8)


def _input(source, shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((1, source.build.in_channels, *shape), generator=generator)


def _eager(source, x):
    with torch.no_grad():
        return source.model(x)


def _onnxruntime(path, x):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install '.[export]')")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _assert_close(got, expected):
    assert got.shape == tuple(expected.shape)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.numpy())))
    bound = TOLERANCE * max(1.0, float(expected.abs().max()))
    assert diff <= bound, f"max|onnxruntime - eager| {diff:.3g} > {bound:.3g}"
    return diff


def _need_onnx():
    for module in ("onnx", "onnxscript"):
        pytest.importorskip(module, reason=f"{module} not installed (pip install '.[export]')")


# --------------------------------------------------------------------------- size rules

def test_size_rules_are_read_off_check_input():
    rules = {s.name: size_rule(s) for s in SPECS}
    assert [(r.minimum, r.step) for r in rules["highres3dnet"]] == [(8, 8)] * 3
    for spec in SPECS:
        shape = smallest_shape(rules[spec.name], 16)
        spec.validate_input(shape)  # valid ...
        assert all(n >= 16 for n in shape)  # ... and as asked
        assert all(not r.valid(r.minimum - 1) for r in rules[spec.name])


def test_size_rule_of_deepmedic_is_odd_multiples_of_3_above_48():
    if "deepmedic" not in networks.names():
        pytest.skip("DeepMedic not registered")
    assert [(r.minimum, r.step) for r in size_rule(networks.get("deepmedic"))] == [(51, 6)] * 3


# --------------------------------------------------------------------------- TorchScript

@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_torchscript_is_bit_for_bit_eager(spec, tmp_path):
    from niftyport.export.torchscript import export_torchscript, read_metadata

    source, shape = _case(spec)
    meta = export_torchscript(source, tmp_path / "model.ts", shape=shape)
    loaded = torch.jit.load(str(tmp_path / "model.ts"))
    x = _input(source, shape, seed=3)  # not the exporter's own check input
    with torch.no_grad():
        assert torch.equal(loaded(x), _eager(source, x))
    assert read_metadata(tmp_path / "model.ts") == meta
    assert meta["network"] == spec.name and meta["niftynet_class"] == spec.niftynet_class
    assert meta["weights"]["state_sha256"] == source.state_sha256


def test_torchscript_guard_refuses_sizes_niftynet_refuses(tmp_path):
    from niftyport.export.torchscript import export_torchscript

    source, shape = _case(networks.get("highres3dnet"))
    export_torchscript(source, tmp_path / "model.ts", shape=shape)
    loaded = torch.jit.load(str(tmp_path / "model.ts"))
    with pytest.raises(torch.jit.Error, match="multiple of 8"):
        loaded(torch.zeros(1, 1, 12, 16, 16))
    x = _input(source, (16, 8, 24), seed=4)  # another valid size: HighRes3DNet's graph is size-independent
    with torch.no_grad():
        assert torch.equal(loaded(x), _eager(source, x))


def test_torchscript_of_tf1_resizes_takes_other_sizes(tmp_path):
    """Regression: TF1's resize index lists were traced as constants, valid for the traced size only."""
    from niftyport.export.torchscript import export_torchscript

    if "nonewnet" not in networks.names():
        pytest.skip("No New-Net not registered")
    source, shape = _case(networks.get("nonewnet"))
    meta = export_torchscript(source, tmp_path / "model.ts", shape=shape)
    assert meta["export"]["check"]["size_independent"]
    x = _input(source, (32, 48, 16), seed=6)
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(tmp_path / "model.ts"))(x), _eager(source, x))


def test_torchscript_loads_without_niftyport(tmp_path):
    from niftyport.export.torchscript import export_torchscript

    source, shape = _case(networks.get("highres3dnet"))
    export_torchscript(source, tmp_path / "model.ts", shape=shape)
    x = _input(source, shape)
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys; sys.modules['niftyport'] = None\n"  # any import of niftyport now fails
            "import torch\n"
            f"torch.set_num_threads({torch.get_num_threads()})\n"  # bit for bit needs the same reduction order
            f"m = torch.jit.load({str(tmp_path / 'model.ts')!r})\n"
            f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
            f"torch.save(m(x).detach(), {str(tmp_path / 'y.pt')!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300)
    assert torch.equal(torch.load(tmp_path / "y.pt"), _eager(source, x))


# --------------------------------------------------------------------------- ONNX

@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_onnx_matches_eager_within_1e5(spec, tmp_path):
    _need_onnx()
    import onnx

    from niftyport.export.onnx import explicit_pads, export_onnx, read_metadata

    source, shape = _case(spec)
    export_onnx(source, tmp_path / "model.onnx", shape=shape, check=False)
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert explicit_pads(model) == []
    for node in model.graph.node:
        if node.op_type == "Resize":
            modes = {a.name: a.s for a in node.attribute}
            assert modes["coordinate_transformation_mode"] == b"asymmetric" and modes["mode"] == b"linear"
    meta = read_metadata(tmp_path / "model.onnx")
    assert meta["network"] == spec.name and meta["input"]["layout"].startswith("N,C,X")
    x = _input(source, shape, seed=5)
    _assert_close(_onnxruntime(tmp_path / "model.onnx", x), _eager(source, x))


@pytest.mark.parametrize("name", ["highres3dnet", "nonewnet"])
def test_onnx_dynamic_axes_take_other_valid_sizes(name, tmp_path):
    _need_onnx()
    import onnx

    from niftyport.export.onnx import export_onnx

    if name not in networks.names():
        pytest.skip(f"{name} not registered")
    spec = networks.get(name)
    source, shape = _case(spec)
    export_onnx(source, tmp_path / "model.onnx", shape=shape, dynamic=True, check=False)
    dims = onnx.load(str(tmp_path / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", source.build.in_channels, "x", "y", "z"]
    rules = size_rule(spec)
    other = tuple(n + r.step * (i + 1) for i, (n, r) in enumerate(zip(shape, rules)))  # every side different
    for seed, size in enumerate((shape, other)):
        x = torch.cat([_input(source, size, seed), _input(source, size, seed + 10)])  # a batch of 2
        _assert_close(_onnxruntime(tmp_path / "model.onnx", x), _eager(source, x))


def test_resize_exports_as_one_asymmetric_resize(tmp_path):
    """TF1's legacy bilinear resize (src = dst * in / out) is ONNX's asymmetric linear Resize: no gathers."""
    _need_onnx()
    import onnx

    from niftyport.export.onnx import export_onnx

    if "nonewnet" not in networks.names():
        pytest.skip("No New-Net not registered")
    source, shape = _case(networks.get("nonewnet"))
    export_onnx(source, tmp_path / "model.onnx", shape=shape, check=False)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert ops.count("Resize") == 4 and "Gather" not in ops  # four x2 up-samplings


# --------------------------------------------------------------------------- pretrained HighRes3DNet, real crop

def _real_crop(side=24):
    """A whitened ``side``^3 crop of a real T1 near the centre of the head, ``(1, 1, X, Y, Z)``."""
    import nibabel as nib

    vol = np.asanyarray(nib.load(need(T1)).dataobj).astype(np.float32)
    c = [n // 2 for n in vol.shape]
    crop = vol[tuple(slice(n - side // 2, n + side // 2) for n in c)]
    crop = (crop - crop.mean()) / crop.std()
    return torch.from_numpy(np.ascontiguousarray(crop))[None, None]


def test_pretrained_highres3dnet_on_a_real_crop(tmp_path):
    from niftyport.export.source import load_source
    from niftyport.export.torchscript import export_torchscript

    x = _real_crop()
    source = load_source(networks.get("highres3dnet").pretrained.weights)
    assert source.shipped and source.labels[0] == "Background" and len(source.labels) == 160
    expected = _eager(source, x)
    meta = export_torchscript(source, tmp_path / "model.ts", shape=(24, 24, 24))
    assert meta["labels"]["0"] == "Background" and meta["weights"]["model_zoo_entry"]
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(tmp_path / "model.ts"))(x), expected)
    _need_onnx()
    from niftyport.export.onnx import export_onnx

    export_onnx(source, tmp_path / "model.onnx", shape=(24, 24, 24), check=False)
    got = _onnxruntime(tmp_path / "model.onnx", x)
    diff = _assert_close(got, expected)
    assert diff < 1e-4  # logits up to ~28: the bound above is relative
    # The absolute difference (~2e-5) is float32 rounding: against the same network in float64,
    # onnxruntime is as close as eager PyTorch is, and the probabilities agree within 1e-5.
    import copy

    with torch.no_grad():
        exact = copy.deepcopy(source.model).double()(x.double())
    torch_error = (expected.double() - exact).abs().max().item()
    onnx_error = (torch.from_numpy(got).double() - exact).abs().max().item()
    assert onnx_error < 1.5 * torch_error < 4e-5, (onnx_error, torch_error)
    probabilities = torch.softmax(torch.from_numpy(got).double(), 1) - torch.softmax(expected.double(), 1)
    assert probabilities.abs().max().item() < 1e-5


# --------------------------------------------------------------------------- the command line

def _toynet_checkpoint(tmp_path):
    from niftyport.checkpoint import write_checkpoint

    ref = load_ref("toynet")
    return write_checkpoint(tmp_path / "ckpt" / "model.ckpt-1", ref.variables)


def test_cli_exports_a_checkpoint_as_onnx_and_torchscript(tmp_path, capsys):
    _need_onnx()
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install '.[export]')")
    from niftyport.cli import main

    prefix = _toynet_checkpoint(tmp_path)
    args = ["export", str(prefix), "--network", "toynet", "--num-classes", "5"]
    assert main([*args, "--format", "onnx", "-o", str(tmp_path / "t.onnx"), "--dynamic-shape"]) == 0
    assert "onnxruntime vs PyTorch max|diff|" in capsys.readouterr().out
    assert main([*args, "--format", "torchscript", "-o", str(tmp_path / "t.ts")]) == 0
    assert "bit for bit" in capsys.readouterr().out
    status = main([*args, "--format", "torchscript", "-o", str(tmp_path / "t.ts")])
    one_line_error(status, capsys.readouterr().err, "exists", "--force")
    assert main([*args, "--format", "torchscript", "-o", str(tmp_path / "t.ts"), "--force"]) == 0


def test_cli_network_is_found_from_niftynet_names(tmp_path, capsys):
    from niftyport.cli import main

    prefix = _toynet_checkpoint(tmp_path)
    assert main(["export", str(prefix), "--num-classes", "5", "--format", "torchscript",
                 "-o", str(tmp_path / "t.ts")]) == 0
    assert "toynet" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["--format", "torchscript", "--opset", "18"], "--opset"),
    (["--format", "torchscript", "--dynamic-shape"], "--dynamic-shape"),
    (["--dynamic-shape"], "--dynamic-shape"),                      # the default format writes a checkpoint
    (["--format", "onnx", "--weights-only"], "--weights-only"),
    (["--format", "onnx", "--input-shape", "12,16,16"], "multiple of 8"),
])
def test_cli_option_mistakes_are_one_line_errors(args, fragment, tmp_path, capsys):
    from niftyport.cli import main

    weights = networks.get("highres3dnet").pretrained.weights
    status = main(["export", str(weights), "-o", str(tmp_path / "out"), *args])
    one_line_error(status, capsys.readouterr().err, fragment)
    assert not (tmp_path / "out").exists()


def test_default_format_still_writes_a_niftynet_checkpoint(tmp_path, capsys):
    from niftyport.checkpoint import read_checkpoint
    from niftyport.cli import main

    weights = networks.get("highres3dnet").pretrained.weights
    assert main(["export", str(weights), "-o", str(tmp_path / "model.ckpt-7")]) == 0
    assert read_checkpoint(tmp_path / "model.ckpt-7").read("global_step") == 7


# --------------------------------------------------------------------------- the MONAI bundle

def _monai(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, timeout=600,
                          capture_output=True, text=True)


def test_monai_bundle_segments_a_real_scan_as_niftyport_full_mode(tmp_path, capsys):
    pytest.importorskip("monai", reason="monai not installed (pip install '.[export]')")
    pytest.importorskip("jsonschema", reason="jsonschema not installed (pip install '.[export]')")
    import nibabel as nib

    from niftyport.cli import main
    from niftyport.segmentation.pipeline import run_parcellation

    scan = tmp_path / "scans" / "t1.nii.gz"
    scan.parent.mkdir()
    scan.write_bytes(need(TINY_T1).read_bytes())  # 2 mm, LAS: reorientation and resampling both act
    bundle = tmp_path / "bundle"
    weights = networks.get("highres3dnet").pretrained.weights
    assert main(["export", str(weights), "--format", "monai-bundle", "-o", str(bundle),
                 "--input-shape", "8,8,8"]) == 0
    schema_written = (bundle / "configs" / "metadata_schema.json").stat().st_mtime_ns
    for name in ("LICENSE", "configs/metadata.json", "configs/inference.json", "models/model.pt", "docs/README.md"):
        assert (bundle / name).is_file(), name
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 160 and pred["channel_def"]["0"] == "Background"
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == ["8*n", "8*m", "8*p"]

    from monai.bundle import verify_metadata  # what `python -m monai.bundle verify_metadata` runs

    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(bundle / metadata["schema"]))
    assert (bundle / metadata["schema"]).stat().st_mtime_ns == schema_written  # offline: the shipped file
    ran = _monai("run", "--config_file", "configs/inference.json", "--bundle_root", ".",
                 "--dataset_dir", str(scan.parent), "--output_dir", str(tmp_path / "labels"), cwd=bundle)
    assert ran.returncode == 0, ran.stderr[-3000:]
    ours = nib.load(tmp_path / "labels" / "t1_parcellation.nii.gz")
    full = run_parcellation(scan, mode="full", device="cpu")
    assert ours.shape == full.labels.shape and np.allclose(ours.affine, full.affine)
    assert np.array_equal(np.asanyarray(ours.dataobj), full.labels)  # every voxel
