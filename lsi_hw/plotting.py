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


def _trace_limits(values: np.ndarray, open_aperture: np.ndarray) -> tuple[float, float]:
    """y-limits of a reading trace that ignore open-aperture readings (mask fill ~ 1), which
    would otherwise flatten every other reading."""
    inner = values[~open_aperture] if (~open_aperture).any() else values
    lo, hi = float(inner.min()), float(inner.max())
    pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi), 1e-9) * 0.05
    return lo - pad, hi + pad


def save_simulation_figure(
    path: str | Path,
    patterns: PatternSet,
    scenes: np.ndarray,
    scene_names: list[str],
    volts: np.ndarray,
    expected: np.ndarray,
    sigma: np.ndarray,
    previews: np.ndarray,
    preview_label: str,
    title: str,
) -> None:
    """One PNG: the first masks, then per scene: the scene, its readings (measured and
    noiseless expected, each minus its mean so the structure shows; open-aperture readings
    off the axis), the residual in units of the predicted noise, and a preview image.

    ``volts``, ``expected`` and ``sigma`` are (B, m) volts; ``previews`` (B, H, W) in
    [0, 1]; ``preview_label`` says what the preview is (method and resolution).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_masks = min(8, patterns.m)
    n_scenes = min(4, len(scenes))
    cols = max(n_masks, 4)
    fill = patterns.masks.reshape(patterns.m, -1).mean(axis=1)
    open_aperture = fill > 0.99
    index = np.arange(patterns.m)
    fig = plt.figure(figsize=(2.0 * cols, 2.6 * (1 + n_scenes) - 0.4),
                     constrained_layout=True)
    grid = fig.add_gridspec(1 + 2 * n_scenes, cols,
                            height_ratios=[1.0] + [0.95, 0.45] * n_scenes)
    for k in range(n_masks):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(patterns.masks[k], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"mask {k}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])  # keep the frame: an all-white mask is still visible
    for row in range(n_scenes):
        top, bottom = 1 + 2 * row, 2 + 2 * row
        ax = fig.add_subplot(grid[top:bottom + 1, 0])
        img = scenes[row]
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
        ax.set_title(scene_names[row], fontsize=8)
        ax.axis("off")
        measured_mv = (volts[row] - volts[row].mean()) * 1e3
        expected_mv = (expected[row] - expected[row].mean()) * 1e3
        ax = fig.add_subplot(grid[top, 1: cols - 1])
        ax.plot(index, expected_mv, lw=1.6, color="0.75", label="expected (noiseless)")
        ax.plot(index, measured_mv, lw=0.6, color="C0", label="measured")
        ax.set_ylim(*_trace_limits(np.concatenate([measured_mv, expected_mv]),
                                   np.concatenate([open_aperture, open_aperture])))
        ax.set_ylabel("reading - mean\n[mV]", fontsize=7)
        ax.tick_params(labelsize=7, labelbottom=False)
        note = (f"; {int(open_aperture.sum())} open-aperture reading(s) off the axis"
                if open_aperture.any() and (~open_aperture).any() else "")
        ax.legend(fontsize=6, loc="upper right", frameon=False,
                  title=f"mean {volts[row].mean() * 1e3:.1f} mV{note}", title_fontsize=6)
        z = (volts[row] - expected[row]) / np.where(sigma[row] > 0, sigma[row], np.inf)
        rz = fig.add_subplot(grid[bottom, 1: cols - 1], sharex=ax)
        rz.axhline(0.0, color="0.6", lw=0.6)
        rz.plot(index, z, ".", ms=1.5, color="C3")
        rz.set_ylim(-5, 5)
        rz.set_ylabel("residual\n[sigma]", fontsize=7)
        rz.set_xlabel("pattern", fontsize=7)
        rz.tick_params(labelsize=7)
        rz.text(0.995, 0.92, f"rms {np.sqrt(np.mean(z ** 2)):.2f} sigma", fontsize=6,
                ha="right", va="top", transform=rz.transAxes)
        ax = fig.add_subplot(grid[top:bottom + 1, cols - 1])
        ax.imshow(previews[row], cmap="gray", vmin=0, vmax=1, interpolation="bicubic")
        ax.set_title(preview_label, fontsize=6)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=90)
