"""Pretrained HighRes3DNet weights: find them, load them from any format, save them.

Sources :func:`load_state_dict` understands, told apart by their files and keys:

* a NiftyNet (TensorFlow) checkpoint: prefix, ``.index``/``.data-*`` file or model folder;
* niftyport's own ``.safetensors`` or ``.pth`` (keys of :class:`~niftyport.network.HighRes3DNet`);
* the third-party PyTorch port's ``.pth`` (keys ``block.N.…``), the file
  :func:`resolve_weights` downloads.

``.pth`` files are always read with ``torch.load(weights_only=True)``: no
pickled code runs (a file that needs any is refused). bfloat16 tensors stay
bfloat16 in every format (:mod:`niftyport.tensors`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import struct
import sys
import warnings
import zipfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .architecture import state_dict_shapes
from .checkpoint import Checkpoint, is_checkpoint, read_checkpoint, resolve_prefix, write_checkpoint
from .errors import WeightsError
from .mapping import (HIGHRES3DNET_NIFTYNET_RULES, HIGHRES3DNET_THIRD_PARTY_RULES, Expected, Rule, RuleSet,
                      convert_state_dict, export_state_dict)
from .outputs import atomic_output
from .safetensors_io import read_safetensors, write_safetensors
from .tensors import to_numpy, to_torch

if TYPE_CHECKING:  # torch is imported where it is needed: reading a checkpoint into safetensors needs none
    import torch

    from .networks import NetworkSpec

    from .network import HighRes3DNet

#: The third-party port's weights: file name, upstream location (the ``hubconf.py`` of
#: github.com/fepegar/highresnet points there) and SHA-256.
WEIGHTS_FILENAME = "highres3dnet_li_parameters-7d297872.pth"
WEIGHTS_URL = f"https://github.com/fepegar/highresnet-models/raw/master/{WEIGHTS_FILENAME}"
WEIGHTS_SHA256 = "7d2978724469087fa46d5beda42edc7b5941cdec2065e310534ca8a7a5d15edc"
ENV_WEIGHTS = "NIFTYPORT_WEIGHTS"
ENV_CACHE_DIR = "NIFTYPORT_CACHE_DIR"

#: Keys of niftyport's own files map onto themselves.
NIFTYPORT_RULES = RuleSet((Rule("{key:.+}", "{key}"),), name="niftyport keys")

#: How a ``state_dict`` file's layout is recognised: (description, key regex, rules).
#: The first row whose regex matches any key decides; otherwise the keys are niftyport's.
LAYOUTS: tuple[tuple[str, str, RuleSet], ...] = (
    ("third-party HighRes3DNet port", r"block\.\d+\.(convolutional|dilation)_block\..+",
     HIGHRES3DNET_THIRD_PARTY_RULES),
    ("NiftyNet variable names", r"HighRes3DNet/.+", HIGHRES3DNET_NIFTYNET_RULES),
)


# --------------------------------------------------------------------------- finding the file

def cache_dir() -> Path:
    """``$NIFTYPORT_CACHE_DIR``, else ``$XDG_CACHE_HOME/niftyport``, else ``~/.cache/niftyport``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "niftyport"


