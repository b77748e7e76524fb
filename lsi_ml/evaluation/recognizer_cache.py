"""Where a trained SynthFace recognizer (:mod:`lsi_ml.evaluation.recognizer`) is kept: its
file format and the on-disk cache that evaluation reads.

Cache
-----
``<cache>/lsi-toolkit/recognizer/<key>.pt`` with ``<cache>`` = ``$XDG_CACHE_HOME`` (if set
to an absolute path) else ``~/.cache``; ``key`` = readable prefix + SHA-256 of the
generator's class name, version (``getattr(generator, "version", 1)``), size and seed
(and SynthFace's ``pose`` mode and ``internal_size``) and of the recognizer config (without
``device`` / ``progress`` / ``batch``). Files are written atomically and read with
``torch.load(weights_only=True)``; each holds a few reference renders of its generator, so a
file made for a generator whose output has changed since (e.g. a new SynthFace that kept
its version number) is detected on load.

:func:`load_or_train_recognizer` returns the cached recognizer of a generator / config,
training and saving it when there is none (or the file is stale).
"""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from lsi_hw.atomic import atomic_write_bytes
from lsi_hw.errors import ConfigError
from lsi_hw.user_cache import user_cache_dir
from lsi_ml.data.synthetic import split_seed
from lsi_ml.devices import check_device
from lsi_ml.evaluation.recognizer import (
    STREAM_BLOCK,
    Recognizer,
    RecognizerConfig,
    train_recognizer,
)
from lsi_ml.generators.base import FaceGenerator, generator_cache_key, generator_signature

if TYPE_CHECKING:
    from lsi_ml.evaluation.recognizer import Recognizer

__all__ = [
    "FORMAT_VERSION",
    "REFERENCE_TOLERANCE",
    "default_cache_dir",
    "load_or_train_recognizer",
    "load_recognizer",
    "recognizer_cache_path",
    "recognizer_key",
    "save_recognizer",
]

FORMAT_VERSION = 1
"""Version of the saved-file layout (a file of another layout is refused)."""

_KIND = "lsi_ml.Recognizer"

_N_REFERENCE = 4
"""Reference renders stored in a file to detect a changed generator."""

REFERENCE_TOLERANCE = 2e-3
"""Largest mean absolute difference (grey, ``[0, 1]``, 16 x 16 average-pooled) between the
stored and the current reference renders for a file to count as made for this generator."""


