"""The whole parcellation, stage after stage, as NiftyNet's ``net_segment inference``.

load + reorient + resample -> pad -> mask -> histogram standardisation ->
whitening -> windows through HighRes3DNet -> stitching -> un-pad -> back to
the input's grid and orientation. Each stage lives in its own module; this
one only chains them and keeps what they produced.
"""
from __future__ import annotations

import contextlib

import logging
import os
import time
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torch

from ..config import Config, default_config, load_config
from ..errors import ConfigError, NiftyportError
from ..image_io import label_image
from ..inference.defaults import default_max_memory, default_threads
from ..inference.engines import MODES, run_mode
from ..preprocessing import (Loaded, Preprocessed, load_and_resample, preprocess,
                            restore_to_input_space, scan_region)

log = logging.getLogger(__name__)

#: NiftyNet network names this package can run.
SUPPORTED_NETWORKS = ("highres3dnet",)


@dataclass(frozen=True, eq=False)
class Parcellation:
    """Everything one run produced.

    ``labels``: int32 ``loaded.original_shape``, in the input file's voxel
    grid (write it with ``affine``). ``labels_padded``: int32 labels in the
    padded network space (RAS, ``pixdim`` voxels); only the voxels that
    survive un-padding are computed, the volume padding is left 0.
    ``seconds`` / ``cpu_seconds``: wall and CPU time (all threads) per stage;
    ``run``: how the network ran (``threads``, ``max_memory``, ``flops``:
    convolution FLOPs executed, ``regions``: network calls).
    """

    labels: np.ndarray
    affine: np.ndarray
    loaded: Loaded
    preprocessed: Preprocessed
    labels_padded: np.ndarray
    config: Config
    mode: str
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    run: dict = field(default_factory=dict)

    def to_image(self) -> nib.Nifti1Image:
        """The label map as NiftyNet writes it: int32, the input's affine."""
        return label_image(self.labels, self.affine, self.loaded.header)


