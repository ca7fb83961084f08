"""NiftyNet's batch inference: every scan a config finds, written as NiftyNet names them.

Reproduces what ``net_segment inference -c config.ini`` leaves in
``save_seg_dir``: ``window_seg_<subject>_<output_postfix>.nii.gz`` per
subject and ``inferred.csv`` with one ``subject,path`` line per output
(``niftynet/engine/windows_aggregator_base.py``, ``log_inferred``).
A relative ``save_seg_dir`` is under ``model_dir``, as in NiftyNet
(:mod:`niftyport.config` resolves it).
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from ..config import Config
from ..image_io import save_labels
from ..outputs import atomic_output
from .pipeline import resolve_device, run_parcellation
from .subjects import find_subjects

log = logging.getLogger(__name__)


def output_name(subject_id: str, postfix: str) -> str:
    """NiftyNet's output file name for a subject.

    >>> output_name("sub01", "_niftynet_out")
    'window_seg_sub01__niftynet_out.nii.gz'
    """
    return f"window_seg_{subject_id}_{postfix}.nii.gz"


def parcellate_subjects(config: Config, *, weights=None, model=None, device="auto", **options) -> list[Path]:
    """Parcellate every input of ``config``; returns the label maps written, in subject order.

    ``options`` are those of :func:`niftyport.pipeline.run_parcellation`.
    The network (``model``, else loaded from ``weights``) is loaded once for all subjects.
    """
    section = config.image
    subjects = find_subjects(section.path_to_search,
                             filename_contains=section.filename_contains,
                             filename_not_contains=section.filename_not_contains,
                             filename_removefromid=tuple(filter(None, [section.filename_removefromid])))
    out_dir = Path(config.inference.save_seg_dir).expanduser().absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if model is None:
        from ..weights import load_weights

        model = load_weights(weights, device=dev)
    inputs = [s.path for s in subjects]
    written: list[Path] = []
    for subject in subjects:
        log.info("subject %s: %s", subject.subject_id, subject.path)
        result = run_parcellation(subject.path, config=config, model=model, device=dev, **options)
        out = out_dir / output_name(subject.subject_id, config.inference.output_postfix)
        written.append(save_labels(out, result.labels, result.affine, result.loaded.header,
                                   input_paths=inputs))
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(
        (s.subject_id, str(path)) for s, path in zip(subjects, written))
    with atomic_output(out_dir / "inferred.csv") as tmp:
        Path(tmp).write_text(text.getvalue())
    return written
