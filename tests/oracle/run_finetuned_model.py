"""NiftyNet 0.6.0's own ``net_segment inference`` on a model ``niftyport finetune`` wrote (the oracle's Python).

NiftyNet reads the generated ``config.ini`` (its own parser and defaults),
builds HighRes3DNet with the config's ``num_classes``, restores
``model_dir/models/model.ckpt-<inference_iter>`` with its ``ModelRestorer``
(every variable of its inference graph, batch-norm debias variables
included) and writes ``save_seg_dir/window_seg_<subject>__niftynet_out.nii.gz``.

Usage::

    $ORACLE_VENV/bin/python tests/oracle/run_finetuned_model.py MODEL_DIR/config.ini
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NIFTYPORT_SHARED", REPO.parent / "shared"))


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print(__doc__)
        return 2
    config = Path(args[0]).resolve()
    sys.path.insert(0, str(SHARED / "oracle"))
    import nn_compat  # noqa: F401  (before anything from niftynet)
    from niftynet import main as niftynet_main

    os.chdir(config.parent)
    sys.argv = ["net_segment", "inference", "-c", str(config)]
    return niftynet_main()


if __name__ == "__main__":
    sys.exit(main())
