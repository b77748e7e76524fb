"""Resumable training checkpoints: saved atomically, loaded safely.

A checkpoint holds the config (as a plain dict), the step, the model and optimizer state
dicts, the masks and the git revision of the code that wrote it.  It is written to a
temporary file, fsynced and renamed, so a crash never leaves a half-written checkpoint,
and it is read with ``torch.load(..., weights_only=True)``, which refuses to run code
from the file (unlike a plain pickle).
"""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path
from typing import Any

import torch

from lsi_hw.atomic import atomic_write
from lsi_hw.errors import ConfigError

__all__ = ["git_revision", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def git_revision(path: str | Path | None = None) -> str:
    """The git commit of the code (``unknown`` outside a checkout), with ``+dirty``."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=5).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path: str | Path, *, config: dict[str, Any], step: int,
                    model: dict[str, Any], optimizer: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically; returns its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": config,
        "step": int(step),
        "model": model,
        "optimizer": optimizer,
        "git_revision": git_revision(),
        "extra": extra or {},
    }
    atomic_write(target, lambda fh: torch.save(payload, fh))
    return target


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type when it has none), shortened."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises
    ------
    ConfigError
        One line naming ``path``: the file is missing, truncated or corrupt (not a torch
        file), holds objects ``weights_only`` refuses (code), is not an lsi_ml checkpoint
        of this format, or its ``config`` / ``step`` / ``model`` entries have the wrong
        type.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"checkpoint {source} does not exist")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object (or garbage)
        raise ConfigError(f"checkpoint {source} cannot be loaded safely: it is corrupt or "
                          f"holds objects other than tensors and plain data "
                          f"({_first_line(exc)})") from None
    except Exception as exc:  # RuntimeError (bad zip), EOFError, BadZipFile, KeyError, ...
        raise ConfigError(f"checkpoint {source} is truncated or corrupt and cannot be "
                          f"loaded safely ({_first_line(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint {source} is not an lsi_ml checkpoint of format {FORMAT_VERSION}"
        )
    for key, kinds, what in (("config", (dict,), "a table"), ("model", (dict,), "a dict"),
                             ("optimizer", (dict, type(None)), "a dict or None"),
                             ("extra", (dict, type(None)), "a dict or None")):
        if not isinstance(payload.get(key), kinds):
            raise ConfigError(f"checkpoint {source}: its {key!r} entry is "
                              f"{type(payload.get(key)).__name__}, not {what} (corrupt)")
    step = payload.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"checkpoint {source}: its step {step!r} is not an int >= 0 "
                          "(corrupt)")
    return payload
