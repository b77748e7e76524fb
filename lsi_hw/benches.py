"""Pick a bench by name: the one place every CLI command and example goes through."""

from __future__ import annotations

from typing import Any

from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench

__all__ = ["BENCH_NAMES", "make_bench"]

BENCH_NAMES = ("sim", "fake-hw", "hw")


def make_bench(name: str, **options: Any) -> Bench:
    """Return the bench called ``name`` (``sim``, ``fake-hw`` or ``hw``).

    ``options`` go to the bench's constructor (for ``sim``: noise, seed, config, ...).
    """
    if name == "sim":
        from lsi_hw.sim import SimBench

        return SimBench(**options)
    if name in ("fake-hw", "hw"):
        raise ConfigError(
            f"bench {name!r} needs the hardware drivers, which are not part of this release "
            "yet; use 'sim'"
        )
    raise ConfigError(f"bench {name!r} is unknown; allowed: {', '.join(BENCH_NAMES)}")
