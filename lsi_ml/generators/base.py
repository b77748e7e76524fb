"""The ``Generator`` protocol shared by SynthFace and adapters of pretrained generators.

A generator maps a multi-level latent of shape ``(n, L, D)`` (like StyleGAN's W+, 18 x 512)
to RGB images in ``[0, 1]``. Generators that know the ground truth of what they draw
(SynthFace) also implement ``render`` returning a :class:`RenderOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass(frozen=True)
class LatentLevel:
    """One level of a multi-level latent.

    Attributes
    ----------
    name : str
        Level name (e.g. ``"coarse"``).
    index : int
        Position ``l`` of the level in the latent's second axis.
    size : int
        Number of dimensions ``D`` of the level.
    flat : slice
        Slice of the level in the flattened latent ``latent.reshape(n, L * D)``.
    params : tuple of str
        Names of the parameters driven by each dimension (empty if unnamed).
    """

    name: str
    index: int
    size: int
    flat: slice
    params: tuple[str, ...] = ()


@dataclass
class RenderOutput:
    """Image and ground truth for a batch of latents.

    Attributes
    ----------
    image : Tensor
        ``(n, 3, H, W)`` float RGB in ``[0, 1]``.
    landmarks : Tensor
        ``(n, 68, 2)`` iBUG-68 landmarks in pixel coordinates ``(x, y)``; pixel centres are at
        integer coordinates.
    segmentation : Tensor
        ``(n, H, W)`` int64 class ids.
    attributes : Tensor
        ``(n, A)`` bool binary attributes.
    identity : Tensor
        ``(n, I)`` identity vector (the identity sub-vector of the latent).
    """

    image: Tensor
    landmarks: Tensor
    segmentation: Tensor
    attributes: Tensor
    identity: Tensor


@runtime_checkable
class Generator(Protocol):
    """What the encoders, probes and metrics of ``lsi_ml`` need from a generator."""

    @property
    def levels(self) -> tuple[LatentLevel, ...]:
        """The level structure of the latent (names, sizes, flat slices)."""
        ...

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latents ``(n, L, D)`` from the prior."""
        ...

    def synthesize(self, latent: Tensor) -> Tensor:
        """Render latents ``(n, L, D)`` to images ``(n, 3, H, W)`` in ``[0, 1]``."""
        ...

    def features(self, latent: Tensor) -> list[Tensor]:
        """Multi-scale feature maps ``[(n, C_k, H_k, W_k), ...]`` (finest first)."""
        ...


@runtime_checkable
class GroundTruthGenerator(Generator, Protocol):
    """A generator that also returns landmarks, segmentation, attributes and identity."""

    def render(self, latent: Tensor) -> RenderOutput:
        """Render latents with their ground truth."""
        ...


@runtime_checkable
class FaceGenerator(GroundTruthGenerator, Protocol):
    """A ground-truth face generator with identities: what probes, evaluation, the
    reference decoder and the reading fit need (SynthFace and its grey
    :class:`~lsi_ml.generators.luminance.LuminanceView`).

    Attributes
    ----------
    size : int
        Image side, pixels.
    class_names : sequence of str
        Segmentation classes, index = label.
    attribute_names : sequence of str
        Binary attributes, in the order of ``RenderOutput.attributes``.
    """

    size: int
    class_names: tuple[str, ...]
    attribute_names: tuple[str, ...]

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(L, D)`` of one latent."""
        ...

    def identity(self, latent: Tensor) -> Tensor:
        """The identity sub-vector ``(n, identity_dim)`` of latents ``(n, L, D)``."""
        ...

    def sample_latent_same_identity(self, base: Tensor, n: int,
                                    generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents that share ``base``'s identity, every nuisance redrawn."""
        ...

    def verification_pairs(self, n_pairs: int, generator: torch.Generator | None = None,
                           pool: int | None = None, return_hard: bool = False
                           ) -> tuple[Tensor, ...]:
        """Seeded same / different identity pairs (with hard negatives)."""
        ...

    def features_from_image(self, images: Tensor) -> list[Tensor]:
        """The ``features`` of images that were not rendered from a latent."""
        ...

    def attributes(self, latent: Tensor) -> Tensor:
        """The exact binary attributes ``(n, A)`` of latents, without rendering."""
        ...


def generator_signature(generator: FaceGenerator) -> dict[str, Any]:
    """What a model trained on a generator's output (probes, recognizer) is tied to: the
    generator's class name, version (1 if it has none), image size (px) and seed, plus
    SynthFace's ``pose`` mode and ``internal_size`` (px) where the generator has them
    (None otherwise)."""
    def _int(name: str) -> int | None:
        value = getattr(generator, name, None)
        return None if value is None else int(value)

    pose = getattr(generator, "pose", None)
    return {
        "class": type(generator).__name__,
        "version": str(getattr(generator, "version", 1)),
        "size": _int("size"),
        "seed": _int("seed"),
        "pose": None if pose is None else str(pose),
        "internal_size": _int("internal_size"),
    }


def generator_cache_key(generator: FaceGenerator, settings: dict[str, Any],
                        format_version: int) -> str:
    """File name stem of a model trained on ``generator`` with ``settings`` (a plain,
    JSON-serialisable dict of what changes the result), as the caches use it:
    ``<class>-v<version>-<size>px-<16 hex digits>``, the digits from the SHA-256 of the
    :func:`generator_signature`, ``settings`` and ``format_version``."""
    import hashlib
    import json

    sig = generator_signature(generator)
    text = json.dumps({"generator": sig, "config": settings, "format": format_version},
                      sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]

    def safe(value: object) -> str:
        return "".join(c if c.isalnum() else "_" for c in str(value)).lower()

    return f"{safe(sig['class'])}-v{safe(sig['version'])}-{sig['size']}px-{digest}"