def _existing(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if path.is_file() or is_checkpoint(path):
        return path
    raise WeightsError(f"{what} {path} not found (neither a weights file nor a TensorFlow checkpoint)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_weights(dest: Path, *, url: str = WEIGHTS_URL, sha256: str = WEIGHTS_SHA256) -> Path:
    """Download ``url`` to ``dest`` (atomically) and check its SHA-256; returns ``dest``."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_output(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                                              disable=not sys.stderr.isatty()) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != sha256:
                raise WeightsError(f"download from {url} has sha256 {digest.hexdigest()}, expected {sha256}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(f"cannot download weights from {url} ({reason}); pass a weights file "
                           f"or set {ENV_WEIGHTS}") from None
    return dest


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the weights in use are: ``path``, and ``origin``, how they were found.

    ``origin`` is one of ``"explicit"`` (a path given by the caller),
    ``"environment"`` (``$NIFTYPORT_WEIGHTS``), ``"packaged"`` (shipped in
    niftyport), ``"cache"`` or ``"download"``.
    """

    path: Path
    origin: str


def _packaged(network: str):
    from .networks import get

    return get(network).pretrained


def find_weights(explicit: str | os.PathLike | None = None, *, network: str = "highres3dnet",
                 download: bool = True) -> ResolvedWeights:
    """Where the pretrained weights of ``network`` are, in this order:

    1. ``explicit`` (a weights file or a checkpoint), when given;
    2. the environment variable ``NIFTYPORT_WEIGHTS``;
    3. the file shipped in the package (``NetworkSpec.pretrained``), if its SHA-256 is right;
    4. the cache, ``cache_dir() / WEIGHTS_FILENAME``, if its SHA-256 is right;
    5. a download from ``WEIGHTS_URL`` into the cache (SHA-256 checked), unless ``download=False``.

    Steps 4-5 are a fallback for an installation whose package data is
    missing or damaged; HighRes3DNet never needs them.
    """
    if explicit is not None:
        return ResolvedWeights(_existing(explicit, "weights"), "explicit")
    if os.environ.get(ENV_WEIGHTS):
        return ResolvedWeights(_existing(os.environ[ENV_WEIGHTS], f"${ENV_WEIGHTS}:"), "environment")
    pretrained = _packaged(network)
    if pretrained is not None and pretrained.weights.is_file():
        if sha256_of(pretrained.weights) == pretrained.sha256:
            return ResolvedWeights(pretrained.weights, "packaged")
        logging.getLogger(__name__).warning("packaged weights %s have the wrong sha256 (damaged "
                                            "installation); not used", pretrained.weights)
    cached = cache_dir() / WEIGHTS_FILENAME
    if cached.is_file() and sha256_of(cached) == WEIGHTS_SHA256:
        return ResolvedWeights(cached, "cache")
    if not download:
        raise WeightsError(f"no pretrained weights for {network}: pass a file, set {ENV_WEIGHTS}, or put "
                           f"{WEIGHTS_FILENAME} in {cached.parent}")
    return ResolvedWeights(download_weights(cached), "download")


def resolve_weights(explicit: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The path :func:`find_weights` finds for HighRes3DNet."""
    return find_weights(explicit, download=download).path


# --------------------------------------------------------------------------- reading

def detect_rules(keys: Any) -> RuleSet:
    """The rule set for a ``state_dict`` with these keys (see :data:`LAYOUTS`)."""
    keys = list(keys)
    for _, pattern, rules in LAYOUTS:
        if any(re.fullmatch(pattern, key) for key in keys):
            return rules
    return NIFTYPORT_RULES


#: What ``torch.load`` raises for a file that is not a plain ``state_dict`` (found by damaging
#: real files byte by byte): the weights-only unpickler's refusals, zip, pickle and torch errors.
_TORCH_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, KeyError,
                      IndexError, TypeError, AttributeError, AssertionError, OverflowError, struct.error,
                      zipfile.BadZipFile)


def _torch_load_problem(exc: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:  # the weights-only unpickler names what the pickle wanted to run
        detail = line.removeprefix("WeightsUnpickler error:").strip()
        if detail.startswith(("Unsupported global", "Trying to load unsupported")):
            return f"it holds pickled code or objects, which are never run ({detail})"
        if detail.startswith("Unsupported operand"):
            return f"not a torch.save file of tensors (pickle data the weights-only reader refuses: {detail})"
    return f"not a torch.save file of tensors ({lines[0] if lines else type(exc).__name__})"


def read_pth(path: str | os.PathLike) -> dict[str, Any]:
    """``{name: torch tensor}`` of a ``torch.save`` file, read with ``torch.load(weights_only=True)``.

    No pickled code ever runs: anything but tensors, containers and plain
    values is refused (:class:`~niftyport.errors.WeightsError`), as is a file
    that holds no ``{str: tensor}`` mapping.
    """
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the error says enough
            warnings.simplefilter("ignore")
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except _TORCH_LOAD_ERRORS as exc:
        raise WeightsError(f"{path}: {_torch_load_problem(exc)}") from None
    if not isinstance(tensors, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise WeightsError(f"{path}: holds no state_dict (a mapping of names to tensors)")
    return dict(tensors)


def read_tensors(source: str | os.PathLike) -> tuple[dict[str, Any], RuleSet]:
    """Raw tensors of a weights source, keyed as stored, and the rules that map them to niftyport keys.

    A checkpoint or a ``.safetensors`` file gives numpy arrays (bfloat16 as
    :data:`~niftyport.tensors.BFLOAT16`); a ``.pth`` file torch tensors. A
    checkpoint's model variables that cannot be read are left out
    (:meth:`~niftyport.checkpoint.Checkpoint.unreadable_kept`). Raises
    :class:`~niftyport.errors.WeightsError` (or ``CheckpointError``) naming
    the file for a missing, empty, truncated or corrupt one.
    """
    path = Path(source)
    if is_checkpoint(path):
        return read_checkpoint(path).model_tensors(), HIGHRES3DNET_NIFTYNET_RULES
    if path.is_dir():
        resolve_prefix(path)  # raises why the folder holds no checkpoint
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise WeightsError(f"{path}: unknown weights format {path.suffix!r}: expected a TensorFlow "
                           "checkpoint, .safetensors or .pth")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file")
    tensors = read_safetensors(path) if suffix == ".safetensors" else read_pth(path)
    return tensors, detect_rules(tensors)


def load_state_dict(source: str | os.PathLike, *, expected: Expected | None = None) -> dict[str, torch.Tensor]:
    """HighRes3DNet ``state_dict`` (niftyport keys and layouts) from any supported source.

    Checked strictly against ``expected`` (default: a ``HighRes3DNet()``'s
    keys and shapes); values are bit-identical to the source's. NiftyNet
    checkpoints have no ``num_batches_tracked``, so it is absent then.
    """
    tensors, rules = read_tensors(source)
    return convert_state_dict(tensors, rules, expected=state_dict_shapes() if expected is None else expected)


def _load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], rules: RuleSet) -> torch.nn.Module:
    """``model.load_state_dict(strict=True)``, keys ``rules`` excuses (BatchNorm counters) kept from ``model``."""
    full = {key: value for key, value in model.state_dict().items() if rules.ignores_target(key)}
    full.update(state)
    try:
        model.load_state_dict(full, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights do not fit {type(model).__name__}: {str(exc).splitlines()[0]}") from None
    return model


def load_niftynet_weights(model: torch.nn.Module, checkpoint: str | os.PathLike | Checkpoint, *,
                          rules: RuleSet = HIGHRES3DNET_NIFTYNET_RULES) -> torch.nn.Module:
    """Load a NiftyNet checkpoint's model variables into ``model`` (strict); returns ``model``.

    ``rules`` maps the checkpoint's names and layouts onto ``model``'s keys;
    give your own :class:`~niftyport.mapping.RuleSet` for another network.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)
    return _load_into(model, convert_state_dict(ckpt.model_tensors(), rules, expected=model), rules)


def load_weights(source: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> HighRes3DNet:
    """A pretrained ``HighRes3DNet`` (160 GIF labels) in eval mode on ``device``.

    ``source`` is any weights file or checkpoint; without it the weights are
    found by :func:`find_weights` (the file shipped in the package).
    """
    from .network import HighRes3DNet

    model = HighRes3DNet()
    tensors, rules = read_tensors(resolve_weights(source))
    _load_into(model, convert_state_dict(tensors, rules, expected=model), rules)
    return model.to(device).eval()


def network_tensors(spec: NetworkSpec, source: str | os.PathLike | Mapping[str, Any], *,
                    rule_kwargs: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], RuleSet]:
    """Tensors of ``source`` for network ``spec`` and the rules mapping them to its module's keys.

    ``source`` is a NiftyNet checkpoint (its name scope read from its
    variables), a ``.safetensors``/``.pth`` file, or a mapping of names to
    arrays; NiftyNet names (``<scope>/...``) get the network's NiftyNet rules,
    other keys are taken as the module's own.
    """
    from .networks import scope_of
    from .checkpoint.filter import classify

    if isinstance(source, Mapping):  # drop what a checkpoint's reader would (slots, counters, debias)
        tensors = {k: v for k, v in source.items() if classify(k, tuple(np.shape(v))).kept}
    elif is_checkpoint(Path(source)):
        tensors = read_checkpoint(source).model_tensors()
    else:
        tensors, _ = read_tensors(source)
    names = list(tensors)
    rules = spec.rules(scope_of(names, spec), **dict(rule_kwargs or {}))
    if any(rules.target_of(n) is not None for n in names):
        return tensors, rules
    return tensors, NIFTYPORT_RULES


def load_network_state(model: torch.nn.Module, spec: NetworkSpec,
                       source: str | os.PathLike | Mapping[str, Any]) -> torch.nn.Module:
    """Load ``source`` (see :func:`network_tensors`) into ``model`` strictly; returns ``model`` in eval mode."""
    kwargs = {"acti_func": getattr(model, "acti_func", "relu")}
    if hasattr(model, "spatial_dims"):  # 2-D variants of 3-D networks name their kernels alike
        kwargs["spatial_dims"] = model.spatial_dims
    tensors, rules = network_tensors(spec, source, rule_kwargs=kwargs)
    return _load_into(model, convert_state_dict(tensors, rules, expected=model), rules).eval()


# --------------------------------------------------------------------------- writing

def _numpy_tensors(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Contiguous numpy copies of torch tensors or arrays (values and dtypes unchanged, bfloat16 kept)."""
    def contiguous(array: np.ndarray) -> np.ndarray:  # ascontiguousarray makes 0-d arrays 1-d: keep the shape
        return np.ascontiguousarray(array).reshape(array.shape)
    return {key: contiguous(to_numpy(value)) for key, value in state_dict.items()}


def save_safetensors(state_dict: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state_dict`` (torch tensors or numpy arrays) to a ``.safetensors`` file (atomically).

    Returns its path. The file is the one ``safetensors.torch.save_file``
    writes (bfloat16 as ``BF16``); no torch is needed to write it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        write_safetensors(_numpy_tensors(state_dict), tmp, metadata={"format": "pt"})
    return path


def save_pth(state_dict: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state_dict`` with ``torch.save`` (plain dict of tensors, atomically); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import torch

    tensors = {key: to_torch(array) for key, array in _numpy_tensors(state_dict).items()}
    with atomic_output(path) as tmp:
        torch.save(tensors, tmp)
    return path


def niftynet_debias_variables(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Zero-debias variables NiftyNet's graph expects beside each batch-norm moving average.

    NiftyNet's ``BNLayer`` (niftynet/layer/bn.py) calls
    ``assign_moving_average(zero_debias=True)`` even at inference, creating
    ``S/S/moving_mean/biased`` (same shape) and ``S/S/moving_mean/local_step``
    (float32 scalar) for each ``S/moving_mean`` (and ``moving_variance``);
    NiftyNet's restorer loads every variable of its graph, so a checkpoint
    without them fails there. They only matter when training resumes; they
    are written as zeros, i.e. a fresh average.
    """
    extra = {}
    for name, array in tensors.items():
        scope, _, stat = name.rpartition("/")
        if scope and stat in ("moving_mean", "moving_variance"):
            extra[f"{scope}/{name}/biased"] = np.zeros_like(array)
            extra[f"{scope}/{name}/local_step"] = np.zeros((), dtype=np.float32)
    return extra


def export_niftynet(state_dict: Mapping[str, Any], prefix: str | os.PathLike, *,
                    rules: RuleSet = HIGHRES3DNET_NIFTYNET_RULES, global_step: int | None = None,
                    debias_variables: bool = True) -> Path:
    """Write a ``state_dict`` as a NiftyNet checkpoint (names and layouts by ``rules`` reversed).

    With ``debias_variables`` the checkpoint also holds the batch-norm
    zero-debias variables NiftyNet needs to restore it
    (:func:`niftynet_debias_variables`). Returns the prefix.
    """
    tensors = export_state_dict(state_dict, rules)
    if debias_variables:
        tensors.update(niftynet_debias_variables(tensors))
    return write_checkpoint(prefix, tensors, global_step=global_step)

