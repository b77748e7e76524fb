"""Face images from a folder (CelebA-HQ layout) with optional attribute, landmark and latent
targets.

:class:`ImageFolderFaces` reads every ``*.jpg`` / ``*.jpeg`` / ``*.png`` (any case) of one
folder, in natural order (``2.jpg`` before ``10.jpg``), with Pillow, and resizes each to
``size x size`` (box/area filter when shrinking, bilinear when enlarging; a non-square image
is stretched). Optional targets:

- ``attributes``: a CelebA-style text file (``list_attr_celeba.txt`` or CelebAMask-HQ's
  ``CelebAMask-HQ-attribute-anno.txt``): first line the row count, second line the attribute
  names, then ``filename v1 v2 ...`` with values -1/1 (or 0/1), read as bool.
- ``landmarks``: a ``.npy`` of shape ``(N, K, 2)`` (rows in the folder's natural order) or a
  CSV ``name,x0,y0,x1,y1,...`` (an optional header line is skipped), in pixel coordinates
  ``(x, y)`` of the ORIGINAL image, pixel centres at integers; returned in the resized frame:
  ``x' = (x + 0.5) * size / width - 0.5`` (same for ``y``).
- ``latents``: a ``latents.npy`` ``(N, L, D)`` in folder order (e.g. written by
  :func:`lsi_ml.baselines.inversion.invert_dataset`), or ``encoder(images (B, 3, size, size)) ->
  latents (B, L, D)`` applied to each batch.

A fixed train/val/test split comes from a seeded permutation of the N images; ``index`` is
always the image's position in the whole folder (the row of the ``.npy`` files).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lsi_hw.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "ImageFolderFaces", "natural_key", "read_attribute_file"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
"""Image file suffixes read (case-insensitive)."""

_SPLITS: tuple[str, ...] = ("train", "val", "test")


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs numerically: ``"2.jpg" < "10.jpg"``."""
    return [(0, int(tok), tok) if tok.isdigit() else (1, 0, tok.lower())
            for tok in re.split(r"(\d+)", name) if tok]


def read_attribute_file(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Parse a CelebA-style attribute file.

    Parameters
    ----------
    path : str or Path
        Text file: line 1 the number of rows, line 2 the attribute names, then one row per
        image ``filename v1 ... vA`` with values in {-1, 1} (or {0, 1}).

    Returns
    -------
    names : list of str
        The ``A`` attribute names.
    rows : dict
        ``filename -> (A,) bool`` array (``True`` where the value is positive).

    Raises
    ------
    ConfigError
        Missing file, a count line that does not match the rows, or a malformed row.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"attribute file {p} does not exist")
    lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ConfigError(f"attribute file {p} needs a count line and a names line")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise ConfigError(f"{p}: first line must be the row count, got {lines[0]!r}") from None
    names = lines[1].split()
    rows: dict[str, np.ndarray] = {}
    for k, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if len(parts) != len(names) + 1:
            raise ConfigError(
                f"{p}, line {k}: expected a filename and {len(names)} values, got "
                f"{len(parts)} fields"
            )
        try:
            values = np.array([int(v) for v in parts[1:]])
        except ValueError:
            raise ConfigError(f"{p}, line {k}: values must be -1/1 or 0/1 integers") from None
        if not np.isin(values, (-1, 0, 1)).all():
            raise ConfigError(f"{p}, line {k}: values must be -1/1 or 0/1, got {parts[1:]}")
        rows[parts[0]] = values > 0
    if len(rows) != count:
        raise ConfigError(f"{p}: first line says {count} rows but the file has {len(rows)}")
    return names, rows


