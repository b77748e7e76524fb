"""The on-disk format of a recording: file names, JSON encoding, and the checks of
``run.json`` and ``manifest.json``.

The layout (format ``lsi-recording``, version 1) and the rules for reading a recording
that may come from someone else are documented in :mod:`lsi_hw.recording`; this module
holds the names and encodings both the writer (:mod:`lsi_hw.recording_writer`) and the
readers (:mod:`lsi_hw.recording_reader`) use, and :func:`load_state`, which reads and
checks the two JSON files of a recording (types, safe member names, scene counts).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lsi_hw.errors import ConfigError, is_int
from lsi_hw.limits import (
    MAX_JSON_DEPTH,
    check_allocation,
    json_depth_exceeds,
    parse_json_strict,
)
from lsi_hw.types import jsonable

__all__ = [
    "BATCH_DIR",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "RUN_FILE",
    "check_batch_dir",
    "classify_path",
    "is_number",
    "json_bytes",
    "load_state",
    "new_manifest",
    "new_run",
    "one_line",
    "parse_json",
    "read_json",
    "sha256_hex",
    "short_repr",
    "snapshot",
    "utc_text",
]

FORMAT_NAME = "lsi-recording"
"""Value of the ``format`` field of ``run.json`` and ``manifest.json``."""
FORMAT_VERSION = 1
"""Layout version written by this module (readers accept this version or older)."""

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = "lock"
BATCH_DIR = "batches"
#: A file a manifest may name: ``batches/`` + a plain file name (no separators, no ``..``).
_MEMBER = re.compile(r"^batches/([A-Za-z0-9_][A-Za-z0-9._-]{0,254})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_JSON_DEPTH = MAX_JSON_DEPTH
"""Deepest nesting of dicts and lists accepted in a settings snapshot or JSON file."""
_JSON_BYTES_FACTOR = 16
"""Rough peak memory of parsing a JSON file, per byte of the file."""


# --------------------------------------------------------------------------- encodings


def utc_text(unix_s: float) -> str:
    """ISO 8601 UTC time of a Unix time in seconds (millisecond resolution)."""
    return datetime.fromtimestamp(unix_s, tz=timezone.utc).isoformat(timespec="milliseconds")


def json_bytes(obj: Any) -> bytes:
    """How the recording's JSON files are written: sorted keys, indent 1, strict JSON (no
    NaN), UTF-8, a final newline."""
    return (json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def sha256_hex(data: bytes) -> str:
    """The checksum a manifest stores for each file it lists."""
    return hashlib.sha256(data).hexdigest()


def one_line(exc: BaseException) -> str:
    """``exc`` as one line of text, for a ConfigError message."""
    return " ".join(str(exc).split()) or type(exc).__name__


def snapshot(settings: Any, what: str) -> dict[str, Any]:
    """``settings`` as plain JSON types (exactly what is stored), or ConfigError."""
    if not isinstance(settings, Mapping):
        raise ConfigError(
            f"{what} must be a dict (settings snapshot); got {type(settings).__name__}"
        )
    try:
        text = json.dumps(jsonable(dict(settings)), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{what} is not JSON-serialisable ({one_line(exc)}); snapshots may hold only "
            "numbers, strings, bools, None, lists and dicts (numpy values are converted)"
        ) from None
    snap = json.loads(text)
    if json_depth_exceeds(snap, _MAX_JSON_DEPTH):
        raise ConfigError(f"{what} nests dicts/lists deeper than {_MAX_JSON_DEPTH} levels")
    return snap


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json(raw: bytes, file: Path, what: str) -> Any:
    """Parse JSON ``raw`` read from ``file``; every failure is one ConfigError line."""
    return parse_json_strict(raw, f"{what} {file}")


def read_json(path: Path, what: str) -> Any:
    """Read and parse the JSON file ``path`` (``what`` names it in messages), checking the
    memory parsing needs first; every failure is one ConfigError line."""
    try:
        size = path.stat().st_size
        check_allocation(size * _JSON_BYTES_FACTOR, f"reading {what} {path}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} is missing") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {one_line(exc)}") from None
    return parse_json(raw, path, what)


# --------------------------------------------------------------------------- new runs


def new_run(run_id: str, now: float, *, m: int, pattern_name: str, settings: dict[str, Any],
            patterns_meta: dict[str, Any] | None, chunk_scenes: int) -> dict[str, Any]:
    """The content of ``run.json`` of a new run (arguments already checked)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "m": m,
        "pattern_name": pattern_name,
        "settings": settings,
        "patterns_meta": patterns_meta,
        "chunk_scenes": chunk_scenes,
        "created_unix": now,
        "created_utc": utc_text(now),
        "units": {"values": "V", "timestamps": "s", "wall_time_unix": "s"},
        "layout": "see the docstring of lsi_hw.recording",
    }


