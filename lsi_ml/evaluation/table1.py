"""Table-1-style report rows (Markdown) and ``"value [low, high]"`` cells.

Accuracies and F1 scores arrive as **fractions** in ``[0, 1]`` and are printed as
percentages, like the paper; landmark NME arrives already x100. A Frechet distance is printed
bare only when it is a real FID (Inception features); any other feature space is named in the
cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lsi_ml.evaluation.frechet import INCEPTION_NAME, FrechetResult
from lsi_ml.evaluation.metrics import VerificationResult

__all__ = ["format_ci", "table1_header", "table1_row", "table1_row_ci"]


def format_ci(
    value: float | None,
    ci: tuple[float, float] | None = None,
    *,
    percent: bool = False,
    digits: int = 1,
) -> str:
    """``"89.1 [87.9, 90.2]"``: a value with its interval (``percent``: fractions x100).

    ``None``/NaN value prints ``n/a``; a missing or non-finite interval prints the value
    alone.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    scale = 100.0 if percent else 1.0
    text = f"{scale * float(value):.{digits}f}"
    if ci is None or any(math.isnan(float(x)) for x in ci):
        return text
    low, high = (scale * float(x) for x in ci)
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def _pct(x: float | None, what: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1] (got {x}); it is printed as %")
    return f"{100.0 * x:.2f}"


def _fd_cell(fd: float | FrechetResult | None, fd_space: str | None) -> str:
    if fd is None:
        return "n/a"
    if isinstance(fd, FrechetResult):
        value, space, inception = fd.value, fd.feature_space_name, fd.is_inception
    else:
        value, space = float(fd), fd_space
        inception = space == INCEPTION_NAME
    if math.isnan(value):
        return "n/a"
    if inception:
        return f"{value:.2f}"
    if not space:
        raise ValueError("fd_space is required: name the feature space of the distance")
    return f"{value:.2f} (FD, substitute: {space})"


def table1_header(fd_space: str | None = INCEPTION_NAME) -> str:
    """Markdown header (two lines) matching :func:`table1_row`."""
    fd_col = "FID" if fd_space == INCEPTION_NAME else f"FD ({fd_space or 'substitute'})"
    cols = ["ratio", "verif. %", fd_col, "attr. acc %", "seg F1 %", "landmark NME"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def table1_row(
    ratio: str,
    verification: float | VerificationResult | None,
    fd: float | FrechetResult | None,
    fd_space: str | None,
    attr_acc: float | None,
    seg_f1: float | None,
    nme: float | None,
) -> str:
    """One Markdown row of a Table-1-style report.

    Parameters
    ----------
    ratio : str
        E.g. ``"1:256"``.
    verification, attr_acc, seg_f1 : float or None
        Fractions in ``[0, 1]`` as returned by :mod:`lsi_ml.evaluation.metrics` (printed
        as %, 2 decimals); ``None``/NaN prints ``n/a``. ``verification`` may be a
        :class:`~lsi_ml.evaluation.metrics.VerificationResult`.
    fd : float, FrechetResult or None
        Frechet distance. A plain number is printed bare only if ``fd_space`` is
        :data:`~lsi_ml.evaluation.frechet.INCEPTION_NAME` (a real FID); any other space is
        printed as ``"12.34 (FD, substitute: random-conv-256)"`` so it is never mistaken for FID.
    fd_space : str or None
        Feature-space name of ``fd`` (ignored when ``fd`` is a
        :class:`~lsi_ml.evaluation.frechet.FrechetResult`).
    nme : float or None
        Landmark NME (already x100), printed with 2 decimals.
    """
    if isinstance(verification, VerificationResult):
        verification = verification.accuracy
    nme_cell = "n/a" if nme is None or math.isnan(nme) else f"{nme:.2f}"
    cells: Sequence[str] = [
        str(ratio),
        _pct(verification, "verification"),
        _fd_cell(fd, fd_space),
        _pct(attr_acc, "attr_acc"),
        _pct(seg_f1, "seg_f1"),
        nme_cell,
    ]
    return "| " + " | ".join(cells) + " |"


def table1_row_ci(
    ratio: str,
    verification: float | VerificationResult | None,
    fd: float | FrechetResult | None,
    fd_space: str | None,
    attr_acc: float | None,
    seg_f1: float | None,
    nme: float | None,
    *,
    ci: dict[str, tuple[float, float]] | None = None,
) -> str:
    """:func:`table1_row` with bootstrap intervals in the cells: ``"89.15 [87.90, 90.20]"``.

    ``ci`` maps ``"verification_accuracy"``, ``"attribute_accuracy"``, ``"segmentation_f1"``
    (fractions) and ``"landmark_nme"`` to ``(low, high)``; missing keys print the value
    alone (the Frechet distance has no interval). Same columns as :func:`table1_header`.
    """
    if isinstance(verification, VerificationResult):
        verification = verification.accuracy
    ci = ci or {}

    def interval(key: str, cell: str, scale: float) -> str:
        bounds = ci.get(key)
        if cell == "n/a" or bounds is None or any(math.isnan(float(x)) for x in bounds):
            return cell
        return f"{cell} [{scale * float(bounds[0]):.2f}, {scale * float(bounds[1]):.2f}]"

    nme_cell = "n/a" if nme is None or math.isnan(nme) else f"{nme:.2f}"
    cells = [
        str(ratio),
        interval("verification_accuracy", _pct(verification, "verification"), 100.0),
        _fd_cell(fd, fd_space),
        interval("attribute_accuracy", _pct(attr_acc, "attr_acc"), 100.0),
        interval("segmentation_f1", _pct(seg_f1, "seg_f1"), 100.0),
        interval("landmark_nme", nme_cell, 1.0),
    ]
    return "| " + " | ".join(cells) + " |"
