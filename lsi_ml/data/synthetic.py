"""Synthetic datasets with ground truth, drawn from any generator.

:class:`SyntheticFaces` samples latents from a generator's prior and renders them (image,
landmarks, segmentation, attributes, identity) on the fly.  It is deterministic by seed:
item ``i`` of a split always has the same latent, whatever order or batch it is read in.
The latents are drawn block by block (``BLOCK`` items per block) from a torch generator
seeded by ``(seed, split, block)`` through :class:`numpy.random.SeedSequence`, so the
train, val and test splits of one base seed are fixed, independent random streams (their
latents are continuous draws: they never coincide).

Rendering note: SynthFace crops each ``render`` call to the union of its faces' boxes, so
an item's image differs slightly (a few 1e-2 at most, at edges) with the other items it
is rendered with; latents and all labels do not.  Reading the same indices always gives
the same result, and a cached dataset renders in fixed blocks, so training is
reproducible either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lsi_hw.errors import ConfigError
from lsi_ml.generators.base import GroundTruthGenerator

__all__ = ["SPLITS", "SyntheticFaces", "split_seed"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The fixed splits, in the order that keys their seeds."""

BLOCK = 256
"""Latents are drawn in blocks of this many items (fixes item ``i`` independently of n)."""

MAX_BLOCKS = 64
"""Latent blocks kept in memory (older ones are redrawn, identically, when needed)."""

FIELDS: tuple[str, ...] = (
    "image", "latent", "landmarks", "segmentation", "attributes", "identity",
)


def split_seed(seed: int, split: str, block: int = 0) -> int:
    """Torch seed of one block of one split, derived from the base ``seed``.

    Parameters
    ----------
    seed : int
        Base seed (>= 0) shared by the three splits.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    block : int
        Block index (items ``block * BLOCK`` to ``(block + 1) * BLOCK - 1``).

    Returns
    -------
    int
        A 63-bit seed; different for every (seed, split, block).
    """
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} is not one of {SPLITS}")
    state = np.random.SeedSequence([int(seed), SPLITS.index(split), int(block)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class SyntheticFaces(Dataset):
    """``n`` generator samples with ground truth, as a map-style torch dataset.

    Parameters
    ----------
    generator
        A generator with ``sample_latent(n, generator=)`` and ``render(latent)`` returning
        an object with ``image``, ``landmarks``, ``segmentation``, ``attributes`` and
        ``identity`` (e.g. :class:`~lsi_ml.generators.synthface.SynthFace`).
    n : int
        Number of items in this split.
    seed : int
        Base seed; the split's latents come from ``split_seed(seed, split, block)``.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    cache : bool or None
        Keep rendered items in memory; ``None`` caches when ``n <= cache_limit``.
    cache_limit : int
        Largest ``n`` cached by default.

    Notes
    -----
    ``dataset[i]`` is a dict with the fields ``image`` (3, H, W), ``latent`` (L, D),
    ``landmarks``, ``segmentation``, ``attributes`` and ``identity``;
    :meth:`batch` returns the same fields stacked for a list of indices and renders them
    in one call (much faster than item by item).
    """

    def __init__(self, generator: GroundTruthGenerator, n: int, *, seed: int = 0,
                 split: str = "train", cache: bool | None = None, cache_limit: int = 4096) -> None:
        if int(n) < 1:
            raise ConfigError(f"a synthetic dataset needs n >= 1 items, got {n}")
        if split not in SPLITS:
            raise ConfigError(f"split {split!r} is not one of {SPLITS}")
        if int(seed) < 0:
            raise ConfigError(f"seed={seed} must be >= 0")
        self.generator = generator
        self.n = int(n)
        self.seed = int(seed)
        self.split = split
        self.cache = self.n <= int(cache_limit) if cache is None else bool(cache)
        self._blocks: dict[int, Tensor] = {}
        self._cached: dict[str, Tensor] | None = None

    def __len__(self) -> int:
        return self.n

    def latents(self, indices: Sequence[int] | Tensor) -> Tensor:
        """Latents of the given items, ``(len(indices), L, D)``; no rendering."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
            raise IndexError(f"index out of range for a dataset of {self.n} items")
        blocks = idx // BLOCK
        parts = []
        for b in blocks.unique().tolist():
            if b not in self._blocks:
                gen = torch.Generator().manual_seed(split_seed(self.seed, self.split, b))
                self._blocks[b] = self.generator.sample_latent(BLOCK, generator=gen)
                while len(self._blocks) > MAX_BLOCKS:  # bounded memory for huge n
                    del self._blocks[next(iter(self._blocks))]
            parts.append((b, self._blocks[b]))
        table = dict(parts)
        return torch.stack([table[int(i) // BLOCK][int(i) % BLOCK] for i in idx.tolist()]) \
            if idx.numel() else self.generator.sample_latent(0)

    def _render(self, latent: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            out = self.generator.render(latent)
        return {
            "image": out.image, "latent": latent, "landmarks": out.landmarks,
            "segmentation": out.segmentation, "attributes": out.attributes,
            "identity": out.identity,
        }

    def _all(self) -> dict[str, Tensor]:
        if self._cached is None:
            parts = [self._render(self.latents(range(start, min(start + BLOCK, self.n))))
                     for start in range(0, self.n, BLOCK)]
            self._cached = {k: torch.cat([p[k] for p in parts]) for k in FIELDS}
        return self._cached

    def batch(self, indices: Sequence[int] | Tensor) -> dict[str, Tensor]:
        """The items ``indices`` rendered (or read from the cache) and stacked.

        Parameters
        ----------
        indices : sequence of int or Tensor
            Item indices in ``0..n-1``.

        Returns
        -------
        dict of Tensor
            ``image`` (B, 3, H, W), ``latent`` (B, L, D), ``landmarks``, ``segmentation``,
            ``attributes``, ``identity``.
        """
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if self.cache:
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
                raise IndexError(f"index out of range for a dataset of {self.n} items")
            data = self._all()
            return {k: v[idx] for k, v in data.items()}
        return self._render(self.latents(idx))

    def images(self, indices: Sequence[int] | Tensor) -> dict[str, Tensor]:
        """Only ``image`` and ``latent`` of the items (no labels rendered: what training
        needs; the images equal :meth:`batch`'s)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if self.cache:
            data = self.batch(idx)
            return {"image": data["image"], "latent": data["latent"]}
        latent = self.latents(idx)
        with torch.no_grad():
            image = self.generator.synthesize(latent)
        return {"image": image, "latent": latent}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -self.n <= int(index) < self.n:
            raise IndexError(f"index {index} out of range for a dataset of {self.n} items")
        return {k: v[0] for k, v in self.batch([int(index) % self.n]).items()}

    def batches(self, batch_size: int, *, start: int = 0) -> Iterator[dict[str, Tensor]]:
        """Consecutive batches from item ``start`` to the end (the last may be short)."""
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        for lo in range(int(start), self.n, int(batch_size)):
            yield self.batch(range(lo, min(lo + int(batch_size), self.n)))
