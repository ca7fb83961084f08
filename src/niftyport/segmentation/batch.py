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


def planned_outputs(config: Config, subject_ids) -> tuple[Path, list[Path]]:
    """``(save_seg_dir, [output path per subject])`` of a batch run, named as NiftyNet names them."""
    out_dir = Path(config.inference.save_seg_dir).expanduser().absolute()
    return out_dir, [out_dir / output_name(s, config.inference.output_postfix) for s in subject_ids]


def segment_subjects(config: Config, *, weights=None, model=None, device="auto", force: bool = False,
                     network_options=None, **options) -> list[Path]:
    """NiftyNet's ``net_segment inference`` over every subject of ``config``; returns the files written.

    Subjects and their scans come from the image sections and the dataset
    split (:func:`~niftyport.segmentation.subjects.config_subjects`); each
    output goes to ``save_seg_dir/window_seg_<subject>_<output_postfix>.nii.gz``
    and ``inferred.csv`` lists ``subject,path`` in subject order. Existing
    outputs are refused unless ``force`` (NiftyNet overwrites them); an
    output is never written over an input. The network is loaded once
    (``network_options``: see :func:`~niftyport.segmentation.application.load_network`).
    ``options``: those of :func:`~niftyport.segmentation.application.run_segmentation`.
    """
    from ..image_io import save_image
    from ..outputs import check_outputs
    from .application import check_config, load_network, run_segmentation
    from .subjects import config_subjects

    config = check_config(config)
    subjects = config_subjects(config)
    out_dir, outputs = planned_outputs(config, [s for s, _ in subjects])
    inputs = [p for _, paths in subjects for p in paths]
    check_outputs([*outputs, out_dir / "inferred.csv"], inputs, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if model is None:
        model = load_network(config, weights, in_channels=len(config.modalities), device=dev,
                             network_options=network_options)
    written: list[Path] = []
    for (subject, paths), out in zip(subjects, outputs):
        log.info("subject %s: %s", subject, ", ".join(map(str, paths)))
        result = run_segmentation(list(paths), config=config, model=model, device=dev, **options)
        written.append(save_image(out, result.to_image(), input_paths=inputs))
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows((s, str(p)) for (s, _), p in zip(subjects, written))
    with atomic_output(out_dir / "inferred.csv") as tmp:
        Path(tmp).write_text(text.getvalue())
    return written
