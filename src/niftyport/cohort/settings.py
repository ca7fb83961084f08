"""What a cohort run is asked to do, and which part of it changes the labels.

:class:`RunSettings` travels to every Dask task (a few hundred bytes: no
image, no weights). :meth:`RunSettings.label_settings` is the part that
decides the labels -- the network, the mode, the weights' SHA-256, the
preprocessing and window values of the config, the histogram landmarks'
SHA-256. Each scan's sidecar records it; a rerun skips a scan whose sidecar
holds the same, and redoes it otherwise. The device, threads and memory
budget are recorded too but not compared (``--mode niftynet`` gives
NiftyNet's labels whatever they are).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import __version__
from ..config import Config
from ..errors import ConfigError

NETWORK = "highres3dnet"

#: The config values that change the labels, per section (NiftyNet names).
LABEL_KEYS = {
    "image": ("pixdim", "axcodes", "interp_order"),
    "network": ("name", "batch_size", "volume_padding_size", "volume_padding_mode", "volume_padding_to_size",
                "foreground_type", "multimod_foreground_type", "norm_type", "cutoff", "normalisation",
                "whitening", "normalise_foreground_only"),
    "inference": ("border", "output_interp_order"),
    "segmentation": ("num_classes",),
}


@dataclass(frozen=True)
class ConfigSource:
    """How each worker rebuilds the config: the ``.ini`` (None: the model zoo's) and the overrides.

    Workers rebuild the config themselves rather than receive the client's,
    so the built-in config finds the landmarks shipped in *their* installation.
    """

    path: str | None = None
    niftynet_home: str | None = None
    window: int | None = None
    border: int | None = None
    batch_size: int | None = None

    def resolve(self) -> Config:
        """The :class:`Config` (checked: network supported, a window set)."""
        from ..segmentation.pipeline import resolve_config

        return resolve_config(self.path, niftynet_home=self.niftynet_home, window=self.window,
                              border=self.border, batch_size=self.batch_size)


@dataclass(frozen=True)
class RunSettings:
    """Everything a task needs besides its scan.

    ``weights``: the weights file given by the user (None: each worker finds
    its own, the packaged ones or ``$NIFTYPORT_WEIGHTS``), ``weights_sha256``:
    the SHA-256 the workers' file must have. ``threads``: torch threads per
    task (None: the worker's cores divided by its task slots).
    ``max_memory``: bytes per task (None: from the worker's memory limit).
    ``labels``: :meth:`label_settings`, computed once on the client.
    """

    config: ConfigSource
    weights_sha256: str
    weights: str | None = None
    mode: str = "niftynet"
    device: str = "auto"
    threads: int | None = None
    max_memory: int | None = None
    labels: dict = field(default_factory=dict, compare=False)

    def with_labels(self, config: Config) -> "RunSettings":
        """A copy holding the label settings of ``config`` (the resolved :attr:`config`)."""
        return replace(self, labels=label_settings(config, mode=self.mode, weights_sha256=self.weights_sha256))


def _sha256(path: str) -> str:
    from ..weights import sha256_of

    try:
        return sha256_of(Path(path))
    except OSError as exc:
        raise ConfigError(f"histogram_ref_file {path}: cannot be read ({exc.strerror or exc})") from None


def _jsonable(value):
    """Tuples -> lists, as JSON reads them back, so that recorded and new settings compare equal."""
    return json.loads(json.dumps(value))


def label_settings(config: Config, *, mode: str, weights_sha256: str) -> dict:
    """The settings that decide the labels, as plain JSON values.

    >>> from niftyport.segmentation.pipeline import resolve_config
    >>> s = label_settings(resolve_config(None, window=40), mode="niftynet", weights_sha256="ab")
    >>> s["window"], s["mode"], s["network"]["name"], s["inference"]["border"]
    ([40, 40, 40], 'niftynet', 'highres3dnet', [2, 2, 2])
    """
    sections = {"image": config.image, "network": config.network, "inference": config.inference,
                "segmentation": config.segmentation}
    values = {name: {key: asdict(sections[name])[key] for key in keys} for name, keys in LABEL_KEYS.items()}
    return _jsonable({
        "niftyport_network": NETWORK,
        "mode": mode,
        "weights_sha256": weights_sha256,
        "window": list(config.spatial_window_size[:3]),
        "landmarks_sha256": _sha256(config.network.histogram_ref_file),
        **values,
    })


def generated_by(settings: RunSettings) -> dict:
    """The ``GeneratedBy`` entry of ``dataset_description.json``."""
    return {"Name": "niftyport", "Version": __version__,
            "Description": f"HighRes3DNet brain parcellation (NiftyNet model zoo, 160 GIF labels), "
                           f"mode {settings.mode}, weights sha256 {settings.weights_sha256}"}
