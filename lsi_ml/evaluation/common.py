"""What the latent and the image routes of an evaluation share: the seeded test faces and
verification pairs, input checks, bootstrap settings, and the scores and intervals that do
not depend on how a face was decoded (verification, probes, image quality, recognizer)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from lsi_hw.errors import ConfigError
from lsi_ml.data.synthetic import SyntheticFaces, split_seed
from lsi_ml.evaluation import metrics
from lsi_ml.evaluation.bootstrap import bootstrap_ci
from lsi_ml.generators.base import FaceGenerator

if TYPE_CHECKING:
    from lsi_ml.evaluation.recognizer import Recognizer
    from lsi_ml.evaluation.result import EvalResult
    from lsi_ml.latent.probe_training import ProbeSet


PAIR_BLOCK = 1_000_003
"""Block index of ``split_seed`` used for the verification-pair streams (far beyond any
data block, so pair latents never come from the test set's stream)."""


def check_decoded(decoded: Any, latent: Tensor) -> Tensor:
    """ConfigError unless ``decoded`` is a finite tensor shaped like ``latent``."""
    if not isinstance(decoded, Tensor):
        raise ConfigError(f"decode must return a torch.Tensor, got {type(decoded).__name__}")
    if tuple(decoded.shape) != tuple(latent.shape):
        raise ConfigError(f"decode returned shape {tuple(decoded.shape)}; expected "
                          f"{tuple(latent.shape)} (B, L, D)")
    if not torch.isfinite(decoded).all():
        raise ConfigError("decode returned non-finite values")
    return decoded.detach().to(latent.device, torch.float32)


def nan_dict(names: Any, values: np.ndarray) -> dict[str, float]:
    return {str(n): float(v) for n, v in zip(names, values, strict=True)}


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap settings of one evaluation (``n_boot = 0``: no intervals)."""

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95

    def ci(self, values: Any = None, *, weighted: Any = None,
           n: int | None = None) -> tuple[float, float] | None:
        """:func:`lsi_ml.evaluation.bootstrap.bootstrap_ci` of per-item ``values`` (or a
        ``weighted`` statistic over ``n`` items); None when off or undefined (no items,
        NaN)."""
        if self.n_boot < 1:
            return None
        if values is not None and np.asarray(values).size == 0:
            return None
        low, high = bootstrap_ci(values, weighted=weighted, n=n, n_boot=self.n_boot, seed=self.seed,
                                 level=self.level)
        if math.isnan(low) or math.isnan(high):
            return None
        return (low, high)


def put_ci(ci: dict[str, tuple[float, float]], name: str,
         bounds: tuple[float, float] | None) -> None:
    if bounds is not None:
        ci[name] = bounds


def probe_and_image_ci(ver_ci: dict[str, tuple[float, float]], logits: Tensor,
                        true_attr: Tensor, pred_seg: Tensor, true_seg: Tensor, n_classes: int,
                        nme_per: np.ndarray, psnr: np.ndarray, ssim: np.ndarray, boot: Any
                        ) -> dict[str, tuple[float, float]]:
    """Intervals of the verification, probe (attributes, segmentation, landmarks) and image
    (PSNR, SSIM) scores, shared by the latent and the image routes."""
    ci = dict(ver_ci)
    put_ci(ci, "attribute_accuracy",
         boot.ci(metrics.attribute_accuracy_per_image(logits, true_attr)))
    put_ci(ci, "segmentation_f1", seg_f1_ci(pred_seg, true_seg, n_classes, boot))
    put_ci(ci, "landmark_nme", boot.ci(nme_per))
    put_ci(ci, "psnr", boot.ci(psnr))
    put_ci(ci, "ssim", boot.ci(ssim))
    return ci


def recognizer_scores(result: EvalResult, recognizer: Recognizer, originals: Tensor,
                       decoded: Tensor, seed: int) -> None:
    """Fill the ``recognizer_*`` fields (and intervals) of ``result``."""
    from lsi_ml.evaluation.recognizer_verification import verification_decoded_vs_original

    if originals.shape[0] < 2:
        result.recognizer_note = "needs at least 2 test faces"
        return
    with torch.no_grad():
        plain = verification_decoded_vs_original(recognizer, originals, decoded, seed=seed)
        hard = verification_decoded_vs_original(recognizer, originals, decoded,
                                                impostors="hardest", seed=seed)
    result.recognizer_accuracy = plain.accuracy
    result.recognizer_genuine_accept = plain.genuine_accept_rate
    result.recognizer_hard_accuracy = hard.accuracy
    result.recognizer_note = ""
    put_ci(result.ci, "recognizer_accuracy", plain.accuracy_ci95)
    put_ci(result.ci, "recognizer_genuine_accept", plain.genuine_accept_rate_ci95)
    put_ci(result.ci, "recognizer_hard_accuracy", hard.accuracy_ci95)


def seg_f1_ci(pred: Tensor, target: Tensor, n_classes: int,
               boot: Bootstrap) -> tuple[float, float] | None:
    """Interval of the set-accumulated macro F1: per-face confusion matrices, summed over
    each resample of the faces."""
    if boot.n_boot < 1:
        return None
    conf = metrics.segmentation_confusion(pred, target, n_classes)
    flat = conf.reshape(conf.shape[0], -1).astype(np.float64)

    def stat(counts: np.ndarray) -> np.ndarray:
        summed = (counts @ flat).reshape(-1, n_classes, n_classes)
        return metrics.f1_from_confusion(summed)[0]

    return boot.ci(weighted=stat, n=int(conf.shape[0]))


def verification_with_ci(scores_val: np.ndarray, same_val: Tensor, scores_test: np.ndarray,
                  same_test: Tensor, hard_test: Tensor, boot: Bootstrap | None = None
                  ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Verification scores (threshold chosen on the val pairs) and their intervals, which
    resample the TEST pairs with that threshold fixed (accuracy: all test pairs; hard
    accuracy, TPR, TNR: the hard / same / different test pairs)."""
    res = metrics.verification_accuracy(scores_val, same_val.numpy(), scores_test,
                                        same_test.numpy())
    hard = hard_test.numpy().astype(bool)
    same = same_test.numpy() > 0.5
    pred_same = res.predict(scores_test)
    hard_acc = float(np.mean(~pred_same[hard])) if hard.any() else float("nan")
    ver = {
        "verification_accuracy": res.accuracy,
        "verification_hard_accuracy": hard_acc,
        "verification_tpr": res.tpr,
        "verification_tnr": res.tnr,
        "verification_threshold": res.threshold,
        "verification_val_accuracy": res.val_accuracy,
    }
    ci: dict[str, tuple[float, float]] = {}
    if boot is not None:
        correct = (pred_same == same).astype(np.float64)
        put_ci(ci, "verification_accuracy", boot.ci(correct))
        put_ci(ci, "verification_hard_accuracy", boot.ci((~pred_same[hard]).astype(np.float64)))
        put_ci(ci, "verification_tpr", boot.ci(pred_same[same].astype(np.float64)))
        put_ci(ci, "verification_tnr", boot.ci((~pred_same[~same]).astype(np.float64)))
    return ver, ci


def check_sizes(n_test: int, n_pairs: int, batch: int, seed: int) -> None:
    """ConfigError unless the evaluation sizes and seed are valid (shared with
    :func:`lsi_ml.evaluation.images.evaluate_images`)."""
    if int(n_test) < 2:
        raise ConfigError(f"n_test={n_test} must be >= 2 (the Frechet distance needs two)")
    if int(n_pairs) < 4:
        raise ConfigError(f"n_pairs={n_pairs} must be >= 4")
    if int(batch) < 1:
        raise ConfigError(f"batch={batch} must be >= 1")
    if int(seed) < 0:
        raise ConfigError(f"seed={seed} must be >= 0")


def check_boot(n_boot: int, ci_level: float, seed: int) -> Bootstrap:
    """ConfigError unless the bootstrap settings are valid; the :class:`Bootstrap` of them."""
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or int(n_boot) < 0:
        raise ConfigError(f"n_boot={n_boot} must be an integer >= 0 (0: no intervals; "
                          "1000 is the default)")
    if not 0.0 < float(ci_level) < 1.0:
        raise ConfigError(f"ci_level={ci_level} must lie in (0, 1), e.g. 0.95")
    return Bootstrap(int(n_boot), int(seed), float(ci_level))


def check_probe_signature(probes: ProbeSet | None, generator: FaceGenerator) -> None:
    """ConfigError if ``probes`` carry a generator signature other than ``generator``'s."""
    signature = getattr(probes, "signature", None)
    if signature is not None:
        from lsi_ml.latent.probe_training import probe_generator_signature

        if probe_generator_signature(generator) != signature:
            raise ConfigError("the probes were trained for another generator configuration")


def eval_faces_and_pairs(generator: FaceGenerator, n_test: int, n_pairs: int, seed: int
                        ) -> tuple[SyntheticFaces, dict[str, tuple[Tensor, ...]]]:
    """The seeded test faces and the val / test verification pairs of an evaluation.

    Returns ``SyntheticFaces(generator, n_test, seed=seed, split="test")`` (uncached) and
    ``{"val": pairs, "test": pairs}`` with ``pairs = (latent_a, latent_b, same, hard)`` of
    ``generator.verification_pairs(n_pairs, return_hard=True)`` drawn from their own seeded
    streams. Every evaluation route (latent and image) reads these, so the same seed gives
    the same faces.
    """
    data = SyntheticFaces(generator, int(n_test), seed=int(seed), split="test", cache=False)
    pair_sets = {}
    for split in ("val", "test"):
        gen = torch.Generator().manual_seed(split_seed(int(seed), split, PAIR_BLOCK))
        pair_sets[split] = generator.verification_pairs(int(n_pairs), gen, return_hard=True)
    return data, pair_sets
