"""Unit tests for lsi_ml.evaluation.metrics: hand-computed cases (arithmetic in comments) +
properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from skimage.metrics import structural_similarity

from lsi_ml.evaluation.frechet import (
    INCEPTION_NAME,
    FeatureSpace,
    FrechetResult,
    InceptionFeatures,
    RandomConvFeatures,
    frechet_distance,
    frechet_distance_from_stats,
    frechet_distance_images,
)
from lsi_ml.evaluation.metrics import (
    VerificationResult,
    attribute_accuracy,
    landmark_nme,
    landmark_nme_per_image,
    latent_errors,
    pair_distances,
    psnr,
    segmentation_f1,
    ssim,
    verification_accuracy,
)
from lsi_ml.evaluation.table1 import table1_header, table1_row

FAST = settings(max_examples=40, deadline=None)
finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


# ------------------------------------------------------------------------------ verification
def test_verification_threshold_tiny_set() -> None:
    # val distances 0.1 0.2 | 0.4 0.5 (same, same | diff, diff); candidate thresholds are the
    # midpoints 0.15, 0.3, 0.45 plus 0.0 / 0.6 outside: accuracies 3/4, 4/4, 3/4, 2/4, 2/4,
    # so the threshold is 0.3 = midpoint of 0.2 and 0.4.
    res = verification_accuracy(
        [0.1, 0.2, 0.4, 0.5], [1, 1, 0, 0], [0.25, 0.35, 0.05, 0.9], [1, 1, 0, 0]
    )
    assert isinstance(res, VerificationResult)
    assert res.threshold == pytest.approx(0.3)
    assert res.val_accuracy == 1.0
    # test: predicted same = d < 0.3 -> [T, F, T, F] vs truth [T, T, F, F]
    # correct [T, F, F, T] -> acc 2/4; TPR = 1/2 (0.25 accepted, 0.35 rejected);
    # TNR = 1/2 (0.9 rejected, 0.05 wrongly accepted)
    assert res.accuracy == pytest.approx(0.5)
    assert res.tpr == pytest.approx(0.5)
    assert res.tnr == pytest.approx(0.5)
    np.testing.assert_array_equal(res.predict([0.29, 0.31]), [True, False])


def test_verification_similarity_and_torch() -> None:
    # similarities 0.9 0.8 | 0.6 0.5: best threshold = midpoint of 0.8 and 0.6 = 0.7;
    # test sims 0.75 (same, accepted), 0.65 (diff, rejected) -> accuracy 1, TPR 1, TNR 1
    res = verification_accuracy(
        torch.tensor([0.9, 0.8, 0.6, 0.5]),
        torch.tensor([True, True, False, False]),
        np.array([0.75, 0.65]),
        [True, False],
        higher_is_same=True,
    )
    assert res.threshold == pytest.approx(0.7)
    assert (res.accuracy, res.tpr, res.tnr) == (1.0, 1.0, 1.0)


def test_verification_tie_prefers_middle() -> None:
    # d = 1, 2, 3, 4 with same = [T, F, F, F]: candidates 0, 1.5, 2.5, 3.5, 5 give accuracy
    # 3/4, 4/4, 3/4, 2/4, 1/4 -> unique best 1.5. With same = [T, F, T, F]: accuracies at
    # 0, 1.5, 2.5, 3.5, 5 are 2/4, 3/4, 2/4, 3/4, 2/4 -> tie between 1.5 and 3.5; their midpoint
    # 2.5 scores only 2/4, so the tied candidate nearest to it (the lower on equal distance) wins.
    res = verification_accuracy([1, 2, 3, 4], [1, 0, 0, 0], [1], [1])
    assert res.threshold == pytest.approx(1.5)
    res = verification_accuracy([1, 2, 3, 4], [1, 0, 1, 0], [1], [1])
    assert res.threshold == pytest.approx(1.5)
    assert res.val_accuracy == pytest.approx(0.75)


def test_pair_distances_hand() -> None:
    a = [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    b = [[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]]
    # cosine: orthogonal -> 1 - 0 = 1; parallel -> 1 - 1 = 0; zero vector -> cos 0 -> 1
    np.testing.assert_allclose(pair_distances(a, b), [1.0, 0.0, 1.0])
    # euclidean: sqrt(1 + 1), |1 - 2| = 1, 1
    np.testing.assert_allclose(pair_distances(a, b, "euclidean"), [math.sqrt(2), 1.0, 1.0])
    with pytest.raises(ValueError):
        pair_distances(a, b, "manhattan")  # type: ignore[arg-type]


@FAST
@given(
    hnp.arrays(np.float64, (4, 3), elements=finite), hnp.arrays(np.float64, (4, 3), elements=finite)
)
def test_pair_distances_symmetric(a: np.ndarray, b: np.ndarray) -> None:
    for m in ("cosine", "euclidean"):
        np.testing.assert_allclose(pair_distances(a, b, m), pair_distances(b, a, m))


@FAST
@given(
    hnp.arrays(np.float64, 12, elements=st.floats(0, 2)),
    hnp.arrays(np.bool_, 12),
)
def test_verification_accuracy_bounds(d: np.ndarray, same: np.ndarray) -> None:
    res = verification_accuracy(d, same, d, same)
    assert 0.0 <= res.accuracy <= 1.0
    # threshold chosen on the same set -> at least the better constant prediction
    assert res.accuracy >= max(same.mean(), 1 - same.mean()) - 1e-12


# ------------------------------------------------------------------------------ attributes
def test_attribute_accuracy_logits_and_probs() -> None:
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2]])
    targets = np.array([[1, 0, 0], [0, 1, 0]])
    # predictions (logit > 0): [[1, 0, 1], [0, 1, 0]]
    # correct:                 [[T, T, F], [T, T, T]] -> per attribute [1, 1, 1/2], mean 5/6
    mean, per = attribute_accuracy(logits, targets)
    np.testing.assert_allclose(per, [1.0, 1.0, 0.5])
    assert mean == pytest.approx(5 / 6)
    probs = torch.sigmoid(torch.tensor(logits))
    _, per_p = attribute_accuracy(probs, torch.tensor(targets), from_logits=False)
    np.testing.assert_allclose(per_p, per)
    # CelebA's raw {-1, 1} encoding gives the same
    assert attribute_accuracy(logits, 2 * targets - 1)[0] == pytest.approx(5 / 6)


# ------------------------------------------------------------------------------ segmentation
def test_segmentation_f1_2x3_by_counting() -> None:
    target = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    # class 0: TP (0,0); FP (1,2); FN (0,1)          -> 2*1 / (2 + 1 + 1) = 1/2
    # class 1: TP (0,2),(1,0); FP (0,1); FN none     -> 2*2 / (4 + 1 + 0) = 4/5
    # class 2: TP (1,1); FP none; FN (1,2)           -> 2*1 / (2 + 0 + 1) = 2/3
    # class 3: absent in both -> NaN, excluded from the mean
    mean, per = segmentation_f1(pred, target, n_classes=4)
    np.testing.assert_allclose(per[:3], [0.5, 0.8, 2 / 3])
    assert np.isnan(per[3])
    assert mean == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # without background: (4/5 + 2/3) / 2
    mean_fg, _ = segmentation_f1(pred, target, 4, ignore_background=True)
    assert mean_fg == pytest.approx((0.8 + 2 / 3) / 2)
    # micro: TP 4, FP 2, FN 2 -> 8 / 12 = pixel accuracy 4/6
    assert segmentation_f1(pred, target, 4, average="micro")[0] == pytest.approx(2 / 3)
    # scores (n, C, H, W) are arg-maxed; torch accepted
    scores = torch.nn.functional.one_hot(torch.tensor(pred)[None], 4).permute(0, 3, 1, 2)
    mean_s, _ = segmentation_f1(scores.float(), torch.tensor(target)[None], 4)
    assert mean_s == pytest.approx(mean)
    # ignore_index drops pixels: ignoring (1,2) removes class 0's FP and class 2's FN
    t2 = target.copy()
    t2[1, 2] = 255
    _, per2 = segmentation_f1(pred, t2, 4, ignore_index=255)
    np.testing.assert_allclose(per2[:3], [2 / 3, 0.8, 1.0])


@FAST
@given(
    hnp.arrays(np.int64, (2, 5, 5), elements=st.integers(0, 3)),
    hnp.arrays(np.int64, (2, 5, 5), elements=st.integers(0, 3)),
)
def test_segmentation_f1_bounds_and_symmetry(p: np.ndarray, t: np.ndarray) -> None:
    mean, per = segmentation_f1(p, t, 4)
    assert 0.0 <= mean <= 1.0
    ok = per[~np.isnan(per)]
    assert np.all((ok >= 0) & (ok <= 1))
    # swapping prediction and target swaps FP and FN: F1 unchanged
    mean_sw, per_sw = segmentation_f1(t, p, 4)
    assert mean_sw == pytest.approx(mean)
    np.testing.assert_allclose(per_sw, per)
    assert segmentation_f1(t, t, 4)[0] == 1.0


# ------------------------------------------------------------------------------ landmarks
SQUARE = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def test_landmark_nme_square_box() -> None:
    # box 10 x 10 -> diagonal 10*sqrt(2)
    # image 1: every point off by (1, 0) -> mean error 1 -> 100 / (10 sqrt 2) = 7.0711
    # image 2: one point off by (3, 4) (error 5), others exact -> mean 5/4
    #          -> 100 * 1.25 / (10 sqrt 2) = 8.8388
    pred1 = SQUARE + np.array([1.0, 0.0])
    pred2 = SQUARE.copy()
    pred2[2] += [3.0, 4.0]
    per = landmark_nme_per_image(np.stack([pred1, pred2]), np.stack([SQUARE, SQUARE]))
    np.testing.assert_allclose(per, [100 / (10 * math.sqrt(2)), 125 / (10 * math.sqrt(2))])
    assert landmark_nme(torch.tensor(np.stack([pred1, pred2])), np.stack([SQUARE, SQUARE])) == (
        pytest.approx((7.0710678 + 8.8388348) / 2)
    )
    assert landmark_nme(pred1, SQUARE) == pytest.approx(7.0710678)
    with pytest.raises(ValueError):
        landmark_nme(np.zeros((3, 2)), np.zeros((3, 2)))


@FAST
@given(
    hnp.arrays(np.float64, (5, 2), elements=st.floats(-1, 1)),
    st.tuples(finite, finite),
    st.floats(0.1, 50),
)
def test_landmark_nme_translation_scale_invariant(
    noise: np.ndarray, shift: tuple[float, float], s: float
) -> None:
    target = np.array([[0.0, 0.0], [4.0, 1.0], [2.0, 5.0], [1.0, 3.0], [3.0, 2.0]])
    pred = target + noise
    base = landmark_nme(pred, target)
    assert landmark_nme(pred + shift, target + shift) == pytest.approx(base, rel=1e-9, abs=1e-9)
    assert landmark_nme(s * pred, s * target) == pytest.approx(base, rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------------------ latents
def test_latent_errors_hand() -> None:
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = np.array([[0.0, 0.0], [3.0, 0.0]])
    # diff [[1, 2], [0, 4]]: L1 = 7/4; MSE = (1 + 4 + 0 + 16)/4 = 21/4;
    # per-sample L2 = sqrt(5), 4 -> mean (sqrt 5 + 4)/2
    e = latent_errors(pred, target)
    assert e["l1"] == pytest.approx(1.75)
    assert e["mse"] == pytest.approx(5.25)
    assert e["rmse"] == pytest.approx(math.sqrt(5.25))
    assert e["l2"] == pytest.approx((math.sqrt(5) + 4) / 2)


# ------------------------------------------------------------------------------ PSNR / SSIM
def test_latent_r2_hand() -> None:
    """Targets (n=4, 3 dims): exact dim -> 1, the mean -> 0, a constant target -> NaN."""
    from lsi_ml.evaluation.metrics import latent_r2

    target = np.array([[1.0, 0.0, 5.0], [-1.0, 2.0, 5.0], [1.0, 4.0, 5.0], [-1.0, 6.0, 5.0]])
    pred = target.copy()
    pred[:, 1] = 3.0  # the mean of dim 1: R^2 = 0
    pred[:, 0] = [0.0, 0.0, 2.0, -2.0]  # errors -1, 1, 1, -1: mse 1 = var 1 -> 0
    r2 = latent_r2(pred, target)
    assert r2[0] == pytest.approx(0.0) and r2[1] == pytest.approx(0.0)
    assert np.isnan(r2[2])
    pred[:, 0] = target[:, 0]
    pred[:, 1] = target[:, 1] + 1.0  # mse 1, var 5 -> 0.8
    r2 = latent_r2(pred, target)
    assert r2[0] == 1.0 and r2[1] == pytest.approx(0.8)
    with pytest.raises(ValueError):
        latent_r2(pred[:1], target[:1])


def test_psnr_known_mse() -> None:
    a = np.zeros((2, 3, 8, 8))
    b = np.full((2, 3, 8, 8), 0.1)
    # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    # range 255, MSE 1 -> 10 log10(255^2) = 48.1308 dB
    assert psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=255.0) == pytest.approx(48.130804)
    np.testing.assert_allclose(psnr(torch.tensor(a), b, reduction="none"), [20.0, 20.0])
    assert psnr(a, a) == math.inf


def test_ssim_identical_constant_and_skimage() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 32, 24))
    assert ssim(x, x) == pytest.approx(1.0)
    # constant images 0.5 and 0.25: sigmas are 0, so SSIM = (2 mu_x mu_y + C1)/(mu_x^2+mu_y^2+C1)
    # with C1 = 0.01^2: (0.25 + 1e-4) / (0.3125 + 1e-4) = 0.2501 / 0.3126
    c = ssim(np.full((16, 16), 0.5), np.full((16, 16), 0.25))
    assert c == pytest.approx(0.2501 / 0.3126)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    ours = ssim(torch.tensor(x), y, reduction="none")
    ref = [
        structural_similarity(
            x[i],
            y[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for i in range(2)
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    ref_gray = structural_similarity(
        x[0, 0],
        y[0, 0],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert ssim(x[0, 0], y[0, 0]) == pytest.approx(ref_gray, rel=1e-10)


@FAST
@given(
    hnp.arrays(np.float64, (1, 12, 12), elements=st.floats(0, 1)),
    hnp.arrays(np.float64, (1, 12, 12), elements=st.floats(0, 1)),
)
def test_psnr_ssim_symmetric(a: np.ndarray, b: np.ndarray) -> None:
    assert ssim(a, b) == pytest.approx(ssim(b, a), rel=1e-9, abs=1e-12)
    assert ssim(a, b) <= 1.0 + 1e-9
    assert psnr(a, b) == pytest.approx(psnr(b, a))


# ------------------------------------------------------------------------------ Frechet
def test_frechet_1d_closed_form() -> None:
    # a = {-1, 1}: mean 0, var (1+1)/(2-1) = 2;  b = {2, 6}: mean 4, var (4+4)/1 = 8
    # FD = (0-4)^2 + 2 + 8 - 2 sqrt(2*8) = 16 + 10 - 8 = 18
    assert frechet_distance([-1.0, 1.0], torch.tensor([2.0, 6.0])) == pytest.approx(18.0)
    assert frechet_distance_from_stats(0.0, 2.0, 4.0, 8.0) == pytest.approx(18.0)


def test_frechet_diagonal_closed_form() -> None:
    # stats: mu1 = 0, S1 = diag(1, 4); mu2 = (1, 2), S2 = diag(4, 9)
    # ||dmu||^2 = 5; tr(S1 + S2) = 18; 2 tr sqrt(S1 S2) = 2 (2 + 6) = 16 -> FD = 7
    fd = frechet_distance_from_stats([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0]))
    assert fd == pytest.approx(7.0)
    # samples: a = (+-1, 0), (0, +-2): mean 0, cov (ddof 1) = diag(2/3, 8/3)
    # b = 2a + (3, 0): mean (3, 0), cov = diag(8/3, 32/3)
    # FD = 9 + (2/3 + 8/3 + 8/3 + 32/3) - 2 (4/3 + 16/3) = 9 + 50/3 - 40/3 = 37/3
    a = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    b = 2 * a + [3.0, 0.0]
    assert frechet_distance(a, b) == pytest.approx(37 / 3)


def test_frechet_self_is_zero() -> None:
    x = np.random.default_rng(1).standard_normal((300, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


@FAST
@given(
    st.integers(0, 2**32 - 1),
    hnp.arrays(np.float64, 3, elements=st.floats(-5, 5)),
    st.floats(0.1, 10),
)
def test_frechet_symmetric_nonnegative(seed: int, shift: np.ndarray, scale: float) -> None:
    # full-rank feature sets (sqrtm of a singular covariance product is only accurate to
    # ~sqrt(machine eps), as in every FID implementation)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((20, 3))
    b = rng.standard_normal((25, 3)) * scale + shift
    ab = frechet_distance(a, b)
    assert ab >= 0.0
    assert ab == pytest.approx(frechet_distance(b, a), rel=1e-6, abs=1e-8)
    # translating both sets leaves the distance unchanged
    assert frechet_distance(a + shift, b + shift) == pytest.approx(ab, rel=1e-6, abs=1e-8)


def test_random_conv_substitute_is_named_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((12, 3, 32, 32))
    y = rng.random((12, 1, 20, 20)) * 0.3
    fs = RandomConvFeatures(seed=0, dim=16)
    assert isinstance(fs, FeatureSpace)
    assert fs.name == "random-conv-16" and not fs.is_inception
    assert RandomConvFeatures().name == "random-conv-256"
    f1 = fs(x)
    assert f1.shape == (12, 16)
    np.testing.assert_array_equal(f1, RandomConvFeatures(seed=0, dim=16)(x))
    assert not np.allclose(f1, RandomConvFeatures(seed=1, dim=16)(x))
    res = frechet_distance_images(x, y, fs)
    assert isinstance(res, FrechetResult)
    assert res.feature_space_name == "random-conv-16"
    assert res.value > 0 and (res.n_a, res.n_b) == (12, 12)
    assert str(res).startswith("FD (substitute: random-conv-16) = ")
    assert "FID" not in str(res)
    assert frechet_distance_images(x, x, fs).value == pytest.approx(0.0, abs=1e-6)


def test_inception_features_user_callable_is_fid() -> None:
    def fake_inception(t: torch.Tensor) -> torch.Tensor:  # stands in for user weights
        return t.mean(dim=(2, 3))

    fs = InceptionFeatures(fake_inception)
    x = np.random.default_rng(0).random((5, 3, 8, 8))
    res = frechet_distance_images(x, x * 0.5, fs)
    assert res.is_inception and res.feature_space_name == INCEPTION_NAME
    assert str(res).startswith("FID = ")


# ------------------------------------------------------------------------------ Table 1
def test_table1_row() -> None:
    row = table1_row("1:256", 0.9098, 26.62, INCEPTION_NAME, 0.8915, 0.7094, 1.43)
    assert row == "| 1:256 | 90.98 | 26.62 | 89.15 | 70.94 | 1.43 |"
    sub = FrechetResult(12.3456, "random-conv-256", False, 10, 10)
    row = table1_row("1:8192", None, sub, None, 0.8381, 0.5377, 2.18)
    assert (
        row == "| 1:8192 | n/a | 12.35 (FD, substitute: random-conv-256) | 83.81 | 53.77 | 2.18 |"
    )
    row = table1_row(
        "1:4",
        VerificationResult(0.5, 0.3, 0.5, 0.5),
        3.0,
        "random-conv-256",
        0.5,
        0.5,
        float("nan"),
    )
    assert "substitute: random-conv-256" in row and row.endswith("| n/a |")
    with pytest.raises(ValueError):
        table1_row("1:256", 90.98, None, None, 0.9, 0.7, 1.4)  # percent instead of fraction
    with pytest.raises(ValueError):
        table1_row("1:256", 0.9, 12.0, None, 0.9, 0.7, 1.4)  # unnamed feature space
    assert table1_header().splitlines()[0].split(" | ")[2] == "FID"
    assert "random-conv-256" in table1_header("random-conv-256")
