"""Refuse work that would not fit in memory before allocating it, and read array files
safely.

:func:`check_allocation` compares an estimate (bytes) with :func:`memory_limit_bytes` and
raises one :class:`~lsi_hw.errors.ConfigError` that states both.  :func:`npz_headers` reads
the shapes and dtypes of every array in an ``.npz`` (or ``.npy``) file from the file's
headers, without decompressing any data, so a zip bomb or a corrupt file is refused before a
byte of it is inflated; :func:`load_npz` then loads it with that check done.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.errors import ConfigError

__all__ = [
    "READ_ERRORS",
    "ArrayHeader",
    "check_allocation",
    "check_finite",
    "format_bytes",
    "json_depth_exceeds",
    "load_npz",
    "memory_limit_bytes",
    "npz_headers",
    "parse_json_strict",
]

MAX_JSON_DEPTH = 100
"""Deepest nesting of lists/objects any JSON file of the toolkit may have."""

READ_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, OSError, EOFError, SyntaxError, NotImplementedError, zipfile.BadZipFile,
    zipfile.LargeZipFile, zlib.error)
"""What reading a damaged ``.npy`` / ``.npz`` file can raise (a bad zip directory, a
corrupt deflate stream, a bad CRC, a truncated member, a malformed header)."""

MEMORY_ENV = "LSI_MAX_MEMORY_GB"
"""Environment variable that sets the memory limit in GiB (default: half the machine's
physical memory)."""


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style text for a byte count."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def memory_limit_bytes() -> int:
    """The most memory one job may plan to use: ``$LSI_MAX_MEMORY_GB`` GiB when set, else
    half of the machine's physical memory (8 GiB where that cannot be read)."""
    text = os.environ.get(MEMORY_ENV)
    if text:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{MEMORY_ENV}={text!r} is not a number of GiB") from None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{MEMORY_ENV}={text!r} must be a finite number of GiB > 0")
        return int(value * 2**30)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30
    return int(total // 2)


def check_allocation(n_bytes: float, what: str) -> None:
    """Raise :class:`ConfigError` when ``what`` would need more than the memory limit.

    Parameters
    ----------
    n_bytes:
        Estimated peak memory of the job, bytes.
    what:
        The job, as the user asked for it (e.g. ``"--size 8192 with 256 patterns"``).
    """
    limit = memory_limit_bytes()
    if n_bytes > limit:
        source = (f"from {MEMORY_ENV}" if os.environ.get(MEMORY_ENV)
                  else f"half the machine's memory; set {MEMORY_ENV} to change it")
        raise ConfigError(
            f"{what} needs about {format_bytes(n_bytes)} of memory; the limit is "
            f"{format_bytes(limit)} ({source})"
        )


class ArrayHeader(tuple):
    """``(shape, dtype)`` of one stored array, read from its header."""

    __slots__ = ()

    def __new__(cls, shape: tuple[int, ...], dtype: np.dtype) -> ArrayHeader:
        return super().__new__(cls, (tuple(shape), np.dtype(dtype)))

    @property
    def shape(self) -> tuple[int, ...]:
        return self[0]

    @property
    def dtype(self) -> np.dtype:
        return self[1]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64) * self.dtype.itemsize)


def _read_header(fh: Any, where: str) -> ArrayHeader:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, _, dtype = fmt.read_array_header_2_0(fh)
    except READ_ERRORS as exc:
        raise ConfigError(f"{where}: not a NumPy array ({' '.join(str(exc).split())})") from None
    if dtype.hasobject:
        raise ConfigError(f"{where}: holds Python objects (pickles), which are never loaded")
    return ArrayHeader(shape, dtype)


def npz_headers(path: str | os.PathLike[str]) -> dict[str, ArrayHeader]:
    """Shapes and dtypes of the arrays in an ``.npz`` file (or the one array of an
    ``.npy`` file, under the name ``""``), read from their headers only.

    Raises
    ------
    ConfigError
        The file is truncated, not a zip / NumPy file, or holds object arrays.  The
        message names the path.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        magic = fh.read(6)
        fh.seek(0)
        if magic == b"\x93NUMPY":
            return {"": _read_header(fh, str(p))}
    try:
        with zipfile.ZipFile(p) as archive:
            headers: dict[str, ArrayHeader] = {}
            for info in archive.infolist():
                name = info.filename
                key = name[:-4] if name.endswith(".npy") else name
                with archive.open(info) as member:
                    headers[key] = _read_header(member, f"{p} [{name}]")
                # a member that claims fewer bytes than its header needs is corrupt
                if info.file_size < headers[key].nbytes:
                    raise ConfigError(f"{p} [{name}]: truncated (holds {info.file_size} bytes, "
                                      f"its header needs {headers[key].nbytes})")
            return headers
    except READ_ERRORS as exc:
        raise ConfigError(f"{p}: not a readable .npz file ({exc})") from None


def load_npz(path: str | os.PathLike[str], what: str = "file", *,
             required: Iterable[str] = (), max_bytes: int | None = None
             ) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file after checking it from its headers.

    Parameters
    ----------
    path:
        The file.
    what:
        What the file should be, for messages (e.g. ``"measurement file"``).
    required:
        Names that must be present.
    max_bytes:
        Refuse a file whose arrays need more (default :func:`memory_limit_bytes`).

    Raises
    ------
    ConfigError
        Missing names, a corrupt or truncated file, object arrays, or a file too big.
    """
    p = Path(path)
    headers = npz_headers(p)
    if "" in headers:
        raise ConfigError(f"{p} is a plain .npy array; a {what} is an .npz archive")
    missing = [name for name in required if name not in headers]
    if missing:
        raise ConfigError(f"{p} is not a {what}: it lacks {', '.join(missing)} "
                          f"(holds {', '.join(sorted(headers)) or 'nothing'})")
    total = sum(h.nbytes for h in headers.values())
    limit = memory_limit_bytes() if max_bytes is None else max_bytes
    if total > limit:
        raise ConfigError(f"{p} would unpack to {format_bytes(total)}; the limit is "
                          f"{format_bytes(limit)} (set {MEMORY_ENV} to change it)")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {name: data[name] for name in headers}
    except READ_ERRORS as exc:
        raise ConfigError(f"{p}: corrupt {what} ({' '.join(str(exc).split())})") from None


def check_finite(values: np.ndarray, where: str) -> None:
    """Refuse NaN or infinite entries in ``values`` (one line naming ``where`` and how
    many)."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise ConfigError(f"{where}: {int(bad.sum())} of {values.size} values are NaN or "
                          "infinite")



def json_depth_exceeds(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether dicts/lists in ``obj`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which strict JSON does not allow")


def parse_json_strict(raw: bytes, where: str) -> Any:
    """Parse the JSON bytes ``raw`` of ``where`` (e.g. ``"manifest rec/manifest.json"``).

    Raises
    ------
    ConfigError
        One line: not UTF-8, not valid JSON (NaN and Infinity included), or nested deeper
        than :data:`MAX_JSON_DEPTH` levels.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text (byte {exc.start}: {exc.reason})"
                          ) from None
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply (more than {MAX_JSON_DEPTH} "
                          "levels)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON (line {exc.lineno}, column "
                          f"{exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # NaN / Infinity
        raise ConfigError(f"{where} is not valid JSON ({exc})") from None
    if json_depth_exceeds(doc):
        raise ConfigError(f"{where} is nested too deeply (more than {MAX_JSON_DEPTH} "
                          "levels)")
    return doc
