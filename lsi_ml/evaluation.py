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

* exact readout (``exact=True``, the default for a generator whose ``render`` returns ground
  truth, e.g. SynthFace; the PRIMARY score there): the decoded latent is rendered with
  ``generator.render`` and ITS exact landmarks, segmentation and attributes are compared with
  those of the scene (the render of the true latent): ``exact_attribute_accuracy`` (fraction
  of attributes equal, per face, then mean over faces), ``exact_seg_f1`` (per-face macro F1
  over the classes present in either map, :func:`lsi_ml.metrics.segmentation_f1_per_image`,
  then mean) and ``exact_nme`` (per-face NME x100 of the original landmarks' box diagonal,
  then mean). No probe is involved: the oracle decoder scores exactly 100 % / 100 % / 0, and
  the probe scores above measure the probes' reading of the latent ("probes").

Every score carries a percentile bootstrap 95 % confidence interval (``result.ci[name] =
(low, high)``, ``n_boot`` resamples, seeded by ``seed``; :func:`lsi_ml.metrics.bootstrap_ci`):
the test FACES are resampled for the face scores (attribute accuracy from per-face accuracy,
segmentation F1 from per-face confusion matrices summed over the resample, NME, PSNR, SSIM,
latent errors and R^2, exact readout), the test PAIRS for verification (the threshold stays
the one chosen on the val pairs; hard-negative accuracy, TPR and TNR resample their own
subsets). The Frechet distance has no interval: it is a set statistic biased in the set
size, whose bootstrap would not be a confidence interval (and would cost a matrix square root
per resample). ``summary()``, ``table1_row()`` and :meth:`EvalResult.ci_row` print / export
the intervals.

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

import math
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

__all__ = ["DLIB_MIN_SIZE", "Decoder", "EvalResult", "check_eval_memory",
           "dlib_reconstruction_scores", "evaluate_decoder", "oracle_decoder"]


Decoder = Callable[[dict[str, Tensor]], Tensor]
"""``decode(batch) -> latent (B, L, D)``; ``batch`` has ``image`` (B, 3, H, W) in [0, 1]
and the true ``latent`` (only an oracle may use it)."""

_PAIR_BLOCK = 1_000_003
"""Block index of ``split_seed`` used for the verification-pair streams (far beyond any
data block, so pair latents never come from the test set's stream)."""