def new_manifest(run_id: str, now: float) -> dict[str, Any]:
    """The content of ``manifest.json`` of a new run: no batches yet."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "run_id": run_id,
        "n_batches": 0,
        "n_scenes": 0,
        "updated_unix": now,
        "batches": [],
    }


# --------------------------------------------------------------------------- checks


def classify_path(path: Path) -> str:
    """'recording', 'empty' (an empty directory) or 'other' for an existing path."""
    if path.is_dir() and not path.is_symlink():
        if (path / MANIFEST_FILE).exists() or (path / RUN_FILE).exists():
            return "recording"
        if not any(path.iterdir()):
            return "empty"
    return "other"


def check_format(doc: Any, file: Path) -> None:
    """``doc`` (read from ``file``) is a recording file of a version this module reads."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ConfigError(f"{file} is not an LSI recording file (format != {FORMAT_NAME!r})")
    version = doc.get("format_version")
    if not is_int(version) or version > FORMAT_VERSION:
        raise ConfigError(
            f"{file} has format_version {short_repr(version)}; this lsi_hw reads versions <= "
            f"{FORMAT_VERSION}: upgrade lsi_hw"
        )


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (the JSON numbers a record may hold)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def malformed(file: Path, where: str, value: Any, allowed: str) -> ConfigError:
    """The error for a field ``where`` of ``file`` that holds ``value``."""
    return ConfigError(f"{file} is malformed: {where} is {short_repr(value)}; allowed: {allowed}")


