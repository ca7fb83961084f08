"""Make the small TensorFlow 2 checkpoints the reader's gap tests use (run with the oracle's Python).

Each is written by real TensorFlow (``tf.train.Checkpoint`` or TF1's ``Saver``)
and holds what niftyport's reader once refused as a whole::

    tests/data/tf2_checkpoints/bf16_variant/ckpt-1.*   tf.train.Checkpoint: a bfloat16 and a float32
                                                      variable, a float16 one, and a saved tf.data
                                                      iterator (a DT_VARIANT tensor)
    tests/data/tf2_checkpoints/partitioned/model.ckpt-7.*
                                                      TF1 Saver: a variable partitioned into 2
                                                      slices, a bfloat16 and a plain float32 one
    tests/data/tf2_checkpoints/values.json            every numeric variable's values and
                                                      TensorFlow's own listing (name, shape, dtype)

The values come from fixed seeds; values.json holds them as TensorFlow reads
them back (bfloat16 as float32), so the tests never need TensorFlow. Usage::

    $ORACLE_VENV/bin/python tests/oracle/make_tf2_checkpoints.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parents[1] / "data" / "tf2_checkpoints"


def bf16_variant(folder: Path) -> str:
    rng = np.random.default_rng(20)
    kernel = tf.Variable(rng.standard_normal((2, 3, 4)).astype(np.float32), name="kernel")
    half = tf.Variable(rng.standard_normal((5,)).astype(np.float16), name="half")
    bf16 = tf.Variable(tf.cast(rng.standard_normal((3, 4)).astype(np.float32), tf.bfloat16), name="bf16")
    iterator = iter(tf.data.Dataset.range(10))
    next(iterator)
    ckpt = tf.train.Checkpoint(kernel=kernel, half=half, bf16=bf16, iterator=iterator)
    return ckpt.write(str(folder / "ckpt-1"))


def partitioned(folder: Path) -> str:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(7)
        v1.get_variable("net/split/w", shape=(6, 4), dtype=tf.float32,
                        initializer=v1.random_normal_initializer(seed=3),
                        partitioner=v1.fixed_size_partitioner(2))
        v1.get_variable("net/plain/b", initializer=np.linspace(-1, 1, 4).astype(np.float32))
        v1.get_variable("net/bf16/w", shape=(2, 2), dtype=tf.bfloat16,
                        initializer=v1.constant_initializer([[1.5, -2.25], [3.0e-3, 65504.0]]))
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(folder / "model.ckpt"), global_step=7, write_meta_graph=False)
    name = Path(prefix).name  # the state file names the prefix relative to its folder, as after a copy
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    return prefix


def listing(prefix: str) -> dict:
    reader = tf.train.load_checkpoint(prefix)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    out = {}
    for name in sorted(shapes):
        entry = {"shape": list(shapes[name]), "dtype": dtypes[name].name}
        if dtypes[name].is_floating or dtypes[name].is_integer:
            entry["values"] = np.asarray(reader.get_tensor(name), dtype=np.float64).ravel().tolist()
        out[name] = entry
    return out


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    values = {}
    for key, make in (("bf16_variant", bf16_variant), ("partitioned", partitioned)):
        folder = OUT / key
        folder.mkdir(parents=True)
        prefix = make(folder)
        values[key] = {"prefix": Path(prefix).name, "tensorflow": tf.__version__, "variables": listing(prefix)}
    (OUT / "values.json").write_text(json.dumps(values, indent=1) + "\n")
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.stat().st_size:7d} {path.relative_to(OUT)}")


if __name__ == "__main__":
    main()