DLIB_MIN_SIZE = 256
"""Images are upsampled (bicubic) so that their shorter side is at least this before dlib."""


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
    latent_r2 : float
        Mean over latent dimensions of the per-dimension R^2 of the decoded latents
        (:func:`lsi_ml.metrics.latent_r2`; 1 exact, 0 = the mean latent).
    latent_r2_per_level : dict of str to float
        The same mean per latent level (e.g. SynthFace's coarse / middle / fine / texture).
    identity_r2 : float
        Mean R^2 over the identity dimensions (what verification reads).
    latent_r2_per_dim : list of float
        Every dimension's R^2, in the flattened latent's order (find which parameters a
        camera + decoder recover and which it does not).
    latent_dim_names : list of str
        ``level.parameter`` name of each dimension (from the generator's ``levels``;
        ``level[k]`` where a level names no parameters); empty if the generator has no
        levels.
    ceiling : EvalResult or None
        The same metrics for the true latents (oracle decoder), if requested.
    dlib_n_faces : int or None
        Test faces given to dlib (``dlib=True`` only, like every ``dlib_*`` field; None
        otherwise).
    dlib_detected : float or None
        Fraction of those originals (scene images) in which dlib's detector found a face.
    dlib_reconstruction_detected : float or None
        Fraction of the reconstructions ``synthesize(decoded)`` in which it found one.
    dlib_verification : float or None
        Fraction of the faces detected in the original whose reconstruction matches it
        (descriptor distance < 0.6; no face found in the reconstruction = no match). NaN if
        no original face was detected.
    dlib_distance : float or None
        Mean descriptor distance over the faces detected in both images (NaN if none).
    dlib_landmark_nme : float or None
        dlib landmarks of the reconstruction vs dlib landmarks of the original, NME x100 of
        the box diagonal, over the faces detected in both (NaN if none).
    exact_attribute_accuracy : float
        Exact readout (see the module docstring): fraction of the attributes of
        ``render(decoded)`` equal to the scene's, per face, mean over faces. NaN when not
        computed (``exact_note`` says why).
    exact_attribute_accuracy_per_attribute : dict of str to float
        The same per attribute (empty when not computed).
    exact_seg_f1 : float
        Per-face macro F1 of ``render(decoded).segmentation`` vs the scene's map, mean.
    exact_nme : float
        Per-face NME (x100 of the scene's landmark box diagonal) of
        ``render(decoded).landmarks``, mean.
    exact_note : str
        Empty when the exact readout was computed, else why it is n/a (e.g. an image-space
        method: no latent to render).
    recognizer_accuracy : float
        The paper's identity protocol with the SynthFace recognizer
        (:mod:`lsi_ml.recognizer`): each decoded image ``synthesize(decoded)`` against its
        own original (genuine pair) and against another face's original (impostor pair,
        a fixed derangement), threshold fixed beforehand on held-out real renders; mean of
        the correct decisions.
    recognizer_genuine_accept : float
        Fraction of decoded images the recognizer calls the same person as their original
        (what the paper's "verif. %" columns report).
    recognizer_hard_accuracy : float
        As ``recognizer_accuracy`` with the hardest impostor (the most similar other
        original for the recognizer).
    recognizer_note : str
        Empty when the recognizer scores were computed, else why not.
    ci : dict of str to (float, float)
        Percentile bootstrap interval ``(low, high)`` of each score that has one, keyed by
        its field name, in the field's units (fractions, not %). Scores without a defined
        interval (NaN score, the Frechet distance) have no key.
    ci_level : float
        Coverage of those intervals (0.95).
    n_boot : int
        Bootstrap resamples behind them (0: no intervals).
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
    latent_r2: float = float("nan")
    latent_r2_per_level: dict[str, float] = field(default_factory=dict)
    identity_r2: float = float("nan")
    latent_r2_per_dim: list[float] = field(default_factory=list, repr=False)
    latent_dim_names: list[str] = field(default_factory=list, repr=False)
    ceiling: EvalResult | None = field(default=None, repr=False)
    dlib_n_faces: int | None = None
    dlib_detected: float | None = None
    dlib_reconstruction_detected: float | None = None
    dlib_verification: float | None = None
    dlib_distance: float | None = None
    dlib_landmark_nme: float | None = None
    exact_attribute_accuracy: float = float("nan")
    exact_attribute_accuracy_per_attribute: dict[str, float] = field(default_factory=dict)
    exact_seg_f1: float = float("nan")
    exact_nme: float = float("nan")
    exact_note: str = "not computed"
    recognizer_accuracy: float = float("nan")
    recognizer_genuine_accept: float = float("nan")
    recognizer_hard_accuracy: float = float("nan")
    recognizer_note: str = "not computed"
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    ci_level: float = 0.95
    n_boot: int = 0

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
        """Plain nested dict (``ceiling`` as a dict or None); adds ``fd_label``; ``ci`` values
        are ``(low, high)`` tuples (lists once written as JSON)."""
        data = asdict(self)
        data["fd_label"] = self.fd_label
        if self.ceiling is not None:
            data["ceiling"] = self.ceiling.as_dict()
        return data

    def ci_row(self) -> dict[str, float]:
        """Flat columns for a CSV: ``<score>_ci_lo`` and ``<score>_ci_hi`` of every interval
        plus the exact-readout scores (``exact_*``; NaN when n/a), e.g. for
        ``sims.report``, which prints ``"89.1 [87.9, 90.2]"`` where a CSV has them."""
        row: dict[str, float] = {"exact_attribute_accuracy": self.exact_attribute_accuracy,
                                 "exact_seg_f1": self.exact_seg_f1,
                                 "exact_nme": self.exact_nme,
                                 "recognizer_accuracy": self.recognizer_accuracy,
                                 "recognizer_genuine_accept": self.recognizer_genuine_accept,
                                 "recognizer_hard_accuracy": self.recognizer_hard_accuracy}
        for name, (low, high) in self.ci.items():
            row[f"{name}_ci_lo"] = float(low)
            row[f"{name}_ci_hi"] = float(high)
        return row

    def table1_row(self, ratio_label: str, *, intervals: bool = True) -> str:
        """One Markdown row for :func:`lsi_ml.metrics.table1_header` (``fd_space`` given);
        with ``intervals`` the cells carry their bootstrap intervals, ``"89.15 [87.90,
        90.20]"`` (:func:`lsi_ml.metrics.table1_row_ci`)."""
        args = (ratio_label, self.verification_accuracy, self.fd_result, self.fd_space,
                self.attribute_accuracy, self.segmentation_f1, self.landmark_nme)
        if intervals and self.ci:
            return metrics.table1_row_ci(*args, ci=self.ci)
        return metrics.table1_row(*args)

    @property
    def has_exact(self) -> bool:
        """Whether the exact readout was computed (finite exact scores)."""
        return math.isfinite(self.exact_seg_f1)

    def summary(self) -> str:
        """Multi-line human-readable report: the exact readout (when computed; the primary
        score on generators with ground truth), then the probe and image scores, each with
        its bootstrap interval, beside the probe ceiling if computed."""
        Row = tuple[str, str, str, float]  # label, unit, field name, scale
        exact: list[Row] = [
            ("exact attribute accuracy", "%", "exact_attribute_accuracy", 100.0),
            ("exact segmentation F1 (per face)", "%", "exact_seg_f1", 100.0),
            ("exact landmark NME (x100 bbox diag)", "", "exact_nme", 1.0),
        ]
        recog: list[Row] = [
            ("recognizer: decoded vs own original", "%", "recognizer_accuracy", 100.0),
            ("  genuine accepted (paper's verif.)", "%", "recognizer_genuine_accept", 100.0),
            ("  with the hardest impostor", "%", "recognizer_hard_accuracy", 100.0),
        ]
        probe: list[Row] = [
            ("verification accuracy", "%", "verification_accuracy", 100.0),
            ("  hard negatives rejected", "%", "verification_hard_accuracy", 100.0),
            ("attribute accuracy", "%", "attribute_accuracy", 100.0),
            ("segmentation F1 (macro)", "%", "segmentation_f1", 100.0),
            ("landmark NME (x100 bbox diag)", "", "landmark_nme", 1.0),
            ("latent L1 (per element)", "", "latent_l1", 1.0),
            ("latent L2 (per face)", "", "latent_l2", 1.0),
            ("latent R^2 (mean over dims)", "", "latent_r2", 1.0),
            ("  identity dims R^2", "", "identity_r2", 1.0),
            ("PSNR", "dB", "psnr", 1.0),
            ("SSIM", "", "ssim", 1.0),
            (self.fd_label, "", "fd", 1.0),
        ]
        results = [self] if self.ceiling is None else [self, self.ceiling]

        def cell(res: EvalResult, name: str, scale: float) -> str:
            value = float(getattr(res, name))
            bounds = res.ci.get(name)
            text = f"{scale * value:.3f}"
            if bounds is not None:
                text += f" [{scale * bounds[0]:.3f}, {scale * bounds[1]:.3f}]"
            return text

        has_recog = math.isfinite(self.recognizer_accuracy)
        shown = (exact if self.has_exact else []) + (recog if has_recog else []) + probe
        cells = {name: [cell(r, name, scale) for r in results] for _, _, name, scale in shown}
        width = max(len(label) for label, _, _, _ in shown) + 2
        col = max(12, *(len(c) + 2 for cs in cells.values() for c in cs))
        head = f"evaluation: {self.n_test} test faces, {self.n_pairs} val + {self.n_pairs} " \
               f"test verification pairs, {self.seconds:.1f} s"
        lines = [head]
        if self.n_boot:
            lines.append(f"[low, high]: {100 * self.ci_level:g} % bootstrap intervals "
                         f"({self.n_boot} resamples of the test faces / test pairs)")
        if self.ceiling is not None:
            lines.append(f"{'':{width}}{'decoder':>{col}}{'ceiling':>{col}}")

        def block(rows: list[Row]) -> None:
            for label, unit, name, _ in rows:
                text = "".join(f"{c:>{col}}" for c in cells[name])
                lines.append(f"{label:{width}}{text} {unit}".rstrip())

        if self.has_exact:
            lines.append("exact readout (render the decoded latent, compare its exact ground "
                         "truth with the scene's):")
            block(exact)
            if has_recog:
                lines.append("identity by the SynthFace recognizer (decoded image vs its "
                             "original, threshold fixed on held-out renders):")
                block(recog)
            lines.append("probes on the latent and image scores:")
        else:
            lines.append(f"exact readout: n/a ({self.exact_note})")
        block(probe)
        if self.latent_r2_per_level:
            lines.append("latent R^2 per level: " + ", ".join(
                f"{name} {value:.2f}" for name, value in self.latent_r2_per_level.items()))
        if self.ceiling is not None:
            lines.append("ceiling = the same probes and metrics on the true latents (oracle)")
        if not self.fd_is_inception:
            lines.append(f"note: {self.fd_label} is a substitute feature space, not FID")
        if self.n_boot:
            lines.append("note: no interval for the Frechet distance (a set statistic)")
        if self.dlib_n_faces is not None:
            lines.extend(self._dlib_lines(width))
        return "\n".join(lines)

    def r2_report(self, top: int | None = None) -> str:
        """Per-dimension R^2 of the decoded latents, best first: which parameters of the
        scene the camera + decoder recover (1), and which not at all (<= 0).

        ``top`` keeps that many best and that many worst dimensions (all by default).
        """
        if not self.latent_r2_per_dim:
            return "no per-dimension R^2 (evaluation of an older version)"
        names = self.latent_dim_names or [f"dim[{k}]"
                                          for k in range(len(self.latent_r2_per_dim))]
        order = sorted(range(len(names)), key=lambda k: (
            -self.latent_r2_per_dim[k] if math.isfinite(self.latent_r2_per_dim[k])
            else math.inf))
        if top is not None and 2 * top < len(order):
            order = [*order[:top], -1, *order[-top:]]
        width = max(len(n) for n in names) + 2
        lines = [f"per-dimension R^2 of the decoded latent ({len(names)} dims, best first; "
                 "1 = exact, 0 = no better than the mean)"]
        for k in order:
            if k < 0:
                lines.append("  ...")
                continue
            value = self.latent_r2_per_dim[k]
            bar = "#" * max(0, min(20, round(20 * value))) if math.isfinite(value) else ""
            lines.append(f"  {names[k]:{width}}{value:7.3f}  {bar}".rstrip())
        return "\n".join(lines)

    def _dlib_lines(self, width: int) -> list[str]:
        n = int(self.dlib_n_faces or 0)
        n_orig = round((self.dlib_detected or 0.0) * n)
        n_rec = round((self.dlib_reconstruction_detected or 0.0) * n)
        rows = [("dlib verification (dist < 0.6)", "%", "dlib_verification", 100.0),
                ("dlib mean descriptor distance", "", "dlib_distance", 1.0),
                ("dlib landmark NME (x100 bbox)", "", "dlib_landmark_nme", 1.0)]
        wide = max(width, max(len(name) for name, _, _, _ in rows) + 2)
        lines = [f"dlib on generated images: synthesize(decoded) vs the original scene, "
                 f"both >= {DLIB_MIN_SIZE} px (decoder only)"]
        for label, unit, name, scale in rows:
            value = scale * _nan(getattr(self, name))
            text = f"{value:12.3f}"
            if name in self.ci:
                low, high = self.ci[name]
                text += f" [{scale * low:.3f}, {scale * high:.3f}]"
            lines.append(f"{label:{wide}}{text} {unit}".rstrip())
        lines.append(f"  dlib found a face in {n_orig}/{n} originals and {n_rec}/{n} "
                     f"reconstructions; the {n - n_orig} without one in the original")
        lines.append("  are not counted in the match rate (no face in the reconstruction = "
                     "mismatch); NME over faces found in both")
        return lines


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _dlib_faces() -> Any:
    """A :class:`lsi_ml.faces.DlibFaces`, or ConfigError naming the ``faces`` extra."""
    try:
        from lsi_ml.faces import DlibFaces

        return DlibFaces()
    except (ImportError, ConfigError) as exc:
        raise ConfigError(f"dlib metrics (dlib=True, lsi-ml eval --dlib) need the optional "
                          f'faces extra: pip install "lsi-toolkit[faces]" ({exc})') from exc


def _upsample_for_dlib(images: Tensor) -> Tensor:
    """``(n, 3, H, W)`` in [0, 1], enlarged by an integer factor (bicubic) to >= 256 px."""
    images = images.detach().cpu().float()
    factor = math.ceil(DLIB_MIN_SIZE / min(images.shape[-2:]))
    if factor <= 1:
        return images
    size = (images.shape[-2] * factor, images.shape[-1] * factor)
    return torch.nn.functional.interpolate(images, size=size, mode="bicubic",
                                           align_corners=False).clamp_(0.0, 1.0)


def dlib_reconstruction_scores(originals: Tensor, reconstructions: Tensor, *,
                               faces: Any = None) -> dict[str, float | int]:
    """The paper's Dlib verification and dlib landmark NME of reconstructions vs originals.

    Parameters
    ----------
    originals, reconstructions : Tensor
        ``(n, 3, H, W)`` images in [0, 1]; pair ``i`` is one face and its reconstruction.
        Both are upsampled (bicubic, integer factor) to at least :data:`DLIB_MIN_SIZE` px.
    faces : DlibFaces, optional
        Detector / predictor / descriptor (default ``DlibFaces()``; ConfigError naming the
        ``faces`` extra if it is not installed).

    Returns
    -------
    dict
        ``dlib_n_faces``, ``dlib_detected`` (fraction of originals with a detected face),
        ``dlib_reconstruction_detected``, ``dlib_verification`` (fraction of the detected
        originals whose reconstruction has a face at descriptor distance < 0.6; no face in
        the reconstruction = no match), ``dlib_distance`` (mean distance) and
        ``dlib_landmark_nme`` (x100 of the original's landmark box diagonal), both over the
        faces detected in both images; NaN where nothing was detected.
    """
    return _dlib_scores(originals, reconstructions, faces)[0]


def _dlib_scores(originals: Tensor, reconstructions: Tensor, faces: Any
                 ) -> tuple[dict[str, float | int], dict[str, np.ndarray]]:
    """:func:`dlib_reconstruction_scores` plus its per-face values (for intervals):
    ``match`` (bool, one per face detected in the original) and ``nme`` (one per face
    detected in both)."""
    from lsi_ml.faces import DLIB_THRESHOLD, to_uint8_rgb

    if originals.dim() != 4 or originals.shape != reconstructions.shape:
        raise ConfigError(f"need two (n, 3, H, W) batches of the same shape, got "
                          f"{tuple(originals.shape)} and {tuple(reconstructions.shape)}")
    f = faces if faces is not None else _dlib_faces()
    orig, rec = _upsample_for_dlib(originals), _upsample_for_dlib(reconstructions)
    n = int(orig.shape[0])
    found_orig = found_rec = 0
    same: list[bool] = []
    dists: list[float] = []
    lm_pred: list[np.ndarray] = []
    lm_ref: list[np.ndarray] = []
    for a_t, b_t in zip(orig, rec, strict=True):
        a, b = to_uint8_rgb(a_t), to_uint8_rgb(b_t)
        box_a, box_b = f.detect(a), f.detect(b)
        found_rec += bool(box_b)
        if not box_a:
            continue  # dlib sees no face in the original: nothing to verify against
        found_orig += 1
        if not box_b:
            same.append(False)
            continue
        dist = float(np.linalg.norm(f.descriptor(a, box_a[0]) - f.descriptor(b, box_b[0])))
        dists.append(dist)
        same.append(dist < DLIB_THRESHOLD)
        lm_ref.append(f.landmarks(a, box_a[0]))
        lm_pred.append(f.landmarks(b, box_b[0]))
    nme_per = (metrics.landmark_nme_per_image(np.stack(lm_pred), np.stack(lm_ref)) if lm_ref
               else np.zeros(0))
    scores: dict[str, float | int] = {
        "dlib_n_faces": n,
        "dlib_detected": found_orig / n if n else float("nan"),
        "dlib_reconstruction_detected": found_rec / n if n else float("nan"),
        "dlib_verification": float(np.mean(same)) if same else float("nan"),
        "dlib_distance": float(np.mean(dists)) if dists else float("nan"),
        "dlib_landmark_nme": float(np.mean(nme_per)) if nme_per.size else float("nan"),
    }
    return scores, {"match": np.asarray(same, dtype=np.float64), "nme": nme_per}


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


@dataclass(frozen=True)
class _Boot:
    """Bootstrap settings of one evaluation (``n_boot = 0``: no intervals)."""

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95

    def ci(self, values: Any = None, *, weighted: Any = None,
           n: int | None = None) -> tuple[float, float] | None:
        """:func:`lsi_ml.metrics.bootstrap_ci` of per-item ``values`` (or a ``weighted``
        statistic over ``n`` items); None when off or undefined (no items, NaN)."""
        if self.n_boot < 1:
            return None
        if values is not None and np.asarray(values).size == 0:
            return None
        low, high = metrics.bootstrap_ci(values, weighted=weighted, n=n, n_boot=self.n_boot,
                                         seed=self.seed, level=self.level)
        if math.isnan(low) or math.isnan(high):
            return None
        return (low, high)


def _put(ci: dict[str, tuple[float, float]], name: str,
         bounds: tuple[float, float] | None) -> None:
    if bounds is not None:
        ci[name] = bounds


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

    def add(self, generator: Any, probes: Any, latent: Tensor, scene: Tensor,
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
        pred_attr = metrics._to_numpy(_field_of(rendered, "attributes")) > 0.5
        true_attr = metrics._to_numpy(truth["attributes"]) > 0.5
        self.exact_attr.append(pred_attr.reshape(true_attr.shape) == true_attr)
        pred_seg = _field_of(rendered, "segmentation")
        true_seg = truth["segmentation"]
        classes = n_classes or int(max(int(pred_seg.max()), int(true_seg.max())) + 1)
        self.exact_f1.append(metrics.segmentation_f1_per_image(pred_seg, true_seg, classes))
        self.exact_nme.append(metrics.landmark_nme_per_image(
            _field_of(rendered, "landmarks"), truth["landmarks"]))


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
            ver_ci: dict[str, tuple[float, float]], n_pairs: int, boot: _Boot) -> EvalResult:
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
    fd = metrics.frechet_distance(feats, scene_feats)
    psnr, ssim = np.concatenate(acc.psnr), np.concatenate(acc.ssim)
    ci = _probe_and_image_ci(ver_ci, logits, true_attr, pred_seg, true_seg, n_classes,
                             nme_per, psnr, ssim, boot)
    ci.update(_latent_ci(latent, true_latent, generator, boot))
    result = EvalResult(
        n_test=int(latent.shape[0]),
        n_pairs=int(n_pairs),
        attribute_accuracy=attr_mean,
        attribute_accuracy_per_attribute=_nan_dict(probes.attribute_names, attr_per),
        segmentation_f1=seg_mean,
        segmentation_f1_per_class=_nan_dict(probes.class_names, seg_per),
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


def _probe_and_image_ci(ver_ci: dict[str, tuple[float, float]], logits: Tensor,
                        true_attr: Tensor, pred_seg: Tensor, true_seg: Tensor, n_classes: int,
                        nme_per: np.ndarray, psnr: np.ndarray, ssim: np.ndarray, boot: Any
                        ) -> dict[str, tuple[float, float]]:
    """Intervals of the verification, probe (attributes, segmentation, landmarks) and image
    (PSNR, SSIM) scores, shared by the latent and the image routes."""
    ci = dict(ver_ci)
    _put(ci, "attribute_accuracy",
         boot.ci(metrics.attribute_accuracy_per_image(logits, true_attr)))
    _put(ci, "segmentation_f1", _seg_f1_ci(pred_seg, true_seg, n_classes, boot))
    _put(ci, "landmark_nme", boot.ci(nme_per))
    _put(ci, "psnr", boot.ci(psnr))
    _put(ci, "ssim", boot.ci(ssim))
    return ci


def _recognizer_scores(result: EvalResult, recognizer: Any, originals: Tensor,
                       decoded: Tensor, seed: int) -> None:
    """Fill the ``recognizer_*`` fields (and intervals) of ``result``."""
    from lsi_ml.recognizer import verification_decoded_vs_original

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
    _put(result.ci, "recognizer_accuracy", plain.accuracy_ci95)
    _put(result.ci, "recognizer_genuine_accept", plain.genuine_accept_rate_ci95)
    _put(result.ci, "recognizer_hard_accuracy", hard.accuracy_ci95)


def _finish_exact(result: EvalResult, acc: Any, ci: dict[str, tuple[float, float]],
                  boot: _Boot, attribute_names: Any) -> None:
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
    result.exact_attribute_accuracy_per_attribute = _nan_dict(names, correct.mean(axis=0))
    result.exact_seg_f1 = float(f1.mean())
    result.exact_nme = float(nme.mean())
    result.exact_note = ""
    _put(ci, "exact_attribute_accuracy", boot.ci(per_face_attr))
    _put(ci, "exact_seg_f1", boot.ci(f1))
    _put(ci, "exact_nme", boot.ci(nme))


def _seg_f1_ci(pred: Tensor, target: Tensor, n_classes: int,
               boot: _Boot) -> tuple[float, float] | None:
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


def _r2_statistic(pred: np.ndarray, true: np.ndarray) -> Any:
    """Weighted form of the mean per-dimension R^2 (:func:`lsi_ml.metrics.latent_r2`) for
    :func:`lsi_ml.metrics.bootstrap_ci`; dims constant over the full set are left out, as
    in the point estimate."""
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


def _latent_ci(latent: Tensor, true_latent: Tensor, generator: Any,
               boot: _Boot) -> dict[str, tuple[float, float]]:
    """Intervals of the latent errors (per face) and of the R^2 means (resampled faces)."""
    ci: dict[str, tuple[float, float]] = {}
    if boot.n_boot < 1:
        return ci
    diff = (latent.double() - true_latent.double()).reshape(latent.shape[0], -1).numpy()
    _put(ci, "latent_l1", boot.ci(np.abs(diff).mean(axis=1)))
    _put(ci, "latent_mse", boot.ci((diff ** 2).mean(axis=1)))
    _put(ci, "latent_l2", boot.ci(np.linalg.norm(diff, axis=1)))
    n = int(latent.shape[0])
    pairs = [("latent_r2", latent, true_latent)]
    if hasattr(generator, "identity"):
        with torch.no_grad():
            pairs.append(("identity_r2", generator.identity(latent),
                          generator.identity(true_latent)))
    for name, pred, true in pairs:
        _put(ci, name, boot.ci(weighted=_r2_statistic(metrics._to_numpy(pred),
                                                      metrics._to_numpy(true)), n=n))
    return ci


def _latent_r2_summary(latent: Tensor, true_latent: Tensor, generator: Any) -> dict[str, Any]:
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


def _verification(scores_val: np.ndarray, same_val: Tensor, scores_test: np.ndarray,
                  same_test: Tensor, hard_test: Tensor, boot: _Boot | None = None
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
        _put(ci, "verification_accuracy", boot.ci(correct))
        _put(ci, "verification_hard_accuracy", boot.ci((~pred_same[hard]).astype(np.float64)))
        _put(ci, "verification_tpr", boot.ci(pred_same[same].astype(np.float64)))
        _put(ci, "verification_tnr", boot.ci((~pred_same[~same]).astype(np.float64)))
    return ver, ci


def _check_sizes(n_test: int, n_pairs: int, batch: int, seed: int) -> None:
    """ConfigError unless the evaluation sizes and seed are valid (shared with
    :func:`lsi_ml.image_evaluation.evaluate_images`)."""
    if int(n_test) < 2:
        raise ConfigError(f"n_test={n_test} must be >= 2 (the Frechet distance needs two)")
    if int(n_pairs) < 4:
        raise ConfigError(f"n_pairs={n_pairs} must be >= 4")
    if int(batch) < 1:
        raise ConfigError(f"batch={batch} must be >= 1")
    if int(seed) < 0:
        raise ConfigError(f"seed={seed} must be >= 0")


def _check_boot(n_boot: int, ci_level: float, seed: int) -> _Boot:
    """ConfigError unless the bootstrap settings are valid; the :class:`_Boot` of them."""
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or int(n_boot) < 0:
        raise ConfigError(f"n_boot={n_boot} must be an integer >= 0 (0: no intervals; "
                          "1000 is the default)")
    if not 0.0 < float(ci_level) < 1.0:
        raise ConfigError(f"ci_level={ci_level} must lie in (0, 1), e.g. 0.95")
    return _Boot(int(n_boot), int(seed), float(ci_level))


def _check_probe_signature(probes: Any, generator: Any) -> None:
    """ConfigError if ``probes`` carry a generator signature other than ``generator``'s."""
    signature = getattr(probes, "signature", None)
    if signature is not None:
        from lsi_ml.probe_training import _generator_signature

        if _generator_signature(generator) != signature:
            raise ConfigError("the probes were trained for another generator configuration")


def _test_set_and_pairs(generator: Any, n_test: int, n_pairs: int, seed: int
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
        gen = torch.Generator().manual_seed(split_seed(int(seed), split, _PAIR_BLOCK))
        pair_sets[split] = generator.verification_pairs(int(n_pairs), gen, return_hard=True)
    return data, pair_sets


@torch.no_grad()
def check_eval_memory(generator: Any, n_test: int, n_pairs: int) -> None:
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
    dlib: bool = False,
    dlib_faces: int = 128,
    exact: bool | None = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    recognizer: Any = None,
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
    dlib : bool
        Also compute the Dlib metrics on images (``dlib_*`` fields; see the module docstring
        and :func:`dlib_reconstruction_scores`); needs the optional ``faces`` extra.
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
        A SynthFace recognizer (:func:`lsi_ml.recognizer.load_or_train_recognizer`): adds
        the ``recognizer_*`` scores (decoded image vs its own original).

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
    _check_sizes(n_test, n_pairs, batch, seed)
    check_eval_memory(generator, int(n_test), int(n_pairs))
    if dlib and int(dlib_faces) < 1:
        raise ConfigError(f"dlib_faces={dlib_faces} must be >= 1")
    dlib_model = _dlib_faces() if dlib else None  # fail before any rendering
    n_dlib = min(int(dlib_faces), int(n_test)) if dlib else 0
    boot = _check_boot(n_boot, ci_level, seed)
    has_render = callable(getattr(generator, "render", None))
    if exact and not has_render:
        raise ConfigError(f"exact=True needs a generator with render() returning ground "
                          f"truth; {type(generator).__name__} has none (use exact=False)")
    _check_probe_signature(probes, generator)
    exact = has_render if exact is None else bool(exact)
    n_classes = len(getattr(generator, "class_names", ()) or ())
    fd_features = fd_features if fd_features is not None else metrics.RandomConvFeatures()
    n_test, n_pairs, batch = int(n_test), int(n_pairs), int(batch)

    data, pair_sets = _test_set_and_pairs(generator, n_test, n_pairs, seed)

    total = n_test + 4 * n_pairs
    dec, ceil = _Accumulator(), (_Accumulator() if with_ceiling else None)
    truth: dict[str, list[Tensor]] = {k: [] for k in ("latent", "attributes", "segmentation",
                                                      "landmarks")}
    scene_feats = []
    dlib_images: tuple[list[Tensor], list[Tensor]] = ([], [])
    recog_images: tuple[list[Tensor], list[Tensor]] = ([], [])
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
            if exact:
                rendered = generator.render(decoded)
                image = rendered.image
                dec.add_exact(rendered, item, n_classes)
                if ceil is not None:  # render(true latent) is the scene's ground truth
                    ceil.add_exact(item, item, n_classes)
            else:
                image = generator.synthesize(decoded)
            dec.add(generator, probes, decoded, scene, fd_features, image=image)
            keep = max(0, min(n_dlib - lo, latent.shape[0]))
            if keep:
                dlib_images[0].append(scene[:keep].cpu())
                dlib_images[1].append(image[:keep].cpu())
            if recognizer is not None:
                recog_images[0].append(scene.detach().cpu())
                recog_images[1].append(image.detach().cpu())
            if ceil is not None:  # the oracle's image is the scene (same render chunk)
                ceil.add(generator, probes, latent, scene, fd_features, image=scene)
            bar.update(latent.shape[0])
        scores = {s: _verification_scores(decode, generator, pair_sets[s], batch, bar)
                  for s in ("val", "test")}
    feats = np.concatenate(scene_feats)
    ver, ver_ci = _verification(scores["val"], pair_sets["val"][2], scores["test"],
                                pair_sets["test"][2], pair_sets["test"][3], boot)
    result = _finish(dec, truth, generator, probes, fd_features, feats, ver, ver_ci, n_pairs,
                     boot)
    if not exact:
        result.exact_note = "exact=False" if has_render else \
            f"{type(generator).__name__} has no render() with ground truth"
    if ceil is not None:
        ceil_scores = {}
        for s in ("val", "test"):
            a, b = pair_sets[s][0], pair_sets[s][1]
            ceil_scores[s] = torch.linalg.vector_norm(
                generator.identity(a) - generator.identity(b), dim=1).numpy().astype(np.float64)
        ceil_ver, ceil_ci = _verification(ceil_scores["val"], pair_sets["val"][2],
                                          ceil_scores["test"], pair_sets["test"][2],
                                          pair_sets["test"][3], boot)
        result.ceiling = _finish(ceil, truth, generator, probes, fd_features, feats, ceil_ver,
                                 ceil_ci, n_pairs, boot)
        result.ceiling.exact_note = result.exact_note
        result.ceiling.seconds = float("nan")
    if recognizer is not None:
        _recognizer_scores(result, recognizer, torch.cat(recog_images[0]),
                           torch.cat(recog_images[1]), seed)
    if dlib_model is not None:
        scores_dlib, per_face = _dlib_scores(torch.cat(dlib_images[0]),
                                             torch.cat(dlib_images[1]), dlib_model)
        for key, value in scores_dlib.items():
            setattr(result, key, value)
        _put(result.ci, "dlib_verification", boot.ci(per_face["match"]))
        _put(result.ci, "dlib_landmark_nme", boot.ci(per_face["nme"]))
    result.seconds = time.perf_counter() - t0
    return result