# ---------------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lsi-toolkit/recognizer`` (when set to an absolute path), else
    ``~/.cache/lsi-toolkit/recognizer``."""
    return user_cache_dir("recognizer")


def recognizer_key(generator: FaceGenerator, config: RecognizerConfig | None = None) -> str:
    """Cache key: ``<class>-v<version>-<size>px-<16 hex digits>``
    (:func:`~lsi_ml.generators.base.generator_cache_key` of the config without device /
    progress / batch)."""
    cfg = config or RecognizerConfig()
    return generator_cache_key(generator, cfg.key_dict(), FORMAT_VERSION)


def recognizer_cache_path(generator: FaceGenerator, config: RecognizerConfig | None = None,
                          cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`load_or_train_recognizer` keeps the recognizer of ``generator`` /
    ``config``: ``cache_dir`` (default :func:`default_cache_dir`) / ``<key>.pt``."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{recognizer_key(generator, config)}.pt"


def _reference(generator: FaceGenerator, device: torch.device | str = "cpu") -> tuple[Tensor,
               Tensor]:
    """Fixed reference latents and their grey 16 x 16 renders (change detection)."""
    gen = torch.Generator().manual_seed(split_seed(0, "test", STREAM_BLOCK))
    latent = generator.sample_latent(_N_REFERENCE, gen)
    with torch.no_grad():
        images = generator.synthesize(latent.to(device)).float().cpu()
    grey = F.adaptive_avg_pool2d(images.mean(dim=1, keepdim=True), 16)
    return latent, grey


def save_recognizer(recognizer: Recognizer, path: str | os.PathLike[str],
                    generator: FaceGenerator) -> Path:
    """Write ``recognizer`` atomically to ``path`` (folders created), with its config,
    threshold, training statistics, the generator's signature and reference renders.
    Loadable with ``torch.load(weights_only=True)``."""
    target = Path(path)
    if not math.isfinite(recognizer.threshold):
        raise ConfigError("this recognizer has no threshold; train it with train_recognizer")
    ref_latent, ref_grey = _reference(generator, recognizer.device)
    payload = {
        "kind": _KIND,
        "format_version": FORMAT_VERSION,
        "config": recognizer.config.to_dict(),
        "generator": generator_signature(generator),
        "model": {k: v.detach().cpu() for k, v in recognizer.state_dict().items()},
        "threshold": float(recognizer.threshold),
        "train_stats": {k: float(v) for k, v in recognizer.train_stats.items()},
        "reference_latent": ref_latent,
        "reference_grey": ref_grey,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(target, buffer.getvalue())


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_recognizer(path: str | os.PathLike[str], generator: FaceGenerator | None = None,
                    device: str = "cpu") -> Recognizer:
    """Read a recognizer written by :func:`save_recognizer`.

    Parameters
    ----------
    path : str or PathLike
    generator
        When given, the file must have been made for it: same signature (class, version,
        size, seed) and reference renders within :data:`REFERENCE_TOLERANCE`.
    device : str
        Where the weights go.

    Raises
    ------
    ConfigError
        One line naming ``path``: missing, truncated or corrupt file, objects that
        ``weights_only`` refuses, not a recognizer file of this format, config / weights
        that do not fit, or made for another generator (or a changed one).
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"recognizer {source} does not exist (make it with "
                          "`lsi-ml recognizer`)")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(f"recognizer {source} cannot be loaded safely: it is corrupt or "
                          f"holds objects other than tensors and plain data "
                          f"({_first_line(exc)}); delete it or remake it with "
                          "`lsi-ml recognizer --force`") from None
    except Exception as exc:  # RuntimeError (bad zip), EOFError, OSError, ...
        raise ConfigError(f"recognizer {source} is truncated or corrupt "
                          f"({_first_line(exc)}); delete it or remake it with "
                          "`lsi-ml recognizer --force`") from None
    if not isinstance(payload, dict) or payload.get("kind") != _KIND \
            or payload.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"recognizer {source} is not a recognizer file of format "
                          f"{FORMAT_VERSION}")
    for key, kind in (("config", dict), ("model", dict), ("generator", dict),
                      ("threshold", float), ("train_stats", dict),
                      ("reference_latent", Tensor), ("reference_grey", Tensor)):
        if not isinstance(payload.get(key), kind):
            raise ConfigError(f"recognizer {source}: its {key!r} entry is "
                              f"{type(payload.get(key)).__name__}, not {kind.__name__} "
                              "(corrupt)")
    if not math.isfinite(payload["threshold"]):
        raise ConfigError(f"recognizer {source}: its threshold is not finite (corrupt)")
    try:
        config = RecognizerConfig.from_dict(payload["config"], device=device, progress=False)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"recognizer {source}: its config does not fit this version "
                          f"({_first_line(exc)}); remake it with `lsi-ml recognizer "
                          "--force`") from None
    with torch.random.fork_rng(devices=[]):
        model = Recognizer(config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise ConfigError(f"recognizer {source}: its weights do not match its config "
                          f"({_first_line(exc)}); remake it with `lsi-ml recognizer "
                          "--force`") from None
    model.threshold = float(payload["threshold"])
    model.signature = dict(payload["generator"])
    model.train_stats = {str(k): float(v) for k, v in payload["train_stats"].items()}
    if generator is not None:
        _check_generator(source, payload, generator)
    model.to(check_device(device, available=True))
    model.eval()
    return model


class _StaleRecognizer(ConfigError):
    """The file was made for a generator whose output has changed since."""


def _check_generator(source: Path, payload: dict[str, Any], generator: FaceGenerator) -> None:
    saved = payload["generator"]
    current = generator_signature(generator)
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"recognizer {source} was made for another generator (differs in "
                          f"{diff}: saved {[saved.get(k) for k in diff]}, given "
                          f"{[current.get(k) for k in diff]})")
    latent = payload["reference_latent"]
    if tuple(latent.shape[1:]) != tuple(generator.latent_shape):
        raise ConfigError(f"recognizer {source}: its reference latents do not fit the "
                          "generator's latent shape (corrupt or another generator)")
    with torch.no_grad():
        images = generator.synthesize(latent).float().cpu()
    grey = F.adaptive_avg_pool2d(images.mean(dim=1, keepdim=True), 16)
    if grey.shape != payload["reference_grey"].shape:
        raise ConfigError(f"recognizer {source}: its reference renders do not fit the "
                          "generator (corrupt)")
    diff_px = float((grey - payload["reference_grey"]).abs().mean())
    if not diff_px <= REFERENCE_TOLERANCE:
        raise _StaleRecognizer(
            f"recognizer {source} was made for a {current['class']} whose images differ "
            f"from this one's (mean |difference| {diff_px:.4f} > {REFERENCE_TOLERANCE}; the "
            "generator changed without a new version): remake it with "
            "`lsi-ml recognizer --force`")


def load_or_train_recognizer(
    generator: FaceGenerator,
    config: RecognizerConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    train_if_missing: bool = True,
    progress: bool = True,
    device: str = "cpu",
) -> Recognizer:
    """The cached recognizer of ``generator`` / ``config``; trained and cached if absent.

    Parameters
    ----------
    generator
        The generator to score (e.g. ``SynthFace(64)``).
    config : RecognizerConfig or None
        Default :class:`~lsi_ml.evaluation.recognizer.RecognizerConfig()` (``progress`` /
        ``device`` taken from the arguments).
    cache_dir : path or None
        Folder of the cache (default :func:`default_cache_dir`).
    train_if_missing : bool
        Train (a few minutes on a CPU by default) and save when there is no file, or when
        the file was made for an earlier output of a generator that kept its version;
        False: raise ConfigError naming the command that makes it.
    progress : bool
        Progress bar while training.
    device : str
        Torch device of training and weights.

    Raises
    ------
    ConfigError
        The cached file is corrupt (one line naming it), or missing / stale and
        ``train_if_missing`` is False.
    """
    cfg = config or RecognizerConfig()
    cfg = RecognizerConfig.from_dict(cfg.to_dict(), progress=progress, device=device)
    path = recognizer_cache_path(generator, cfg, cache_dir)
    size = getattr(generator, "size", "?")
    how = f"make it with `lsi-ml recognizer --size {size}`"
    if path.is_file():
        try:
            return load_recognizer(path, generator, device=device)
        except _StaleRecognizer:
            if not train_if_missing:
                raise
            if progress:
                tqdm.write(f"recognizer {path} is stale (the generator changed): retraining")
    elif not train_if_missing:
        raise ConfigError(f"no recognizer at {path}: {how}")
    elif progress:
        tqdm.write(f"no recognizer at {path}: training one (cached there)")
    model = train_recognizer(generator, cfg)
    save_recognizer(model, path, generator)
    return model
