"""The BraTS 2017 cascade of Wang et al. (github.com/taigw/brats17), as its ``test.py`` runs it.

Wang G., Li W., Ourselin S., Vercauteren T. "Automatic brain tumor
segmentation using cascaded anisotropic convolutional neural networks."
BrainLes 2017, LNCS 10670. ``test.py`` with ``config17/test_all_class.txt``:
W-Net (whole tumour) on the brain, T-Net (tumour core) inside the whole
tumour's box, E-Net (enhancing core) inside the core's box, each as three
networks (axial, sagittal, coronal views) whose softmax outputs are averaged;
then the repository's post-processing and BraTS labels 0, 1, 2, 4.

Every step is a small function over arrays citing the repository function it
reproduces (``util/data_loader.py``, ``util/data_process.py``,
``util/train_test_func.py``, ``test.py``). Arrays are the repository's
``(D, H, W)`` = the NIfTI ``(z, y, x)`` axes (``load_nifty_volume_as_array``
transposes ``(x, y, z)`` to ``(z, y, x)``): ``D`` is the axial slice axis.
Network batches are TensorFlow's ``(N, D, H, W, C)`` float32, ``C`` the four
modalities FLAIR, T1, T1ce, T2; probabilities ``(N, d, H, W, K)``.

The networks only enter through a ``predict(net, batch) -> probabilities``
callable, so this module needs no torch (:func:`torch_predictor` builds the
niftyport one). Batch norm uses each batch's statistics (``is_training=True``
in ``test.py``), so what fills a short last batch changes the other outputs of
that batch: see :data:`FILL_MODES`.

Randomness (``test.py`` draws from NumPy's global generator, unseeded): the
background of each normalised modality, the parts of a sub-image outside the
volume and, in ``random`` fill mode, the filler sub-images are N(0, 1) draws.
Here they all come from one ``numpy.random.RandomState(seed)`` in ``test.py``'s
order, so ``fill="random"`` gives what ``test.py`` gives after
``np.random.seed(seed)``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import ImageError, OptionError, WeightsError

# --------------------------------------------------------------------------- the configuration


@dataclass(frozen=True)
class ViewNet:
    """One network of ``config17/test_all_class.txt`` (a ``[network<k><view>]`` section)."""

    stage: str          #: ``whole``, ``core`` or ``enhancing``
    view: str           #: ``axial``, ``sagittal`` or ``coronal``
    checkpoint: str     #: ``model_file``'s name, e.g. ``msnet_wt32_20000.ckpt``
    scope: str          #: ``net_name``
    downsample_twice: bool
    data_shape: tuple[int, int, int]   #: ``data_shape[:-1]`` (D, H, W); the 4th value is the 4 channels
    label_shape: tuple[int, int, int]  #: ``label_shape[:-1]``
    class_num: int = 2


VIEWS = ("axial", "sagittal", "coronal")
STAGES = ("whole", "core", "enhancing")
#: ``DataLoader``'s crop margin, ``test.py``'s ``wt_threshold`` and smallest enhancing core kept (fixed in code).
LOAD_MARGIN = 5
WT_THRESHOLD = 2000
MIN_ENHANCING_VOXELS = 30
MODALITIES = ("flair", "t1", "t1ce", "t2")
#: Shape modes of ``test_one_image_three_nets_adaptive_shape``: W-Net 2 (always adapted), T/E-Net 1.
SHAPE_MODES = {"whole": 2, "core": 1, "enhancing": 1}
#: How the last, short batch of a view is filled up to ``batch_size``:
#: ``repeat`` (default): copies of that batch's own sub-images, cyclically, their outputs discarded
#: (as ``volume_probability_prediction_3d_roi`` discards fillers); ``random``: ``test.py``'s N(0, 1)
#: sub-images, whose outputs ``volume_probability_prediction`` writes over the last slab.
FILL_MODES = ("repeat", "random")
#: The 18-neighbour structure of ``test.py``'s closings and of ``get_largest_two_component``.
STRUCT = ndimage.generate_binary_structure(3, 2)
ENV_WEIGHTS = "NIFTYPORT_BRATS17"


@dataclass(frozen=True)
class BratsConfig:
    """What ``test.py`` reads from its config: nine networks (per stage: axial, sagittal, coronal), the rest.

    ``batch_size``: ``[testing] batch_size`` (absent: 5); ``roi_margin``:
    ``[testing] roi_patch_margin`` (absent: 5), the margin of the tumour and
    core boxes.
    """

    nets: dict[str, tuple[ViewNet, ViewNet, ViewNet]]
    batch_size: int = 5
    roi_margin: int = 5


def _config17() -> BratsConfig:
    rows = {"whole": ("wt", True, ((180, 160), (160, 180), (160, 160))),
            "core": ("tc", True, ((96, 96),) * 3),
            "enhancing": ("en", False, ((96, 96),) * 3)}
    nets = {}
    for stage, (tag, twice, planes) in rows.items():
        nets[stage] = tuple(
            ViewNet(stage, view, f"msnet_{tag}32{suffix}_20000.ckpt", f"MSNet_{tag.upper()}32{suffix}", twice,
                    (19, *plane), (11, *plane))
            for view, suffix, plane in zip(VIEWS, ("", "sg", "cr"), planes))
    return BratsConfig(nets)


#: ``config17/test_all_class.txt`` of taigw/brats17 (the published BraTS 2017 cascade).
CONFIG17 = _config17()


def _value(text: str):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [_value(t) for t in text[1:-1].split(",") if t.strip()]
    if text in ("True", "true", "False", "false"):
        return text in ("True", "true")
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_config(path: str | os.PathLike) -> BratsConfig:
    """A ``test.py`` config (``util/parse_config.py``'s format: ini sections, ``[a, b]`` lists, True/False).

    Networks from ``[network<k>]`` (one net for all three views) or
    ``[network<k>ax]``, ``[network<k>sg]``, ``[network<k>cr]``, k = 1, 2, 3;
    ``model_file``'s file name is looked up in the weights folder. Refused:
    ``whole_tumor_only = True`` and a net type other than MSNet.
    """
    import configparser

    from ..errors import ConfigError

    parser = configparser.ConfigParser()
    try:
        if not parser.read(path):
            raise ConfigError(f"{path}: no such file")
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a test.py config ({' '.join(str(exc).split())})") from None
    sections = {name: {k: _value(v) for k, v in parser[name].items()} for name in parser.sections()}
    testing = sections.get("testing", {})
    if testing.get("whole_tumor_only", False) is True:
        raise ConfigError(f"{path}: whole_tumor_only = True is not supported (the full cascade only)")
    nets = {}
    for k, stage in enumerate(STAGES, start=1):
        single = sections.get(f"network{k}")
        views = []
        for view, tag in zip(VIEWS, ("ax", "sg", "cr")):
            name = f"network{k}" if single else f"network{k}{tag}"
            sec = single or sections.get(name)
            if sec is None:
                raise ConfigError(f"{path}: no [{name}] section")
            try:
                if sec["net_type"] != "MSNet":
                    raise ConfigError(f"{path}: [{name}] net_type {sec['net_type']!r}: only MSNet is supported")
                data, label = [int(n) for n in sec["data_shape"]], [int(n) for n in sec["label_shape"]]
                net = ViewNet(stage, view, Path(str(sec["model_file"])).name, str(sec["net_name"]),
                              bool(sec.get("downsample_twice", True)), tuple(data[:3]), tuple(label[:3]),
                              int(sec["class_num"]))
            except KeyError as exc:
                raise ConfigError(f"{path}: [{name}] has no {exc.args[0]}") from None
            except (TypeError, ValueError):
                raise ConfigError(f"{path}: [{name}] data_shape/label_shape must be lists of 4 integers") from None
            if len(data) != 4 or len(label) != 4 or data[3] != 4 or data[0] - label[0] != 8 \
                    or data[1:3] != label[1:3]:
                raise ConfigError(f"{path}: [{name}] data_shape {data} / label_shape {label}: MSNet takes "
                                  f"[D, H, W, 4] and predicts [D - 8, H, W, 1]")
            views.append(net)
        nets[stage] = tuple(views)
    return BratsConfig(nets, int(testing.get("batch_size", 5)), int(testing.get("roi_patch_margin", 5)))


Predict = Callable[[ViewNet, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- volumes and boxes


def bounding_box(mask: np.ndarray, margin: int | Sequence[int]) -> tuple[list[int], list[int]]:
    """``get_ND_bounding_box``: the non-zero voxels' box grown by ``margin``, clipped; inclusive ``(lo, hi)``."""
    shape = mask.shape
    margins = [int(margin)] * len(shape) if np.isscalar(margin) else [int(m) for m in margin]
    where = np.nonzero(mask)
    if where[0].size == 0:
        raise ValueError("bounding box of an empty mask")
    lo = [max(int(idx.min()) - m, 0) for idx, m in zip(where, margins)]
    hi = [min(int(idx.max()) + m, n - 1) for idx, m, n in zip(where, margins, shape)]
    return lo, hi


def crop(volume: np.ndarray, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """``crop_ND_volume_with_bounding_box``: ``volume[lo:hi + 1]`` on the leading ``len(lo)`` axes (a copy)."""
    return volume[tuple(slice(a, b + 1) for a, b in zip(lo, hi))].copy()


def paste(volume: np.ndarray, lo: Sequence[int], hi: Sequence[int], sub: np.ndarray) -> np.ndarray:
    """``set_ND_volume_roi_with_bounding_box_range``: ``volume[lo:hi + 1] = sub`` in place; returns ``volume``."""
    volume[tuple(slice(a, b + 1) for a, b in zip(lo, hi))] = sub
    return volume


def normalise(volume: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """``itensity_normalize_one_volume``: ``(v - mean) / std`` over ``v > 0``; voxels ``== 0`` get N(0, 1).

    ``volume``: ``(D, H, W)`` in its on-disk dtype; float64 out. One draw of
    the volume's shape is taken from ``rng`` whether or not it has zeros.
    """
    pixels = volume[volume > 0]
    out = (volume - pixels.mean()) / pixels.std()
    noise = rng.normal(0, 1, size=volume.shape)
    background = volume == 0
    out[background] = noise[background]
    return out


def transpose_view(volume: np.ndarray, view: str) -> np.ndarray:
    """``transpose_volumes``: axial as is, sagittal ``(2, 0, 1)``, coronal ``(1, 0, 2)`` (slices first)."""
    return {"axial": volume, "sagittal": np.transpose(volume, (2, 0, 1)),
            "coronal": np.transpose(volume, (1, 0, 2))}[view]


def untranspose_probability(prob: np.ndarray, view: str) -> np.ndarray:
    """Back to ``(D, H, W, K)``: ``test_one_image_three_nets_adaptive_shape``'s ``[1,2,0,3]`` / ``[1,0,2,3]``."""
    return {"axial": prob, "sagittal": np.transpose(prob, (1, 2, 0, 3)),
            "coronal": np.transpose(prob, (1, 0, 2, 3))}[view]


# --------------------------------------------------------------------------- sub-images and batches


def adapted_shapes(net: ViewNet, plane: Sequence[int], shape_mode: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ``(data_shape, label_shape)`` a view runs at (``test_one_image_three_nets_adaptive_shape``).

    ``plane``: the view's in-plane size ``(H, W)``. Mode 0, or mode 1 when
    the plane fits the config's shape: the config's shapes. Otherwise
    (``volume_probability_prediction_dynamic_shape``) the in-plane sides are
    ``max(ceil(side / 4) * 4, config side)`` for data and labels alike.
    """
    height, width = (int(n) for n in plane)
    fits = height <= net.data_shape[1] and width <= net.data_shape[2]
    if shape_mode == 0 or (shape_mode == 1 and fits):
        return net.data_shape, net.label_shape
    hx = max((height + 3) // 4 * 4, net.data_shape[1])
    wx = max((width + 3) // 4 * 4, net.data_shape[2])
    return (net.data_shape[0], hx, wx), (net.label_shape[0], hx, wx)


def slab_centres(depth: int, label_depth: int) -> list[int]:
    """Centre slices of the sub-images along ``D`` (``volume_probability_prediction``): every
    ``label_depth`` slices from ``label_depth // 2``, the last one moved to ``depth - label_depth // 2``."""
    half = label_depth // 2
    return [min(c, depth - half) for c in range(half, depth + half, label_depth)]


def _window(centre: int, half_before: int, half_after: int, size: int) -> tuple[int, int]:
    return min(half_before, centre), min(half_after, size - centre)


def extract_roi(volume: np.ndarray, centre: Sequence[int], shape: Sequence[int],
                rng: np.random.RandomState) -> np.ndarray:
    """``extract_roi_from_volume`` (``fill='random'``): the ``shape`` box around ``centre``, N(0, 1) outside.

    The box spans ``centre - shape // 2`` to ``centre + shape - shape // 2``
    (exclusive); float64 out. One draw of ``shape`` is taken from ``rng``.
    """
    out = rng.normal(0, 1, size=tuple(shape))
    dst, src = [], []
    for c, n, size in zip(centre, shape, volume.shape):
        before, after = _window(int(c), n // 2, n - n // 2, size)
        dst.append(slice(n // 2 - before, n // 2 + after))
        src.append(slice(int(c) - before, int(c) + after))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def set_roi(volume: np.ndarray, centre: Sequence[int], sub: np.ndarray) -> np.ndarray:
    """``set_roi_to_volume``: write ``sub``'s part that falls inside ``volume`` around ``centre``, in place.

    Nothing is written when a centre coordinate is outside the volume.
    """
    if any(int(c) >= n for c, n in zip(centre, volume.shape)):
        return volume
    dst, src = [], []
    for c, n, size in zip(centre, sub.shape, volume.shape):
        before, after = _window(int(c), n // 2, n - n // 2, size)
        dst.append(slice(int(c) - before, int(c) + after))
        src.append(slice(n // 2 - before, n // 2 + after))
    volume[tuple(dst)] = sub[tuple(src)]
    return volume


def sub_images(volumes: Sequence[np.ndarray], data_shape: Sequence[int], label_depth: int,
               rng: np.random.RandomState) -> tuple[list[np.ndarray], list[int]]:
    """The sub-images of one view, in ``volume_probability_prediction``'s order; ``(images, centre slices)``.

    ``volumes``: the channels, each ``(D, H, W)``; each sub-image is
    ``(C, *data_shape)`` float32, centred in-plane on ``(H // 2, W // 2)``.
    """
    depth, height, width = volumes[0].shape
    centres = slab_centres(depth, label_depth)
    images = [np.asarray([extract_roi(v, (c, height // 2, width // 2), data_shape, rng) for v in volumes],
                         np.float32) for c in centres]
    return images, centres


def batch_slots(total: int, batch_size: int) -> list[list[int]]:
    """Which sub-image fills each place of each mini-batch: ``-1`` marks a filler (the last batch only).

    >>> batch_slots(7, 5)
    [[0, 1, 2, 3, 4], [5, 6, -1, -1, -1]]
    """
    batches = []
    for start in range(0, total, batch_size):
        real = list(range(start, min(start + batch_size, total)))
        batches.append(real + [-1] * (batch_size - len(real)))
    return batches


def fill_batch(images: Sequence[np.ndarray], slots: Sequence[int], fill: str,
               rng: np.random.RandomState) -> np.ndarray:
    """One mini-batch ``(N, D, H, W, C)`` float32 from the sub-images ``(C, D, H, W)`` named by ``slots``.

    Fillers (``-1``), in order: ``random``: N(0, 1) sub-images drawn from
    ``rng`` (``volume_probability_prediction``'s ``np.random.normal``);
    ``repeat``: the batch's own sub-images again, cyclically (the first
    real one, the second, ...). The same draws are taken from ``rng`` in both
    modes, so the rest of a run's noise does not depend on the mode.
    """
    real = [images[i] for i in slots if i >= 0]
    items = list(real)
    for k in range(sum(1 for i in slots if i < 0)):
        noise = rng.normal(0, 1, size=real[0].shape)
        items.append(noise if fill == "random" else real[k % len(real)])
    return np.transpose(np.asarray(items, np.float32), (0, 2, 3, 4, 1))


def view_probability(volumes: Sequence[np.ndarray], net: ViewNet, data_shape: Sequence[int],
                     label_shape: Sequence[int], predict: Predict, *, fill: str, rng: np.random.RandomState,
                     batch_size: int, record: list | None = None) -> np.ndarray:
    """``volume_probability_prediction``: slabs along ``D``, in batches; ``(D, H, W, K)`` float64.

    Each slab's prediction ``(label_depth, *plane, K)`` is written back around
    its centre slice (``set_roi``), later slabs over earlier ones. In
    ``random`` mode the fillers' predictions are written too, at the last
    slab's centre (``test.py``'s loop runs over the whole batch), in
    ``repeat`` mode they are discarded. ``record``: a list that receives
    ``(net, batch, probabilities)`` per mini-batch.
    """
    depth, height, width = volumes[0].shape
    k = net.class_num
    prob = np.zeros((depth, height, width, k))
    images, _ = sub_images(volumes, data_shape, label_shape[0], rng)
    half = label_shape[0] // 2
    for slab_index, slots in enumerate(batch_slots(len(images), batch_size)):
        batch = fill_batch(images, slots, fill, rng)
        out = predict(net, batch)
        if record is not None:
            record.append((net, batch, out))
        for place, index in enumerate(slots):
            if index < 0 and fill != "random":
                continue
            position = slab_index * batch_size + place
            centre = min(position * label_shape[0] + half, depth - half)
            sub = np.reshape(out[place], (*label_shape, k))
            set_roi(prob, (centre, height // 2, width // 2, k // 2), sub)
    return prob


def three_view_probability(volumes: Sequence[np.ndarray], nets: Sequence[ViewNet], predict: Predict, *,
                           fill: str, rng: np.random.RandomState, batch_size: int,
                           record: list | None = None) -> np.ndarray:
    """``test_one_image_three_nets_adaptive_shape``: the mean of the three views' ``(D, H, W, K)`` probabilities.

    ``nets``: the stage's axial, sagittal and coronal networks, run in that
    order at :func:`adapted_shapes` with the stage's shape mode.
    """
    total = None
    for net in nets:
        views = [transpose_view(v, net.view) for v in volumes]
        data_shape, label_shape = adapted_shapes(net, views[0].shape[1:], SHAPE_MODES[net.stage])
        prob = untranspose_probability(
            view_probability(views, net, data_shape, label_shape, predict, fill=fill, rng=rng,
                             batch_size=batch_size, record=record), net.view)
        total = prob if total is None else total + prob
    return total / 3.0


# --------------------------------------------------------------------------- post-processing


def _component_sizes(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labelled, count = ndimage.label(mask, structure)
    if count == 0:
        return labelled, np.zeros(0)
    return labelled, np.asarray(ndimage.sum(mask, labelled, range(1, count + 1)), dtype=np.float64).reshape(-1)


def largest_components(mask: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """``get_largest_two_component`` (18-connected components).

    One component: ``mask`` returned as is. With ``threshold``: the
    components larger than it (nothing if none is). Without: the largest,
    and the second largest too when ten times its size exceeds the largest.
    A size shared by several components selects all of them (the
    repository looks sizes up with ``np.where(sizes == size)``).
    """
    labelled, sizes = _component_sizes(mask, STRUCT)
    if len(sizes) == 1:
        return mask
    if threshold:
        return np.isin(labelled, np.flatnonzero(sizes > threshold) + 1)
    ordered = np.sort(sizes)
    first, second = ordered[-1], ordered[-2]
    keep = sizes == first
    if second * 10 > first:
        keep |= sizes == second
    return np.isin(labelled, np.flatnonzero(keep) + 1)


def remove_external_core(main: np.ndarray, core: np.ndarray) -> np.ndarray:
    """``remove_external_core``: the 18-connected components of ``core`` at least half inside ``main``."""
    labelled, sizes = _component_sizes(core, STRUCT)
    if len(sizes) == 0:
        return np.zeros(core.shape, bool)
    inside = np.asarray(ndimage.sum(main, labelled, range(1, len(sizes) + 1)), dtype=np.float64).reshape(-1)
    return np.isin(labelled, np.flatnonzero(inside / sizes >= 0.5) + 1)


def closing(mask: np.ndarray) -> np.ndarray:
    """``ndimage.morphology.binary_closing(mask, structure=struct)`` with ``test.py``'s 18-neighbour struct."""
    return ndimage.binary_closing(mask, structure=STRUCT)


def core_box(pred: np.ndarray, margin: int) -> tuple[list[int], list[int]] | None:
    """``bbox2`` of ``test.py`` 5.3: the box (margin 5) of the closed T-Net prediction's largest components.

    None where ``test.py`` takes the whole tumour box instead: an empty
    prediction, and (a departure: ``test.py`` would fail on the box of
    nothing) a prediction the closing empties.
    """
    if pred.sum() == 0:
        return None
    closed = closing(pred)
    if not closed.any():
        return None
    return bounding_box(largest_components(closed), margin)


def fuse_labels(pred1: np.ndarray, label2: np.ndarray, label3: np.ndarray) -> np.ndarray:
    """``test.py`` 5.4-5.5: the three predictions (in the brain box) to BraTS labels ``(D, H, W)`` int16.

    Whole tumour = closed, >2000-voxel components of the union; core =
    (core | enhancing) inside it, closed, its external components removed,
    largest components; enhancing inside the core, dropped when under 30
    voxels. Labels: 2 whole tumour, 1 core, 4 enhancing.
    """
    mask1 = largest_components(closing((pred1 + label2 + label3) > 0), WT_THRESHOLD)
    label1 = pred1 * mask1
    mask23 = closing(((label2 + label3) > 0) * mask1)
    mask23 = remove_external_core(label1, mask23)
    if mask23.sum() > 0:
        mask23 = largest_components(mask23)
    whole = (label1 + mask23) > 0
    core = mask23
    enhancing = core * label3
    count = np.asarray(enhancing > 0, np.float32).sum()
    if 0 < count < MIN_ENHANCING_VOXELS:
        enhancing = np.zeros_like(core)
    out = whole * 2
    out[core > 0] = 1
    out[enhancing > 0] = 4
    return np.asarray(out, np.int16)


# --------------------------------------------------------------------------- the cascade


@dataclass
class BratsResult:
    """Every stage of one run, in the brain box's ``(D, H, W)`` unless said otherwise."""

    labels: np.ndarray            #: int16 BraTS labels, the input's full ``(D, H, W)`` = ``(z, y, x)``
    brain_box: tuple              #: ``DataLoader``'s crop of the inputs (inclusive ``lo``, ``hi``)
    weight: np.ndarray            #: FLAIR > 0 in the box, float32
    prob_whole: np.ndarray        #: W-Net views' mean ``(D, H, W, 2)``
    tumour_box: tuple             #: ``bbox1`` in the brain box
    prob_core: np.ndarray         #: in the tumour box
    core_box: tuple               #: ``bbox2`` in the tumour box
    prob_enhancing: np.ndarray    #: in the core box
    batches: list = field(default_factory=list)  #: ``(net, batch, probabilities)`` when recorded


def prepare_inputs(volumes: Sequence[np.ndarray], rng: np.random.RandomState
                   ) -> tuple[list[np.ndarray], np.ndarray, tuple[list[int], list[int]]]:
    """``DataLoader.load_data``: crop to FLAIR's non-zero box (margin 5), weight = FLAIR > 0, normalise each.

    ``volumes``: FLAIR, T1, T1ce, T2 as ``(D, H, W)`` (on-disk dtype);
    returns (normalised float64 channels, float32 weight, box).
    """
    box = bounding_box(volumes[0], LOAD_MARGIN)
    cropped = [crop(v, *box) for v in volumes]
    weight = np.asarray(cropped[0] > 0, np.float32)
    return [normalise(v, rng) for v in cropped], weight, box


def run_cascade(volumes: Sequence[np.ndarray], predict: Predict, *, fill: str = "repeat", seed: int = 0,
                config: BratsConfig = CONFIG17, record: bool = False,
                progress: Callable[[str], None] | None = None) -> BratsResult:
    """``test.py``'s steps 4-5 for one subject: the cascade from four ``(D, H, W)`` volumes to BraTS labels.

    ``predict(net, batch)``: softmax probabilities ``(N, d, H, W, 2)`` of the
    :class:`ViewNet` ``net`` for a batch ``(N, D, H, W, 4)`` float32.
    """
    if fill not in FILL_MODES:
        raise OptionError(f"fill {fill!r} is not one of {', '.join(FILL_MODES)}")
    rng = np.random.RandomState(seed)
    tell = progress or (lambda message: None)
    recorded: list | None = [] if record else None
    images, weight, brain_box = prepare_inputs(volumes, rng)
    run = {"predict": predict, "fill": fill, "rng": rng, "batch_size": config.batch_size, "record": recorded}
    margin = config.roi_margin

    tell("whole tumour (W-Net)")
    prob1 = three_view_probability(images, config.nets["whole"], **run)
    pred1 = np.asarray(np.argmax(prob1, axis=3), np.uint16) * weight
    box1 = None
    if pred1.sum() > 0:
        kept = largest_components(closing(pred1), WT_THRESHOLD)
        if np.any(kept):
            box1 = bounding_box(kept, margin)
    if box1 is None:  # test.py: the box of images[0] > 0 for an empty W-Net output (and fails for one too small)
        box1 = bounding_box(images[0] > 0, margin)
    sub = [crop(v, *box1) for v in images]
    sub_weight = crop(weight, *box1)

    tell("tumour core (T-Net)")
    prob2 = three_view_probability(sub, config.nets["core"], **run)
    pred2 = np.asarray(np.argmax(prob2, axis=3), np.uint16) * sub_weight
    box2 = core_box(pred2, margin)
    if box2 is None:
        box2 = ([0, 0, 0], [n - 1 for n in sub[0].shape])
    subsub = [crop(v, *box2) for v in sub]
    subsub_weight = crop(sub_weight, *box2)

    tell("enhancing core (E-Net)")
    prob3 = three_view_probability(subsub, config.nets["enhancing"], **run)
    pred3 = np.asarray(np.argmax(prob3, axis=3), np.uint16) * subsub_weight

    label3 = paste(np.zeros_like(pred1), *box1, paste(np.zeros_like(pred2), *box2, pred3))
    label2 = paste(np.zeros_like(pred1), *box1, pred2)
    labels = paste(np.zeros(volumes[0].shape, np.int16), *brain_box, fuse_labels(pred1, label2, label3))
    return BratsResult(labels, brain_box, weight, prob1, box1, prob2, box2, prob3, recorded or [])


# --------------------------------------------------------------------------- files and networks


def weights_folder(weights_dir: str | os.PathLike | None, config: BratsConfig = CONFIG17) -> Path:
    """``weights_dir``, else ``$NIFTYPORT_BRATS17``; checked to hold the nine checkpoints (``model17/``)."""
    if weights_dir is None:
        weights_dir = os.environ.get(ENV_WEIGHTS)
        if not weights_dir:
            raise WeightsError(f"no BraTS 2017 weights: give --weights-dir (a folder as taigw/brats17's model17/) "
                               f"or set ${ENV_WEIGHTS}")
    folder = Path(weights_dir)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: not a folder (the BraTS 2017 checkpoints' folder, as model17/)")
    for stage in config.nets.values():
        for net in stage:
            for suffix in (".index", ".data-00000-of-00001"):
                path = folder / f"{net.checkpoint}{suffix}"
                if not path.is_file():
                    raise WeightsError(f"{path}: missing ({net.scope}, the {net.view} {net.stage} network)")
    return folder


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, object]:
    """One modality as ``load_nifty_volume_as_array`` reads it: ``(z, y, x)``, on-disk dtype; and its image."""
    from ..image_io import load_image

    img = load_image(path)
    data = np.asanyarray(img.dataobj)
    if not np.any(data):
        raise ImageError(f"{path}: all voxels are zero")
    return np.transpose(data, (2, 1, 0)), img


def torch_predictor(folder: Path, *, config: BratsConfig = CONFIG17, device="auto") -> Predict:
    """``predict`` with niftyport's MSNet: the config's nine checkpoints from ``folder``, loaded now.

    Batches go in as ``(N, D, H, W, 4)`` float32 (moved to torch's
    ``(N, C, D, H, W)``), softmax in float32, probabilities come back as
    ``(N, D - 8, H, W, K)``. A checkpoint that cannot be read or does not fit
    is refused here (its file named), before any image is read.
    """
    import torch

    from .. import networks
    from .pipeline import resolve_device

    device = resolve_device(device)
    models: dict[str, torch.nn.Module] = {}
    for stage in config.nets.values():
        for net in stage:
            if net.checkpoint not in models:
                models[net.checkpoint] = networks.load(
                    "msnet", folder / net.checkpoint, num_classes=net.class_num, in_channels=4, acti_func="prelu",
                    downsample_twice=net.downsample_twice).to(device)

    def predict(net: ViewNet, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(batch, -1, 1))).to(device)
        with torch.no_grad():
            prob = torch.softmax(models[net.checkpoint](x), dim=1)
        return np.moveaxis(prob.cpu().numpy(), 1, -1)

    return predict


def segment_brats(flair, t1, t1c, t2, *, weights_dir: str | os.PathLike | None = None, fill: str = "repeat",
                  seed: int = 0, config: BratsConfig | str | os.PathLike | None = None, device="auto",
                  predict: Predict | None = None, progress: Callable[[str], None] | None = None,
                  result: bool = False, record: bool = False):
    """BraTS labels (0, 1, 2, 4) of one subject as a nibabel image on FLAIR's grid (int32, FLAIR's affine).

    ``flair, t1, t1c, t2``: image paths or nibabel images of one voxel grid
    (the config's ``modality_postfix`` order); ``weights_dir``: the nine
    checkpoints (default ``$NIFTYPORT_BRATS17``); ``fill``/``seed``: see
    :data:`FILL_MODES` and the module's notes; ``config``: a ``test.py``
    config file or :class:`BratsConfig` (default :data:`CONFIG17`);
    ``predict``: another network runner (then no weights are read);
    ``result=True`` returns ``(image, BratsResult)`` (``record=True``: with
    every batch fed and its probabilities).
    """
    from ..image_io import label_image

    if fill not in FILL_MODES:
        raise OptionError(f"fill {fill!r} is not one of {', '.join(FILL_MODES)}")
    if config is None:
        config = CONFIG17
    elif not isinstance(config, BratsConfig):
        config = read_config(config)
    paths = [flair, t1, t1c, t2]
    loaded = [load_volume(p) for p in paths]
    shape = loaded[0][0].shape
    for p, (v, _) in zip(paths[1:], loaded[1:]):
        if v.shape != shape:
            raise ImageError(f"{_label(p)}: {v.shape[::-1]} voxels, the FLAIR has {shape[::-1]}: the four scans "
                             f"must share one grid")
    box = bounding_box(loaded[0][0], LOAD_MARGIN)
    for p, (v, _) in zip(paths, loaded):
        inside = crop(v, *box)
        positive = inside[inside > 0]
        if positive.size == 0 or positive.std() == 0:
            raise ImageError(f"{_label(p)}: {'no' if positive.size == 0 else 'constant'} positive voxels in the "
                             f"FLAIR's non-zero box: nothing to normalise (mean/std over voxels > 0)")
    if predict is None:
        predict = torch_predictor(weights_folder(weights_dir, config), config=config, device=device)
    res = run_cascade([v for v, _ in loaded], predict, fill=fill, seed=seed, config=config, progress=progress,
                      record=record)
    reference = loaded[0][1]
    img = label_image(np.transpose(res.labels, (2, 1, 0)), reference.affine, reference.header,
                      description="niftyport brats: BraTS 2017 cascade (taigw/brats17)")
    return (img, res) if result else img


def _label(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "get_filename", lambda: None)()
    return name or "image"
