"""Frechet distances between image sets, in a NAMED feature space.

Frechet distances carry the name of the feature space they were computed in. Only a
user-provided Inception network (:class:`InceptionFeatures`) yields a number labelled "FID";
the built-in :class:`RandomConvFeatures` is a *substitute* and is always reported as
``"FD (substitute: random-conv-256)"``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from lsi_ml.evaluation.arrays import ArrayLike, to_images, to_numpy

__all__ = [
    "INCEPTION_NAME",
    "FeatureSpace",
    "FrechetResult",
    "InceptionFeatures",
    "RandomConvFeatures",
    "frechet_distance",
    "frechet_distance_from_stats",
    "frechet_distance_images",
]

#: Feature-space name reserved for a real Inception-v3 (pool3, 2048-d) network.
INCEPTION_NAME = "inception-v3"


def frechet_distance_from_stats(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``. As in the reference
    FID code: if ``sqrtm`` is not finite (singular product), ``eps * I`` is added to both
    covariances; a complex result whose imaginary diagonal exceeds ``1e-3`` raises, a smaller
    imaginary part is discarded.
    """
    m1 = np.atleast_1d(to_numpy(mu1))
    m2 = np.atleast_1d(to_numpy(mu2))
    s1 = np.atleast_2d(to_numpy(sigma1))
    s2 = np.atleast_2d(to_numpy(sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError("mean vectors and covariance matrices have inconsistent shapes")
    diff = m1 - m2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm(sigma1 sigma2)"
            )
        covmean = covmean.real
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    # the distance is >= 0 mathematically; a negative value is round-off from sqrtm
    return max(value, 0.0)


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    Parameters
    ----------
    feats_a, feats_b : array_like, shape (n_a, d), (n_b, d); or (n,) for 1-D features
        Means are sample means, covariances are unbiased (``ddof=1``), as in FID.
    eps : float
        Diagonal offset used if the covariance product is singular.
    """
    a = to_numpy(feats_a)
    b = to_numpy(feats_b)
    a = a[:, None] if a.ndim == 1 else a.reshape(a.shape[0], -1)
    b = b[:, None] if b.ndim == 1 else b.reshape(b.shape[0], -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least two samples per set")
    return frechet_distance_from_stats(
        a.mean(axis=0),
        np.cov(a, rowvar=False),
        b.mean(axis=0),
        np.cov(b, rowvar=False),
        eps=eps,
    )


@runtime_checkable
class FeatureSpace(Protocol):
    """A named image -> feature map used for Frechet distances.

    Attributes
    ----------
    name : str
        Printed next to every distance (e.g. ``"random-conv-256"``).
    is_inception : bool
        ``True`` only for a real Inception-v3 network; only then is the result called FID.
    """

    name: str
    is_inception: bool

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Map float images ``(n, C, H, W)`` in ``[0, 1]`` to features ``(n, d)``."""
        ...


@dataclass(frozen=True)
class FrechetResult:
    """A Frechet distance together with the feature space it was measured in."""

    value: float
    feature_space_name: str
    is_inception: bool
    n_a: int
    n_b: int

    @property
    def label(self) -> str:
        """``"FID"`` for Inception, ``"FD (substitute: <name>)"`` otherwise."""
        if self.is_inception:
            return "FID"
        return f"FD (substitute: {self.feature_space_name})"

    def __str__(self) -> str:
        return f"{self.label} = {self.value:.2f}"


class RandomConvFeatures:
    """SUBSTITUTE feature space (not Inception): a fixed, seeded, random convolutional net.

    Distances computed with it are *not* FID and are not comparable to the paper's FID
    numbers; they are labelled ``"FD (substitute: random-conv-<dim>)"``. Use it to compare
    models with each other when no Inception weights are available.

    Images are resized to 64x64 (bilinear, antialiased), grey images repeated to 3 channels,
    mapped to ``[-1, 1]`` and passed through four stride-2 3x3 convolutions
    (3->32->64->128->``dim``, He-normal weights drawn from ``torch.Generator().manual_seed(seed)``,
    ReLU between layers); features are the global average of the last layer.

    Parameters
    ----------
    seed : int
        Seed of the random weights (the feature space is identified by its name and seed).
    dim : int
        Feature dimension.
    batch_size : int
        Images per forward pass.
    """

    is_inception = False

    def __init__(self, seed: int = 0, dim: int = 256, batch_size: int = 64) -> None:
        self.seed = seed
        self.dim = dim
        self.batch_size = batch_size
        self.name = f"random-conv-{dim}" if seed == 0 else f"random-conv-{dim}-seed{seed}"
        gen = torch.Generator().manual_seed(seed)
        widths = [3, 32, 64, 128, dim]
        self._weights: list[torch.Tensor] = []
        for cin, cout in itertools.pairwise(widths):
            std = math.sqrt(2.0 / (cin * 9))
            self._weights.append(torch.randn(cout, cin, 3, 3, generator=gen) * std)

    def __call__(self, images: ArrayLike) -> np.ndarray:
        x = torch.from_numpy(to_images(images)).float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                z = x[i : i + self.batch_size]
                z = F.interpolate(z, size=(64, 64), mode="bilinear", antialias=True)
                z = z * 2.0 - 1.0
                for k, w in enumerate(self._weights):
                    z = F.conv2d(z, w, stride=2, padding=1)
                    if k < len(self._weights) - 1:
                        z = F.relu(z)
                outs.append(z.mean(dim=(2, 3)))
        return torch.cat(outs).double().numpy()

    def __repr__(self) -> str:
        return f"RandomConvFeatures(seed={self.seed}, dim={self.dim})  # substitute, not Inception"


class InceptionFeatures:
    """Inception-v3 feature space supplied by the user (gives a real FID).

    No weights ship with this package. Pass a callable mapping ``(n, 3, H, W)`` float images
    in ``[0, 1]`` to pool3 features ``(n, 2048)`` (doing its own resizing/normalisation), or
    load a TorchScript file with :meth:`from_file`.

    Parameters
    ----------
    model : callable
        The user's Inception network (torch module or any function of a tensor/array).
    name : str
        Feature-space name; defaults to :data:`INCEPTION_NAME`.
    batch_size : int
        Images per forward pass.
    """

    is_inception = True

    def __init__(
        self,
        model: Callable[[Any], Any],
        name: str = INCEPTION_NAME,
        batch_size: int = 50,
    ) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def from_file(cls, path: str | Path, batch_size: int = 50) -> InceptionFeatures:
        """Load a TorchScript Inception feature extractor (``torch.jit.load``)."""
        model = torch.jit.load(str(path), map_location="cpu")
        model.eval()
        return cls(model, batch_size=batch_size)

    def __call__(self, images: ArrayLike) -> np.ndarray:
        x = torch.from_numpy(to_images(images)).float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                f = to_numpy(self.model(x[i : i + self.batch_size]))
                outs.append(f.reshape(f.shape[0], -1))
        return np.concatenate(outs, axis=0)


def frechet_distance_images(
    images_a: ArrayLike, images_b: ArrayLike, feature_space: FeatureSpace
) -> FrechetResult:
    """Frechet distance between two image sets in a named feature space.

    Parameters
    ----------
    images_a, images_b : array_like, shape (n, C, H, W), values in ``[0, 1]``
    feature_space : FeatureSpace
        :class:`InceptionFeatures` (user weights -> FID) or a substitute such as
        :class:`RandomConvFeatures`.

    Returns
    -------
    FrechetResult
        The value with ``feature_space_name`` and ``is_inception``; ``str()`` prints
        ``"FID = ..."`` only for Inception, ``"FD (substitute: <name>) = ..."`` otherwise.
    """
    fa = to_numpy(feature_space(images_a))
    fb = to_numpy(feature_space(images_b))
    return FrechetResult(
        value=frechet_distance(fa, fb),
        feature_space_name=str(feature_space.name),
        is_inception=bool(getattr(feature_space, "is_inception", False)),
        n_a=int(fa.shape[0]),
        n_b=int(fb.shape[0]),
    )