def check_run(run: dict[str, Any], file: Path) -> None:
    """Types of ``run.json`` (format already checked)."""
    checks: tuple[tuple[str, Any, str], ...] = (
        ("run_id", lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
        ("m", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        ("pattern_name", lambda v: isinstance(v, str), "a string"),
        ("settings", lambda v: isinstance(v, dict), "a dict"),
        ("patterns_meta", lambda v: v is None or isinstance(v, dict), "a dict or null"),
        ("chunk_scenes", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    )
    for key, ok, allowed in checks:
        if not ok(run.get(key)):
            raise malformed(file, key, run.get(key), allowed)


def check_member(recording: Path, file: Path, where: str, value: Any) -> None:
    """A file named by the manifest: ``batches/NAME``, NAME a plain file name."""
    if not isinstance(value, str) or not _MEMBER.match(value):
        raise ConfigError(
            f"recording {recording}: {file} names {short_repr(value)} at {where}; only plain file "
            "names inside batches/ are allowed (batches/NAME, NAME of letters, digits, '.', "
            "'_' and '-', not starting with '.'; no '..', absolute paths or separators)"
        )


def check_manifest(manifest: dict[str, Any], file: Path, recording: Path) -> None:
    """Structure and consistency of ``manifest.json`` (format and run id already checked):
    every batch and chunk entry well-typed, only safe file names, and scene counts that
    add up (batch ``first_scene`` / ``n_scenes``, chunk counts, the total)."""
    batches = manifest.get("batches")
    if not isinstance(batches, list) or manifest.get("n_batches") != len(batches):
        raise ConfigError(f"{file} is inconsistent (n_batches != batches)")
    total = 0
    for i, entry in enumerate(batches):
        where = f"batches[{i}]"
        if not isinstance(entry, dict):
            raise malformed(file, where, entry, "a dict")
        if entry.get("index") != i or isinstance(entry.get("index"), bool):
            raise malformed(file, f"{where}.index", entry.get("index"), f"{i}")
        if entry.get("first_scene") != total or isinstance(entry.get("first_scene"), bool):
            raise malformed(file, f"{where}.first_scene", entry.get("first_scene"),
                            f"{total} (the scenes of the batches before)")
        n = entry.get("n_scenes")
        if not (is_int(n) and n >= 1):
            raise malformed(file, f"{where}.n_scenes", n, "an integer >= 1")
        check_member(recording, file, f"{where}.record", entry.get("record"))
        if not isinstance(entry.get("record_sha256"), str) or not _SHA256.match(
                entry["record_sha256"]):
            raise malformed(file, f"{where}.record_sha256", entry.get("record_sha256"),
                            "64 lowercase hex digits")
        chunks = entry.get("chunks")
        if not isinstance(chunks, list) or not chunks:
            raise malformed(file, f"{where}.chunks", chunks, "a non-empty list")
        in_chunks = 0
        for j, chunk in enumerate(chunks):
            cwhere = f"{where}.chunks[{j}]"
            if not isinstance(chunk, dict):
                raise malformed(file, cwhere, chunk, "a dict")
            check_member(recording, file, f"{cwhere}.file", chunk.get("file"))
            if not (is_int(chunk.get("n_scenes")) and chunk["n_scenes"] >= 1):
                raise malformed(file, f"{cwhere}.n_scenes", chunk.get("n_scenes"),
                                "an integer >= 1")
            if not isinstance(chunk.get("sha256"), str) or not _SHA256.match(chunk["sha256"]):
                raise malformed(file, f"{cwhere}.sha256", chunk.get("sha256"),
                                "64 lowercase hex digits")
            in_chunks += chunk["n_scenes"]
        if in_chunks != n:
            raise malformed(file, f"{where}.n_scenes", n,
                            f"{in_chunks} (the sum of its chunks' n_scenes)")
        total += n
    if manifest.get("n_scenes") != total or isinstance(manifest.get("n_scenes"), bool):
        raise malformed(file, "n_scenes", manifest.get("n_scenes"),
                        f"{total} (the sum of the batches' n_scenes)")


def load_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and check ``run.json`` and ``manifest.json`` of the recording at ``path``."""
    if not path.is_dir():
        raise ConfigError(
            f"no recording at {path}: it does not exist or is not a directory "
            "(create one with Recording.create)"
        )
    if not (path / MANIFEST_FILE).exists():
        raise ConfigError(f"{path} is not an LSI recording: it has no {MANIFEST_FILE}")
    run = read_json(path / RUN_FILE, "run file")
    check_format(run, path / RUN_FILE)
    check_run(run, path / RUN_FILE)
    manifest = read_json(path / MANIFEST_FILE, "manifest")
    check_format(manifest, path / MANIFEST_FILE)
    if manifest.get("run_id") != run.get("run_id"):
        raise ConfigError(f"{path}: manifest.json and run.json belong to different runs")
    check_manifest(manifest, path / MANIFEST_FILE, path)
    return run, manifest


def check_batch_dir(path: Path) -> None:
    """``<recording>/batches`` must be a real folder, not a symlink to somewhere else."""
    folder = path / BATCH_DIR
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise ConfigError(f"recording {path}: its {BATCH_DIR}/ folder is missing") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"recording {path}: {folder} is not a plain folder (a symlink or a file); "
            "refusing to read or write through it"
        )
