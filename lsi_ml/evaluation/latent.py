"""Table-1-style evaluation of a latent decoder through a generator and its probes.

:func:`evaluate_decoder` renders a fixed, seeded test set (the ``test`` split of
:class:`~lsi_ml.data.synthetic.SyntheticFaces`, a stream disjoint from the probes' and the
decoders' ``train`` data), asks a decoder for latents and scores them:

* semantics read off the decoded latents by a :class:`~lsi_ml.latent.probe_training.ProbeSet`
  against the scenes' ground truth: attribute accuracy, mean segmentation F1, landmark NME
  (x100 of the bounding-box diagonal);
* latent L1 / L2 against the true latents;
* image quality of ``generator.synthesize(decoded)`` against the scene: PSNR (dB), SSIM, and
  a Frechet distance in a NAMED feature space (default: the substitute
  :class:`~lsi_ml.evaluation.frechet.RandomConvFeatures`, reported as ``FD (substitute: ...)``,
  never as FID);
* face verification on seeded pairs of ``generator.verification_pairs``: both faces of a
  pair are rendered and decoded, the score is the Euclidean distance between the
  ``generator.identity`` of the two decoded latents, the threshold is chosen on validation
  pairs and applied to test pairs; the accuracy on the hard-negative test pairs (nearest
  other identity of a pool) is reported too.

* exact readout (``exact=True``, the default for a generator whose ``render`` returns ground
  truth, e.g. SynthFace; the PRIMARY score there): the decoded latent is rendered with
  ``generator.render`` and ITS exact landmarks, segmentation and attributes are compared with
  those of the scene (the render of the true latent): ``exact_attribute_accuracy`` (fraction
  of attributes equal, per face, then mean over faces), ``exact_seg_f1`` (per-face macro F1
  over the classes present in either map,
  :func:`lsi_ml.evaluation.metrics.segmentation_f1_per_image`,
  then mean) and ``exact_nme`` (per-face NME x100 of the original landmarks' box diagonal,
  then mean). No probe is involved: the oracle decoder scores exactly 100 % / 100 % / 0, and
  the probe scores above measure the probes' reading of the latent ("probes").

Every score carries a percentile bootstrap 95 % confidence interval
(``result.ci[name] = (low, high)``, ``n_boot`` resamples, seeded by ``seed``;
:func:`lsi_ml.evaluation.bootstrap.bootstrap_ci`):
the test FACES are resampled for the face scores (attribute accuracy from per-face accuracy,
segmentation F1 from per-face confusion matrices summed over the resample, NME, PSNR, SSIM,
latent errors and R^2, exact readout), the test PAIRS for verification (the threshold stays
the one chosen on the val pairs; hard-negative accuracy, TPR and TNR resample their own
subsets). The Frechet distance has no interval: it is a set statistic biased in the set
size, whose bootstrap would not be a confidence interval (and would cost a matrix square root
per resample). ``summary()``, ``table1_row()`` and
:meth:`~lsi_ml.evaluation.result.EvalResult.ci_row` print / export the intervals.

With ``with_ceiling=True`` the same metrics are computed for the oracle (true latents), so
probe error can be told apart from decoder error.

With ``dlib=True`` (optional ``faces`` extra) the paper's *Dlib* metrics are added, computed on
IMAGES rather than latents: for the first ``dlib_faces`` test faces the scene image (original)
and ``generator.synthesize(decoded)`` (reconstruction) are upsampled (bicubic) to at least
256 px, dlib's HOG detector looks for a face in each, and

* ``dlib_verification``: fraction of the faces found in the original whose reconstruction has
  a face with a 128-d descriptor within Euclidean distance 0.6 of the original's (a
  reconstruction in which dlib finds no face counts as a mismatch; originals without a
  detected face are left out);
* ``dlib_landmark_nme``: dlib's 68 landmarks on the reconstruction against dlib's 68 landmarks
  on the original (x100 of the original landmarks' box diagonal), over faces found in both.

These need a generator whose images dlib recognises as faces; on SynthFace dlib tells
different identities apart poorly, so they are no substitute for the probe metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError
from lsi_ml.evaluation import metrics
from lsi_ml.evaluation.arrays import to_numpy
from lsi_ml.evaluation.common import (
    Bootstrap,
    check_boot,
    check_decoded,
    check_probe_signature,
    check_sizes,
    eval_faces_and_pairs,
    nan_dict,
    probe_and_image_ci,
    put_ci,
    recognizer_scores,
    verification_with_ci,
)
from lsi_ml.evaluation.faces import dlib_reconstruction_scores_per_face, load_dlib_faces
from lsi_ml.evaluation.frechet import RandomConvFeatures, frechet_distance
from lsi_ml.evaluation.result import EvalResult
from lsi_ml.generators.base import FaceGenerator

if TYPE_CHECKING:
    from lsi_ml.evaluation.recognizer import Recognizer
    from lsi_ml.latent.probe_training import ProbeSet

__all__ = ["Decoder", "check_eval_memory", "evaluate_decoder", "oracle_decoder"]


Decoder = Callable[[dict[str, Tensor]], Tensor]
"""``decode(batch) -> latent (B, L, D)``; ``batch`` has ``image`` (B, 3, H, W) in [0, 1]
and the true ``latent`` (only an oracle may use it)."""


def oracle_decoder(batch: dict[str, Tensor]) -> Tensor:
    """The perfect decoder: returns the true latent (the probe-ceiling reference)."""
    return batch["latent"]


def _field_of(out: Any, name: str) -> Tensor:
    """``out.name`` of a RenderOutput, or ``out[name]`` of a batch dict."""
    return out[name] if isinstance(out, dict) else getattr(out, name)


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
        self.exact_attr: list[np.ndarray] = []  # (B, A) bool: attribute equal to the scene's
        self.exact_f1: list[np.ndarray] = []  # (B,) per-face macro F1
        self.exact_nme: list[np.ndarray] = []  # (B,) per-face NME

    def add(self, generator: FaceGenerator, probes: ProbeSet | None, latent: Tensor, scene: Tensor,
            fd_features: Any, image: Tensor | None = None) -> None:
        """Score one chunk; ``image`` = ``synthesize(latent)`` if already known."""
        if image is None:
            image = generator.synthesize(latent)
        from_image = getattr(generator, "features_from_image", None)
        feats = from_image(image) if from_image is not None else None  # no second render
        pred = probes.predict(latent, features=feats)
        self.latent.append(latent.cpu())
        self.attr_logits.append(pred["attribute_logits"].cpu())
        self.seg.append(pred["segmentation"].to(torch.uint8).cpu())
        self.landmarks.append(pred["landmarks"].cpu())
        self.psnr.append(np.asarray(metrics.psnr(image, scene, reduction="none")))
        self.ssim.append(np.asarray(metrics.ssim(image, scene, reduction="none")))
        self.fd_feats.append(np.asarray(fd_features(image.cpu().numpy())))

    def add_exact(self, rendered: Any, truth: dict[str, Tensor], n_classes: int) -> None:
        """Exact readout of one chunk: ``rendered`` = ``generator.render(decoded)`` (a
        RenderOutput, or for the oracle the scenes' own ground truth) vs ``truth`` (the
        scenes' ground truth: ``attributes``, ``segmentation``, ``landmarks``)."""
        pred_attr = to_numpy(_field_of(rendered, "attributes")) > 0.5
        true_attr = to_numpy(truth["attributes"]) > 0.5
        self.exact_attr.append(pred_attr.reshape(true_attr.shape) == true_attr)
        pred_seg = _field_of(rendered, "segmentation")
        true_seg = truth["segmentation"]
        classes = n_classes or int(max(int(pred_seg.max()), int(true_seg.max())) + 1)
        self.exact_f1.append(metrics.segmentation_f1_per_image(pred_seg, true_seg, classes))
        self.exact_nme.append(metrics.landmark_nme_per_image(
            _field_of(rendered, "landmarks"), truth["landmarks"]))


def _verification_scores(decode: Decoder, generator: FaceGenerator, pairs: tuple[Tensor, ...],
                         batch: int, bar: Any) -> np.ndarray:
    """Euclidean identity distances of decoded pairs (both faces rendered and decoded)."""
    latent_a, latent_b = pairs[0], pairs[1]
    dists = []
    for lo in range(0, latent_a.shape[0], batch):
        ids = []
        for lat in (latent_a[lo:lo + batch], latent_b[lo:lo + batch]):
            image = generator.synthesize(lat)
            decoded = check_decoded(decode({"image": image, "latent": lat}), lat)
            ids.append(generator.identity(decoded))
        dists.append(torch.linalg.vector_norm(ids[0] - ids[1], dim=1).cpu().numpy())
        bar.update(2 * min(batch, latent_a.shape[0] - lo))
    return np.concatenate(dists).astype(np.float64)


def _finish(acc: _Accumulator, truth: dict[str, list[Tensor]], generator: FaceGenerator,
            probes: ProbeSet | None,
            fd_features: Any, scene_feats: np.ndarray, ver: dict[str, float],
            ver_ci: dict[str, tuple[float, float]], n_pairs: int, boot: Bootstrap) -> EvalResult:
    latent = torch.cat(acc.latent)
    true_latent = torch.cat(truth["latent"])
    logits = torch.cat(acc.attr_logits)
    true_attr = torch.cat(truth["attributes"])
    attr_mean, attr_per = metrics.attribute_accuracy(logits, true_attr)
    n_classes = len(probes.class_names)
    pred_seg, true_seg = torch.cat(acc.seg).long(), torch.cat(truth["segmentation"])
    seg_mean, seg_per = metrics.segmentation_f1(pred_seg, true_seg, n_classes)
    nme_per = metrics.landmark_nme_per_image(torch.cat(acc.landmarks),
                                             torch.cat(truth["landmarks"]))
    lat = metrics.latent_errors(latent, true_latent)
    r2 = _latent_r2_summary(latent, true_latent, generator)
    feats = np.concatenate(acc.fd_feats)
    fd = frechet_distance(feats, scene_feats)
    psnr, ssim = np.concatenate(acc.psnr), np.concatenate(acc.ssim)
    ci = probe_and_image_ci(ver_ci, logits, true_attr, pred_seg, true_seg, n_classes,
                             nme_per, psnr, ssim, boot)
    ci.update(_latent_ci(latent, true_latent, generator, boot))
    result = EvalResult(
        n_test=int(latent.shape[0]),
        n_pairs=int(n_pairs),
        attribute_accuracy=attr_mean,
        attribute_accuracy_per_attribute=nan_dict(probes.attribute_names, attr_per),
        segmentation_f1=seg_mean,
        segmentation_f1_per_class=nan_dict(probes.class_names, seg_per),
        landmark_nme=float(np.mean(nme_per)),
        latent_l1=lat["l1"],
        latent_mse=lat["mse"],
        latent_l2=lat["l2"],
        psnr=float(np.mean(psnr)),
        ssim=float(np.mean(ssim)),
        fd=fd,
        fd_space=str(fd_features.name),
        fd_is_inception=bool(getattr(fd_features, "is_inception", False)),
        **r2,
        **ver,
    )
    _finish_exact(result, acc, ci, boot, getattr(generator, "attribute_names", None))
    result.ci, result.ci_level, result.n_boot = ci, boot.level, boot.n_boot
    return result


def _finish_exact(result: EvalResult, acc: Any, ci: dict[str, tuple[float, float]],
                  boot: Bootstrap, attribute_names: Any) -> None:
    """Fill the ``exact_*`` fields (and intervals) of ``result`` from an accumulator's exact
    readout, if it has one (``exact_note`` stays as it is otherwise)."""
    if not getattr(acc, "exact_f1", None):
        return
    correct = np.concatenate(acc.exact_attr)
    f1 = np.concatenate(acc.exact_f1)
    nme = np.concatenate(acc.exact_nme)
    per_face_attr = correct.mean(axis=1)
    names = list(attribute_names) if attribute_names is not None else \
        [f"attribute[{k}]" for k in range(correct.shape[1])]
    result.exact_attribute_accuracy = float(per_face_attr.mean())
    result.exact_attribute_accuracy_per_attribute = nan_dict(names, correct.mean(axis=0))
    result.exact_seg_f1 = float(f1.mean())
    result.exact_nme = float(nme.mean())
    result.exact_note = ""
    put_ci(ci, "exact_attribute_accuracy", boot.ci(per_face_attr))
    put_ci(ci, "exact_seg_f1", boot.ci(f1))
    put_ci(ci, "exact_nme", boot.ci(nme))


def _r2_statistic(pred: np.ndarray, true: np.ndarray) -> Any:
    """Weighted form of the mean per-dimension R^2
    (:func:`lsi_ml.evaluation.metrics.latent_r2`) for
    :func:`lsi_ml.evaluation.bootstrap.bootstrap_ci`; dims constant over the full set are left
    out, as in the point estimate."""
    n = pred.shape[0]
    p = pred.reshape(n, -1).astype(np.float64)
    t = true.reshape(n, -1).astype(np.float64)
    keep = t.var(axis=0) > 0
    p, t = p[:, keep], t[:, keep]
    centre = t.mean(axis=0)
    p, t = p - centre, t - centre  # R^2 is shift invariant; centring avoids cancellation
    sq, t2 = (p - t) ** 2, t * t

    def stat(counts: np.ndarray) -> np.ndarray:
        w = counts / n
        mu = w @ t
        second = w @ t2
        var = second - mu * mu
        ok = var > 1e-12 * np.maximum(second, np.finfo(float).tiny)
        r2 = np.where(ok, 1.0 - (w @ sq) / np.where(ok, var, 1.0), 0.0)
        count = ok.sum(axis=1)
        out = np.full(count.shape, np.nan)
        np.divide(r2.sum(axis=1), count, out=out, where=count > 0)
        return out

    return stat


def _latent_ci(latent: Tensor, true_latent: Tensor, generator: FaceGenerator,
               boot: Bootstrap) -> dict[str, tuple[float, float]]:
    """Intervals of the latent errors (per face) and of the R^2 means (resampled faces)."""
    ci: dict[str, tuple[float, float]] = {}
    if boot.n_boot < 1:
        return ci
    diff = (latent.double() - true_latent.double()).reshape(latent.shape[0], -1).numpy()
    put_ci(ci, "latent_l1", boot.ci(np.abs(diff).mean(axis=1)))
    put_ci(ci, "latent_mse", boot.ci((diff ** 2).mean(axis=1)))
    put_ci(ci, "latent_l2", boot.ci(np.linalg.norm(diff, axis=1)))
    n = int(latent.shape[0])
    pairs = [("latent_r2", latent, true_latent)]
    if hasattr(generator, "identity"):
        with torch.no_grad():
            pairs.append(("identity_r2", generator.identity(latent),
                          generator.identity(true_latent)))
    for name, pred, true in pairs:
        put_ci(ci, name, boot.ci(weighted=_r2_statistic(to_numpy(pred),
                                                      to_numpy(true)), n=n))
    return ci


def _latent_r2_summary(latent: Tensor, true_latent: Tensor, generator: FaceGenerator) -> dict[str,
                       Any]:
    """Per-dimension R^2 of decoded latents, with its means overall, per level, identity."""
    per_dim = metrics.latent_r2(latent, true_latent)
    finite = np.isfinite(per_dim)
    out: dict[str, Any] = {
        "latent_r2": float(np.mean(per_dim[finite])) if finite.any() else float("nan"),
        "latent_r2_per_dim": [float(v) for v in per_dim],
    }
    names = [""] * len(per_dim)
    per_level: dict[str, float] = {}
    for level in getattr(generator, "levels", ()):
        flat = getattr(level, "flat", None)
        if not isinstance(flat, slice):
            continue
        params = tuple(getattr(level, "params", ()) or ())
        for j, k in enumerate(range(*flat.indices(len(per_dim)))):
            names[k] = f"{level.name}.{params[j]}" if j < len(params) else f"{level.name}[{j}]"
        if np.isfinite(per_dim[flat]).any():
            per_level[str(level.name)] = float(np.nanmean(per_dim[flat]))
    out["latent_dim_names"] = names if all(names) else []
    out["latent_r2_per_level"] = per_level
    if hasattr(generator, "identity"):
        with torch.no_grad():
            ids = metrics.latent_r2(generator.identity(latent), generator.identity(true_latent))
        out["identity_r2"] = float(np.nanmean(ids)) if np.isfinite(ids).any() \
            else float("nan")
    return out


@torch.no_grad()
def check_eval_memory(generator: FaceGenerator, n_test: int, n_pairs: int) -> None:
    """Refuse a test set whose kept results would not fit in memory, before rendering.

    Per test face the evaluation keeps the true and the predicted segmentation maps
    (int64, size^2 each, plus a copy when scoring) and a few latent-sized vectors (its
    per-face scores for the exact readout and the bootstrap intervals, a few hundred bytes,
    fit in the per-face allowance); per verification pair it keeps the two faces'
    latents."""
    from lsi_hw.limits import check_allocation

    side = int(getattr(generator, "size", 256))
    dims = int(getattr(generator, "latent_dim", 512))
    per_face = 3 * 8 * side * side + 8 * 4 * dims + 4096
    per_pair = 2 * 2 * 4 * dims
    check_allocation(n_test * per_face + 2 * n_pairs * per_pair,
                     f"evaluating {n_test} test faces and {n_pairs} pairs at {side} px")


def evaluate_decoder(
    decode: Decoder,
    generator: FaceGenerator,
    probes: ProbeSet | None,
    *,
    n_test: int = 512,
    n_pairs: int = 512,
    seed: int = 0,
    batch: int = 64,
    fd_features: Any = None,
    with_ceiling: bool = False,
    progress: bool = False,
    dlib: bool = False,
    dlib_faces: int = 128,
    exact: bool | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    recognizer: Recognizer | None = None,
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
        Trained probes of ``generator`` (:class:`~lsi_ml.latent.probe_training.ProbeSet`).
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
        :class:`~lsi_ml.evaluation.frechet.RandomConvFeatures` (a labelled substitute, not FID).
    with_ceiling : bool
        Also compute every metric for the true latents (``result.ceiling``).
    progress : bool
        Show a tqdm progress bar (faces rendered).
    dlib : bool
        Also compute the Dlib metrics on images (``dlib_*`` fields; see the module docstring
        and :func:`lsi_ml.evaluation.faces.dlib_reconstruction_scores`); needs the optional
        ``faces`` extra.
    dlib_faces : int
        Test faces (the first ones) given to dlib (>= 1; dlib costs ~0.1 s per face on one
        core).
    exact : bool or None
        Compute the exact readout (``exact_*`` fields: render the decoded latent with
        ``generator.render`` and compare its ground truth with the scene's). None (default):
        whenever the generator has ``render`` (every generator this function can evaluate,
        since its test set is rendered with ground truth). The decoded faces are then drawn
        by ``render``, whose image is ``synthesize``'s, so this costs no extra render.
    n_boot : int
        Bootstrap resamples of the confidence intervals (``result.ci``); 0 turns them off.
        Seeded by ``seed``, so the intervals are deterministic.
    ci_level : float
        Coverage of the intervals, in (0, 1).
    recognizer : Recognizer or None
        A SynthFace recognizer
        (:func:`lsi_ml.evaluation.recognizer_cache.load_or_train_recognizer`): adds the
        ``recognizer_*`` scores (decoded image vs its own original).

    Returns
    -------
    EvalResult

    Raises
    ------
    ConfigError
        Bad sizes, probes for another generator, a decoder returning a wrong shape or
        non-finite values, ``dlib=True`` without the ``faces`` extra, ``exact=True`` for a
        generator without ``render``, or a bad ``n_boot`` / ``ci_level``.
    """
    t0 = time.perf_counter()
    check_sizes(n_test, n_pairs, batch, seed)
    check_eval_memory(generator, int(n_test), int(n_pairs))
    if dlib and int(dlib_faces) < 1:
        raise ConfigError(f"dlib_faces={dlib_faces} must be >= 1")
    dlib_model = load_dlib_faces() if dlib else None  # fail before any rendering
    n_dlib = min(int(dlib_faces), int(n_test)) if dlib else 0
    boot = check_boot(n_boot, ci_level, seed)
    has_render = callable(getattr(generator, "render", None))
    if exact and not has_render:
        raise ConfigError(f"exact=True needs a generator with render() returning ground "
                          f"truth; {type(generator).__name__} has none (use exact=False)")
    check_probe_signature(probes, generator)
    setup = _EvalSetup(
        generator, probes, exact=has_render if exact is None else bool(exact),
        n_classes=len(getattr(generator, "class_names", ()) or ()),
        fd_features=fd_features if fd_features is not None else RandomConvFeatures(),
        n_dlib=n_dlib, keep_images=recognizer is not None)
    n_test, n_pairs, batch = int(n_test), int(n_pairs), int(batch)

    data, pair_sets = eval_faces_and_pairs(generator, n_test, n_pairs, seed)

    got = _Collected(_Accumulator(), _Accumulator() if with_ceiling else None)
    with tqdm(total=n_test + 4 * n_pairs, desc="evaluate", unit="face", disable=not progress,
              leave=False) as bar:
        for lo in range(0, n_test, batch):
            item = data.batch(range(lo, min(lo + batch, n_test)))
            _score_batch(got, setup, decode, item, lo)
            bar.update(item["latent"].shape[0])
        scores = {s: _verification_scores(decode, generator, pair_sets[s], batch, bar)
                  for s in ("val", "test")}
    feats = np.concatenate(got.scene_feats)
    ver, ver_ci = verification_with_ci(scores["val"], pair_sets["val"][2], scores["test"],
                                pair_sets["test"][2], pair_sets["test"][3], boot)
    result = _finish(got.dec, got.truth, generator, probes, setup.fd_features, feats, ver,
                     ver_ci, n_pairs, boot)
    if not setup.exact:
        result.exact_note = "exact=False" if has_render else \
            f"{type(generator).__name__} has no render() with ground truth"
    if got.ceil is not None:
        result.ceiling = _ceiling_result(got, setup, feats, pair_sets, n_pairs, boot,
                                         result.exact_note)
    if recognizer is not None:
        recognizer_scores(result, recognizer, torch.cat(got.recog_images[0]),
                           torch.cat(got.recog_images[1]), seed)
    if dlib_model is not None:
        _add_dlib_scores(result, got.dlib_images, dlib_model, boot)
    result.seconds = time.perf_counter() - t0
    return result


@dataclass(frozen=True)
class _EvalSetup:
    """The checked settings of one :func:`evaluate_decoder` run."""

    generator: FaceGenerator
    probes: ProbeSet | None
    exact: bool  # score the exact readout (render the decoded latent)
    n_classes: int  # segmentation classes of the generator
    fd_features: Any  # feature space of the Frechet distance
    n_dlib: int  # test faces (the first ones) given to dlib
    keep_images: bool  # keep every scene and decoded image (for the recognizer)


@dataclass
class _Collected:
    """What the pass over the test faces collects: the decoder's (and the oracle's)
    predictions, the ground truth, the scenes' FD features and the images kept for dlib
    and the recognizer (originals, reconstructions)."""

    dec: _Accumulator
    ceil: _Accumulator | None
    truth: dict[str, list[Tensor]] = field(default_factory=lambda: {
        k: [] for k in ("latent", "attributes", "segmentation", "landmarks")})
    scene_feats: list[np.ndarray] = field(default_factory=list)
    dlib_images: tuple[list[Tensor], list[Tensor]] = field(default_factory=lambda: ([], []))
    recog_images: tuple[list[Tensor], list[Tensor]] = field(default_factory=lambda: ([], []))


def _score_batch(got: _Collected, setup: _EvalSetup, decode: Decoder, item: dict[str, Tensor],
                 lo: int) -> None:
    """Decode one chunk of test faces (the first at index ``lo``) and add its scores, truth
    and kept images to ``got``."""
    generator, probes, fd_features = setup.generator, setup.probes, setup.fd_features
    dec, ceil = got.dec, got.ceil
    latent = item["latent"]
    decoded = check_decoded(decode(dict(item)), latent)
    scene = item["image"]
    for key in got.truth:
        got.truth[key].append(item[key])
    got.scene_feats.append(np.asarray(fd_features(scene.cpu().numpy())))
    if setup.exact:
        rendered = generator.render(decoded)
        image = rendered.image
        dec.add_exact(rendered, item, setup.n_classes)
        if ceil is not None:  # render(true latent) is the scene's ground truth
            ceil.add_exact(item, item, setup.n_classes)
    else:
        image = generator.synthesize(decoded)
    dec.add(generator, probes, decoded, scene, fd_features, image=image)
    keep = max(0, min(setup.n_dlib - lo, latent.shape[0]))
    if keep:
        got.dlib_images[0].append(scene[:keep].cpu())
        got.dlib_images[1].append(image[:keep].cpu())
    if setup.keep_images:
        got.recog_images[0].append(scene.detach().cpu())
        got.recog_images[1].append(image.detach().cpu())
    if ceil is not None:  # the oracle's image is the scene (same render chunk)
        ceil.add(generator, probes, latent, scene, fd_features, image=scene)


def _ceiling_result(got: _Collected, setup: _EvalSetup, feats: np.ndarray,
                    pair_sets: dict[str, Any], n_pairs: int, boot: Bootstrap,
                    exact_note: str) -> EvalResult:
    """Every metric for the true latents (the probe ceiling), verification included."""
    assert got.ceil is not None
    generator = setup.generator
    ceil_scores = {}
    for s in ("val", "test"):
        a, b = pair_sets[s][0], pair_sets[s][1]
        ceil_scores[s] = torch.linalg.vector_norm(
            generator.identity(a) - generator.identity(b), dim=1).numpy().astype(np.float64)
    ceil_ver, ceil_ci = verification_with_ci(ceil_scores["val"], pair_sets["val"][2],
                                      ceil_scores["test"], pair_sets["test"][2],
                                      pair_sets["test"][3], boot)
    ceiling = _finish(got.ceil, got.truth, generator, setup.probes, setup.fd_features, feats,
                      ceil_ver, ceil_ci, n_pairs, boot)
    ceiling.exact_note = exact_note
    ceiling.seconds = float("nan")
    return ceiling


def _add_dlib_scores(result: EvalResult, images: tuple[list[Tensor], list[Tensor]],
                     dlib_model: Any, boot: Bootstrap) -> None:
    """Set the ``dlib_*`` scores of ``result`` and their intervals from the kept (original,
    reconstruction) images."""
    scores_dlib, per_face = dlib_reconstruction_scores_per_face(
        torch.cat(images[0]), torch.cat(images[1]), dlib_model)
    for key, value in scores_dlib.items():
        setattr(result, key, value)
    put_ci(result.ci, "dlib_verification", boot.ci(per_face["match"]))
    put_ci(result.ci, "dlib_landmark_nme", boot.ci(per_face["nme"]))
