"""Figures a person would rather look at than read (matplotlib, saved as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lsi_hw.atomic import atomic_write
from lsi_hw.patterns import PatternSet

__all__ = ["save_figure", "save_simulation_figure"]


def save_figure(fig: Any, path: str | Path, *, overwrite: bool = True, **savefig: Any) -> Path:
    """Save a matplotlib figure atomically (temporary file, ``fsync``, rename), in the format
    of the file's suffix (PNG when it has none), and close it.

    ``savefig`` keywords (``dpi``, ``bbox_inches``, ...) go to ``Figure.savefig``;
    ``overwrite=False`` refuses an existing file.
    """
    import matplotlib.pyplot as plt

    target = Path(path)
    fmt = target.suffix[1:].lower() or "png"
    try:
        return atomic_write(target, lambda fh: fig.savefig(fh, format=fmt, **savefig),
                            overwrite=overwrite)
    finally:
        plt.close(fig)


def save_simulation_figure(
    path: str | Path,
    patterns: PatternSet,
    scenes: np.ndarray,
    scene_names: list[str],
    volts: np.ndarray,
    previews: np.ndarray,
    preview_method: str,
    title: str,
) -> None:
    """One PNG: first masks, each scene, its measurement trace and a preview image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_masks = min(8, patterns.m)
    n_scenes = min(4, len(scenes))
    cols = max(n_masks, 3)
    fig = plt.figure(figsize=(2.0 * cols, 2.2 * (1 + n_scenes)), constrained_layout=True)
    grid = fig.add_gridspec(1 + n_scenes, cols)
    for k in range(n_masks):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(patterns.masks[k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"mask {k}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])  # keep the frame: an all-white mask is still visible
    for row in range(n_scenes):
        ax = fig.add_subplot(grid[1 + row, 0])
        img = scenes[row]
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
        ax.set_title(scene_names[row], fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(grid[1 + row, 1 : cols - 1])
        ax.plot(volts[row] * 1e3, lw=0.6)
        ax.set_xlabel("pattern", fontsize=8)
        ax.set_ylabel("detector [mV]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax = fig.add_subplot(grid[1 + row, cols - 1])
        ax.imshow(previews[row], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{preview_method} preview", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=90)
