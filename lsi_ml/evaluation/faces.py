"""dlib face detection, 68-point landmarks and 128-d descriptors (optional ``faces`` extra).

Needs ``pip install "lsi-toolkit[faces]"``: ``dlib-bin`` (a prebuilt dlib) and
``face-recognition-models`` (dlib's model files: the 68-point shape predictor and the ResNet
face-recognition network). Both are imported lazily, so ``import lsi_ml.evaluation.faces`` always
works
and the first use raises :class:`~lsi_hw.errors.ConfigError` if they are missing.

Images are numpy ``uint8`` ``(H, W, 3)`` (or ``(H, W)`` grey), numpy float ``(H, W[, 3])`` in
``[0, 1]``, or torch ``(3, H, W)`` / ``(1, H, W)`` float in ``[0, 1]``. Boxes are
``(left, top, right, bottom)`` pixel coordinates (inclusive, as dlib's rectangles) and
landmarks ``(x, y)`` pixels, pixel centres at integers (the convention of
:class:`~lsi_ml.generators.base.RenderOutput`).

This gives the paper's *Dlib* face-verification metric: two faces are the same person when the
Euclidean distance of their descriptors is below 0.6 (dlib's / face_recognition's threshold),
and 68-landmark pseudo ground truth for real images.

:func:`dlib_reconstruction_scores` applies it to reconstructions against their originals
(both upsampled to at least :data:`DLIB_MIN_SIZE` px): the ``dlib_*`` scores of
``evaluate_decoder(..., dlib=True)``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lsi_hw.errors import ConfigError
from lsi_ml.evaluation.metrics import landmark_nme, landmark_nme_per_image

__all__ = [
    "DEEPFACE_DLIB_THRESHOLDS",
    "DLIB_MIN_SIZE",
    "DLIB_THRESHOLD",
    "DlibFaces",
    "DlibVerification",
    "FaceBox",
    "dlib_landmark_nme",
    "dlib_reconstruction_scores",
    "dlib_reconstruction_scores_per_face",
    "dlib_verification",
    "load_dlib_faces",
    "to_uint8_rgb",
]

DLIB_THRESHOLD = 0.6
"""Descriptor distance below which dlib calls two faces the same person."""

DLIB_MIN_SIZE = 256
"""Images are upsampled (bicubic) so that their shorter side is at least this before dlib."""

_INSTALL = 'pip install "lsi-toolkit[faces]"  (installs dlib-bin and face-recognition-models)'

ImageLike = np.ndarray | Tensor


@dataclass(frozen=True)
class FaceBox:
    """A detected face: inclusive pixel box and the detector's score (higher = surer)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = float("nan")

    @property
    def width(self) -> int:
        """Box width in pixels."""
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        """Box height in pixels."""
        return self.bottom - self.top + 1


def _import_dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        raise ConfigError(f"dlib is not installed; {_INSTALL}") from exc


@functools.lru_cache(maxsize=1)
def _model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ConfigError(f"face_recognition_models (dlib's model files) is missing; {_INSTALL}")
    folder = Path(spec.origin).parent / "models"
    for name in ("shape_predictor_68_face_landmarks.dat",
                 "dlib_face_recognition_resnet_model_v1.dat"):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name} is missing; reinstall with {_INSTALL}")
    return folder


