"""The versioned calibration file (:class:`CalibrationFile`) that holds the results of
the routines (:data:`ROUTINES`)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsi_hw import __version__
from lsi_hw.atomic import atomic_write
from lsi_hw.calibration.common import CalibrationFileError, CalibrationResult, hint_text, json_type
from lsi_hw.calibration.dark import DarkResult
from lsi_hw.calibration.gamma import GammaResult
from lsi_hw.calibration.linearity import LinearityResult
from lsi_hw.calibration.operating_point import OperatingPointResult
from lsi_hw.calibration.registration import RegistrationResult
from lsi_hw.calibration.settling import SettlingResult
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.limits import parse_json_strict
from lsi_hw.types import jsonable

#: Version of the calibration file layout; :meth:`CalibrationFile.load` refuses others.
CALIBRATION_SCHEMA_VERSION: int = 1

#: Largest calibration file :meth:`CalibrationFile.load` reads, bytes (real ones are a
#: few tens of kB).
MAX_CALIBRATION_FILE_BYTES: int = 16 * 2**20


#: Routine name -> result class, in the order :func:`run_all` runs them.
ROUTINES: dict[str, type[CalibrationResult]] = {
    "operating_point": OperatingPointResult,
    "dark": DarkResult,
    "linearity": LinearityResult,
    "gamma": GammaResult,
    "registration": RegistrationResult,
    "settling": SettlingResult,
}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class CalibrationFile:
    """A versioned set of calibration results with a content-hash id.

    Attributes
    ----------
    results:
        Routine name (see :data:`ROUTINES`) -> its result record.
    bench_settings:
        ``bench.settings()`` snapshot taken when the calibration ran.
    created:
        ISO 8601 UTC time of creation.
    toolkit_version:
        ``lsi_hw.__version__`` that wrote it.
    schema_version:
        Layout version (:data:`CALIBRATION_SCHEMA_VERSION`).

    The :attr:`id` hashes everything but ``created``: the same results on the same bench
    settings give the same id.  Benches record it as ``calibration_id`` in every snapshot
    (``SimBench(calibration_id=cal.id)``).
    """

    results: Mapping[str, CalibrationResult]
    bench_settings: Mapping[str, Any]
    created: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    toolkit_version: str = __version__
    schema_version: int = CALIBRATION_SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name, res in self.results.items():
            cls = ROUTINES.get(name)
            if cls is None or not isinstance(res, cls):
                raise ConfigError(
                    f"calibration result {name!r} must be a {cls.__name__ if cls else '?'}; "
                    f"known routines: {', '.join(ROUTINES)}"
                )
        object.__setattr__(self, "results", dict(self.results))
        object.__setattr__(self, "bench_settings", jsonable(dict(self.bench_settings)))

    def _content(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "toolkit_version": self.toolkit_version,
            "bench_settings": self.bench_settings,
            "results": {k: v.to_dict() for k, v in self.results.items()},
        }

    @property
    def id(self) -> str:
        """Short content hash: first 12 hex digits of SHA-256 over the canonical JSON of
        schema version, toolkit version, bench settings and results (not ``created``)."""
        try:
            text = _canonical(self._content())
        except ValueError:
            raise CalibrationError("calibration content holds non-finite numbers") from None
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written by :meth:`save`."""
        return {"id": self.id, "created": self.created, **self._content()}

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> str:
        """Write the JSON file atomically (:func:`lsi_hw.atomic.atomic_write`: temporary
        file, fsync, rename; permissions from the umask); returns the id.

        Parameters
        ----------
        path:
            The file to write (its folder must exist).
        overwrite:
            Replace an existing file (default); False refuses it with ConfigError.
        """
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)
        atomic_write(path, lambda fh: fh.write(text + "\n"), mode="w", encoding="utf-8",
                     overwrite=overwrite)
        return self.id

    def summary_lines(self) -> list[str]:
        """Short human summary: one line per routine (``name: what it found``), then its
        notes (what the bench did not know)."""
        lines = []
        for name, result in self.results.items():
            first, *notes = result.summary_lines()
            lines.append(f"{name}: {first}")
            lines.extend(f"  {n}" for n in notes)
        return lines

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, source: str = "calibration document"
                  ) -> CalibrationFile:
        """Rebuild from :meth:`to_dict` output, checking the layout, every field's type, the
        schema version and the id.

        Parameters
        ----------
        doc:
            The parsed JSON document.
        source:
            What to name in error messages (e.g. ``calibration file /path/cal.json``).

        Raises
        ------
        CalibrationFileError
            Not an object, missing or unknown entries, a wrong type, another schema
            version, or an ``id`` that is missing or does not match the content.
        """
        try:
            return cls._from_dict(doc, source)
        except RecursionError:
            raise CalibrationFileError(f"{source} is nested too deeply to be a calibration "
                                       "file") from None

    @classmethod
    def _from_dict(cls, doc: Any, source: str) -> CalibrationFile:
        if not isinstance(doc, Mapping):
            raise CalibrationFileError(f"{source} must hold a JSON object; got "
                                       f"{json_type(doc)}")
        version = doc.get("schema_version")
        if isinstance(version, bool) or version != CALIBRATION_SCHEMA_VERSION:
            raise CalibrationFileError(
                f"{source}: schema version {version!r} is not supported: this toolkit "
                f"({__version__}) reads version {CALIBRATION_SCHEMA_VERSION}; re-run the "
                "calibration (lsi_hw.calibration.run_all) or convert the file"
            )
        expected = {"id": str, "created": str, "toolkit_version": str, "schema_version": int,
                    "bench_settings": Mapping, "results": Mapping}
        unknown = sorted(set(doc) - set(expected))
        if unknown:
            raise CalibrationFileError(f"{source}: unknown entries {unknown}; allowed: "
                                       f"{', '.join(sorted(expected))}")
        for key, kind in expected.items():
            if key not in doc:
                what = ("the file cannot be checked against its content" if key == "id"
                        else "the file is incomplete")
                raise CalibrationFileError(f"{source}: {key!r} missing; {what}")
            if not isinstance(doc[key], kind):
                raise CalibrationFileError(
                    f"{source}: {key!r} is {json_type(doc[key])}; expected {hint_text(kind)}"
                )
        results = {}
        for name, data in doc["results"].items():
            if name not in ROUTINES:
                raise CalibrationFileError(f"{source}: unknown calibration routine {name!r}; "
                                           f"known: {', '.join(ROUTINES)}")
            results[name] = ROUTINES[name].from_dict(data, f"{source}: results.{name}")
        out = cls(results=results, bench_settings=doc["bench_settings"],
                  created=doc["created"], toolkit_version=doc["toolkit_version"],
                  schema_version=int(version))
        if doc["id"] != out.id:
            raise CalibrationFileError(
                f"{source}: id {doc['id']!r} does not match its content "
                f"({out.id!r}): the file was edited or corrupted"
            )
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationFile:
        """Read a file written by :meth:`save`.

        Raises
        ------
        CalibrationFileError
            (a ConfigError, one line naming ``path``) The file cannot be read, is larger
            than :data:`MAX_CALIBRATION_FILE_BYTES`, is not UTF-8, not JSON (NaN/Infinity
            included), nested too deeply, malformed (see :meth:`from_dict`), of another
            schema version, or its id is missing or does not match its content.
        """
        where = f"calibration file {os.fspath(path)}"
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_CALIBRATION_FILE_BYTES + 1)
        except OSError as exc:
            raise CalibrationFileError(f"{where} cannot be read ({exc.strerror or exc})"
                                       ) from None
        if len(raw) > MAX_CALIBRATION_FILE_BYTES:
            raise CalibrationFileError(
                f"{where} is larger than {MAX_CALIBRATION_FILE_BYTES // 2**20} MiB: not a "
                "calibration file"
            )
        try:
            doc = parse_json_strict(raw, where)
        except ConfigError as exc:
            raise CalibrationFileError(str(exc)) from None
        return cls.from_dict(doc, source=where)
