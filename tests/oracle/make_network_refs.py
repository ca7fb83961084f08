"""Make the small NiftyNet references the network tests compare against (run with the oracle's Python).

NiftyNet 0.6.0's own network classes run on TensorFlow through the shared
oracle (``shared/oracle/networks/networks.py``: every variable seeded and
random, batch-norm statistics and PReLU alphas included). This script runs
that tool's ``build_one`` with smaller input shapes than its defaults, so
that the outputs can be committed, and keeps only what a test needs::

    tests/data/networks/<key>/meta.json       oracle meta (kwargs, attrs, shapes, seeds, notes)
                                              + sha256 of every variable's bytes as TF saved it
    tests/data/networks/<key>/variables.csv   name, shape, dtype, kind, init (the oracle's listing)
    tests/data/networks/<key>/outputs.npz     output_random, output_smooth (NiftyNet layout, float32)

(meta.json also holds the sha256 of both inputs.)

The weights and inputs are not committed: ``tests/network_refs.py``
regenerates them with numpy from the seeds (the oracle's recipe) and checks
them against the digests recorded here. Usage::

    $ORACLE_VENV/bin/python tests/oracle/make_network_refs.py [KEY ...]   # default: every key below
    $ORACLE_VENV/bin/python tests/oracle/make_network_refs.py list

The shared folder is ``$NIFTYPORT_SHARED``, else ``../shared`` beside the repository.
"""
from __future__ import annotations

import csv
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
ORACLE_NETWORKS = SHARED / "oracle" / "networks"
OUT = REPO / "tests" / "data" / "networks"

#: key -> input shape (NiftyNet layout) replacing the oracle's default, chosen small
#: (outputs of a few hundred kB at most) but valid for the network's size rules.
#: None keeps the oracle's shape.
SHAPES: dict[str, tuple[int, ...] | None] = {
    "toynet": (1, 16, 16, 8, 1),
    "highres3dnet_relu": (1, 16, 24, 16, 1),
    "highres3dnet_prelu": (1, 16, 24, 16, 1),
    "highres3dnet_small": (1, 16, 24, 16, 1),
    "highres3dnet_large": (1, 16, 24, 16, 1),
    "dense_vnet": (1, 16, 16, 16, 1),
    "dense_vnet_prior": (1, 16, 16, 16, 1),
    "unet3d": (1, 96, 104, 96, 1),
    "vnet": (1, 32, 16, 16, 1),
    "deepmedic_relu": (1, 57, 57, 57, 1),
    "deepmedic_prelu": (1, 57, 57, 57, 1),
    "scalenet": (1, 16, 24, 8, 2),
    "holisticnet": (1, 16, 24, 16, 1),
    "unet2d": (1, 220, 236, 1),
    "nonewnet": (1, 32, 16, 16, 1),
    "toynet_prelu": (1, 16, 16, 8, 1),
    "highres3dnet_small_prelu": (1, 16, 24, 16, 1),
    "highres3dnet_large_prelu": (1, 16, 24, 16, 1),
    "unet2d_prelu": (1, 204, 220, 1),
    "unet2d_offgrid": (1, 197, 213, 1),
}

#: Cases the oracle has no spec of its own for: key -> (oracle key, what changes in its spec).
#: Each gets its own seed; the oracle's notes are kept, one more says what differs.
VARIANTS: dict[str, tuple[str, dict]] = {
    "toynet_prelu": ("toynet", {"seed": 201, "kwargs": {"num_classes": 5, "acti_func": "prelu"},
                                "extra_note": "Variant: acti_func='prelu' (ToyNet ignores it)."}),
    "highres3dnet_small_prelu": ("highres3dnet_small", {
        "seed": 202, "kwargs": {"num_classes": 5, "acti_func": "prelu"},
        "extra_note": "Variant: acti_func='prelu'."}),
    "highres3dnet_large_prelu": ("highres3dnet_large", {
        "seed": 203, "kwargs": {"num_classes": 5, "acti_func": "prelu"},
        "extra_note": "Variant: acti_func='prelu'."}),
    "unet2d_prelu": ("unet2d", {"seed": 204, "kwargs": {"num_classes": 5, "acti_func": "prelu"},
                                "extra_note": "Variant: acti_func='prelu'."}),
    "unet2d_offgrid": ("unet2d", {
        "seed": 205, "extra_note": "Variant: sides 197 x 213, not 16k+124: SAME max-pools of odd sizes, "
                                   "skips cropped by the X border on both axes and bilinearly resized."}),
    "unet3d_prelu": ("unet3d", {
        "seed": 120, "kwargs": {"num_classes": 8, "acti_func": "prelu"}, "attrs": {"n_features": [4, 8, 8, 16, 32]},
        "shape": (1, 96, 96, 96, 2), "extra_note": "Variant: prelu, 2 channels, repeated widths (layer names _1/_2)."}),
    "vnet_prelu": ("vnet", {
        "seed": 121, "kwargs": {"num_classes": 3, "acti_func": "prelu"}, "attrs": {"n_features": [2, 4, 8, 16, 32]},
        "shape": (1, 32, 16, 16, 2), "extra_note": "Variant: prelu, 2 channels (L1's bypass projection)."}),
    "nonewnet_prelu": ("nonewnet", {
        "seed": 122, "kwargs": {"num_classes": 6, "acti_func": "prelu"}, "attrs": {"n_features": [6, 12, 24, 48, 96]},
        "shape": (1, 16, 16, 16, 1), "extra_note": "Variant: prelu, 16^3 (one-voxel bottom level), 6 classes."}),
}