def resolve_config(config: str | os.PathLike | Config | None = None, *,
                   niftynet_home: str | os.PathLike | None = None,
                   window: int | tuple[int, int, int] | None = None,
                   border: int | tuple[int, int, int] | None = None,
                   batch_size: int | None = None) -> Config:
    """A :class:`Config` from a path, a config or the built-in model-zoo default, with overrides.

    Options left as ``None`` keep the config's value. ``window`` and ``border``
    accept one int for all three axes.
    """
    if config is None:
        cfg = default_config(niftynet_home=niftynet_home)
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config, niftynet_home=niftynet_home)
    overrides = {}
    if window is not None:
        overrides["spatial_window_size"] = window
    if border is not None:
        overrides["border"] = border
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    if overrides:
        cfg = cfg.replace(**overrides)
    name = (cfg.network.name or "").lower()
    if name not in SUPPORTED_NETWORKS:
        raise ConfigError(f"{cfg.source or 'config'}: [NETWORK] name = {cfg.network.name!r} is not "
                          f"supported; niftyport runs {', '.join(SUPPORTED_NETWORKS)}")
    if len(cfg.modalities) != 1:
        raise ConfigError(f"{cfg.source or 'config'}: [SEGMENTATION] image = {', '.join(cfg.modalities)}: "
                          "parcellation takes one image modality; 'niftyport segment' runs several")
    if not cfg.spatial_window_size:
        raise ConfigError(f"{cfg.source or 'config'}: no spatial_window_size in [INFERENCE] "
                          f"or [{cfg.modality}]")
    return cfg


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` picks CUDA when available, else the CPU; anything else is checked."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise NiftyportError(f"--device {device!r} is not a device (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NiftyportError(f"--device {device}: CUDA is not available on this machine")
    return dev


def run_parcellation(image: str | os.PathLike | nib.Nifti1Image, *,
                     config: str | os.PathLike | Config | None = None,
                     weights: str | os.PathLike | None = None,
                     model: torch.nn.Module | None = None,
                     mode: str = "niftynet",
                     device: str | torch.device | None = "auto",
                     threads: int | None = None,
                     max_memory: int | None = None,
                     progress: bool = False) -> Parcellation:
    """Parcellate one scan and keep every intermediate result.

    Args:
        image: NIfTI path or nibabel image (3-D, or 4-D with one volume).
        config: NiftyNet ``.ini`` path or :class:`Config` (already carrying any
            overrides; see :func:`resolve_config`); default: the model zoo's.
        weights: weights file or checkpoint for :func:`~niftyport.weights.load_weights`;
            default: the pretrained weights, found as that function does.
        model: an already loaded network (then ``weights`` is ignored).
        mode: ``'niftynet'`` (default, NiftyNet's exact output) or another of
            :data:`niftyport.inference.MODES`.
        device: ``'auto'``, ``'cpu'``, ``'cuda'``...
        threads: CPU threads for the network (default: the cores this process may
            use, :func:`~niftyport.inference.defaults.default_threads`).
        max_memory: byte budget for the network's working memory; the scan
            must also fit in it to be read (checked from its header first).
            Default: :func:`~niftyport.inference.defaults.default_max_memory`
            (3/4 of the available memory, within 1..8 GiB).
        progress: show a progress bar over windows.
    """
    if mode not in MODES:
        raise NiftyportError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    cfg = resolve_config(config)
    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise NiftyportError(f"--threads must be at least 1, got {threads}")
    if threads is None and dev.type == "cpu":
        threads = default_threads()
    with torch_threads(threads):
        return _run(image, cfg, weights=weights, model=model, mode=mode, device=dev, max_memory=max_memory,
                    progress=progress)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` CPU threads in torch (unchanged when None), then restore them."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _run(image, cfg: Config, *, weights, model, mode: str, device: torch.device, max_memory, progress: bool):
    dev = device
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    clock = _Stages(seconds, cpu)

    loaded = load_and_resample(image, cfg, max_bytes=max_memory)
    pre = preprocess(loaded.data, cfg)
    clock.lap("preprocessing")

    if model is None:
        from ..weights import load_weights
        model = load_weights(weights, device=dev)
    else:
        model = model.to(dev).eval()
    classes = getattr(model, "num_classes", None)
    if classes is not None and cfg.segmentation.num_classes not in (-1, classes):
        raise ConfigError(f"{cfg.source or 'config'}: num_classes = {cfg.segmentation.num_classes} "
                          f"but the weights have {classes} classes")
    clock.lap("weights")

    stats: dict = {}
    budget = default_max_memory() if max_memory is None else max_memory
    labels_padded = run_mode(mode, model, pre.whitened,
                             window=tuple(cfg.spatial_window_size[:3]),
                             border=tuple(cfg.inference.border),
                             batch_size=cfg.network.batch_size,
                             device=dev, max_memory=budget, progress=progress,
                             keep=scan_region(loaded, cfg), stats=stats)
    clock.lap("network")

    labels = restore_to_input_space(labels_padded, loaded, cfg)
    clock.lap("restore")
    run = dict(threads=torch.get_num_threads(), max_memory=int(budget), device=str(dev),
               input_shape=list(pre.whitened.shape[:3]), **stats)
    return Parcellation(labels=labels, affine=loaded.affine, loaded=loaded, preprocessed=pre,
                        labels_padded=labels_padded, config=cfg, mode=mode, seconds=seconds,
                        cpu_seconds=cpu, run=run)


class _Stages:
    """Wall and CPU seconds per stage, measured from one lap to the next."""

    def __init__(self, seconds: dict[str, float], cpu: dict[str, float]):
        self.seconds, self.cpu = seconds, cpu
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.seconds[stage] = wall - self._wall
        self.cpu[stage] = cpu - self._cpu
        self._wall, self._cpu = wall, cpu


def parcellate(image: str | os.PathLike | nib.Nifti1Image, *,
               config: str | os.PathLike | Config | None = None,
               weights: str | os.PathLike | None = None, **options) -> nib.Nifti1Image:
    """Parcellate a T1 scan into 160 GIF labels, exactly as NiftyNet's model zoo does.

    Returns an int32 label image on the input's grid, with its affine.
    ``options`` are those of :func:`run_parcellation`.

    >>> labels = parcellate("t1.nii.gz")  # doctest: +SKIP
    """
    return run_parcellation(image, config=config, weights=weights, **options).to_image()