@functools.lru_cache(maxsize=1)
def _models() -> tuple[Any, Any, Any]:
    dlib = _import_dlib()
    folder = _model_dir()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(
        str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
    return detector, predictor, recognizer


def to_uint8_rgb(image: ImageLike) -> np.ndarray:
    """Convert one image to a C-contiguous ``uint8`` ``(H, W, 3)`` array (what dlib reads).

    Parameters
    ----------
    image : numpy.ndarray or Tensor
        ``uint8`` ``(H, W[, 3])``, float ``(H, W[, 3])`` in [0, 1], or a torch
        ``(3, H, W)`` / ``(1, H, W)`` / ``(H, W)`` float in [0, 1] (or uint8).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.
    """
    if isinstance(image, Tensor):
        t = image.detach().cpu()
        if t.dim() == 3 and t.shape[0] in (1, 3):
            t = t.permute(1, 2, 0)
        arr = t.numpy()
    else:
        arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ConfigError(
            f"expected an image (H, W, 3) numpy or (3, H, W) torch, got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ConfigError(f"image dtype must be uint8 or float in [0, 1], got {arr.dtype}")
        if not np.isfinite(arr).all():
            raise ConfigError("image contains NaN or inf values")
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _as_list(images: ImageLike | Sequence[ImageLike]) -> list[np.ndarray]:
    """A batch ((n, 3, H, W) torch, (n, H, W, 3) numpy or a sequence) as a list of images."""
    if isinstance(images, Tensor) and images.dim() == 4:
        return [to_uint8_rgb(im) for im in images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [to_uint8_rgb(im) for im in images]
    if isinstance(images, (Tensor, np.ndarray)):
        return [to_uint8_rgb(images)]
    return [to_uint8_rgb(im) for im in images]


class DlibFaces:
    """dlib's HOG face detector, 68-point shape predictor and ResNet face descriptor.

    Parameters
    ----------
    upsample : int or None
        Times the detector doubles the image before searching (finds faces smaller than its
        ~80 px minimum). ``None``: 0 for images whose shorter side is >= 256 px, else the
        fewest doublings (at most 2) reaching 256 px.
    min_score : float
        Detections whose score is below this are dropped (dlib's default is 0).

    Raises
    ------
    ConfigError
        dlib or face_recognition_models is not installed (on construction).
    """

    def __init__(self, upsample: int | None = None, min_score: float = 0.0) -> None:
        if upsample is not None and not 0 <= int(upsample) <= 4:
            raise ConfigError(f"upsample={upsample} must be None or in 0..4")
        self.upsample = upsample
        self.min_score = float(min_score)
        self._dlib = _import_dlib()
        self._detector, self._predictor, self._recognizer = _models()

    def _upsample_for(self, img: np.ndarray) -> int:
        if self.upsample is not None:
            return int(self.upsample)
        short, k = min(img.shape[:2]), 0
        while short * 2**k < 256 and k < 2:
            k += 1
        return k

    def detect(self, image: ImageLike) -> list[FaceBox]:
        """Faces in ``image``, best score first.

        Parameters
        ----------
        image : numpy.ndarray or Tensor
            One image (see the module docstring).

        Returns
        -------
        list of FaceBox
            Inclusive pixel boxes with detector scores; empty if no face was found.
        """
        img = to_uint8_rgb(image)
        rects, scores, _ = self._detector.run(img, self._upsample_for(img), self.min_score)
        boxes = [FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s))
                 for r, s in zip(rects, scores, strict=True) if s >= self.min_score]
        return sorted(boxes, key=lambda b: -b.score)

    def _rect(self, img: np.ndarray, box: FaceBox | Sequence[int] | None) -> Any:
        if box is None:
            found = self.detect(img)
            if found:
                box = found[0]
            else:  # no face found: treat the whole image as the face box
                return self._dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
        if isinstance(box, FaceBox):
            left, top, right, bottom = box.left, box.top, box.right, box.bottom
        else:
            if len(box) != 4:
                raise ConfigError(f"box must be (left, top, right, bottom), got {box}")
            left, top, right, bottom = (round(float(v)) for v in box)
        if right <= left or bottom <= top:
            raise ConfigError(f"empty box (left, top, right, bottom)={(left, top, right, bottom)}")
        return self._dlib.rectangle(int(left), int(top), int(right), int(bottom))

    def landmarks(self, image: ImageLike, box: FaceBox | Sequence[int] | None = None
                  ) -> np.ndarray:
        """dlib's 68 iBUG landmarks.

        Parameters
        ----------
        image : numpy.ndarray or Tensor
            One image.
        box : FaceBox or (left, top, right, bottom), optional
            Face box; default the best detection, or the whole image if none is found.

        Returns
        -------
        numpy.ndarray
            ``(68, 2)`` float64 ``(x, y)`` pixel coordinates.
        """
        img = to_uint8_rgb(image)
        shape = self._predictor(img, self._rect(img, box))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def descriptor(self, image: ImageLike, box: FaceBox | Sequence[int] | None = None, *,
                   num_jitters: int = 0) -> np.ndarray:
        """dlib's 128-d face descriptor (Euclidean distance < 0.6: same person).

        Parameters
        ----------
        image : numpy.ndarray or Tensor
            One image.
        box : FaceBox or (left, top, right, bottom), optional
            Face box; default the best detection, or the whole image if none is found.
        num_jitters : int
            Extra randomly jittered crops averaged (0 = dlib's single pass; slower if > 0).

        Returns
        -------
        numpy.ndarray
            ``(128,)`` float64 descriptor (unit-free; typical norms ~1).
        """
        img = to_uint8_rgb(image)
        shape = self._predictor(img, self._rect(img, box))
        if num_jitters:
            vec = self._recognizer.compute_face_descriptor(img, shape, int(num_jitters))
        else:
            vec = self._recognizer.compute_face_descriptor(img, shape)
        return np.asarray(vec, dtype=np.float64)


DEEPFACE_DLIB_THRESHOLDS: dict[str, float] = {"euclidean": 0.6, "euclidean_l2": 0.4,
                                               "cosine": 0.07}
"""DeepFace's verification thresholds for its Dlib model, per distance metric."""


@dataclass(frozen=True)
class DlibVerification:
    """Outcome of :func:`dlib_verification`.

    Attributes
    ----------
    distance : numpy.ndarray
        ``(n,)`` distance between the two descriptors of each pair (in ``metric``).
    same : numpy.ndarray
        ``(n,)`` bool, ``distance < threshold``.
    threshold : float
        The decision threshold used (0.6 for the default Euclidean metric).
    metric : str
        ``"euclidean"``, ``"euclidean_l2"`` (of unit-normalised descriptors) or ``"cosine"``
        (``1 - cos``).
    """

    distance: np.ndarray
    same: np.ndarray
    threshold: float = DLIB_THRESHOLD
    metric: str = "euclidean"


def _distance(u: np.ndarray, v: np.ndarray, metric: str) -> float:
    if metric == "euclidean":
        return float(np.linalg.norm(u - v))
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if metric == "euclidean_l2":
        return float(np.linalg.norm(u / nu - v / nv))
    return float(1.0 - np.dot(u, v) / (nu * nv))


def dlib_verification(
    images_a: ImageLike | Sequence[ImageLike],
    images_b: ImageLike | Sequence[ImageLike],
    *,
    metric: str = "euclidean",
    threshold: float | None = None,
    faces: DlibFaces | None = None,
) -> DlibVerification:
    """Pairwise dlib face verification: is ``images_a[i]`` the same person as ``images_b[i]``?

    Each image's descriptor uses its best detected face (the whole image when none is found).
    The pair is the same person when the descriptor distance is below ``threshold``. The
    default, Euclidean distance < 0.6, is the dlib / face_recognition convention. The LSI
    paper's *Dlib* verification used DeepFace's threshold for its Dlib model instead; DeepFace
    has one per metric (:data:`DEEPFACE_DLIB_THRESHOLDS`: Euclidean 0.6, Euclidean of
    unit-normalised descriptors 0.4, cosine distance 0.07, and cosine is DeepFace's default
    metric), so pass ``metric="cosine"`` to follow DeepFace's defaults. Which metric the paper
    used is not stated, so numbers from different metrics are not interchangeable.

    Parameters
    ----------
    images_a, images_b
        ``n`` images each: torch ``(n, 3, H, W)``, numpy ``(n, H, W, 3)`` or sequences.
    metric : {"euclidean", "euclidean_l2", "cosine"}
        Descriptor distance.
    threshold : float, optional
        Decision threshold (> 0); default ``DEEPFACE_DLIB_THRESHOLDS[metric]`` (0.6 for
        Euclidean, dlib's own value).
    faces : DlibFaces, optional
        Detector/predictor to use (default ``DlibFaces()``).

    Returns
    -------
    DlibVerification
        Distances and same-person decisions per pair.
    """
    if metric not in DEEPFACE_DLIB_THRESHOLDS:
        raise ConfigError(f"metric={metric!r} is not one of {tuple(DEEPFACE_DLIB_THRESHOLDS)}")
    thr = DEEPFACE_DLIB_THRESHOLDS[metric] if threshold is None else float(threshold)
    if not thr > 0:
        raise ConfigError(f"threshold={threshold} must be > 0")
    a, b = _as_list(images_a), _as_list(images_b)
    if len(a) != len(b):
        raise ConfigError(f"need as many images in a as in b, got {len(a)} and {len(b)}")
    f = faces if faces is not None else DlibFaces()
    dist = np.array([_distance(f.descriptor(x), f.descriptor(y), metric)
                     for x, y in zip(a, b, strict=True)], dtype=np.float64)
    return DlibVerification(distance=dist, same=dist < thr, threshold=thr, metric=metric)


def dlib_landmark_nme(
    images: ImageLike | Sequence[ImageLike],
    landmarks_true: np.ndarray | Tensor,
    *,
    faces: DlibFaces | None = None,
) -> float:
    """Landmark NME of dlib's 68 points against reference landmarks.

    Parameters
    ----------
    images
        ``n`` images (torch ``(n, 3, H, W)``, numpy ``(n, H, W, 3)`` or a sequence).
    landmarks_true : array_like
        ``(n, 68, 2)`` (or ``(68, 2)`` for one image) reference ``(x, y)`` pixels.
    faces : DlibFaces, optional
        Detector/predictor to use (default ``DlibFaces()``).

    Returns
    -------
    float
        :func:`lsi_ml.evaluation.metrics.landmark_nme` (mean over images, x100, normalised by the
        reference box diagonal).
    """
    imgs = _as_list(images)
    ref = np.asarray(landmarks_true.detach().cpu() if isinstance(landmarks_true, Tensor)
                     else landmarks_true, dtype=np.float64)
    if ref.ndim == 2:
        ref = ref[None]
    if ref.shape != (len(imgs), 68, 2):
        raise ConfigError(
            f"landmarks_true must have shape ({len(imgs)}, 68, 2) for {len(imgs)} images, "
            f"got {ref.shape}"
        )
    f = faces if faces is not None else DlibFaces()
    pred = np.stack([f.landmarks(im) for im in imgs])
    return landmark_nme(pred, ref)


def load_dlib_faces() -> DlibFaces:
    """A :class:`DlibFaces`, or ConfigError naming the ``faces`` extra (for
    ``evaluate_decoder(dlib=True)`` / ``lsi-ml eval --dlib``)."""
    try:
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
    return dlib_reconstruction_scores_per_face(originals, reconstructions, faces)[0]


def dlib_reconstruction_scores_per_face(
        originals: Tensor, reconstructions: Tensor, faces: Any
) -> tuple[dict[str, float | int], dict[str, np.ndarray]]:
    """:func:`dlib_reconstruction_scores` plus its per-face values (for intervals):
    ``match`` (bool, one per face detected in the original) and ``nme`` (one per face
    detected in both)."""
    if originals.dim() != 4 or originals.shape != reconstructions.shape:
        raise ConfigError(f"need two (n, 3, H, W) batches of the same shape, got "
                          f"{tuple(originals.shape)} and {tuple(reconstructions.shape)}")
    f = faces if faces is not None else load_dlib_faces()
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
    nme_per = (landmark_nme_per_image(np.stack(lm_pred), np.stack(lm_ref)) if lm_ref
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
