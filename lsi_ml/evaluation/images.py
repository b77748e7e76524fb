"""Table-1-style evaluation of IMAGE reconstructions (the image route).

:func:`evaluate_images` scores any method that reconstructs an image from the camera
(Hadamard least squares, TV, ghost imaging, an image-to-image network, or a latent decoder
followed by the generator: :func:`latent_route_reconstructor`) with the same metrics,
test faces and verification pairs as :func:`lsi_ml.evaluation.latent.evaluate_decoder`, so both
kinds of method fill the same Table-1 columns:

* attribute accuracy: an :class:`~lsi_ml.baselines.image_probes.ImageProbeSet` reads the attributes
  off the reconstruction;
* segmentation F1 and landmark NME: the segmentation and landmark heads of the latent
  :class:`~lsi_ml.latent.probe_training.ProbeSet`, which read ``generator.features_from_image``
  maps, applied to the reconstruction's maps (its latent attribute head is not used);
* face verification on the same seeded val / test pairs: both faces of a pair are rendered
  and reconstructed, the score is the Euclidean distance between the image probes' identity
  embeddings of the two reconstructions, the threshold is chosen on the val pairs; the
  hard-negative accuracy is reported too;
* PSNR (dB), SSIM and the Frechet distance in the same NAMED substitute feature space
  (reconstruction vs scene);
* latent L1 / MSE / L2: NaN (an image method has no latent).

Every score has the same percentile bootstrap interval as in ``evaluate_decoder``
(``result.ci``; faces resampled for the face scores, test pairs for verification with the
val threshold fixed).

Exact readout (``evaluate_decoder``'s primary score on SynthFace: render the DECODED latent
and compare its exact landmarks / segmentation / attributes with the scene's) is NOT DEFINED
here: an image-space method returns pixels, not a latent, so there is nothing to render
and no exact ground truth of the reconstruction exists; its ``exact_*`` fields are NaN and
``exact_note`` states this (``summary()`` prints "exact readout: n/a (...)"). Such a method
is scored by the image-space numbers above. To give one an exact readout, fit a latent to
its reconstruction (e.g. :mod:`lsi_ml.baselines.inversion`) and pass that latent decoder to
``evaluate_decoder``; an LSI decoder's own exact readout comes from ``evaluate_decoder``,
not from its image route (:func:`latent_route_reconstructor`).

With ``with_ceiling=True`` the same metrics are computed for the ORIGINAL images (a perfect
reconstruction) in ``result.ceiling``, so probe error can be told apart from reconstruction
error. The ceiling of this route differs from ``evaluate_decoder``'s (image probes vs
latent probes and true identities) in attribute accuracy and verification only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError
from lsi_ml.baselines.image_probes import check_images
from lsi_ml.evaluation import metrics
from lsi_ml.evaluation.common import (
    Bootstrap,
    check_boot,
    check_decoded,
    check_probe_signature,
    check_sizes,
    eval_faces_and_pairs,
    nan_dict,
    probe_and_image_ci,
    recognizer_scores,
    verification_with_ci,
)
from lsi_ml.evaluation.frechet import RandomConvFeatures, frechet_distance
from lsi_ml.evaluation.latent import Decoder
from lsi_ml.evaluation.result import EvalResult
from lsi_ml.generators.base import FaceGenerator

if TYPE_CHECKING:
    from lsi_ml.baselines.image_probes import ImageProbeSet
    from lsi_ml.evaluation.recognizer import Recognizer
    from lsi_ml.latent.probe_training import ProbeSet

__all__ = ["EXACT_NOTE", "Reconstructor", "evaluate_images", "identity_reconstructor",
           "latent_route_reconstructor"]

EXACT_NOTE = ("image-space method: no latent to render, so no exact ground truth of the "
              "reconstruction; fit a latent (inversion) and use evaluate_decoder for it")
"""``exact_note`` of every image-route result (its ``exact_*`` scores are NaN)."""

Reconstructor = Callable[[dict[str, Tensor]], Tensor]
"""``reconstruct(batch) -> images (B, 3, H, W)`` in [0, 1]; ``batch`` has ``image`` (the
scenes, (B, 3, H, W) in [0, 1]) and the true ``latent`` (only oracles and noise models may
use it)."""


def identity_reconstructor(batch: dict[str, Tensor]) -> Tensor:
    """The perfect reconstruction: returns the scene image (the ceiling reference)."""
    return batch["image"]


def latent_route_reconstructor(decode: Decoder, generator: FaceGenerator) -> Reconstructor:
    """Turn a latent decoder into an image reconstructor: ``synthesize(decode(batch))``.

    Parameters
    ----------
    decode : callable
        ``decode(batch) -> latent (B, L, D)`` as for
        :func:`~lsi_ml.evaluation.latent.evaluate_decoder`.
    generator
        The generator that renders the decoded latents.

    Returns
    -------
    callable
        ``reconstruct(batch) -> generator.synthesize(decoded)``, so an LSI decoder is scored
        through the image route with the same probes as the image methods (the fair
        comparison). Its segmentation, landmark, PSNR, SSIM and FD scores equal
        ``evaluate_decoder``'s; attributes and verification come from the image probes.

    Raises
    ------
    ConfigError
        (when called) if the decoder returns a wrong shape or non-finite values.
    """
    def reconstruct(batch: dict[str, Tensor]) -> Tensor:
        latent = batch["latent"]
        decoded = check_decoded(decode(batch), latent)
        return generator.synthesize(decoded)

    return reconstruct


def _reconstruct(reconstruct: Reconstructor, image: Tensor, latent: Tensor,
                 size: int) -> Tensor:
    """Call ``reconstruct`` and validate its output against the scene batch."""
    out = reconstruct({"image": image, "latent": latent})
    if isinstance(out, Tensor) and out.dim() == 4 and out.shape[0] != image.shape[0]:
        raise ConfigError(f"reconstruct returned {out.shape[0]} images for a batch of "
                          f"{image.shape[0]} (shape {tuple(out.shape)})")
    return check_images(out, size, "reconstruct output").to(image.device)


class _ImageAccumulator:
    """Per-chunk predictions and image scores of one reconstruction method."""

    def __init__(self) -> None:
        self.attr_logits: list[Tensor] = []
        self.seg: list[Tensor] = []
        self.landmarks: list[Tensor] = []
        self.psnr: list[np.ndarray] = []
        self.ssim: list[np.ndarray] = []
        self.fd_feats: list[np.ndarray] = []

    def add(self, generator: FaceGenerator, probes: ProbeSet | None, image_probes: ImageProbeSet,
            recon: Tensor,
            scene: Tensor, fd_features: Any) -> None:
        feats = generator.features_from_image(recon)
        n_levels, level_dim = generator.latent_shape
        dummy = torch.zeros(recon.shape[0], n_levels, level_dim, device=recon.device)
        pred = probes.predict(dummy, features=feats)  # its attribute output is not used
        self.attr_logits.append(image_probes.predict(recon)["attribute_logits"].cpu())
        self.seg.append(pred["segmentation"].to(torch.uint8).cpu())
        self.landmarks.append(pred["landmarks"].cpu())
        self.psnr.append(np.asarray(metrics.psnr(recon, scene, reduction="none")))
        self.ssim.append(np.asarray(metrics.ssim(recon, scene, reduction="none")))
        self.fd_feats.append(np.asarray(fd_features(recon.cpu().numpy())))

    def finish(self, truth: dict[str, list[Tensor]], probes: ProbeSet | None,
               image_probes: ImageProbeSet,
               fd_features: Any, scene_feats: np.ndarray, ver: dict[str, float],
               ver_ci: dict[str, tuple[float, float]], n_pairs: int,
               boot: Bootstrap) -> EvalResult:
        logits = torch.cat(self.attr_logits)
        true_attr = torch.cat(truth["attributes"])
        attr_mean, attr_per = metrics.attribute_accuracy(logits, true_attr)
        n_classes = len(probes.class_names)
        pred_seg, true_seg = torch.cat(self.seg).long(), torch.cat(truth["segmentation"])
        seg_mean, seg_per = metrics.segmentation_f1(pred_seg, true_seg, n_classes)
        nme_per = metrics.landmark_nme_per_image(torch.cat(self.landmarks),
                                                 torch.cat(truth["landmarks"]))
        fd = frechet_distance(np.concatenate(self.fd_feats), scene_feats)
        psnr, ssim = np.concatenate(self.psnr), np.concatenate(self.ssim)
        ci = probe_and_image_ci(ver_ci, logits, true_attr, pred_seg, true_seg, n_classes,
                                 nme_per, psnr, ssim, boot)
        nan = float("nan")
        return EvalResult(
            n_test=int(sum(t.shape[0] for t in truth["attributes"])),
            n_pairs=int(n_pairs),
            attribute_accuracy=attr_mean,
            attribute_accuracy_per_attribute=nan_dict(image_probes.attribute_names,
                                                       attr_per),
            segmentation_f1=seg_mean,
            segmentation_f1_per_class=nan_dict(probes.class_names, seg_per),
            landmark_nme=float(np.mean(nme_per)),
            latent_l1=nan,
            latent_mse=nan,
            latent_l2=nan,
            psnr=float(np.mean(psnr)),
            ssim=float(np.mean(ssim)),
            fd=fd,
            fd_space=str(fd_features.name),
            fd_is_inception=bool(getattr(fd_features, "is_inception", False)),
            exact_note=EXACT_NOTE,
            ci=ci,
            ci_level=boot.level,
            n_boot=boot.n_boot,
            **ver,
        )


def _pair_distances(reconstruct: Reconstructor | None, generator: FaceGenerator,
                    image_probes: ImageProbeSet,
                    pairs: tuple[Tensor, ...], batch: int, bar: Any) -> np.ndarray:
    """Identity-embedding distances of the two (reconstructed) faces of each pair;
    ``reconstruct=None`` scores the original renders (the ceiling)."""
    latent_a, latent_b = pairs[0], pairs[1]
    size = int(generator.size)
    dists = []
    for lo in range(0, latent_a.shape[0], batch):
        emb = []
        for lat in (latent_a[lo:lo + batch], latent_b[lo:lo + batch]):
            image = generator.synthesize(lat)
            if reconstruct is not None:
                image = _reconstruct(reconstruct, image, lat, size)
            emb.append(image_probes.predict(image)["identity"])
        dists.append(torch.linalg.vector_norm(emb[0] - emb[1], dim=1).cpu().numpy())
        if bar is not None:
            bar.update(2 * min(batch, latent_a.shape[0] - lo))
    return np.concatenate(dists).astype(np.float64)


def _check_image_probes(image_probes: ImageProbeSet, generator: FaceGenerator) -> None:
    for name in ("predict", "attribute_names"):
        if not hasattr(image_probes, name):
            raise ConfigError(f"image_probes must be an ImageProbeSet (no {name!r}), got "
                              f"{type(image_probes).__name__}")
    try:
        check_probe_signature(image_probes, generator)
    except ConfigError as exc:
        raise ConfigError("the image probes were trained for another generator "
                          "configuration") from exc
    if tuple(image_probes.attribute_names) != tuple(generator.attribute_names):
        raise ConfigError("the image probes' attributes differ from the generator's")


@torch.no_grad()
def evaluate_images(
    reconstruct: Reconstructor,
    generator: FaceGenerator,
    probes: ProbeSet | None,
    image_probes: ImageProbeSet,
    *,
    n_test: int = 512,
    n_pairs: int = 512,
    seed: int = 0,
    batch: int = 64,
    fd_features: Any = None,
    with_ceiling: bool = False,
    progress: bool = False,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    recognizer: Recognizer | None = None,
) -> EvalResult:
    """Score an image-reconstruction method on the evaluation's seeded test set.

    Parameters
    ----------
    reconstruct : callable
        ``reconstruct(batch) -> images`` with ``batch = {"image": (B, 3, H, W) scenes in
        [0, 1], "latent": (B, L, D) true latents}``; must return a finite ``(B, 3, H, W)``
        tensor in [0, 1] (1e-4 of rounding tolerated and clamped). A real method uses only
        the image (in practice: its simulated measurements of it).
    generator
        The ground-truth generator (e.g. ``SynthFace(64)``).
    probes : ProbeSet
        Latent probes of ``generator``; only their segmentation and landmark heads are used,
        on ``generator.features_from_image(reconstruction)``.
    image_probes : ImageProbeSet
        Image probes of ``generator`` (attributes and identity embedding).
    n_test : int
        Test faces (``test`` split of ``SyntheticFaces(generator, n_test, seed=seed)``: the
        same faces as ``evaluate_decoder`` with the same seed).
    n_pairs : int
        Verification pairs in each of the val and test pair sets (>= 4), the same pairs as
        ``evaluate_decoder``.
    seed : int
        Base seed of the test faces and of the two pair streams.
    batch : int
        Faces per render / reconstruct call.
    fd_features : FeatureSpace or None
        Feature space of the Frechet distance; default
        :class:`~lsi_ml.evaluation.frechet.RandomConvFeatures` (a labelled substitute, not FID).
    with_ceiling : bool
        Also compute every metric for the original images (``result.ceiling``).
    progress : bool
        Show a tqdm progress bar (faces rendered).
    n_boot : int
        Bootstrap resamples of the confidence intervals (``result.ci``; 0: none), seeded by
        ``seed``.
    ci_level : float
        Coverage of the intervals, in (0, 1).
    recognizer : Recognizer or None
        A SynthFace recognizer: adds the ``recognizer_*`` scores, each reconstruction
        against its own original (as :func:`lsi_ml.evaluation.latent.evaluate_decoder` does for the
        decoded images), the paper's identity protocol for image-space methods.

    Returns
    -------
    EvalResult
        The class ``evaluate_decoder`` returns (same ``table1_row``/``summary``); the latent
        fields and the exact readout (``exact_*``, see the module docstring) are NaN,
        ``exact_note`` is :data:`EXACT_NOTE`, and ``verification_threshold`` is in
        identity-embedding units (standardised identity).

    Raises
    ------
    ConfigError
        Bad sizes, probes or image probes for another generator, a reconstruction with a
        wrong type or shape, non-finite values or values outside [0, 1], or a bad
        ``n_boot`` / ``ci_level``.
    """
    t0 = time.perf_counter()
    check_sizes(n_test, n_pairs, batch, seed)
    if not callable(reconstruct):
        raise ConfigError(f"reconstruct must be callable, got {type(reconstruct).__name__}")
    check_probe_signature(probes, generator)
    _check_image_probes(image_probes, generator)
    boot = check_boot(n_boot, ci_level, seed)
    fd_features = fd_features if fd_features is not None else RandomConvFeatures()
    n_test, n_pairs, batch = int(n_test), int(n_pairs), int(batch)
    size = int(generator.size)

    data, pair_sets = eval_faces_and_pairs(generator, n_test, n_pairs, seed)
    total = n_test + 4 * n_pairs
    rec, ceil = _ImageAccumulator(), (_ImageAccumulator() if with_ceiling else None)
    truth: dict[str, list[Tensor]] = {k: [] for k in ("attributes", "segmentation",
                                                      "landmarks")}
    scene_feats = []
    recog_images: tuple[list[Tensor], list[Tensor]] = ([], [])
    with tqdm(total=total, desc="evaluate images", unit="face", disable=not progress,
              leave=False) as bar:
        for lo in range(0, n_test, batch):
            item = data.batch(range(lo, min(lo + batch, n_test)))
            scene = item["image"]
            recon = _reconstruct(reconstruct, scene, item["latent"], size)
            for key in truth:
                truth[key].append(item[key])
            scene_feats.append(np.asarray(fd_features(scene.cpu().numpy())))
            rec.add(generator, probes, image_probes, recon, scene, fd_features)
            if recognizer is not None:
                recog_images[0].append(scene.detach().cpu())
                recog_images[1].append(recon.detach().cpu())
            if ceil is not None:
                ceil.add(generator, probes, image_probes, scene, scene, fd_features)
            bar.update(scene.shape[0])
        scores = {s: _pair_distances(reconstruct, generator, image_probes, pair_sets[s],
                                     batch, bar) for s in ("val", "test")}
    feats = np.concatenate(scene_feats)
    ver, ver_ci = verification_with_ci(scores["val"], pair_sets["val"][2], scores["test"],
                                pair_sets["test"][2], pair_sets["test"][3], boot)
    result = rec.finish(truth, probes, image_probes, fd_features, feats, ver, ver_ci, n_pairs,
                        boot)
    if ceil is not None:
        ceil_scores = {s: _pair_distances(None, generator, image_probes, pair_sets[s], batch,
                                          None) for s in ("val", "test")}
        ceil_ver, ceil_ci = verification_with_ci(ceil_scores["val"], pair_sets["val"][2],
                                          ceil_scores["test"], pair_sets["test"][2],
                                          pair_sets["test"][3], boot)
        result.ceiling = ceil.finish(truth, probes, image_probes, fd_features, feats,
                                     ceil_ver, ceil_ci, n_pairs, boot)
        result.ceiling.seconds = float("nan")
    if recognizer is not None:
        recognizer_scores(result, recognizer, torch.cat(recog_images[0]),
                           torch.cat(recog_images[1]), seed)
    result.seconds = time.perf_counter() - t0
    return result
