"""Evaluation metrics for latent-space imaging (the quantities of the paper's Table 1):
face verification, attributes, segmentation, landmarks, latent errors and image quality.

Every function accepts numpy arrays, torch tensors or nested sequences and converts them to
``numpy.float64`` (integer label maps are kept integral; :mod:`lsi_ml.evaluation.arrays`)
before computing.

Conventions
-----------
* Accuracies and F1 scores are returned as **fractions** in ``[0, 1]``;
  :func:`lsi_ml.evaluation.table1.table1_row` prints them as percentages, like the paper.
* Landmark NME is returned already multiplied by 100 (the paper's unit: error normalised by the
  diagonal of the target landmarks' bounding box, times 100).
* Every score has a per-item form (per face, or per pair for verification: e.g.
  :func:`attribute_accuracy_per_image`, :func:`segmentation_confusion`) for the bootstrap
  intervals of :mod:`lsi_ml.evaluation.bootstrap`.
* Frechet distances (in a named feature space) are in :mod:`lsi_ml.evaluation.frechet`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from lsi_ml.evaluation.arrays import ArrayLike, to_images, to_numpy

__all__ = [
    "VerificationResult",
    "attribute_accuracy",
    "attribute_accuracy_per_image",
    "choose_threshold",
    "f1_from_confusion",
    "landmark_nme",
    "landmark_nme_per_image",
    "latent_errors",
    "latent_r2",
    "pair_distances",
    "psnr",
    "segmentation_confusion",
    "segmentation_f1",
    "segmentation_f1_per_image",
    "ssim",
    "verification_accuracy",
]


# --------------------------------------------------------------------------------------------
# face verification
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verification_accuracy`.

    Attributes
    ----------
    accuracy : float
        Fraction of test pairs classified correctly, in ``[0, 1]``.
    threshold : float
        Decision threshold chosen on the validation pairs, in the units of the scores.
    tpr : float
        True-positive rate on the test set (same-identity pairs accepted); NaN if none.
    tnr : float
        True-negative rate on the test set (different-identity pairs rejected); NaN if none.
    higher_is_same : bool
        ``True`` for similarities (same if ``score > threshold``), ``False`` for distances
        (same if ``score < threshold``).
    val_accuracy : float
        Accuracy of the chosen threshold on the validation pairs.
    """

    accuracy: float
    threshold: float
    tpr: float
    tnr: float
    higher_is_same: bool = False
    val_accuracy: float = float("nan")

    def predict(self, scores: ArrayLike) -> np.ndarray:
        """Apply the threshold: boolean "same identity" predictions for ``scores``."""
        s = to_numpy(scores).ravel()
        return s > self.threshold if self.higher_is_same else s < self.threshold


