"""Records shared by every bench: the :class:`Measurement` and its settings snapshot.

A :class:`Measurement` is what :meth:`lsi_hw.interfaces.Bench.measure` returns, whether
the bench is the simulator, the fake hardware twin or the real DMD + photodiode.  It
holds the detector readings in volts together with a snapshot of every device setting
that produced them, so a recording can always be reinterpreted later.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lsi_hw.errors import ConfigError

__all__ = ["Measurement", "image_id", "image_ids", "jsonable"]


def jsonable(value: Any) -> Any:
    """Return ``value`` converted to plain JSON types (numpy scalars/arrays, tuples, ...)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def image_id(image: np.ndarray) -> str:
    """Short content hash of an image: first 12 hex digits of SHA-1 over shape + bytes.

    The hash covers ``str((shape, dtype.str))`` followed by the C-order bytes, so the
    same values in another dtype (uint8 vs float) or shape give another id.  Every bench
    and scene uses it as the scene id.

    Parameters
    ----------
    image:
        Any numpy array (a scene as given, or a frame read back from the screen).

    Returns
    -------
    str
        12 lowercase hex digits.
    """
    arr = np.ascontiguousarray(image)
    digest = hashlib.sha1(str((arr.shape, arr.dtype.str)).encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()[:12]


#: below this many bytes per image, hashing in threads costs more than it saves
_THREADED_HASH_MIN_BYTES = 1 << 16


def image_ids(images: Sequence[np.ndarray] | np.ndarray) -> list[str]:
    """:func:`image_id` of each image, in order.

    Large images are hashed on a few threads (hashlib releases the GIL for large
    buffers), so a batch of 64 scenes of 256 x 256 RGB costs about half the time of a
    plain loop on two cores.
    """
    items = list(images)
    workers = min(len(items), os.cpu_count() or 1, 8)
    if workers < 2 or min((np.asarray(x).nbytes for x in items), default=0) < \
            _THREADED_HASH_MIN_BYTES:
        return [image_id(x) for x in items]
    bounds = np.linspace(0, len(items), workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda lo, hi: [image_id(x) for x in items[lo:hi]],
                         bounds[:-1], bounds[1:])
        return [ident for part in parts for ident in part]


@dataclass(frozen=True)
class Measurement:
    """Detector readings of one acquisition: ``B`` scenes x ``m`` patterns.

    Attributes
    ----------
    values:
        (B, m) float64, detector output in volts as digitized, one value per pattern.
    settings:
        JSON-serialisable snapshot of every device parameter (bench kind, optics, DMD,
        detector gain, digitizer, timing, noise preset and seed, calibration id, ...).
    timestamps:
        (B, m) float64 seconds since the start of the acquisition: the start of each
        reading's averaging window.
    pattern_name:
        Name of the :class:`~lsi_hw.patterns.PatternSet` that was displayed.
    scene_ids:
        One label per scene (file name, index or hash), length B.
    """

    values: np.ndarray
    settings: dict[str, Any]
    timestamps: np.ndarray
    pattern_name: str = ""
    scene_ids: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        raw = np.asarray(self.values)
        if raw.dtype.kind not in "fiub":
            raise ConfigError(f"Measurement.values must be real numbers; got dtype {raw.dtype}")
        values = raw.astype(np.float64, copy=False)
        if values.ndim != 2:
            raise ConfigError(f"Measurement.values must be (B, m); got shape {values.shape}")
        stamps = np.asarray(self.timestamps, dtype=np.float64)
        if stamps.shape != values.shape:
            raise ConfigError(
                f"Measurement.timestamps shape {stamps.shape} differs from values {values.shape}"
            )
        ids = tuple(str(s) for s in self.scene_ids) or tuple(str(i) for i in range(len(values)))
        if len(ids) != values.shape[0]:
            raise ConfigError(f"{len(ids)} scene ids given for {values.shape[0]} scenes")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "timestamps", stamps)
        object.__setattr__(self, "scene_ids", ids)
        object.__setattr__(self, "settings", jsonable(dict(self.settings)))

    @property
    def n_scenes(self) -> int:
        """Number of scenes B."""
        return int(self.values.shape[0])

    @property
    def n_patterns(self) -> int:
        """Number of patterns m."""
        return int(self.values.shape[1])

    def settings_json(self) -> str:
        """The settings snapshot as a JSON string (sorted keys)."""
        return json.dumps(self.settings, sort_keys=True)

    def save(self, path: str, *, overwrite: bool = True) -> None:
        """Write the measurement to an ``.npz`` file (values, timestamps, settings JSON).

        The file is written to a temporary name and renamed, so a crash never leaves a
        half-written file under ``path``; ``overwrite=False`` refuses an existing file.
        """
        from lsi_hw.atomic import atomic_write

        atomic_write(path, overwrite=overwrite, write=lambda fh: np.savez(
            fh,
            values=self.values,
            timestamps=self.timestamps,
            settings=np.array(self.settings_json()),
            pattern_name=np.array(self.pattern_name),
            scene_ids=np.array(self.scene_ids, dtype=str),
        ))

    @classmethod
    def load(cls, path: str) -> Measurement:
        """Read a measurement written by :meth:`save`.

        Raises
        ------
        ConfigError
            The file is not such a measurement (missing keys, a plain ``.npy``), is
            truncated or corrupt, too big for memory, or its readings are not finite real
            numbers of shape (B, m).  The message names the path.
        """
        from lsi_hw.limits import check_finite, load_npz, parse_json_strict

        what = "measurement file (lsi-hw simulate/acquire output)"
        data = load_npz(path, what, required=("values", "timestamps", "settings"))
        values = data["values"]
        if values.dtype.kind != "f" or values.ndim != 2 or 0 in values.shape:
            raise ConfigError(f"{path}: 'values' must be a 2-D floating-point array of volts "
                              f"(scenes x patterns); got {values.dtype} of shape "
                              f"{values.shape}")
        check_finite(values, f"{path}: 'values'")
        settings = parse_json_strict(str(data["settings"]).encode(), f"{path}: 'settings'")
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: 'settings' must be a JSON object")
        names = data.get("scene_ids", np.array([], dtype=str))
        return cls(
            values=values,
            timestamps=data["timestamps"],
            settings=settings,
            pattern_name=str(data.get("pattern_name", "")),
            scene_ids=tuple(str(s) for s in np.atleast_1d(names)),
        )
