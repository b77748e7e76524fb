"""Built-in test scenes (no downloads): procedural targets and scikit-image's astronaut.

Every function returns uint8 monitor drive values, (size, size) grey or (size, size, 3)
RGB, ready for :meth:`lsi_hw.interfaces.Bench.measure`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsi_hw.errors import ConfigError

__all__ = [
    "IMAGE_SUFFIXES",
    "builtin_scenes",
    "count_images",
    "gray_ramp",
    "load_image_dir",
    "resize_to",
    "siemens_star",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def siemens_star(size: int, spokes: int = 16) -> np.ndarray:
    """Siemens star resolution target, antialiased (4x supersampled), uint8 (size, size)."""
    sup = 4
    coords = (np.arange(size * sup) + 0.5) / sup - size / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    angle = np.arctan2(yy, xx)
    radius = np.hypot(yy, xx)
    star = (np.cos(spokes * angle) > 0) & (radius < 0.48 * size)
    star = star.reshape(size, sup, size, sup).mean(axis=(1, 3))
    return np.round(255 * (0.1 + 0.8 * star)).astype(np.uint8)


def gray_ramp(size: int, steps: int = 0, vertical: bool = False) -> np.ndarray:
    """Linear grey ramp 0..255 across the image (``steps`` > 0: a staircase), uint8."""
    ramp = np.linspace(0.0, 1.0, size)
    if steps > 0:
        ramp = np.floor(ramp * steps).clip(0, steps - 1) / max(steps - 1, 1)
    img = np.tile(ramp, (size, 1))
    if vertical:
        img = img.T
    return np.round(255 * img).astype(np.uint8)


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """Area-antialiased resize of a (H, W[, 3]) image to (size, size[, 3]) uint8."""
    from skimage.transform import resize

    arr = np.asarray(image)
    scale = 255.0 if arr.dtype.kind in "ui" else 1.0
    out_shape = (size, size, *arr.shape[2:])
    out = resize(arr.astype(np.float64) / scale, out_shape, anti_aliasing=True, order=1)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def builtin_scenes(size: int = 256) -> tuple[np.ndarray, list[str]]:
    """The default scene batch: (B, size, size, 3) uint8 and their names.

    Siemens star, horizontal grey ramp, 8-step vertical grey staircase, and
    scikit-image's astronaut portrait (a real face, bundled with scikit-image).
    """
    if not (8 <= size <= 2048):
        raise ConfigError(f"scene size={size} outside the allowed range [8, 2048] pixels")
    from skimage import data

    grey = [siemens_star(size), gray_ramp(size), gray_ramp(size, steps=8, vertical=True)]
    rgb = [np.repeat(g[..., None], 3, axis=2) for g in grey]
    rgb.append(resize_to(data.astronaut(), size))
    return np.stack(rgb), ["siemens_star", "gray_ramp", "gray_staircase", "astronaut"]


def _image_files(directory: str | Path) -> list[Path]:
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a directory (or use 'builtin')")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found"
        )
    return files


def count_images(directory: str | Path) -> int:
    """How many image files :func:`load_image_dir` would read (for a memory estimate)."""
    return len(_image_files(directory))


def load_image_dir(directory: str | Path, size: int) -> tuple[np.ndarray, list[str]]:
    """Read every image in ``directory`` as (B, size, size, 3) uint8, resized down.

    Raises ConfigError (naming the file) for an empty folder, an unreadable file, a
    non-square image (aspect differing by more than 2 %) or one smaller than ``size``.
    """
    from skimage import io

    files = _image_files(directory)
    images = []
    for path in files:
        try:
            img = np.asarray(io.imread(path))
        except Exception as exc:  # any decoder failure is the user's file
            raise ConfigError(f"image {path} is unreadable: {exc}") from None
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ConfigError(f"image {path} has shape {img.shape}; allowed: (H, W), (H, W, 3|4)")
        h, w = img.shape[:2]
        if abs(h - w) > 0.02 * max(h, w) or min(h, w) < size:
            raise ConfigError(
                f"image {path} is {h}x{w} pixels; allowed: square (within 2 %) and at least "
                f"{size}x{size} (it is resized to --size {size})"
            )
        if img.dtype != np.uint8:
            top = 65535.0 if img.dtype == np.uint16 else 1.0
            img = np.round(np.clip(img / top, 0, 1) * 255).astype(np.uint8)
        images.append(resize_to(img, size))
    return np.stack(images), [p.name for p in files]
