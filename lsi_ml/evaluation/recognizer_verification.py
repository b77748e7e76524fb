"""The paper's identity metric with the SynthFace recognizer
(:mod:`lsi_ml.evaluation.recognizer`): is each decoded image the same person as its original?

:func:`verification_decoded_vs_original` is the paper's protocol (decoded image vs its own
original, against impostor pairs); :func:`recognizer_pairs_accuracy` scores labelled pairs.
Both decide with a threshold fixed beforehand on validation pairs (by default the one saved
with the recognizer), never on the faces they score.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from lsi_hw.errors import ConfigError
from lsi_ml.evaluation.bootstrap import bootstrap_distribution
from lsi_ml.evaluation.recognizer import Recognizer, cosine_similarity, pair_labels

__all__ = [
    "DecodedVerification",
    "impostor_index",
    "recognizer_pairs_accuracy",
    "verification_decoded_vs_original",
]


def _pair_embeddings(recognizer: Recognizer, images_a: Tensor, images_b: Tensor
                     ) -> tuple[Tensor, Tensor]:
    if images_a.shape[0] != images_b.shape[0]:
        raise ConfigError(f"pairs need as many first as second images "
                          f"({images_a.shape[0]} vs {images_b.shape[0]})")
    return recognizer.embed(images_a), recognizer.embed(images_b)


def _threshold_of(recognizer: Recognizer, threshold: float | None) -> float:
    t = recognizer.threshold if threshold is None else float(threshold)
    if not math.isfinite(t):
        raise ConfigError("no verification threshold: the recognizer has none fitted (train "
                          "it with train_recognizer / `lsi-ml recognizer`) and none was given")
    return t


def recognizer_pairs_accuracy(recognizer: Recognizer, images_a: Tensor, images_b: Tensor,
                              same: Any, threshold: float | None = None) -> float:
    """Verification accuracy on labelled pairs (e.g. same identity across nuisance redraws
    vs different identities) with a FIXED threshold.

    Parameters
    ----------
    recognizer : Recognizer
    images_a, images_b : Tensor
        ``(n, 3, H, W)`` images in [0, 1], the two faces of each pair.
    same : array_like of bool
        ``(n,)``: the pair shows one identity.
    threshold : float or None
        Cosine-similarity threshold fixed beforehand on validation pairs (default:
        ``recognizer.threshold``, fitted after training on held-out pairs).

    Returns
    -------
    float
        Fraction in [0, 1] of pairs decided right ("same" iff similarity > threshold).
    """
    t = _threshold_of(recognizer, threshold)
    emb_a, emb_b = _pair_embeddings(recognizer, images_a, images_b)
    sim = cosine_similarity(emb_a, emb_b).cpu().numpy()
    y = pair_labels(same, sim.size)
    return float(np.mean((sim > t) == y))


@dataclass(frozen=True)
class DecodedVerification:
    """Outcome of :func:`verification_decoded_vs_original` (fractions in [0, 1]).

    Attributes
    ----------
    accuracy : float
        Mean of the correct decisions over the ``n`` genuine and ``n`` impostor pairs
        (= (genuine_accept_rate + impostor_reject_rate) / 2: one impostor pair per genuine).
    genuine_accept_rate : float
        Fraction of decoded images judged the same person as their own original. The
        paper's "verif. %" numbers (3.3 % for FSI-DL, below chance for a balanced
        accuracy) are this rate.
    impostor_reject_rate : float
        Fraction of impostor pairs (original_i, decoded_j of another identity) rejected.
    accuracy_ci95, genuine_accept_rate_ci95 : tuple of float
        Bootstrap 95 % intervals (1000 resamples of the faces, seeded).
    threshold : float
        Cosine-similarity threshold used (fixed beforehand on validation pairs).
    impostors : str
        ``"derangement"`` or ``"hardest"``.
    n_pairs : int
        Number of genuine pairs (= impostor pairs).
    genuine_similarity, impostor_similarity : float
        Mean cosine similarity of the genuine and of the impostor pairs.
    """

    accuracy: float
    genuine_accept_rate: float
    impostor_reject_rate: float
    accuracy_ci95: tuple[float, float]
    genuine_accept_rate_ci95: tuple[float, float]
    threshold: float
    impostors: str
    n_pairs: int
    genuine_similarity: float
    impostor_similarity: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        out = asdict(self)
        out["accuracy_ci95"] = list(self.accuracy_ci95)
        out["genuine_accept_rate_ci95"] = list(self.genuine_accept_rate_ci95)
        return out


def impostor_index(emb_orig: Tensor, mode: str, labels: np.ndarray | None,
                   seed: int) -> np.ndarray:
    """For each face ``i`` the index ``j != i`` (another identity) of its impostor, as
    :func:`verification_decoded_vs_original` chooses it: ``mode`` ``"hardest"`` (the most
    similar other embedding of ``emb_orig``) or ``"derangement"`` (a fixed derangement, one
    cycle through a permutation seeded by ``seed``); ``labels`` ``(n,)`` identity labels or
    None (every face its own identity)."""
    n = emb_orig.shape[0]
    other = np.ones((n, n), dtype=bool)
    np.fill_diagonal(other, False)
    if labels is not None:
        other &= labels[:, None] != labels[None, :]
    if not other.any(axis=1).all():
        bad = int(np.flatnonzero(~other.any(axis=1))[0])
        raise ConfigError(f"face {bad} has no face of another identity to be paired with as "
                          "an impostor")
    if mode == "hardest":
        sim = (emb_orig @ emb_orig.t()).cpu().numpy().astype(np.float64)
        sim[~other] = -np.inf
        return sim.argmax(axis=1)
    # a fixed derangement: one cycle through a seeded permutation (i -> the next face of
    # the cycle with another identity)
    order = np.random.default_rng(seed).permutation(n)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    j = np.empty(n, dtype=np.int64)
    for i in range(n):
        for step in range(1, n):
            cand = order[(pos[i] + step) % n]
            if other[i, cand]:
                j[i] = cand
                break
    return j


def _bootstrap_ci95(values: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[float, float]:
    """Percentile 95 % interval of the mean of ``values`` ``(n,)`` or of the row means of
    ``(n, k)`` over resamples of the rows (the resamples of
    :func:`lsi_ml.evaluation.bootstrap.bootstrap_distribution`, seeded by ``seed``).

    Not :func:`~lsi_ml.evaluation.bootstrap.bootstrap_ci`: its ``level=0.95`` quantiles are
    ``(1 - 0.95) / 2`` (= 0.025000000000000022 in floating point), these ``2.5`` and ``97.5``
    percentiles, which can differ in the last digit.
    """
    n = values.shape[0]
    means = bootstrap_distribution(values.reshape(n, -1).mean(axis=1), n_boot=n_boot,
                                   seed=seed)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def verification_decoded_vs_original(
    recognizer: Recognizer,
    originals: Tensor,
    decoded: Tensor,
    threshold: float | None = None,
    impostors: Literal["derangement", "hardest"] = "derangement",
    labels: Any = None,
    seed: int = 0,
) -> DecodedVerification:
    """The paper's identity metric: is each decoded image the same person as its original?

    Protocol: genuine pair ``i`` = (original_i, decoded_i); impostor pair ``i`` =
    (original_i, decoded_j) with ``j != i`` a face of another identity: ``"derangement"``,
    a fixed derangement (one cycle through a permutation seeded by ``seed``), or
    ``"hardest"``, the face whose ORIGINAL is most similar to original_i for the recognizer
    (the nearest other identity). A pair is judged "same person" iff the cosine similarity
    of the embeddings > ``threshold``, a threshold fixed BEFOREHAND on held-out validation
    pairs of real renders (default ``recognizer.threshold``), never on these faces.

    ``accuracy`` = mean of the correct decisions over the ``n`` genuine and the ``n``
    impostor pairs = (genuine-accept rate + impostor-reject rate) / 2. The genuine-accept
    rate alone (fraction of decoded images verified as their original) is what the paper's
    "verif. %" columns report.

    Parameters
    ----------
    recognizer : Recognizer
    originals, decoded : Tensor
        ``(n, 3, H, W)`` images in [0, 1], ``n >= 2``; ``decoded[i]`` is the decoding of
        ``originals[i]`` (e.g. ``generator.synthesize(decoded_latent)``).
    threshold : float or None
        Cosine-similarity threshold (default ``recognizer.threshold``).
    impostors : {"derangement", "hardest"}
        How the impostor of each face is chosen.
    labels : array_like or None
        ``(n,)`` identity labels when several originals share an identity (such faces are
        never impostors of each other); None: every original is its own identity.
    seed : int
        Seed of the derangement and of the bootstrap.

    Returns
    -------
    DecodedVerification
    """
    if impostors not in ("derangement", "hardest"):
        raise ConfigError(f"impostors={impostors!r} must be 'derangement' or 'hardest'")
    if originals.shape != decoded.shape:
        raise ConfigError(f"originals {tuple(originals.shape)} and decoded "
                          f"{tuple(decoded.shape)} must have one shape")
    n = originals.shape[0]
    if n < 2:
        raise ConfigError(f"need at least 2 faces for impostor pairs, got {n}")
    lab = None
    if labels is not None:
        lab = torch.as_tensor(labels).detach().cpu().numpy().reshape(-1)
        if lab.size != n:
            raise ConfigError(f"labels has {lab.size} entries for {n} faces")
    t = _threshold_of(recognizer, threshold)
    emb_o, emb_d = _pair_embeddings(recognizer, originals, decoded)
    emb_o, emb_d = emb_o.cpu(), emb_d.cpu()
    j = impostor_index(emb_o, impostors, lab, seed)
    s_gen = cosine_similarity(emb_o, emb_d).numpy()
    s_imp = cosine_similarity(emb_o, emb_d[torch.as_tensor(j)]).numpy()
    accept = s_gen > t
    reject = s_imp <= t
    both = np.stack([accept, reject], axis=1).astype(np.float64)
    return DecodedVerification(
        accuracy=float(both.mean()),
        genuine_accept_rate=float(accept.mean()),
        impostor_reject_rate=float(reject.mean()),
        accuracy_ci95=_bootstrap_ci95(both, seed),
        genuine_accept_rate_ci95=_bootstrap_ci95(accept.astype(np.float64), seed),
        threshold=t,
        impostors=impostors,
        n_pairs=n,
        genuine_similarity=float(s_gen.mean()),
        impostor_similarity=float(s_imp.mean()),
    )