class ImageFolderFaces(Dataset):
    """A folder of face images (CelebA-HQ layout) as a map-style torch dataset.

    Parameters
    ----------
    root : str or Path
        Folder holding the images (not searched recursively).
    size : int
        Output side in pixels (>= 8); images become ``(3, size, size)``.
    split : {"train", "val", "test"} or None
        Which part of the fixed seeded split to expose; ``None`` exposes every image in
        folder order.
    fractions : tuple of 3 float
        Train/val/test fractions (>= 0, summing to 1); counts are rounded down for train and
        val, the test split takes the rest.
    seed : int
        Seed of the split permutation (``numpy.random.default_rng(seed)``).
    attributes : str or Path, optional
        CelebA-style attribute file (see :func:`read_attribute_file`). Every image must have
        a row (matched by file name, else by stem); extra rows are ignored.
    landmarks : str or Path, optional
        ``.npy`` ``(N, K, 2)`` or CSV ``name,x0,y0,...`` in original-image pixel coordinates.
    latents : str or Path or numpy.ndarray, optional
        ``(N, L, D)`` latent targets in folder order (``latents.npy``).
    encoder : callable, optional
        ``encoder(images (B, 3, size, size)) -> (B, L, D)``, run without gradients per batch;
        exclusive with ``latents``.

    Notes
    -----
    ``dataset[i]`` is a dict with ``image`` (3, size, size) float32 in [0, 1], ``index``
    (int64, position in the folder), ``name`` (file name) and, when given, ``attributes``
    (A,) bool, ``landmarks`` (K, 2) float32 in the resized frame and ``latent`` (L, D).
    :meth:`batch` stacks the same fields (``name`` becomes a list).
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 128,
        *,
        split: str | None = None,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        attributes: str | Path | None = None,
        landmarks: str | Path | None = None,
        latents: str | Path | np.ndarray | None = None,
        encoder: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"image folder {self.root} does not exist or is not a folder")
        if int(size) < 8:
            raise ConfigError(f"size={size} must be >= 8 pixels")
        self.size = int(size)
        files = [p.name for p in self.root.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise ConfigError(
                f"image folder {self.root} holds no {'/'.join(IMAGE_SUFFIXES)} images"
            )
        self.all_names: list[str] = sorted(files, key=natural_key)
        self.num_images = len(self.all_names)
        self.split = split
        self.seed = int(seed)
        self._positions = self._split_positions(split, fractions)
        if encoder is not None and latents is not None:
            raise ConfigError("give either latents (a file of targets) or an encoder, not both")
        self.encoder = encoder
        self.attribute_names: list[str] = []
        self._attributes: np.ndarray | None = None
        if attributes is not None:
            self._attributes = self._match_attributes(attributes)
        self._landmarks: np.ndarray | None = None
        if landmarks is not None:
            self._landmarks = self._load_landmarks(landmarks)
        self._latents: np.ndarray | None = None
        if latents is not None:
            arr = np.load(latents) if isinstance(latents, (str, Path)) else np.asarray(latents)
            if arr.ndim != 3 or arr.shape[0] != self.num_images:
                raise ConfigError(
                    f"latents must have shape (N={self.num_images}, L, D) in folder order, "
                    f"got {arr.shape}"
                )
            self._latents = arr.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ construction helpers
    def _split_positions(self, split: str | None, fractions: Sequence[float]) -> np.ndarray:
        if split is None:
            return np.arange(self.num_images)
        if split not in _SPLITS:
            raise ConfigError(f"split={split!r} is not one of {_SPLITS} or None")
        fr = np.asarray(fractions, dtype=np.float64)
        if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
            raise ConfigError(f"fractions must be 3 values >= 0 summing to 1, got {fractions}")
        perm = np.random.default_rng(self.seed).permutation(self.num_images)
        n_train = int(np.floor(fr[0] * self.num_images + 1e-9))
        n_val = int(np.floor(fr[1] * self.num_images + 1e-9))
        parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val],
                 "test": perm[n_train + n_val:]}
        return np.sort(parts[split])

    def _match_attributes(self, path: str | Path) -> np.ndarray:
        names, rows = read_attribute_file(path)
        by_stem = {Path(k).stem: v for k, v in rows.items()}
        out, missing = [], []
        for name in self.all_names:
            row = rows.get(name)
            if row is None:
                row = by_stem.get(Path(name).stem)
            if row is None:
                missing.append(name)
            else:
                out.append(row)
        if missing:
            raise ConfigError(
                f"attribute file {path} has no row for {len(missing)} of the "
                f"{self.num_images} images (e.g. {missing[:3]}); its rows must name the "
                f"images of {self.root}"
            )
        self.attribute_names = names
        return np.stack(out)

    def _load_landmarks(self, path: str | Path) -> np.ndarray:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"landmark file {p} does not exist")
        if p.suffix.lower() == ".npy":
            arr = np.load(p)
            if arr.ndim != 3 or arr.shape[2] != 2:
                raise ConfigError(f"landmarks {p} must have shape (N, K, 2), got {arr.shape}")
            if arr.shape[0] != self.num_images:
                raise ConfigError(
                    f"landmarks {p} have {arr.shape[0]} rows but {self.root} holds "
                    f"{self.num_images} images"
                )
            return arr.astype(np.float32)
        table: dict[str, np.ndarray] = {}
        with p.open(newline="") as fh:
            for k, rec in enumerate(csv.reader(fh), start=1):
                if not rec or not rec[0].strip():
                    continue
                try:
                    vals = np.array([float(v) for v in rec[1:]], dtype=np.float32)
                except ValueError:
                    if k == 1:
                        continue  # header line
                    raise ConfigError(f"{p}, line {k}: coordinates must be numbers") from None
                if vals.size == 0 or vals.size % 2:
                    raise ConfigError(
                        f"{p}, line {k}: expected name and an even number of coordinates "
                        f"x0,y0,x1,y1,..., got {vals.size}"
                    )
                table[rec[0].strip()] = vals.reshape(-1, 2)
        counts = {v.shape[0] for v in table.values()}
        if len(counts) > 1:
            raise ConfigError(f"{p}: rows have different landmark counts {sorted(counts)}")
        missing = [n for n in self.all_names if n not in table]
        if missing:
            raise ConfigError(
                f"landmark file {p} has {len(table)} rows but no row for {len(missing)} of the "
                f"{self.num_images} images (e.g. {missing[:3]})"
            )
        return np.stack([table[n] for n in self.all_names])

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._positions)

    def global_index(self, i: int) -> int:
        """Position in the whole folder (row of ``.npy`` targets) of item ``i``."""
        return int(self._positions[int(i)])

    @property
    def names(self) -> list[str]:
        """File names of this split's items, in item order."""
        return [self.all_names[j] for j in self._positions]

    def _read(self, j: int) -> tuple[Tensor, tuple[int, int]]:
        from PIL import Image, UnidentifiedImageError

        path = self.root / self.all_names[j]
        try:
            with Image.open(path) as im:
                im.load()
                rgb = im.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ConfigError(f"cannot read image {path}: {exc}") from exc
        w, h = rgb.size
        s = self.size
        if (w, h) != (s, s):
            shrink = w > s or h > s
            resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
            rgb = rgb.resize((s, s), resample=resample)
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), (w, h)

    def batch(self, indices: Sequence[int] | Tensor) -> dict[str, Any]:
        """The items ``indices`` read, resized and stacked.

        Parameters
        ----------
        indices : sequence of int or Tensor
            Item indices in ``0..len(self)-1``.

        Returns
        -------
        dict
            ``image`` (B, 3, size, size) float32 in [0, 1], ``index`` (B,) int64, ``name``
            list of str, and when configured ``attributes`` (B, A) bool, ``landmarks``
            (B, K, 2) float32 pixels in the resized frame, ``latent`` (B, L, D) float32.
        """
        idx = [int(i) for i in torch.as_tensor(indices, dtype=torch.long).reshape(-1).tolist()]
        n = len(self)
        for i in idx:
            if not 0 <= i < n:
                raise IndexError(f"index {i} out of range for a dataset of {n} items")
        rows = [self.global_index(i) for i in idx]
        images, sizes = [], []
        for j in rows:
            img, wh = self._read(j)
            images.append(img)
            sizes.append(wh)
        s = self.size
        out: dict[str, Any] = {
            "image": torch.stack(images) if images else torch.zeros(0, 3, s, s),
            "index": torch.tensor(rows, dtype=torch.long),
            "name": [self.all_names[j] for j in rows],
        }
        if self._attributes is not None:
            out["attributes"] = torch.from_numpy(self._attributes[rows])
        if self._landmarks is not None:
            lm = self._landmarks[rows].copy()
            scale = np.array([[s / w, s / h] for w, h in sizes], dtype=np.float32)
            lm = (lm + 0.5) * scale[:, None, :] - 0.5
            out["landmarks"] = torch.from_numpy(lm)
        if self._latents is not None:
            out["latent"] = torch.from_numpy(self._latents[rows].copy())
        elif self.encoder is not None:
            with torch.no_grad():
                out["latent"] = self.encoder(out["image"])
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        item = self.batch([int(index) % n])
        return {k: (v[0] if isinstance(v, (Tensor, list)) else v) for k, v in item.items()}