def pair_distances(
    emb_a: ArrayLike, emb_b: ArrayLike, metric: Literal["cosine", "euclidean"] = "cosine"
) -> np.ndarray:
    """Row-wise distances between two sets of embeddings.

    Parameters
    ----------
    emb_a, emb_b : array_like, shape (n, ...)
        Paired embeddings; trailing dimensions are flattened.
    metric : {"cosine", "euclidean"}
        ``"cosine"`` gives ``1 - cos(a, b)`` (in ``[0, 2]``; a zero vector has cosine 0),
        ``"euclidean"`` gives ``||a - b||_2``.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Distance of each pair (lower = more similar).
    """
    a = to_numpy(emb_a)
    b = to_numpy(emb_b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.ndim == 1:
        a, b = a[None], b[None]
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        na = np.linalg.norm(a, axis=1)
        nb = np.linalg.norm(b, axis=1)
        denom = na * nb
        dot = np.sum(a * b, axis=1)
        cos = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
        return 1.0 - np.clip(cos, -1.0, 1.0)
    raise ValueError(f"unknown metric {metric!r}; use 'cosine' or 'euclidean'")


def choose_threshold(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Best threshold for the rule ``same if d < t``; returns ``(threshold, accuracy)``.

    Candidates are the midpoints between consecutive distinct scores plus one point below the
    minimum and one above the maximum; their accuracies are evaluated by rank (robust to
    round-off when two scores are adjacent floats).
    Ties: the midpoint between the smallest and the largest maximising candidate, if that
    midpoint also reaches the maximum accuracy; otherwise the maximising candidate nearest to it.
    """
    u = np.unique(d)
    span = float(u[-1] - u[0])
    margin = max(0.5 * span, 1e-6 * max(1.0, float(np.max(np.abs(u)))))
    cands = np.concatenate([[u[0] - margin], (u[:-1] + u[1:]) / 2.0, [u[-1] + margin]])
    # accuracy of candidate k = "same iff d <= u[k-1]" (k = 0: nothing accepted), evaluated by
    # rank so that float round-off in the midpoints cannot change it
    rank = np.searchsorted(u, d)  # index of each score in u
    k = np.arange(u.size + 1)
    pred = rank[None, :] < k[:, None]
    accs = np.mean(pred == same[None, :], axis=1)
    best = float(accs.max())
    tied = np.flatnonzero(accs == best)
    mid = (cands[tied[0]] + cands[tied[-1]]) / 2.0
    if np.mean((d < mid) == same) == best:
        return float(mid), best
    return float(cands[tied[np.argmin(np.abs(cands[tied] - mid))]]), best


def verification_accuracy(
    dist_or_sim_val: ArrayLike,
    same_val: ArrayLike,
    dist_or_sim_test: ArrayLike,
    same_test: ArrayLike,
    *,
    higher_is_same: bool = False,
) -> VerificationResult:
    """Face-verification accuracy with the threshold chosen on validation pairs.

    Parameters
    ----------
    dist_or_sim_val, dist_or_sim_test : array_like, shape (n,)
        Pair scores: distances (default) or similarities (``higher_is_same=True``).
    same_val, same_test : array_like of bool, shape (n,)
        Ground truth: ``True`` where the pair shows the same identity.
    higher_is_same : bool
        Whether a higher score means "same identity" (similarities).

    Returns
    -------
    VerificationResult
        Test accuracy / TPR / TNR of the threshold that maximises validation accuracy
        (ties broken towards the middle of the maximising range; see ``choose_threshold``).
    """
    sv = to_numpy(dist_or_sim_val).ravel()
    yv = to_numpy(same_val).ravel() > 0.5
    st = to_numpy(dist_or_sim_test).ravel()
    yt = to_numpy(same_test).ravel() > 0.5
    if sv.shape != yv.shape or st.shape != yt.shape:
        raise ValueError("scores and labels must have the same length")
    if sv.size == 0 or st.size == 0:
        raise ValueError("need at least one validation and one test pair")
    sign = -1.0 if higher_is_same else 1.0
    t, val_acc = choose_threshold(sign * sv, yv)
    threshold = sign * t
    pred = st > threshold if higher_is_same else st < threshold
    correct = pred == yt
    tpr = float(np.mean(pred[yt])) if yt.any() else float("nan")
    tnr = float(np.mean(~pred[~yt])) if (~yt).any() else float("nan")
    return VerificationResult(
        accuracy=float(np.mean(correct)),
        threshold=float(threshold),
        tpr=tpr,
        tnr=tnr,
        higher_is_same=higher_is_same,
        val_accuracy=val_acc,
    )


# --------------------------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------------------------
def attribute_accuracy(
    logits_or_probs: ArrayLike, targets: ArrayLike, *, from_logits: bool = True
) -> tuple[float, np.ndarray]:
    """Binary attribute accuracy (e.g. the 40 CelebA attributes).

    Parameters
    ----------
    logits_or_probs : array_like, shape (n, A) or (n,)
        Logits (positive if ``> 0``) or, with ``from_logits=False``, probabilities
        (positive if ``> 0.5``; equivalent to ``sigmoid(logit) > 0.5``).
    targets : array_like, shape (n, A) or (n,)
        Labels in ``{0, 1}`` or ``{-1, 1}`` (CelebA's raw encoding); positive if ``> 0.5``.
    from_logits : bool
        Interpretation of ``logits_or_probs``.

    Returns
    -------
    mean : float
        Mean over attributes of the per-attribute accuracy (= overall accuracy).
    per_attribute : numpy.ndarray, shape (A,)
        Accuracy of each attribute, as a fraction.
    """
    per = np.mean(_attribute_hits(logits_or_probs, targets, from_logits), axis=0)
    return float(per.mean()), per


def attribute_accuracy_per_image(
    logits_or_probs: ArrayLike, targets: ArrayLike, *, from_logits: bool = True
) -> np.ndarray:
    """Fraction of the attributes of each image that are predicted correctly.

    Same inputs and decision rule as :func:`attribute_accuracy` (boolean predictions: pass
    ``from_logits=False``). With the same number of attributes per image, the mean of the
    returned array equals :func:`attribute_accuracy`'s ``mean``, so it can be bootstrapped
    over images (:func:`lsi_ml.evaluation.bootstrap.bootstrap_ci`).

    Returns
    -------
    numpy.ndarray, shape (n,)
        Per-image accuracy in ``[0, 1]``.
    """
    return np.mean(_attribute_hits(logits_or_probs, targets, from_logits), axis=1)


def _attribute_hits(logits_or_probs: ArrayLike, targets: ArrayLike, from_logits: bool
                    ) -> np.ndarray:
    """``(n, A)`` bool: attribute predicted correctly (logit > 0 or probability > 0.5)."""
    x = to_numpy(logits_or_probs)
    y = to_numpy(targets)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    pred = x > 0.0 if from_logits else x > 0.5
    return pred == (y > 0.5)


# --------------------------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------------------------
def segmentation_f1(
    pred: ArrayLike,
    target: ArrayLike,
    n_classes: int,
    *,
    ignore_background: bool = False,
    average: Literal["macro", "micro"] = "macro",
    ignore_index: int | None = None,
) -> tuple[float, np.ndarray]:
    """Segmentation F1 (Dice) accumulated over the whole set.

    Per class ``c``: ``F1_c = 2 TP / (2 TP + FP + FN)`` with the counts summed over every
    pixel of every image.

    Parameters
    ----------
    pred : array_like
        Integer label map(s) with the shape of ``target``, or class scores with one extra
        axis of length ``n_classes`` at position 1 (``(n, C, H, W)``), which are arg-maxed.
    target : array_like of int
        Ground-truth label map(s), values in ``[0, n_classes)``.
    n_classes : int
        Number of classes (class 0 is the background).
    ignore_background : bool
        Exclude class 0 from the average (its per-class entry is still reported).
    average : {"macro", "micro"}
        ``"macro"``: mean of the per-class F1 over the included classes that occur in the
        prediction or in the target; **classes absent from both are excluded** (their F1 is
        0/0, reported as NaN). ``"micro"``: ``2 sum TP / (2 sum TP + sum FP + sum FN)`` over
        the included classes.
    ignore_index : int, optional
        Target value whose pixels are left out entirely (e.g. 255 for "unlabelled").

    Returns
    -------
    mean : float
        The averaged F1 in ``[0, 1]`` (NaN if no included class occurs at all).
    per_class : numpy.ndarray, shape (n_classes,)
        F1 of each class; NaN for classes absent from both prediction and target.
    """
    t = to_numpy(target, dtype=np.int64)
    p_raw = to_numpy(pred)
    if p_raw.ndim == t.ndim + 1 and p_raw.shape[1] == n_classes:
        p = np.argmax(p_raw, axis=1)
    else:
        p = p_raw.astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {p.shape} vs {t.shape}")
    p = p.ravel()
    t = t.ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for name, arr in (("pred", p), ("target", t)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in [0, {n_classes})")
    conf = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    conf = conf.reshape(n_classes, n_classes).astype(np.float64)  # rows: target, cols: pred
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    per = np.full(n_classes, np.nan)
    np.divide(2 * tp, denom, out=per, where=denom > 0)
    include = np.ones(n_classes, dtype=bool)
    if ignore_background:
        include[0] = False
    if average == "macro":
        vals = per[include & (denom > 0)]
        mean = float(vals.mean()) if vals.size else float("nan")
    elif average == "micro":
        d = denom[include].sum()
        mean = float(2 * tp[include].sum() / d) if d > 0 else float("nan")
    else:
        raise ValueError(f"unknown average {average!r}; use 'macro' or 'micro'")
    return mean, per


def segmentation_confusion(pred: ArrayLike, target: ArrayLike, n_classes: int) -> np.ndarray:
    """Confusion matrix of each image: ``conf[i, t, p]`` = pixels of class ``t`` in the
    target predicted as ``p`` in image ``i``.

    The per-image sufficient statistic of :func:`segmentation_f1`: summing ``conf`` over
    any multiset of images and applying :func:`f1_from_confusion` gives that set's F1, which
    is how a bootstrap resamples the set-accumulated F1.

    Parameters
    ----------
    pred, target : array_like of int, shape (n, H, W) (or (H, W) for one image)
        Label maps with values in ``[0, n_classes)``.
    n_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray, shape (n, n_classes, n_classes), int64
    """
    t = to_numpy(target, dtype=np.int64)
    p = to_numpy(pred, dtype=np.int64)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {p.shape} vs {t.shape}")
    if t.ndim == 2:
        p, t = p[None], t[None]
    if t.ndim < 2:
        raise ValueError(f"expected label maps of shape (n, H, W), got {t.shape}")
    n = t.shape[0]
    p = p.reshape(n, -1)
    t = t.reshape(n, -1)
    for name, arr in (("pred", p), ("target", t)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in [0, {n_classes})")
    cc = n_classes * n_classes
    code = (np.arange(n, dtype=np.int64)[:, None] * cc + t * n_classes + p).ravel()
    return np.bincount(code, minlength=n * cc).reshape(n, n_classes, n_classes)


def f1_from_confusion(
    conf: ArrayLike, *, ignore_background: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Macro F1 (and per-class F1) from confusion matrices, vectorised over leading axes.

    ``F1_c = 2 TP / (2 TP + FP + FN)`` per class; the macro mean runs over the (included)
    classes present in the prediction or the target, exactly as
    :func:`segmentation_f1` (``average="macro"``).

    Parameters
    ----------
    conf : array_like, shape (..., C, C)
        Rows: target class, columns: predicted class (:func:`segmentation_confusion`).
    ignore_background : bool
        Leave class 0 out of the mean.

    Returns
    -------
    mean : numpy.ndarray, shape (...)
        Macro F1 (NaN where no included class occurs).
    per_class : numpy.ndarray, shape (..., C)
        F1 per class (NaN for classes absent from both).
    """
    c = to_numpy(conf)
    if c.ndim < 2 or c.shape[-1] != c.shape[-2]:
        raise ValueError(f"expected (..., C, C) confusion matrices, got {c.shape}")
    tp = np.diagonal(c, axis1=-2, axis2=-1)
    fp = c.sum(axis=-2) - tp
    fn = c.sum(axis=-1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    per = np.full(denom.shape, np.nan)
    np.divide(2 * tp, denom, out=per, where=present)
    if ignore_background:
        present = present.copy()
        present[..., 0] = False
    count = present.sum(axis=-1)
    total = np.where(present, per, 0.0).sum(axis=-1)
    mean = np.full(count.shape, np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    return mean, per


def segmentation_f1_per_image(
    pred: ArrayLike, target: ArrayLike, n_classes: int, *, ignore_background: bool = False
) -> np.ndarray:
    """Macro F1 of each image separately (classes present in that image's prediction or
    target), the per-face form of :func:`segmentation_f1`.

    Returns
    -------
    numpy.ndarray, shape (n,)
        In ``[0, 1]``; identical maps give 1.
    """
    mean, _ = f1_from_confusion(segmentation_confusion(pred, target, n_classes),
                                ignore_background=ignore_background)
    return mean


# --------------------------------------------------------------------------------------------
# landmarks
# --------------------------------------------------------------------------------------------
def landmark_nme_per_image(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Per-image landmark NME normalised by the target bounding-box diagonal, times 100.

    ``NME_i = 100 * mean_k ||pred_ik - target_ik||_2 / diag_i`` with
    ``diag_i = sqrt(w_i^2 + h_i^2)`` the diagonal of the axis-aligned box enclosing the
    target landmarks of image ``i`` (the paper's normalisation).

    Parameters
    ----------
    pred, target : array_like, shape (n, K, D) or (K, D)
        Landmark coordinates (``D`` = 2 usually).

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    p = to_numpy(pred)
    t = to_numpy(target)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {p.shape} vs {t.shape}")
    if t.ndim == 2:
        p, t = p[None], t[None]
    if t.ndim != 3:
        raise ValueError(f"expected landmarks of shape (n, K, D), got {t.shape}")
    diag = np.linalg.norm(t.max(axis=1) - t.min(axis=1), axis=-1)
    if np.any(diag <= 0):
        raise ValueError("degenerate target landmarks: zero bounding-box diagonal")
    err = np.linalg.norm(p - t, axis=-1).mean(axis=1)
    return 100.0 * err / diag


def landmark_nme(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean over images of :func:`landmark_nme_per_image` (bounding-box diagonal, x100)."""
    return float(np.mean(landmark_nme_per_image(pred, target)))


# --------------------------------------------------------------------------------------------
# latents
# --------------------------------------------------------------------------------------------
def latent_errors(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Errors between predicted and target latents (e.g. ``(n, 18, 512)`` W+ codes).

    Returns
    -------
    dict
        ``"l1"``: mean absolute error per element; ``"mse"``: mean squared error per element;
        ``"rmse"``: its square root; ``"l2"``: mean over samples of the Euclidean norm of the
        flattened per-sample difference.
    """
    p = to_numpy(pred)
    t = to_numpy(target)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: {p.shape} vs {t.shape}")
    diff = p - t
    mse = float(np.mean(diff**2))
    flat = diff.reshape(diff.shape[0], -1) if diff.ndim > 1 else diff[None]
    return {
        "l1": float(np.mean(np.abs(diff))),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "l2": float(np.mean(np.linalg.norm(flat, axis=1))),
    }


def latent_r2(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Coefficient of determination per latent dimension: which dims a decoder recovers.

    ``R2_k = 1 - mean_i (pred_ik - target_ik)^2 / var_i(target_ik)`` over the samples ``i``
    of the flattened latents ``(n, K)``: 1 = exact, 0 = no better than the targets' mean,
    < 0 worse. Dimensions whose targets do not vary get NaN.

    Parameters
    ----------
    pred, target : array_like, shape (n, ...)
        Decoded and true latents, n >= 2.

    Returns
    -------
    numpy.ndarray
        (K,) float64, K = elements per sample.
    """
    p = to_numpy(pred)
    t = to_numpy(target)
    if p.shape != t.shape or p.ndim < 1 or p.shape[0] < 2:
        raise ValueError(f"need two (n >= 2, ...) arrays of one shape; got {p.shape}, {t.shape}")
    p = p.reshape(p.shape[0], -1).astype(np.float64)
    t = t.reshape(t.shape[0], -1).astype(np.float64)
    var = t.var(axis=0)
    mse = np.mean((p - t) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, 1.0 - mse / np.where(var > 0, var, 1.0), np.nan)


# --------------------------------------------------------------------------------------------
# image quality
# --------------------------------------------------------------------------------------------
def psnr(
    a: ArrayLike,
    b: ArrayLike,
    data_range: float = 1.0,
    reduction: Literal["mean", "none"] = "mean",
) -> float | np.ndarray:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, per image.

    Parameters
    ----------
    a, b : array_like, shape (n, C, H, W), (C, H, W) or (H, W)
    data_range : float
        Peak-to-peak value range (1.0 for images in ``[0, 1]``).
    reduction : {"mean", "none"}
        Mean over images (identical images give ``inf``) or the per-image array.
    """
    x = to_images(a)
    y = to_images(b)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    mse = np.mean((x - y) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        vals = 10.0 * np.log10(data_range**2 / mse)
    return vals if reduction == "none" else float(np.mean(vals))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    data_range: float = 1.0,
    reduction: Literal["mean", "none"] = "mean",
) -> float | np.ndarray:
    """Structural similarity (Wang et al. 2004), Gaussian 11x11 window, sigma 1.5.

    ``K1 = 0.01``, ``K2 = 0.03``, population (not sample) covariances; the SSIM map is
    computed where the window fits inside the image ("valid") and averaged over positions and
    channels. This equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=0)`` per image.

    Parameters
    ----------
    a, b : array_like, shape (n, C, H, W), (C, H, W) or (H, W); ``H, W >= 11``
    data_range : float
        Peak-to-peak value range.
    reduction : {"mean", "none"}
        Mean over images, or the per-image array.
    """
    x = torch.from_numpy(to_images(a))
    y = torch.from_numpy(to_images(b))
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    _, c, h, w = x.shape
    if h < 11 or w < 11:
        raise ValueError("SSIM needs images of at least 11x11 pixels")
    win = _gaussian_window().expand(c, 1, 11, 11).contiguous()

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, win, groups=c)

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    vals = (num / den).mean(dim=(1, 2, 3)).numpy()
    return vals if reduction == "none" else float(np.mean(vals))