def _register_variant(networks, key: str) -> None:
    """Add ``key`` of :data:`VARIANTS` to the oracle's specs (a copy of its base spec, changed)."""
    base, changes = VARIANTS[key]
    changes = dict(changes)
    note = changes.pop("extra_note")
    spec = {**networks.SPEC_BY_KEY[base], **changes, "key": key}
    spec["notes"] = list(spec.get("notes", [])) + [note]
    networks.SPEC_BY_KEY[key] = spec


def _one(key: str, out_root: str) -> int:
    """Child process: patch the oracle's spec for ``key`` and build it into ``out_root``."""
    sys.path.insert(0, str(ORACLE_NETWORKS))
    import networks  # the shared oracle tool

    if key in VARIANTS:
        _register_variant(networks, key)
    if SHAPES.get(key):
        networks.SPEC_BY_KEY[key]["shape"] = SHAPES[key]
    return networks.build_one(key, out_root)


def _digests(prefix: str) -> dict[str, str]:
    """sha256 of every variable's C-ordered bytes, read back with TensorFlow's own reader."""
    sys.path.insert(0, str(ORACLE_NETWORKS))
    import nn_compat_networks  # noqa: F401  (shims before TensorFlow is used)
    tf = sys.modules["tensorflow"]
    import numpy as np

    reader = tf.train.load_checkpoint(prefix)
    return {name: hashlib.sha256(np.ascontiguousarray(reader.get_tensor(name)).tobytes()).hexdigest()
            for name in sorted(reader.get_variable_to_shape_map())}


def make(key: str) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        rc = subprocess.call([sys.executable, __file__, "_one", key, tmp])
        if rc:
            raise SystemExit(f"{key}: the oracle failed (exit {rc})")
        src = Path(tmp) / key
        meta = json.loads((src / "meta.json").read_text())
        meta["variable_sha256"] = json.loads(subprocess.check_output(
            [sys.executable, __file__, "_digests", str(src / "model.ckpt-1")]))
        meta["input_sha256"] = {which: hashlib.sha256(np.ascontiguousarray(
            np.load(src / f"input_{which}.npy")).tobytes()).hexdigest() for which in ("random", "smooth")}
        meta["seed"] = int(meta["random_values"].split("default_rng(")[1].split(")")[0])
        meta["input_seed"] = int(meta["inputs"]["random"].split("default_rng(")[1].split(")")[0])
        for drop in ("time_s", "dir_bytes", "files"):
            meta.pop(drop, None)
        dest = OUT / key
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        (dest / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        with open(src / "variables.csv", newline="") as f, open(dest / "variables.csv", "w", newline="") as g:
            rows = list(csv.DictReader(f))
            writer = csv.DictWriter(g, fieldnames=["name", "shape", "dtype", "trainable", "kind", "init"],
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        np.savez_compressed(dest / "outputs.npz",
                            output_random=np.load(src / "output_random.npy"),
                            output_smooth=np.load(src / "output_smooth.npy"))
        size = sum(p.stat().st_size for p in dest.iterdir())
        print(f"{key}: {meta['input_shape']} -> {meta['output_shape']}, {size / 1e3:.0f} kB", flush=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_one"]:
        return _one(argv[1], argv[2])
    if argv[:1] == ["_digests"]:
        print(json.dumps(_digests(argv[1])))
        return 0
    if argv[:1] == ["list"]:
        print("\n".join(SHAPES))
        return 0
    for key in argv or list(SHAPES):
        make(key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
