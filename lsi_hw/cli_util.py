"""Pieces shared by the ``lsi-hw`` and ``lsi-ml`` command lines."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lsi_hw.errors import ConfigError, LSIError

__all__ = ["OutputFolder", "one_line_errors"]


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our exceptions into ``Error: ...`` on stderr with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LSIError as exc:
            message = " ".join(str(exc).split())
            click.echo(f"Error: {message}", err=True)
            sys.exit(2)

    return wrapper


class OutputFolder:
    """A folder that appears under its final name only when everything is written."""

    def __init__(self, out: Path, force: bool) -> None:
        self.final = out
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
            raise ConfigError(f"--out {out} exists and is not empty; pick another or add --force")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))

    def path(self, name: str) -> Path:
        return self.tmp / name

    def commit(self) -> None:
        if self.final.exists():
            shutil.rmtree(self.final) if self.final.is_dir() else self.final.unlink()
        os.replace(self.tmp, self.final)

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
