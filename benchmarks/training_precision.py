"""How far TensorFlow's and niftyport's float32 training runs are from the same run in float64.

The parity test (``tests/training/test_parity.py``) compares niftyport with
NiftyNet's own training on TensorFlow after three iterations from the model
zoo checkpoint. Where they differ by more than 1e-5 (Adam's first-moment
slots of some batch-norm parameters), this tells which float32 run is the
less accurate one: it repeats niftyport's run in float64 (same steps,
same starting values) and measures, for every trainable variable and slot,
the distance of each float32 run's update (value after three iterations
minus the zoo's) from the float64 update, relative to the largest float64
update, on the values the reference kept (all of a small variable, samples
of a large one). Not a test: nothing asserts.

    python benchmarks/training_precision.py [adam_dice | gd_gdsc | gd_crossentropy]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))
ZOO = SHARED / "models" / "niftynet" / "models" / "highres3dnet_brain_parcellation" / "models" / "model.ckpt-33000"


def run(case: str, dtype: torch.dtype) -> dict[str, np.ndarray]:
    """niftyport's three iterations of ``case`` in ``dtype``: every variable afterwards, float64."""
    from training_refs import batch, meta

    from niftyport import networks
    from niftyport.training.batchnorm import BatchNormTraining
    from niftyport.training.loop import LossSettings, train_step
    from niftyport.training.optimisers import make_optimiser
    from niftyport.training.state import checkpoint_tensors, restore, trainable_parameters, training_variables

    settings = meta()["cases"][case]
    rules = networks.get("highres3dnet").rules("HighRes3DNet")
    model = networks.build("highres3dnet")
    optimiser = make_optimiser(settings["optimiser"], trainable_parameters(model, rules), settings["lr"])
    bn = BatchNormTraining(model)
    restore(training_variables(model, rules, optimiser=optimiser, batch_norm=bn), ZOO)  # float32 values
    model.to(dtype)
    for p, state in optimiser.state.items():
        for key in state:
            state[key] = state[key].to(dtype)
    for debias in bn.debias.values():
        debias.biased, debias.local_step = debias.biased.to(dtype), debias.local_step.to(dtype)
    variables = training_variables(model, rules, optimiser=optimiser, batch_norm=bn)
    image, label = batch()
    image_t = torch.from_numpy(image)[None, None].to(dtype)
    label_t = torch.from_numpy(label)[None, None]
    for _ in range(meta()["steps"]):
        train_step(model, optimiser, bn, image_t, label_t, loss=LossSettings(settings["loss_type"]))
    return {name: np.asarray(value, np.float64) for name, value in checkpoint_tensors(variables).items()}


def main(argv=None) -> int:
    from training_refs import load, reference_values

    from niftyport.checkpoint import read_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", nargs="?", default="adam_dice")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    refs, zoo = load(args.case), read_checkpoint(ZOO)
    single, double = run(args.case, torch.float32), run(args.case, torch.float64)
    rows = []
    for key in sorted(k for k in refs if k.endswith("|stats")):
        name = key.split("|")[0]
        if name not in zoo or "moving" in name or "/biased" in name or "local_step" in name:
            continue
        start = zoo.read(name).astype(np.float64)
        base, tf = reference_values(refs, name, start)[0], reference_values(refs, name, single[name])[1]
        ours, exact = reference_values(refs, name, single[name])[0], reference_values(refs, name, double[name])[0]
        scale = max(np.abs(exact - base).max(), 1e-30)
        rows.append((np.abs(tf - exact).max() / scale, np.abs(ours - exact).max() / scale, name))
    rows.sort()
    print(f"{args.case}: distance from the float64 update, relative to its largest value")
    print(f"{'TensorFlow':>12} {'niftyport':>12}  variable")
    for tf_err, our_err, name in rows[-10:]:
        print(f"{tf_err:12.2e} {our_err:12.2e}  {name}")
    tf_med, our_med = np.median([r[0] for r in rows]), np.median([r[1] for r in rows])
    print(f"{tf_med:12.2e} {our_med:12.2e}  median over {len(rows)} variables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
