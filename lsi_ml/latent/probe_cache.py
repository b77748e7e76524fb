"""Trained probes kept in the user's cache, so each set is trained once per machine.

Probes read attributes, segmentation and landmarks from a latent; they depend only on the
generator (class, version, size, seed, pose mode) and on the probe config, never on the LSI
model that decodes into that latent. Every run folder, every evaluation and every
fine-tune of the same generator can therefore share one trained set.

Cache
-----
``<cache>/lsi-toolkit/probes/<key>.pt`` (``<cache>``: see :mod:`lsi_hw.user_cache`);
``key`` = ``<class>-v<version>-<size>px-`` + 16 hex digits of the SHA-256 of
:func:`~lsi_ml.generators.base.generator_signature` and the probe config (without
``device``, ``progress`` and ``render_batch``, which do not change the result). Files are
written atomically and read with ``torch.load(weights_only=True)``; a cached file that does
not load (corrupt, made for another generator) is trained again and replaced. Delete the
folder to start over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lsi_hw.errors import ConfigError
from lsi_hw.user_cache import user_cache_dir
from lsi_ml.generators.base import FaceGenerator, generator_cache_key
from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet

__all__ = ["PROBE_CACHE_FORMAT", "cached_probes", "load_or_train_probes",
           "probe_cache_path", "probe_key"]

PROBE_CACHE_FORMAT = 1
"""Bumped when the meaning of a cached file changes (older files are then not used)."""

_NOT_IN_KEY = ("device", "progress", "render_batch")


def probe_key(generator: FaceGenerator, config: ProbeConfig) -> str:
    """``<class>-v<version>-<size>px-<16 hex digits>`` of ``generator`` and ``config``
    (:func:`~lsi_ml.generators.base.generator_cache_key`)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_KEY}
    return generator_cache_key(generator, settings, PROBE_CACHE_FORMAT)


def probe_cache_path(generator: FaceGenerator, config: ProbeConfig,
                     cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the probes of ``generator`` / ``config`` are cached: ``cache_dir`` (default
    ``<cache>/lsi-toolkit/probes``) / ``<key>.pt``."""
    folder = Path(cache_dir) if cache_dir is not None else user_cache_dir("probes")
    return folder / f"{probe_key(generator, config)}.pt"


def cached_probes(generator: FaceGenerator, config: ProbeConfig,
                  cache_dir: str | os.PathLike[str] | None = None) -> ProbeSet | None:
    """The cached probes of ``generator`` / ``config``, or None when there are none (or the
    file does not load: it will be trained again)."""
    path = probe_cache_path(generator, config, cache_dir)
    if not path.is_file():
        return None
    try:
        return ProbeSet.load(path, generator).to(config.device)
    except (ConfigError, OSError):
        return None


def load_or_train_probes(generator: FaceGenerator, config: ProbeConfig,
                         cache_dir: str | os.PathLike[str] | None = None,
                         echo: Callable[[str], None] | None = None
                         ) -> tuple[ProbeSet, Path, bool]:
    """The probes of ``generator`` / ``config``: from the cache, else trained and cached.

    Returns
    -------
    (ProbeSet, Path, bool)
        The probes (on ``config.device``), the cache file, and whether they were trained now.
    """
    path = probe_cache_path(generator, config, cache_dir)
    probes = cached_probes(generator, config, cache_dir)
    if probes is not None:
        return probes, path, False
    if echo is not None:
        echo(f"training probes ({config.steps} steps on {config.n_train} generator faces); "
             f"they are cached for later runs in {path}")
    probes = ProbeSet.fit(generator, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    probes.save(path)
    return probes, path, True
