"""Reading a recording safely: its committed files, without following symlinks, checked
against their sha256, their ``.npz`` headers and the memory a read needs.

The functions take the recording's folder and its checked manifest
(:func:`lsi_hw.recording_format.load_state`); :class:`lsi_hw.recording.Recording` keeps
the state and the caches.  The rules ("Reading safely") are in the docstring of
:mod:`lsi_hw.recording`.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.errors import ConfigError
from lsi_hw.limits import READ_ERRORS, check_allocation, format_bytes, npz_headers
from lsi_hw.recording_format import (
    BATCH_DIR,
    MANIFEST_FILE,
    check_batch_dir,
    is_number,
    one_line,
    parse_json,
    sha256_hex,
)

__all__ = [
    "check_chunk_headers",
    "check_rows",
    "load_chunk",
    "load_rows",
    "open_member",
    "read_checked",
    "read_record",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BYTES_PER_READING = 8 * 2 * 3
"""Memory to read one reading: values + timestamps (float64), chunk + result + a copy."""


def read_record(path: Path, entry: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The JSON record of committed batch ``index`` (``entry``: its manifest entry), read
    with its checksum checked and compared with the manifest."""
    file = path / entry["record"]
    raw = read_checked(path, entry["record"], entry["record_sha256"])
    record = parse_json(raw, file, "batch record")
    ids = record.get("scene_ids") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or record.get("index") != index
        or record.get("first_scene") != entry["first_scene"]
        or record.get("n_scenes") != entry["n_scenes"]
        or not isinstance(ids, list)
        or len(ids) != entry["n_scenes"]
        or not all(isinstance(i, str) and i for i in ids)
        or not isinstance(record.get("settings"), dict)
        or not isinstance(record.get("pattern_name"), str)
        or not is_number(record.get("wall_time_unix"))
    ):
        raise ConfigError(
            f"recording {path}: batch record {file} is malformed or does not "
            "match the manifest (index, first_scene, n_scenes, scene_ids, settings, "
            "pattern_name, wall_time_unix)"
        )
    return record


def open_member(path: Path, name: str) -> int:
    """File descriptor of ``name`` (``batches/NAME``, checked by the manifest check),
    opened without following symlinks: neither ``batches`` nor NAME may be one."""
    file = path / name
    member = name.split("/", 1)[1]
    try:
        folder = os.open(path / BATCH_DIR,
                         os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
    except OSError as exc:
        raise ConfigError(
            f"recording {path}: its {BATCH_DIR}/ folder cannot be opened as a plain "
            f"folder (a symlink is refused): {one_line(exc)}"
        ) from None
    try:
        fd = os.open(member, os.O_RDONLY | _NOFOLLOW, dir_fd=folder)
    except OSError as exc:
        raise ConfigError(
            f"committed file {file} of recording {path} cannot be read (a symlink is "
            f"refused): {one_line(exc)}"
        ) from None
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"committed file {file} of recording {path} is not a "
                          "regular file")
    return fd


def read_checked(path: Path, name: str, sha256: str) -> bytes:
    """The bytes of the committed file ``name``, after checking that they fit in memory,
    checked against the ``sha256`` the manifest lists."""
    file = path / name
    fd = open_member(path, name)
    try:
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            check_allocation(size, f"reading {file}")
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"committed file {file} cannot be read: {one_line(exc)}"
                          ) from None
    if sha256_hex(raw) != sha256:
        raise ConfigError(
            f"committed file {file} fails its sha256 check: it was modified or damaged "
            "after it was written (restore it from a backup)"
        )
    return raw


def check_chunk_headers(path: Path, chunk: Mapping[str, Any], m: int) -> None:
    """The chunk's arrays, from their .npz headers only (nothing inflated): values and
    timestamps (n, m) float64 and scene_ids (n,) strings, as the manifest says."""
    check_batch_dir(path)  # never read headers through a symlinked batches/
    file = path / chunk["file"]
    headers = npz_headers(file)
    n = chunk["n_scenes"]
    expected = {"values": (n, m), "timestamps": (n, m), "scene_ids": (n,)}
    for key, shape in expected.items():
        head = headers.get(key)
        kind_ok = head is not None and (
            head.dtype.kind == "U" if key == "scene_ids" else head.dtype == np.float64)
        if head is None or head.shape != shape or not kind_ok:
            got = "missing" if head is None else f"{head.shape} {head.dtype}"
            raise ConfigError(
                f"recording {path}: chunk {file} does not match the manifest "
                f"({key} is {got}; the manifest says {shape})"
            )


def load_chunk(path: Path, chunk: Mapping[str, Any], m: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and timestamps of one chunk (headers, checksum and shapes checked)."""
    check_chunk_headers(path, chunk, m)
    raw = read_checked(path, chunk["file"], chunk["sha256"])
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            values, stamps = data["values"], data["timestamps"]
    except (*READ_ERRORS, KeyError) as exc:
        raise ConfigError(f"committed file {path / chunk['file']} is corrupt "
                          f"({one_line(exc)})") from None
    if values.shape != (chunk["n_scenes"], m) or stamps.shape != values.shape:
        raise ConfigError(f"{path / chunk['file']} does not match the manifest")
    return values, stamps


def check_rows(path: Path, manifest: Mapping[str, Any], m: int, lo: int, hi: int) -> None:
    """Before reading scenes ``lo:hi``: every chunk they need must be large enough on
    disk for the scenes the manifest claims it holds (float64 values and timestamps),
    and the result must fit in memory (:func:`lsi_hw.limits.check_allocation`)."""
    start = 0
    for entry in manifest["batches"]:
        for chunk in entry["chunks"]:
            n = chunk["n_scenes"]
            if start + n > lo and start < hi:
                file = path / chunk["file"]
                try:
                    info = os.lstat(file)
                except OSError as exc:
                    raise ConfigError(f"committed file {file} cannot be read: "
                                      f"{one_line(exc)}") from None
                if not stat.S_ISREG(info.st_mode):
                    raise ConfigError(
                        f"committed file {file} of recording {path} is not a "
                        "regular file (a symlink is refused: a recording's files must "
                        "be inside it)"
                    )
                size = info.st_size
                need = 2 * 8 * n * m
                if size < need:
                    raise ConfigError(
                        f"recording {path}: {MANIFEST_FILE} claims {n} scenes x {m} "
                        f"patterns in {file}, which needs at least {format_bytes(need)}, "
                        f"but the file holds {format_bytes(size)}: the manifest does not "
                        "match its data (damaged or forged)"
                    )
            start += n
    check_allocation(
        (hi - lo) * m * _BYTES_PER_READING,
        f"reading scenes {lo}..{hi} of recording {path} ({hi - lo} scenes x {m} "
        "patterns)",
    )


def load_rows(path: Path, manifest: Mapping[str, Any], m: int, lo: int, hi: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Values and timestamps of committed scenes ``lo:hi`` (reads only needed chunks)."""
    check_rows(path, manifest, m, lo, hi)
    parts_v, parts_t = [], []
    for entry in manifest["batches"]:
        start = entry["first_scene"]
        for chunk in entry["chunks"]:
            end = start + chunk["n_scenes"]
            if end > lo and start < hi:
                values, stamps = load_chunk(path, chunk, m)
                a, b = max(lo, start) - start, min(hi, end) - start
                parts_v.append(values[a:b])
                parts_t.append(stamps[a:b])
            start = end
    if not parts_v:
        return np.empty((0, m)), np.empty((0, m))
    return np.concatenate(parts_v), np.concatenate(parts_t)
