"""Any NiftyNet segmentation config, end to end: NiftyNet's ``net_segment inference`` in PyTorch.

The config decides everything, as in NiftyNet
(``niftynet/application/segmentation_application.py``):

* the network: ``[NETWORK] name`` through niftyport's registry, with
  ``activation_function``, ``[SEGMENTATION] num_classes`` and one input
  channel per image modality; the weights: a checkpoint, by default
  NiftyNet's ``<model_dir>/models/model.ckpt-<inference_iter>``;
* the inputs: one scan per image section (``[SEGMENTATION] image``), each
  reoriented and resampled by its own section, stacked as channels
  (:mod:`niftyport.preprocessing.modalities`), padded and normalised;
* the sampler and aggregator of ``window_sampling``: ``uniform``,
  ``weighted`` and ``balanced`` infer with the grid sampler and aggregator
  (:mod:`niftyport.inference.windows`), ``resize`` with the resize sampler and
  aggregator (:mod:`niftyport.inference.resize`);
* 2-D networks (:func:`network_dims`): windows ``(x, y, 1)`` with their z
  axis squeezed, as NiftyNet feeds them -- slice by slice on a volume, or on
  a 2-D image, which NiftyNet neither reorients nor resamples;
* the output: argmax labels (int32), or with ``output_prob`` the softmax
  probabilities (float32, NiftyNet's 5-D layout ``(X, Y, Z, 1, K)``), back
  on the first scan's grid and written with its affine; with
  ``label_normalisation`` the labels mapped back where NiftyNet does
  (:mod:`.label_mapping`).

Each stage is a function of its own; :func:`run_segmentation` chains them
and keeps what they made, :func:`segment` returns the image.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from ..config import Config, load_config
from ..errors import ConfigError, NetworkError, NiftyportError, WeightsError
from ..preprocessing import Loaded, Preprocessed, load_and_resample, restore_output, scan_region
from ..preprocessing.modalities import check_same_grid, preprocess_modalities, stack
from .label_mapping import grid_label_mapping, map_back
from .pipeline import resolve_device, torch_threads

log = logging.getLogger(__name__)

#: ``window_sampling`` -> the sampler NiftyNet infers with (``SUPPORTED_SAMPLING``).
INFERENCE_SAMPLERS = {"uniform": "grid", "weighted": "grid", "balanced": "grid", "resize": "resize"}

@dataclass(frozen=True, eq=False)
class Segmentation:
    """Everything one run made.

    ``output``: on the first scan's grid, in its voxel order -- int32
    labels ``(X, Y, Z)``, or float32 probabilities ``(X, Y, Z, 1, K)``
    (NiftyNet's layout: time axis, then one channel per class); write it
    with ``affine`` (the first scan's, after NiftyNet's header repair). A
    2-D image has ``Z = 1`` here; :meth:`to_image` drops the trailing
    length-1 axes as NiftyNet's writer does (labels ``(X, Y)``).
    ``loaded``: one :class:`~niftyport.preprocessing.Loaded` per modality.
    ``preprocessed``: the stacked ``(X', Y', Z', M)`` stages (``whitened``
    is the network input). ``output_padded``: the aggregated network output
    in the padded network space (``(X', Y', Z')`` or ``(X', Y', Z', K)``).
    ``seconds``: wall time per stage.
    """

    output: np.ndarray
    affine: np.ndarray
    loaded: tuple[Loaded, ...]
    preprocessed: Preprocessed
    output_padded: np.ndarray
    config: Config
    network: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def is_probabilities(self) -> bool:
        return self.output.ndim == 5

    @property
    def description(self) -> str:
        """``niftyport <network> labels|probabilities``: the ``descrip`` of a NIfTI output."""
        return f"niftyport {self.network} {'probabilities' if self.is_probabilities else 'labels'}"

    def to_image(self, format: str = "nifti1") -> nib.spatialimages.SpatialImage:
        """The output as NiftyNet writes it: a fresh header from the affine; labels int32, probabilities float32.

        ``format``: NIfTI-1 (NiftyNet's) by default; any
        :data:`~niftyport.image_io.LABEL_FORMATS` name (``'mgh'`` ...), see
        :func:`~niftyport.image_io.output_image` for the shapes each holds.
        """
        from ..image_io import output_image

        return output_image(self.output, self.affine, self.loaded[0].header, description=self.description,
                            format=format)

    def save(self, path: str | os.PathLike, *, input_paths=()) -> Path:
        """Write the output atomically in the format of ``path`` (``.nii.gz``, ``.mgz`` ...), never over an input."""
        from ..image_io import save_output

        return save_output(path, self.output, self.affine, self.loaded[0].header, description=self.description,
                           input_paths=input_paths)


# --- the config ---------------------------------------------------------------------------------

def check_config(config: Config) -> Config:
    """Refuse, with the file, section and key, what ``net_segment inference`` cannot run; returns ``config``.

    Checks: the network is registered, ``window_sampling`` has an
    inference sampler (``patch`` has none in NiftyNet's segmentation
    application), no image section has a ``csv_data_file``, and the window the
    sampler uses is set and fits the network: ``(x, y, 1)`` for a 2-D
    network, no length-1 side for a 3-D one (NiftyNet would squeeze it).
    """
    from .. import networks

    source = config.source or "config"
    name = config.network.name
    if not name:
        raise ConfigError(f"{source}: [NETWORK] name is missing")
    try:
        spec = networks.get(name)
    except NetworkError as exc:
        raise ConfigError(f"{source}: [NETWORK] name = {name!r}: {exc}") from None
    sampling = config.network.window_sampling
    if sampling not in INFERENCE_SAMPLERS:
        raise ConfigError(f"{source}: [NETWORK] window_sampling = {sampling!r}: NiftyNet's segmentation "
                          f"application has no inference sampler for it (use one of {', '.join(INFERENCE_SAMPLERS)})")
    for section in config.images:
        if section.csv_data_file:
            raise ConfigError(f"{source}: [{section.name}] csv_data_file: NiftyNet's partitioner skips a section "
                              "holding one, so an image section cannot; list its scans with csv_file")
    window = inference_window(config)
    if not window:
        where = "the last image section" if sampling == "resize" else "[INFERENCE] or the last image section"
        raise ConfigError(f"{source}: no spatial_window_size in {where}")
    dims = network_dims(config)
    if spec.spatial_dims == 2 and dims != 2:
        raise ConfigError(f"{source}: spatial_window_size {tuple(window)}: {spec.name} is a 2-D network; it takes "
                          "windows (x, y, 1), one slice each (NiftyNet squeezes the window's length-1 z axis)")
    if dims == 2 and min(window[:2]) == 1 or dims == 3 and 1 in window:
        raise ConfigError(f"{source}: spatial_window_size {tuple(window)}: NiftyNet squeezes the length-1 axes of "
                          f"a window, so {spec.name} would get a {sum(n > 1 for n in window)}-D input; "
                          + ("2-D windows are (x, y, 1)" if dims == 2 else f"{spec.name} takes 3-D inputs"))
    try:
        if dims == spec.spatial_dims:
            spec.validate_input(window[:dims])
        elif spec.check_input is not None:  # the 2-D variant of a network built from its input's rank
            spec.check_input(tuple(int(n) for n in window[:dims]))
    except NiftyportError as exc:
        raise ConfigError(f"{source}: spatial_window_size {tuple(window)}: {exc}") from None
    return config


def network_dims(config: Config) -> int:
    """2 when the network runs on 2-D windows, else 3.

    NiftyNet hands the network each window with its length-1 spatial axes
    squeezed (``niftynet/io/misc_io.py``: ``squeeze_spatial_temporal_dim``,
    applied by ``ImageWindowDataset.pop_batch_op``): a window ``(x, y, 1)``
    -- ``spatial_window_size = (x, y)`` is padded with 1 to it -- reaches the
    network as ``(N, x, y, M)``. That is how 2-D networks (``unet_2d``) run, on
    2-D images and slice by slice on 3-D volumes, and how a network built
    from its input's rank (DenseVNet, ``spatial_dims`` in niftyport) becomes 2-D.
    """
    from .. import networks

    spec = networks.get(config.network.name)
    window = inference_window(config)
    if spec.spatial_dims == 2 or "spatial_dims" in spec.options:
        return 2 if len(window) == 3 and window[2] == 1 else 3
    return spec.spatial_dims


def inference_window(config: Config) -> tuple[int, ...]:
    """The spatial window the inference sampler uses, ``(x, y, z)``.

    Grid sampler: ``[INFERENCE] spatial_window_size``, else the image
    section's. Resize sampler: the image section's (NiftyNet does not pass
    ``[INFERENCE]``'s to it). With several modalities NiftyNet takes the
    window of the *last* image section (``engine/image_window.py``,
    ``_read_window_sizes``); :attr:`Config.section_window` is that one.
    """
    if INFERENCE_SAMPLERS.get(config.network.window_sampling) == "resize":
        return tuple(config.section_window[:3])
    return tuple(config.spatial_window_size[:3])


def resolve_segment_config(config: str | os.PathLike | Config, *,
                           niftynet_home: str | os.PathLike | None = None) -> Config:
    """A checked :class:`Config` from an ``.ini`` path or a config (see :func:`check_config`)."""
    cfg = config if isinstance(config, Config) else load_config(config, niftynet_home=niftynet_home)
    return check_config(cfg)


def default_weights(config: Config) -> Path:
    """The checkpoint NiftyNet restores at inference (``niftynet/engine/handler_model.py``).

    ``<model_dir>/models/model.ckpt-<inference_iter>``; with
    ``inference_iter < 0``, the folder ``<model_dir>/models``, whose
    TensorFlow ``checkpoint`` file names the latest one.
    """
    folder = Path(config.system.model_dir or ".") / "models"
    iteration = config.inference.inference_iter
    path = folder if iteration < 0 else folder / f"model.ckpt-{iteration}"
    from ..checkpoint import is_checkpoint

    if not is_checkpoint(path):
        raise WeightsError(f"no checkpoint {path} ([SYSTEM] model_dir, [INFERENCE] inference_iter = {iteration}); "
                           "give the weights explicitly")
    return path


# --- the stages ---------------------------------------------------------------------------------

def _as_list(images) -> list:
    if isinstance(images, (str, os.PathLike, nib.spatialimages.SpatialImage)):
        return [images]
    return list(images)


def check_count(images, config: Config) -> list:
    """``images`` as a list, one per image modality, or :class:`ConfigError` saying how many are needed."""
    images = _as_list(images)
    names = config.modalities
    if len(images) != len(names):
        raise ConfigError(f"{config.source or 'config'}: [SEGMENTATION] image = {', '.join(names)} needs "
                          f"{len(names)} image(s), one per modality in this order; got {len(images)}")
    return images


def load_inputs(images, config: Config, *, max_bytes: int | None = None) -> tuple[Loaded, ...]:
    """One scan per image modality, each read and resampled by its own section.

    ``images``: a path or image (one modality) or a sequence, in the order
    of ``[SEGMENTATION] image``; ``max_bytes``: the memory budget for reading
    each (see :func:`~niftyport.image_io.open_image`). With a 2-D network
    (:func:`network_dims`) 2-D images are accepted too, as ``(X, Y, 1)``.
    Raises :class:`ConfigError` for a wrong count and
    :class:`~niftyport.errors.ImageError` when the modalities' grids differ
    (file shapes, or shapes once resampled).
    """
    images = check_count(images, config)
    names = config.modalities
    planar = network_dims(config) == 2
    loaded = tuple(load_and_resample(image, config, section=section, planar=planar, max_bytes=max_bytes)
                   for image, section in zip(images, config.images))
    check_same_grid([item.original_shape for item in loaded], names, what="file")
    check_same_grid([item.data.shape for item in loaded], names, what="resampled")
    if loaded[0].original_shape[2] == 1:
        check_planar_orientation(images, loaded, config)
    return loaded


def _header_dims(image) -> int:
    """Dimensions a file's header declares (NiftyNet's ``infer_ndims_from_file``)."""
    img = image if isinstance(image, nib.spatialimages.SpatialImage) else nib.load(str(image))
    try:
        return int(img.header["dim"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return len(img.shape)


def check_planar_orientation(images, loaded: tuple[Loaded, ...], config: Config) -> None:
    """Refuse the 2-D inputs NiftyNet would write in another orientation than it read them.

    NiftyNet never reorients an image of spatial rank 2 when reading it. A
    single 2-D file (header ``dim[0] = 2``) becomes a ``SpatialImage2D``,
    written back as read; anything else (a 3-D file of one slice, or several
    modalities) becomes a ``SpatialImage3D``/``4D`` whose writer
    (``misc_io.save_data_array``) does reorient the output from the
    section's ``axcodes`` to the file's -- so where those differ, its labels
    come out flipped or transposed against the image. Raises :class:`ConfigError`
    there; its resampling back is the identity (the shapes agree), so
    ``pixdim`` is harmless.
    """
    if len(images) == 1 and _header_dims(images[0]) == 2:
        return
    section, first = config.images[0], loaded[0]
    if section.axcodes and tuple(section.axcodes) != tuple(first.axcodes):
        raise ConfigError(f"{config.source or 'config'}: [{section.name}] axcodes = {tuple(section.axcodes)}: "
                          f"the 2-D input {first.source or '<in-memory image>'} is {''.join(first.axcodes)}; "
                          "NiftyNet would not reorient it but would reorient its output (set axcodes to the "
                          "file's, remove them, or give one 2-D NIfTI file)")


def load_network(config: Config, weights, *, in_channels: int, device: torch.device,
                 network_options: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The config's network with ``weights`` (default: :func:`default_weights`), eval mode, on ``device``.

    ``network_options``: hyper-parameters of the network that NiftyNet's
    configs cannot set (``n_features`` of a narrowed UNet3D ...), see
    :attr:`~niftyport.networks.NetworkSpec.options`.
    """
    from .. import networks

    source = default_weights(config) if weights is None else weights
    options = dict(network_options or {})
    if "spatial_dims" in networks.get(config.network.name).options:
        options.setdefault("spatial_dims", network_dims(config))
    model = networks.load(config.network.name, source, num_classes=config.segmentation.num_classes,
                          acti_func=config.network.activation_function, in_channels=in_channels, **options)
    return model.to(device).eval()


def _uses_fast_grid(model: torch.nn.Module, config: Config) -> bool:
    """HighRes3DNet's (ReLU) labels take the exact fast engine (:func:`~niftyport.inference.engines.segment_grid`)."""
    from ..inference.engines import _is_highres

    return _is_highres(model) and not config.segmentation.output_prob and config.inference.fill_constant == 0.0


def network_output(model: torch.nn.Module, volume: np.ndarray, config: Config, first: Loaded, *,
                   device: torch.device, max_memory=None, progress: bool = False) -> np.ndarray:
    """The aggregated network output in the padded network space, by the config's sampler.

    ``volume``: float32 ``(X', Y', Z', M)``. Returns int32 labels
    ``(X', Y', Z')`` or float32 probabilities ``(X', Y', Z', K)``.
    """
    output = "probabilities" if config.segmentation.output_prob else "labels"
    window = inference_window(config)
    border = tuple(config.inference.border)
    if network_dims(config) == 2:
        from ..inference.windows import PlanarNetwork

        model = model if isinstance(model, PlanarNetwork) else PlanarNetwork(model)
    if INFERENCE_SAMPLERS[config.network.window_sampling] == "resize":
        from ..inference.resize import run_resized

        return run_resized(model, volume, window=window, interp_order=config.images[0].interp_order,
                           output_interp_order=config.inference.output_interp_order,
                           border=border, output=output, device=device)
    if _uses_fast_grid(model, config):
        from ..inference.engines import run_mode

        return run_mode("niftynet", model, volume, window=window, border=tuple(config.inference.border),
                        batch_size=config.network.batch_size, device=device, max_memory=max_memory,
                        progress=progress, keep=scan_region(first, config))
    from ..inference.windows import run_windows

    if network_dims(config) == 2:
        # NiftyNet's crop_batch shrinks only the output's own (x, y) axes; the z
        # border changes nothing (windows one slice thick step by one slice either way)
        border = border[:2] + (0,)
    return run_windows(model, volume, window=window, border=border,
                       batch_size=config.network.batch_size, output=output,
                       num_classes=config.segmentation.num_classes, fill=config.inference.fill_constant,
                       device=device, progress=progress)


def finish_output(output_padded: np.ndarray, first: Loaded, config: Config) -> np.ndarray:
    """Map labels back (grid sampler only, see :mod:`.label_mapping`) and restore the first scan's grid.

    Returns int32 ``(X, Y, Z)`` labels or float32 ``(X, Y, Z, 1, K)`` probabilities.
    """
    out = output_padded
    if out.ndim == 3 and INFERENCE_SAMPLERS[config.network.window_sampling] == "grid":
        mapping = grid_label_mapping(config)
        if mapping is not None:
            out = map_back(out, *mapping)
    restored = restore_output(out, first, config)
    if restored.ndim == 4:
        return np.ascontiguousarray(restored[:, :, :, None, :], dtype=np.float32)
    return restored.astype(np.int32, copy=False)


def _bytes(max_memory: int | str) -> int:
    from ..inference.engines import parse_memory

    return int(parse_memory(max_memory))


def check_output_budget(shape: tuple[int, ...], config: Config, max_memory: int | str | None) -> None:
    """Refuse a run whose network input and aggregated output alone exceed ``max_memory`` bytes.

    ``shape``: the padded network input ``(X', Y', Z', M)``. The output is
    int32 labels or float32 probabilities of ``num_classes`` channels, of
    the same spatial shape (NiftyNet's aggregator holds the whole volume);
    the default budget is 3/4 of the machine's memory. Raises
    :class:`~niftyport.errors.OptionError`.
    """
    from ..errors import OptionError
    from ..image_io import memory_budget

    budget = memory_budget() if max_memory is None else _bytes(max_memory)
    voxels = int(np.prod(shape[:3], dtype=np.int64))
    channels = config.segmentation.num_classes if config.segmentation.output_prob else 1
    needed = 4 * voxels * (int(shape[3]) + channels)
    if needed > budget:
        raise OptionError(f"max_memory {budget / 2**20:.0f}M is too small: the padded input {tuple(shape)} and "
                          f"its output need {needed / 2**20:.0f}M")


# --- the whole run ------------------------------------------------------------------------------

def run_segmentation(images, *, config: str | os.PathLike | Config, weights=None,
                     model: torch.nn.Module | None = None, device: str | torch.device | None = "auto",
                     threads: int | None = None, max_memory: int | str | None = None,
                     niftynet_home: str | os.PathLike | None = None,
                     network_options: Mapping[str, Any] | None = None,
                     progress: bool = False) -> Segmentation:
    """Segment one subject as ``net_segment inference`` would, keeping every stage.

    Args:
        images: one scan per image modality (path or nibabel image), in the
            order of ``[SEGMENTATION] image``; a single scan for one modality.
        config: the NiftyNet ``.ini`` (path) or a :class:`Config`.
        weights: a checkpoint (prefix, file or folder) or ``.safetensors``/``.pth``;
            default: the config's checkpoint (:func:`default_weights`).
        model: an already loaded network (then ``weights`` is ignored).
        device: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``...
        threads: CPU threads for the network (restored afterwards).
        max_memory: memory budget (bytes, or ``'8G'``): for reading each scan, for the padded
            input with its output volume, and for HighRes3DNet's engine.
        niftynet_home: NiftyNet's home folder, for relative paths of an ``.ini``.
        network_options: hyper-parameters no NiftyNet config holds (see :func:`load_network`).
        progress: a progress bar over windows.
    """
    cfg = resolve_segment_config(config, niftynet_home=niftynet_home)
    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise NiftyportError(f"threads must be at least 1, got {threads}")
    images = check_count(images, cfg)
    seconds: dict[str, float] = {}
    with torch_threads(threads):
        t = time.perf_counter()
        model = (load_network(cfg, weights, in_channels=len(cfg.modalities), device=dev,
                              network_options=network_options) if model is None else model.to(dev).eval())
        seconds["weights"] = time.perf_counter() - t
        t = time.perf_counter()
        loaded = load_inputs(images, cfg, max_bytes=None if max_memory is None else _bytes(max_memory))
        pre = preprocess_modalities(stack([item.data for item in loaded]), cfg)
        check_output_budget(pre.whitened.shape, cfg, max_memory)
        seconds["preprocessing"] = time.perf_counter() - t
        t = time.perf_counter()
        padded = network_output(model, pre.whitened, cfg, loaded[0], device=dev, max_memory=max_memory,
                                progress=progress)
        seconds["network"] = time.perf_counter() - t
    t = time.perf_counter()
    output = finish_output(padded, loaded[0], cfg)
    seconds["restore"] = time.perf_counter() - t
    return Segmentation(output=output, affine=loaded[0].affine, loaded=loaded, preprocessed=pre,
                        output_padded=padded, config=cfg, network=str(cfg.network.name).lower(),
                        seconds=seconds)


def segment(images, *, config: str | os.PathLike | Config, weights=None, **options) -> nib.Nifti1Image:
    """Segment one subject from a NiftyNet config; returns the image NiftyNet would write.

    ``images``: one scan per image modality, in the config's order.
    ``options``: those of :func:`run_segmentation`. Labels are int32
    ``(X, Y, Z)``; with ``output_prob`` float32 ``(X, Y, Z, 1, K)``.

    >>> seg = segment(["t1.nii.gz", "t2.nii.gz"], config="my_model.ini")  # doctest: +SKIP
    """
    return run_segmentation(images, config=config, weights=weights, **options).to_image()
