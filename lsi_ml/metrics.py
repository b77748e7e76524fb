"""Evaluation metrics for latent-space imaging (the quantities of the paper's Table 1).

Every function accepts numpy arrays, torch tensors or nested sequences and converts them to
``numpy.float64`` (integer label maps are kept integral) before computing.

Conventions
-----------
* Accuracies and F1 scores are returned as **fractions** in ``[0, 1]``;
  :func:`table1_row` prints them as percentages, like the paper.
* Landmark NME is returned already multiplied by 100 (the paper's unit: error normalised by the
  diagonal of the target landmarks' bounding box, times 100).
* Confidence intervals (:func:`bootstrap_ci`) are percentile bootstrap intervals over the
  test ITEMS (faces, or pairs for verification): every score keeps its per-item values (or
  per-item sufficient statistics, e.g. a confusion matrix per face) so it can be resampled.
* Frechet distances carry the name of the feature space they were computed in. Only a
  user-provided Inception network (:class:`InceptionFeatures`) yields a number labelled "FID";
  the built-in :class:`RandomConvFeatures` is a *substitute* and is always reported as
  ``"FD (substitute: random-conv-256)"``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

__all__ = [
    "INCEPTION_NAME",
    "FeatureSpace",
    "FrechetResult",
    "InceptionFeatures",
    "RandomConvFeatures",
    "VerificationResult",
    "attribute_accuracy",
    "attribute_accuracy_per_image",
    "bootstrap_ci",
    "bootstrap_distribution",
    "f1_from_confusion",
    "format_ci",
    "frechet_distance",
    "frechet_distance_from_stats",
    "frechet_distance_images",
    "landmark_nme",
    "landmark_nme_per_image",
    "latent_errors",
    "pair_distances",
    "psnr",
    "segmentation_confusion",
    "segmentation_f1",
    "segmentation_f1_per_image",
    "ssim",
    "table1_header",
    "table1_row",
    "table1_row_ci",
    "verification_accuracy",
]

ArrayLike = Any  # numpy array, torch tensor or nested sequence

#: Feature-space name reserved for a real Inception-v3 (pool3, 2048-d) network.
INCEPTION_NAME = "inception-v3"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _to_numpy(x: ArrayLike, dtype: Any = np.float64) -> np.ndarray:
    """Convert a tensor / array / sequence to a numpy array of ``dtype``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _to_images(x: ArrayLike) -> np.ndarray:
    """Return images as a float64 ``(n, C, H, W)`` array; ``(C, H, W)``/``(H, W)`` promoted."""
    arr = _to_numpy(x)
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected images of shape (n, C, H, W), got {arr.shape}")
    return arr


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
        s = _to_numpy(scores).ravel()
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
    a = _to_numpy(emb_a)
    b = _to_numpy(emb_b)
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


