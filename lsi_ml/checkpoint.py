"""Resumable training checkpoints: saved atomically, loaded safely.

A checkpoint holds the config (as a plain dict), the step, the model and optimizer state
dicts, the masks and the git revision of the code that wrote it.  It is written to a
temporary file, fsynced and renamed, so a crash never leaves a half-written checkpoint,
and it is read with ``torch.load(..., weights_only=True)``, which refuses to run code
from the file (unlike a plain pickle).
"""

from __future__ import annotations

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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; ConfigError for a bad or foreign file."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"checkpoint {source} does not exist")
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpicklable code objects, truncated files, ...
        raise ConfigError(f"checkpoint {source} cannot be loaded safely: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint {source} is not an lsi_ml checkpoint of format {FORMAT_VERSION}"
        )
    return payload
