"""dlib faces (optional ``faces`` extra) on the real face images that ship with scikit-image.

Skipped cleanly when dlib or face_recognition_models is not installed
(``pip install "lsi-toolkit[faces]"``); the missing-dependency error is tested either way.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lsi_hw.errors import ConfigError
from lsi_ml.evaluation import faces as faces_mod
from lsi_ml.evaluation.metrics import landmark_nme

skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test faces")



@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def lfw() -> np.ndarray:
    return skdata.lfw_subset()


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def _lfw_face(lfw: np.ndarray, i: int, size: int = 150) -> np.ndarray:
    grey = (lfw[i] * 255).round().astype(np.uint8)
    return np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.BICUBIC))


def test_missing_dlib_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes ``import dlib`` raise ImportError
    faces_mod._models.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"lsi-toolkit\[faces\]"):
            faces_mod.DlibFaces()
    finally:
        faces_mod._models.cache_clear()


def test_lfw_subset_is_100_faces_then_100_non_faces(dlib_faces, lfw) -> None:
    assert lfw.shape == (200, 25, 25)
    found = np.array([len(dlib_faces.detect(im)) > 0 for im in lfw])  # float [0, 1] grey
    assert found[:100].sum() >= 80  # measured 88 with 2 automatic doublings (100 px)
    assert found[100:].sum() <= 5  # measured 0


def test_astronaut_one_face_with_68_landmarks_in_box(dlib_faces, astronaut) -> None:
    boxes = dlib_faces.detect(astronaut)
    assert len(boxes) == 1
    box = boxes[0]
    assert 60 <= box.width <= 150 and box.score > 0.5
    lm = dlib_faces.landmarks(astronaut)
    assert lm.shape == (68, 2)
    mx, my = 0.2 * box.width, 0.2 * box.height  # the jaw line may leave the HOG box a little
    assert (lm[:, 0] >= box.left - mx).all() and (lm[:, 0] <= box.right + mx).all()
    assert (lm[:, 1] >= box.top - my).all() and (lm[:, 1] <= box.bottom + my).all()
    # the points span the face, not a corner of it
    assert np.ptp(lm[:, 0]) > 0.7 * box.width and np.ptp(lm[:, 1]) > 0.7 * box.height
    # the same box passed explicitly gives the same points; torch input gives the same too
    assert np.allclose(dlib_faces.landmarks(astronaut, box=box), lm)
    as_torch = torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255.0
    assert np.allclose(dlib_faces.landmarks(as_torch), lm)


def test_landmarks_follow_a_rescaled_image(dlib_faces, astronaut) -> None:
    s = round(512 * 1.1)
    big = _resize(astronaut, s)
    ref = dlib_faces.landmarks(astronaut)
    back = (dlib_faces.landmarks(big) + 0.5) * 512 / s - 0.5
    nme = landmark_nme(back, ref)
    assert nme < 2.0  # measured 0.52 (x100 of the box diagonal)
    # the helper computes the same number in the rescaled frame
    nme2 = faces_mod.dlib_landmark_nme(big[None], ((ref + 0.5) * s / 512 - 0.5)[None],
                                       faces=dlib_faces)
    assert nme2 == pytest.approx(nme, rel=1e-6)
    # and it does see a wrong reference: points shifted by 10 % of the face
    assert faces_mod.dlib_landmark_nme(astronaut, ref + 0.1 * np.ptp(ref, axis=0),
                                       faces=dlib_faces) > 5.0


def test_descriptor_same_face_close_other_faces_far(dlib_faces, astronaut, lfw) -> None:
    d_astro = dlib_faces.descriptor(astronaut)
    assert d_astro.shape == (128,)
    shifted = _resize(astronaut, 563)[10:522, 14:526]  # 1.1x and shifted by 10 / 14 px
    same = np.linalg.norm(dlib_faces.descriptor(shifted) - d_astro)
    others = [np.linalg.norm(dlib_faces.descriptor(_lfw_face(lfw, i)) - d_astro)
              for i in (0, 2, 3)]
    assert same < faces_mod.DLIB_THRESHOLD  # measured 0.06
    assert min(others) > faces_mod.DLIB_THRESHOLD  # measured 0.78 .. 0.93
    assert min(others) > 3 * same
    # a small real face crop against a shifted copy of itself
    face = _lfw_face(lfw, 0, 160)
    d0 = dlib_faces.descriptor(face[5:155, 3:153])
    assert np.linalg.norm(dlib_faces.descriptor(_lfw_face(lfw, 0)) - d0) < 0.6  # measured 0.08


def test_dlib_verification_pairs(dlib_faces, astronaut, lfw) -> None:
    shifted = _resize(astronaut, 563)[10:522, 14:526]
    other = np.stack([_lfw_face(lfw, 2, 512)] * 3, axis=-1)
    a = torch.from_numpy(np.stack([astronaut, astronaut])).permute(0, 3, 1, 2) / 255.0
    b = np.stack([shifted, other])
    res = faces_mod.dlib_verification(a, b, faces=dlib_faces)
    assert res.same.tolist() == [True, False]
    assert res.distance[0] < 0.6 < res.distance[1]
    cos = faces_mod.dlib_verification(a, b, metric="cosine", faces=dlib_faces)
    assert cos.threshold == pytest.approx(0.07)
    assert cos.distance[0] < cos.distance[1]
    with pytest.raises(ConfigError, match="as many"):
        faces_mod.dlib_verification(a, b[:1], faces=dlib_faces)
    with pytest.raises(ConfigError, match="metric"):
        faces_mod.dlib_verification(a, b, metric="manhattan", faces=dlib_faces)


def test_image_folder_landmarks_on_real_faces(dlib_faces, astronaut, lfw, tmp_path) -> None:
    from lsi_ml.data.images import ImageFolderFaces

    head = np.ascontiguousarray(astronaut[30:250, 110:330])  # 220 px around the face
    imgs = {"0.png": head, "1.png": np.stack([_lfw_face(lfw, 0, 200)] * 3, axis=-1)}
    rows = []
    for name, im in imgs.items():
        Image.fromarray(im).save(tmp_path / name)
        rows.append(",".join([name, *(f"{v:.3f}" for v in dlib_faces.landmarks(im).ravel())]))
    (tmp_path / "landmarks.csv").write_text("name,coords\n" + "\n".join(rows) + "\n")
    ds = ImageFolderFaces(tmp_path, size=128, landmarks=tmp_path / "landmarks.csv")
    batch = ds.batch([0, 1])
    assert batch["image"].shape == (2, 3, 128, 128) and batch["name"] == ["0.png", "1.png"]
    # the landmark file, mapped into the 128 px frame, agrees with dlib run at 128 px
    for k in range(2):
        small = (batch["image"][k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pred = dlib_faces.landmarks(np.ascontiguousarray(small))
        assert landmark_nme(pred, batch["landmarks"][k].numpy()) < 4.0
