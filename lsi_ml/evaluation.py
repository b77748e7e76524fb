"""Table-1-style evaluation of a latent decoder through a generator and its probes.

:func:`evaluate_decoder` renders a fixed, seeded test set (the ``test`` split of
:class:`~lsi_ml.data.synthetic.SyntheticFaces`, a stream disjoint from the probes' and the
decoders' ``train`` data), asks a decoder for latents and scores them:

* semantics read off the decoded latents by a :class:`~lsi_ml.probe_training.ProbeSet`
  against the scenes' ground truth: attribute accuracy, mean segmentation F1, landmark NME
  (x100 of the bounding-box diagonal);
* latent L1 / L2 against the true latents;
* image quality of ``generator.synthesize(decoded)`` against the scene: PSNR (dB), SSIM, and
  a Frechet distance in a NAMED feature space (default: the substitute
  :class:`~lsi_ml.metrics.RandomConvFeatures`, reported as ``FD (substitute: ...)``, never
  as FID);
* face verification on seeded pairs of ``generator.verification_pairs``: both faces of a
  pair are rendered and decoded, the score is the Euclidean distance between the
  ``generator.identity`` of the two decoded latents, the threshold is chosen on validation
  pairs and applied to test pairs; the accuracy on the hard-negative test pairs (nearest
  other identity of a pool) is reported too.

With ``with_ceiling=True`` the same metrics are computed for the oracle (true latents), so
probe error can be told apart from decoder error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError
from lsi_ml import metrics
from lsi_ml.data.synthetic import SyntheticFaces, split_seed

__all__ = ["Decoder", "EvalResult", "evaluate_decoder", "oracle_decoder"]

Decoder = Callable[[dict[str, Tensor]], Tensor]
"""``decode(batch) -> latent (B, L, D)``; ``batch`` has ``image`` (B, 3, H, W) in [0, 1]
and the true ``latent`` (only an oracle may use it)."""

_PAIR_BLOCK = 1_000_003
"""Block index of ``split_seed`` used for the verification-pair streams (far beyond any
data block, so pair latents never come from the test set's stream)."""


def oracle_decoder(batch: dict[str, Tensor]) -> Tensor:
    """The perfect decoder: returns the true latent (the probe-ceiling reference)."""
    return batch["latent"]


@dataclass
class EvalResult:
    """Scores of one decoder (fractions in [0, 1] unless stated).

    Attributes
    ----------
    n_test, n_pairs : int
        Test faces; verification pairs per split (val and test).
    attribute_accuracy : float
        Mean over attributes of the probe's accuracy on decoded latents.
    attribute_accuracy_per_attribute : dict of str to float
        Per attribute.
    segmentation_f1 : float
        Macro F1 (classes present in prediction or ground truth) of the probe's map of the
        decoded latent against the scene's ground-truth map.
    segmentation_f1_per_class : dict of str to float
        Per class (NaN: absent from both).
    landmark_nme : float
        Landmark NME, x100 of the ground-truth bounding-box diagonal.
    latent_l1, latent_mse, latent_l2 : float
        Mean absolute / squared error per latent element; mean Euclidean norm of the
        per-face latent difference.
    psnr : float
        Mean PSNR (dB) of ``synthesize(decoded)`` vs the scene image; ``inf`` if identical.
    ssim : float
        Mean SSIM of the same images.
    fd : float
        Frechet distance between the two image sets in the feature space ``fd_space``.
    fd_space : str
        Name of that feature space (e.g. ``random-conv-256``).
    fd_is_inception : bool
        Only then is ``fd`` an FID.
    verification_accuracy : float
        Test-pair accuracy with the threshold chosen on the val pairs.
    verification_hard_accuracy : float
        Fraction of the hard-negative test pairs rejected (called "different").
    verification_tpr, verification_tnr : float
        Test-pair true-positive / true-negative rates.
    verification_threshold : float
        Identity-distance threshold (latent units) chosen on the val pairs.
    verification_val_accuracy : float
        Accuracy of that threshold on the val pairs.
    seconds : float
        Wall-clock time of the evaluation (s).
    ceiling : EvalResult or None
        The same metrics for the true latents (oracle decoder), if requested.
    """

    n_test: int
    n_pairs: int
    attribute_accuracy: float
    attribute_accuracy_per_attribute: dict[str, float]
    segmentation_f1: float
    segmentation_f1_per_class: dict[str, float]
    landmark_nme: float
    latent_l1: float
    latent_mse: float
    latent_l2: float
    psnr: float
    ssim: float
    fd: float
    fd_space: str
    fd_is_inception: bool
    verification_accuracy: float
    verification_hard_accuracy: float
    verification_tpr: float
    verification_tnr: float
    verification_threshold: float
    verification_val_accuracy: float
    seconds: float = float("nan")
    ceiling: EvalResult | None = field(default=None, repr=False)

    @property
    def fd_result(self) -> metrics.FrechetResult:
        """The Frechet distance with its feature space (``str`` prints the right label)."""
        return metrics.FrechetResult(self.fd, self.fd_space, self.fd_is_inception,
                                     self.n_test, self.n_test)

    @property
    def fd_label(self) -> str:
        """``"FID"`` only for Inception features, else ``"FD (substitute: <space>)"``."""
        return self.fd_result.label

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict (``ceiling`` as a dict or None); adds ``fd_label``."""
        data = asdict(self)
        data["fd_label"] = self.fd_label
        if self.ceiling is not None:
            data["ceiling"] = self.ceiling.as_dict()
        return data

    def table1_row(self, ratio_label: str) -> str:
        """One Markdown row for :func:`lsi_ml.metrics.table1_header` (``fd_space`` given)."""
        return metrics.table1_row(
            ratio_label, self.verification_accuracy, self.fd_result, self.fd_space,
            self.attribute_accuracy, self.segmentation_f1, self.landmark_nme,
        )

    def summary(self) -> str:
        """Multi-line human-readable report (with the probe ceiling, if computed)."""
        rows: list[tuple[str, str, Callable[[EvalResult], float]]] = [
            ("verification accuracy", "%", lambda r: 100 * r.verification_accuracy),
            ("  hard negatives rejected", "%", lambda r: 100 * r.verification_hard_accuracy),
            ("attribute accuracy", "%", lambda r: 100 * r.attribute_accuracy),
            ("segmentation F1 (macro)", "%", lambda r: 100 * r.segmentation_f1),
            ("landmark NME (x100 bbox diag)", "", lambda r: r.landmark_nme),
            ("latent L1 (per element)", "", lambda r: r.latent_l1),
            ("latent L2 (per face)", "", lambda r: r.latent_l2),
            ("PSNR", "dB", lambda r: r.psnr),
            ("SSIM", "", lambda r: r.ssim),
            (self.fd_label, "", lambda r: r.fd),
        ]
        head = f"evaluation: {self.n_test} test faces, {self.n_pairs} val + {self.n_pairs} " \
               f"test verification pairs, {self.seconds:.1f} s"
        lines = [head]
        width = max(len(name) for name, _, _ in rows) + 2
        if self.ceiling is not None:
            lines.append(f"{'':{width}}{'decoder':>12}{'ceiling':>12}")
        for name, unit, get in rows:
            cell = f"{get(self):12.3f}"
            if self.ceiling is not None:
                cell += f"{get(self.ceiling):12.3f}"
            lines.append(f"{name:{width}}{cell} {unit}".rstrip())
        if self.ceiling is not None:
            lines.append("ceiling = the same probes and metrics on the true latents (oracle)")
        if not self.fd_is_inception:
            lines.append(f"note: {self.fd_label} is a substitute feature space, not FID")
        return "\n".join(lines)


def _check_decoded(decoded: Any, latent: Tensor) -> Tensor:
    """ConfigError unless ``decoded`` is a finite tensor shaped like ``latent``."""
    if not isinstance(decoded, Tensor):
        raise ConfigError(f"decode must return a torch.Tensor, got {type(decoded).__name__}")
    if tuple(decoded.shape) != tuple(latent.shape):
        raise ConfigError(f"decode returned shape {tuple(decoded.shape)}; expected "
                          f"{tuple(latent.shape)} (B, L, D)")
    if not torch.isfinite(decoded).all():
        raise ConfigError("decode returned non-finite values")
    return decoded.detach().to(latent.device, torch.float32)


def _nan_dict(names: Any, values: np.ndarray) -> dict[str, float]:
    return {str(n): float(v) for n, v in zip(names, values, strict=True)}


class _Accumulator:
    """Collects per-chunk predictions of one decoder (or of the oracle)."""

    def __init__(self) -> None:
        self.latent: list[Tensor] = []
        self.attr_logits: list[Tensor] = []
        self.seg: list[Tensor] = []
        self.landmarks: list[Tensor] = []
        self.psnr: list[np.ndarray] = []
        self.ssim: list[np.ndarray] = []
        self.fd_feats: list[np.ndarray] = []

    def add(self, generator: Any, probes: Any, latent: Tensor, scene: Tensor,
            fd_features: Any, image: Tensor | None = None) -> None:
        """Score one chunk; ``image`` = ``synthesize(latent)`` if already known."""
        if image is None:
            image = generator.synthesize(latent)
        pred = probes.predict(latent)
        self.latent.append(latent.cpu())
        self.attr_logits.append(pred["attribute_logits"].cpu())
        self.seg.append(pred["segmentation"].to(torch.uint8).cpu())
        self.landmarks.append(pred["landmarks"].cpu())
        self.psnr.append(np.asarray(metrics.psnr(image, scene, reduction="none")))
        self.ssim.append(np.asarray(metrics.ssim(image, scene, reduction="none")))
        self.fd_feats.append(np.asarray(fd_features(image.cpu().numpy())))


def _verification_scores(decode: Decoder, generator: Any, pairs: tuple[Tensor, ...],
                         batch: int, bar: Any) -> np.ndarray:
    """Euclidean identity distances of decoded pairs (both faces rendered and decoded)."""
    latent_a, latent_b = pairs[0], pairs[1]
    dists = []
    for lo in range(0, latent_a.shape[0], batch):
        ids = []
        for lat in (latent_a[lo:lo + batch], latent_b[lo:lo + batch]):
            image = generator.synthesize(lat)
            decoded = _check_decoded(decode({"image": image, "latent": lat}), lat)
            ids.append(generator.identity(decoded))
        dists.append(torch.linalg.vector_norm(ids[0] - ids[1], dim=1).cpu().numpy())
        bar.update(2 * min(batch, latent_a.shape[0] - lo))
    return np.concatenate(dists).astype(np.float64)


def _finish(acc: _Accumulator, truth: dict[str, list[Tensor]], generator: Any, probes: Any,
            fd_features: Any, scene_feats: np.ndarray, ver: dict[str, float],
            n_pairs: int) -> EvalResult:
    latent = torch.cat(acc.latent)
    true_latent = torch.cat(truth["latent"])
    attr_mean, attr_per = metrics.attribute_accuracy(torch.cat(acc.attr_logits),
                                                     torch.cat(truth["attributes"]))
    n_classes = len(probes.class_names)
    seg_mean, seg_per = metrics.segmentation_f1(torch.cat(acc.seg).long(),
                                                torch.cat(truth["segmentation"]), n_classes)
    nme = metrics.landmark_nme(torch.cat(acc.landmarks), torch.cat(truth["landmarks"]))
    lat = metrics.latent_errors(latent, true_latent)
    feats = np.concatenate(acc.fd_feats)
    fd = metrics.frechet_distance(feats, scene_feats)
    return EvalResult(
        n_test=int(latent.shape[0]),
        n_pairs=int(n_pairs),
        attribute_accuracy=attr_mean,
        attribute_accuracy_per_attribute=_nan_dict(probes.attribute_names, attr_per),
        segmentation_f1=seg_mean,
        segmentation_f1_per_class=_nan_dict(probes.class_names, seg_per),
        landmark_nme=nme,
        latent_l1=lat["l1"],
        latent_mse=lat["mse"],
        latent_l2=lat["l2"],
        psnr=float(np.mean(np.concatenate(acc.psnr))),
        ssim=float(np.mean(np.concatenate(acc.ssim))),
        fd=fd,
        fd_space=str(fd_features.name),
        fd_is_inception=bool(getattr(fd_features, "is_inception", False)),
        **ver,
    )


def _verification(scores_val: np.ndarray, same_val: Tensor, scores_test: np.ndarray,
                  same_test: Tensor, hard_test: Tensor) -> dict[str, float]:
    res = metrics.verification_accuracy(scores_val, same_val.numpy(), scores_test,
                                        same_test.numpy())
    hard = hard_test.numpy()
    pred_same = res.predict(scores_test)
    hard_acc = float(np.mean(~pred_same[hard])) if hard.any() else float("nan")
    return {
        "verification_accuracy": res.accuracy,
        "verification_hard_accuracy": hard_acc,
        "verification_tpr": res.tpr,
        "verification_tnr": res.tnr,
        "verification_threshold": res.threshold,
        "verification_val_accuracy": res.val_accuracy,
    }


@torch.no_grad()
def evaluate_decoder(
    decode: Decoder,
    generator: Any,
    probes: Any,
    *,
    n_test: int = 512,
    n_pairs: int = 512,
    seed: int = 0,
    batch: int = 64,
    fd_features: Any = None,
    with_ceiling: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Score a latent decoder on a fixed seeded test set (see the module docstring).

    Parameters
    ----------
    decode : callable
        ``decode(batch) -> latent`` with ``batch = {"image": (B, 3, H, W) in [0, 1],
        "latent": (B, L, D) true latents, ...}`` (plus ``attributes``, ``segmentation``,
        ``landmarks``, ``identity`` for test faces); must return a finite ``(B, L, D)``
        tensor. A real decoder must use only the image; the true latent is there for
        oracles and noise models.
    generator
        The ground-truth generator the probes were trained for (e.g. ``SynthFace(64)``).
    probes : ProbeSet
        Trained probes of ``generator`` (:class:`~lsi_ml.probe_training.ProbeSet`).
    n_test : int
        Test faces (``test`` split of ``SyntheticFaces(generator, n_test, seed=seed)``).
    n_pairs : int
        Verification pairs in each of the val and test pair sets (>= 4: half same, a
        quarter random and a quarter hard negatives).
    seed : int
        Base seed of the test faces and of the two pair streams.
    batch : int
        Faces per render / decode call.
    fd_features : FeatureSpace or None
        Feature space of the Frechet distance; default
        :class:`~lsi_ml.metrics.RandomConvFeatures` (a labelled substitute, not FID).
    with_ceiling : bool
        Also compute every metric for the true latents (``result.ceiling``).
    progress : bool
        Show a tqdm progress bar (faces rendered).

    Returns
    -------
    EvalResult

    Raises
    ------
    ConfigError
        Bad sizes, probes for another generator, or a decoder returning a wrong shape or
        non-finite values.
    """
    t0 = time.perf_counter()
    if int(n_test) < 2:
        raise ConfigError(f"n_test={n_test} must be >= 2 (the Frechet distance needs two)")
    if int(n_pairs) < 4:
        raise ConfigError(f"n_pairs={n_pairs} must be >= 4")
    if int(batch) < 1:
        raise ConfigError(f"batch={batch} must be >= 1")
    if int(seed) < 0:
        raise ConfigError(f"seed={seed} must be >= 0")
    signature = getattr(probes, "signature", None)
    if signature is not None:
        from lsi_ml.probe_training import _generator_signature

        if _generator_signature(generator) != signature:
            raise ConfigError("the probes were trained for another generator configuration")
    fd_features = fd_features if fd_features is not None else metrics.RandomConvFeatures()
    n_test, n_pairs, batch = int(n_test), int(n_pairs), int(batch)

    data = SyntheticFaces(generator, n_test, seed=seed, split="test", cache=False)
    pair_sets = {}
    for split in ("val", "test"):
        gen = torch.Generator().manual_seed(split_seed(seed, split, _PAIR_BLOCK))
        pair_sets[split] = generator.verification_pairs(n_pairs, gen, return_hard=True)

    total = n_test + 4 * n_pairs
    dec, ceil = _Accumulator(), (_Accumulator() if with_ceiling else None)
    truth: dict[str, list[Tensor]] = {k: [] for k in ("latent", "attributes", "segmentation",
                                                      "landmarks")}
    scene_feats = []
    with tqdm(total=total, desc="evaluate", unit="face", disable=not progress,
              leave=False) as bar:
        for lo in range(0, n_test, batch):
            item = data.batch(range(lo, min(lo + batch, n_test)))
            latent = item["latent"]
            decoded = _check_decoded(decode(dict(item)), latent)
            scene = item["image"]
            for key in truth:
                truth[key].append(item[key])
            scene_feats.append(np.asarray(fd_features(scene.cpu().numpy())))
            dec.add(generator, probes, decoded, scene, fd_features)
            if ceil is not None:  # the oracle's image is the scene (same render chunk)
                ceil.add(generator, probes, latent, scene, fd_features, image=scene)
            bar.update(latent.shape[0])
        scores = {s: _verification_scores(decode, generator, pair_sets[s], batch, bar)
                  for s in ("val", "test")}
    feats = np.concatenate(scene_feats)
    ver = _verification(scores["val"], pair_sets["val"][2], scores["test"],
                        pair_sets["test"][2], pair_sets["test"][3])
    result = _finish(dec, truth, generator, probes, fd_features, feats, ver, n_pairs)
    if ceil is not None:
        ceil_scores = {}
        for s in ("val", "test"):
            a, b = pair_sets[s][0], pair_sets[s][1]
            ceil_scores[s] = torch.linalg.vector_norm(
                generator.identity(a) - generator.identity(b), dim=1).numpy().astype(np.float64)
        ceil_ver = _verification(ceil_scores["val"], pair_sets["val"][2], ceil_scores["test"],
                                 pair_sets["test"][2], pair_sets["test"][3])
        result.ceiling = _finish(ceil, truth, generator, probes, fd_features, feats, ceil_ver,
                                 n_pairs)
        result.ceiling.seconds = float("nan")
    result.seconds = time.perf_counter() - t0
    return result