def _choose_threshold(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
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
        (ties broken towards the middle of the maximising range; see ``_choose_threshold``).
    """
    sv = _to_numpy(dist_or_sim_val).ravel()
    yv = _to_numpy(same_val).ravel() > 0.5
    st = _to_numpy(dist_or_sim_test).ravel()
    yt = _to_numpy(same_test).ravel() > 0.5
    if sv.shape != yv.shape or st.shape != yt.shape:
        raise ValueError("scores and labels must have the same length")
    if sv.size == 0 or st.size == 0:
        raise ValueError("need at least one validation and one test pair")
    sign = -1.0 if higher_is_same else 1.0
    t, val_acc = _choose_threshold(sign * sv, yv)
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
    over images (:func:`bootstrap_ci`).

    Returns
    -------
    numpy.ndarray, shape (n,)
        Per-image accuracy in ``[0, 1]``.
    """
    return np.mean(_attribute_hits(logits_or_probs, targets, from_logits), axis=1)


def _attribute_hits(logits_or_probs: ArrayLike, targets: ArrayLike, from_logits: bool
                    ) -> np.ndarray:
    """``(n, A)`` bool: attribute predicted correctly (logit > 0 or probability > 0.5)."""
    x = _to_numpy(logits_or_probs)
    y = _to_numpy(targets)
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
    t = _to_numpy(target, dtype=np.int64)
    p_raw = _to_numpy(pred)
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
    t = _to_numpy(target, dtype=np.int64)
    p = _to_numpy(pred, dtype=np.int64)
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
    c = _to_numpy(conf)
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
    p = _to_numpy(pred)
    t = _to_numpy(target)
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
    p = _to_numpy(pred)
    t = _to_numpy(target)
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
    p = _to_numpy(pred)
    t = _to_numpy(target)
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
    x = _to_images(a)
    y = _to_images(b)
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
    x = torch.from_numpy(_to_images(a))
    y = torch.from_numpy(_to_images(b))
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


# --------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------
def frechet_distance_from_stats(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))``. As in the reference
    FID code: if ``sqrtm`` is not finite (singular product), ``eps * I`` is added to both
    covariances; a complex result whose imaginary diagonal exceeds ``1e-3`` raises, a smaller
    imaginary part is discarded.
    """
    m1 = np.atleast_1d(_to_numpy(mu1))
    m2 = np.atleast_1d(_to_numpy(mu2))
    s1 = np.atleast_2d(_to_numpy(sigma1))
    s2 = np.atleast_2d(_to_numpy(sigma2))
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
    a = _to_numpy(feats_a)
    b = _to_numpy(feats_b)
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
        x = torch.from_numpy(_to_images(images)).float()
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
        x = torch.from_numpy(_to_images(images)).float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                f = _to_numpy(self.model(x[i : i + self.batch_size]))
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
    fa = _to_numpy(feature_space(images_a))
    fb = _to_numpy(feature_space(images_b))
    return FrechetResult(
        value=frechet_distance(fa, fb),
        feature_space_name=str(feature_space.name),
        is_inception=bool(getattr(feature_space, "is_inception", False)),
        n_a=int(fa.shape[0]),
        n_b=int(fb.shape[0]),
    )


# --------------------------------------------------------------------------------------------
# bootstrap confidence intervals
# --------------------------------------------------------------------------------------------
_BOOT_BLOCK_ELEMENTS = 1 << 21
"""Resampled indices drawn per block (bounds the memory of a bootstrap to a few MB)."""


def _check_boot(n: int, n_boot: int, level: float) -> None:
    if int(n) < 0:
        raise ValueError(f"n={n} items must be >= 0")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level={level} must lie in (0, 1), e.g. 0.95")


def bootstrap_distribution(
    values: ArrayLike | None = None,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    weighted: Callable[[np.ndarray], ArrayLike] | None = None,
    n: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The ``n_boot`` bootstrap replicates of a statistic over ``n`` items (see
    :func:`bootstrap_ci`, which takes the same arguments). Resample ``b`` draws ``n`` item
    indices uniformly with replacement from ``numpy.random.default_rng(seed)``; the same
    ``seed`` and ``n`` give the same resamples whichever form of statistic is used."""
    forms = sum(x is not None for x in (values, statistic, weighted))
    if forms != 1:
        raise ValueError("give exactly one of values, statistic= or weighted=")
    vals: np.ndarray | None = None
    if values is not None:
        vals = _to_numpy(values)
        if vals.ndim != 1:
            raise ValueError(f"values must be one value per item (n,), got {vals.shape}")
        n = vals.shape[0] if n is None else n
        if n != vals.shape[0]:
            raise ValueError(f"n={n} but {vals.shape[0]} values")
    if n is None:
        raise ValueError("n (the number of items) is required with statistic= or weighted=")
    n = int(n)
    _check_boot(n, n_boot, 0.5)
    if n == 0:
        return np.full(int(n_boot), np.nan)
    rng = np.random.default_rng(int(seed))
    block = max(1, _BOOT_BLOCK_ELEMENTS // n)
    out = np.empty(int(n_boot))
    for lo in range(0, int(n_boot), block):
        b = min(block, int(n_boot) - lo)
        idx = rng.integers(0, n, size=(b, n))
        if vals is not None:
            with np.errstate(invalid="ignore"):
                out[lo:lo + b] = vals[idx].mean(axis=1)
        elif statistic is not None:
            out[lo:lo + b] = [float(statistic(row)) for row in idx]
        else:
            assert weighted is not None
            rows = (np.arange(b, dtype=np.int64)[:, None] * n + idx).ravel()
            counts = np.bincount(rows, minlength=b * n).reshape(b, n).astype(np.float64)
            res = _to_numpy(weighted(counts)).reshape(-1)
            if res.shape != (b,):
                raise ValueError(f"weighted statistic returned {res.shape}; expected ({b},)")
            out[lo:lo + b] = res
    return out


def bootstrap_ci(
    values: ArrayLike | None = None,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    weighted: Callable[[np.ndarray], ArrayLike] | None = None,
    n: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic over independent items.

    The items (test faces, or test pairs for verification) are resampled with replacement
    ``n_boot`` times; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the statistic over the resamples (linear interpolation; without it where
    a replicate is infinite, e.g. the PSNR of identical images). Seeded and deterministic.

    Give exactly one of:

    values : array_like, shape (n,)
        One value per item; the statistic is their mean (e.g. per-face accuracy, per-face
        NME, per-pair correctness). The fast, vectorised path.
    statistic : callable
        ``statistic(indices) -> float`` with ``indices`` the ``(n,)`` item indices of one
        resample (called ``n_boot`` times); needs ``n``.
    weighted : callable
        ``weighted(counts) -> (b,)`` with ``counts`` a ``(b, n)`` float array: how often
        each item occurs in each of ``b`` resamples (rows sum to ``n``). The vectorised
        form for statistics built from per-item sums, e.g. a set-accumulated F1 from
        per-face confusion matrices (``counts @ conf.reshape(n, -1)``); needs ``n``.

    Parameters
    ----------
    n : int, optional
        Number of items (taken from ``values`` if given).
    n_boot : int
        Resamples (>= 1; 1000 gives quantiles stable to a few % of the width).
    seed : int
        Seed of ``numpy.random.default_rng``.
    level : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    (low, high) : tuple of float
        ``(nan, nan)`` if there are no items or more than half of the replicates are NaN
        (NaN replicates are dropped otherwise).
    """
    _check_boot(0 if n is None else n, n_boot, level)
    reps = bootstrap_distribution(values, statistic=statistic, weighted=weighted, n=n,
                                  n_boot=n_boot, seed=seed)
    reps = reps[~np.isnan(reps)]
    if reps.size == 0 or 2 * reps.size < int(n_boot):
        return float("nan"), float("nan")
    alpha = (1.0 - float(level)) / 2.0
    method = "linear" if np.isfinite(reps).all() else "inverted_cdf"
    low, high = np.quantile(reps, [alpha, 1.0 - alpha], method=method)
    return float(low), float(high)


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


# --------------------------------------------------------------------------------------------
# Table 1 formatting
# --------------------------------------------------------------------------------------------
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
        Fractions in ``[0, 1]`` as returned by this module (printed as %, 2 decimals);
        ``None``/NaN prints ``n/a``. ``verification`` may be a :class:`VerificationResult`.
    fd : float, FrechetResult or None
        Frechet distance. A plain number is printed bare only if ``fd_space`` is
        :data:`INCEPTION_NAME` (a real FID); any other space is printed as
        ``"12.34 (FD, substitute: random-conv-256)"`` so it is never mistaken for FID.
    fd_space : str or None
        Feature-space name of ``fd`` (ignored when ``fd`` is a :class:`FrechetResult`).
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
