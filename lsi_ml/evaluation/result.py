"""The scores of one evaluation (:class:`EvalResult`), as returned by both routes
(:func:`lsi_ml.evaluation.latent.evaluate_decoder` and
:func:`lsi_ml.evaluation.images.evaluate_images`), with their text and table forms."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lsi_ml.evaluation.faces import DLIB_MIN_SIZE
from lsi_ml.evaluation.frechet import FrechetResult
from lsi_ml.evaluation.table1 import table1_row, table1_row_ci

__all__ = ["EvalResult"]


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
        (:func:`lsi_ml.evaluation.metrics.latent_r2`; 1 exact, 0 = the mean latent).
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
        Exact readout (see :mod:`lsi_ml.evaluation.latent`): fraction of the attributes of
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
        (:mod:`lsi_ml.evaluation.recognizer`): each decoded image ``synthesize(decoded)`` against
        its
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
    def fd_result(self) -> FrechetResult:
        """The Frechet distance with its feature space (``str`` prints the right label)."""
        return FrechetResult(self.fd, self.fd_space, self.fd_is_inception,
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
        """One Markdown row for :func:`lsi_ml.evaluation.table1.table1_header` (``fd_space``
        given);
        with ``intervals`` the cells carry their bootstrap intervals, ``"89.15 [87.90,
        90.20]"`` (:func:`lsi_ml.evaluation.table1.table1_row_ci`)."""
        args = (ratio_label, self.verification_accuracy, self.fd_result, self.fd_space,
                self.attribute_accuracy, self.segmentation_f1, self.landmark_nme)
        if intervals and self.ci:
            return table1_row_ci(*args, ci=self.ci)
        return table1_row(*args)

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
