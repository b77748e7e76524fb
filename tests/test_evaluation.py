"""evaluate_decoder: oracle scores, monotone degradation with latent noise, input checks,
exact readout (render the decoded latent) and bootstrap intervals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.evaluation import metrics
from lsi_ml.evaluation.bootstrap import bootstrap_ci
from lsi_ml.evaluation.latent import evaluate_decoder, oracle_decoder
from lsi_ml.evaluation.result import EvalResult
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet, train_probes

SIZE = 32
KW = {"n_test": 48, "n_pairs": 32, "batch": 48, "seed": 0}
FAST = ProbeConfig(steps=100, batch=16, n_train=128, render_batch=128, seg_width=16,
                   seg_depth=1, landmark_maps=(1, 2), landmark_width=24, landmark_depth=2,
                   lr=3e-2, lr_attributes=0.1, warmup=10, progress=False)


@pytest.fixture(scope="module")
def generator() -> SynthFace:
    return SynthFace(SIZE, seed=0)


@pytest.fixture(scope="module")
def probes(generator: SynthFace) -> ProbeSet:
    return train_probes(generator, FAST)


def noisy(std: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)

    def decode(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        z = batch["latent"]
        return z + std * torch.randn(z.shape, generator=gen)

    return decode


@pytest.fixture(scope="module")
def oracle(generator: SynthFace, probes: ProbeSet) -> EvalResult:
    return evaluate_decoder(oracle_decoder, generator, probes, with_ceiling=True, **KW)


def test_oracle_is_perfect_where_it_must_be(oracle: EvalResult) -> None:
    assert oracle.verification_accuracy == 1.0
    assert oracle.verification_hard_accuracy == 1.0
    assert oracle.latent_l1 == 0.0 and oracle.latent_l2 == 0.0
    assert oracle.latent_r2 == 1.0 and oracle.identity_r2 == 1.0
    assert set(oracle.latent_r2_per_level) == {"coarse", "middle", "fine", "texture"}
    assert len(oracle.latent_r2_per_dim) == 96
    assert oracle.psnr == math.inf or oracle.psnr > 60
    assert oracle.ssim == pytest.approx(1.0, abs=1e-6)
    assert oracle.fd == pytest.approx(0.0, abs=1e-6)
    ceiling = oracle.ceiling
    assert ceiling is not None
    for name in ("attribute_accuracy", "segmentation_f1", "landmark_nme",
                 "verification_accuracy", "latent_l1"):
        assert getattr(ceiling, name) == pytest.approx(getattr(oracle, name))
    assert 0.0 < oracle.attribute_accuracy <= 1.0 and 0.0 < oracle.segmentation_f1 <= 1.0


def test_report_formats(oracle: EvalResult) -> None:
    assert oracle.fd_label == "FD (substitute: random-conv-256)"
    row = oracle.table1_row("oracle")
    assert row.startswith("| oracle | 100.00 [100.00, 100.00] |")
    lo, hi = oracle.ci["attribute_accuracy"]
    assert f"| {100 * oracle.attribute_accuracy:.2f} [{100 * lo:.2f}, {100 * hi:.2f}] |" in row
    assert oracle.table1_row("oracle", intervals=False).startswith("| oracle | 100.00 |")
    assert "FD, substitute: random-conv-256" in row and "FID" not in row
    text = oracle.summary()
    assert "ceiling" in text and "not FID" in text and "landmark NME" in text
    assert "identity dims R^2" in text
    assert "95 % bootstrap intervals (1000 resamples" in text
    assert "exact readout (render the decoded latent" in text
    assert text.index("exact segmentation F1") < text.index("probes on the latent") \
        < text.index("segmentation F1 (macro)")
    assert "100.000 [100.000, 100.000]" in text and "no interval for the Frechet" in text
    assert len(oracle.latent_dim_names) == 96 and oracle.latent_dim_names[0] == "coarse.yaw"
    report = oracle.r2_report(top=3)
    assert len(report.splitlines()) == 1 + 3 + 1 + 3  # header, 3 best, "...", 3 worst
    assert "1.000" in report and "..." in report
    assert len(oracle.r2_report().splitlines()) == 1 + 96
    data = oracle.as_dict()
    assert data["fd_label"] == oracle.fd_label
    assert data["ceiling"]["latent_l1"] == 0.0
    assert set(data["segmentation_f1_per_class"]) == set(SynthFace(SIZE).class_names)
    assert data["ci"]["verification_accuracy"] == (1.0, 1.0)
    assert data["exact_seg_f1"] == 1.0 and data["ceiling"]["exact_nme"] == 0.0
    row = oracle.ci_row()
    assert row["exact_seg_f1"] == 1.0
    assert row["landmark_nme_ci_lo"] == oracle.ci["landmark_nme"][0]
    assert row["verification_hard_accuracy_ci_hi"] == 1.0 and "fd_ci_lo" not in row


FACE_CI = {"attribute_accuracy", "segmentation_f1", "landmark_nme", "psnr", "ssim",
           "latent_l1", "latent_mse", "latent_l2", "latent_r2", "identity_r2",
           "exact_attribute_accuracy", "exact_seg_f1", "exact_nme"}
PAIR_CI = {"verification_accuracy", "verification_hard_accuracy", "verification_tpr",
           "verification_tnr"}


def test_oracle_exact_readout_is_perfect(oracle: EvalResult) -> None:
    """render(true latent) IS the scene's ground truth: 100 % attributes, F1 1, NME 0."""
    for res in (oracle, oracle.ceiling):
        assert res is not None and res.exact_note == "" and res.has_exact
        assert res.exact_attribute_accuracy == 1.0
        assert res.exact_seg_f1 == 1.0
        assert res.exact_nme == pytest.approx(0.0, abs=1e-9)
        assert set(res.exact_attribute_accuracy_per_attribute) == set(
            SynthFace(SIZE).attribute_names)
        assert all(v == 1.0 for v in res.exact_attribute_accuracy_per_attribute.values())
        assert res.ci["exact_attribute_accuracy"] == (1.0, 1.0)
        assert res.ci["exact_seg_f1"] == (1.0, 1.0)
        assert res.ci["exact_nme"] == pytest.approx((0.0, 0.0), abs=1e-9)
    # the probes read the same latents imperfectly: exact readout is what they cannot spoil
    assert oracle.segmentation_f1 < oracle.exact_seg_f1


def test_every_score_has_an_interval_around_it(oracle: EvalResult, generator: SynthFace,
                                               probes: ProbeSet) -> None:
    res = evaluate_decoder(noisy(0.7), generator, probes, **KW)
    assert set(res.ci) == FACE_CI | PAIR_CI and res.n_boot == 1000 and res.ci_level == 0.95
    for name, (low, high) in res.ci.items():
        value = getattr(res, name)
        assert low <= value <= high, (name, low, value, high)
        assert high > low, name  # a noisy decoder: every score varies over the faces
    assert "fd" not in res.ci
    assert set(oracle.ci) == FACE_CI | PAIR_CI


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # FD of one repeated face
def test_mean_latent_decoder_is_clearly_worse_in_exact_readout(
        generator: SynthFace, probes: ProbeSet, oracle: EvalResult) -> None:
    """The exact readout can fail: a decoder that ignores the camera and returns the prior's
    mean latent renders one average face for every scene."""
    mean = generator.sample_latent(4096, torch.Generator().manual_seed(9)).mean(0)

    def decode(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return mean.expand_as(batch["latent"]).clone()

    res = evaluate_decoder(decode, generator, probes, **KW)
    assert res.exact_attribute_accuracy < 0.8, res.exact_attribute_accuracy
    assert res.exact_seg_f1 < 0.8, res.exact_seg_f1
    assert res.exact_nme > 1.0, res.exact_nme
    # and not by chance: the whole interval sits far from the oracle's point
    assert res.ci["exact_attribute_accuracy"][1] < 0.9
    assert res.ci["exact_seg_f1"][1] < 0.9
    assert res.ci["exact_nme"][0] > 0.5
    assert res.verification_accuracy == pytest.approx(0.5)  # one identity for every face


def test_exact_readout_is_render_of_the_decoded_latent(generator: SynthFace,
                                                       probes: ProbeSet) -> None:
    """The exact scores equal the metrics of render(decoded) vs render(true latent),
    recomputed here face by face."""
    decoded: list[torch.Tensor] = []
    inner = noisy(0.7, seed=3)

    def decode(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = inner(batch)
        if "attributes" in batch:  # a test-face batch (pair batches carry no labels)
            decoded.append(out)
        return out

    kw = {**KW, "batch": 16}
    res = evaluate_decoder(decode, generator, probes, **kw)
    truth = SyntheticFaces(generator, KW["n_test"], seed=KW["seed"], split="test",
                           cache=False).batch(range(KW["n_test"]))
    rendered = [generator.render(z) for z in decoded]
    attrs = torch.cat([r.attributes for r in rendered])
    seg = torch.cat([r.segmentation for r in rendered])
    marks = torch.cat([r.landmarks for r in rendered])
    n_classes = len(generator.class_names)
    f1 = metrics.segmentation_f1_per_image(seg, truth["segmentation"], n_classes)
    nme = metrics.landmark_nme_per_image(marks, truth["landmarks"])
    acc = (attrs == truth["attributes"]).double().mean(1).numpy()
    assert res.exact_seg_f1 == pytest.approx(float(f1.mean()))
    assert res.exact_nme == pytest.approx(float(nme.mean()))
    assert res.exact_attribute_accuracy == pytest.approx(float(acc.mean()))
    assert res.ci["exact_nme"] == pytest.approx(bootstrap_ci(nme, seed=KW["seed"]))
    assert 0.0 < res.exact_seg_f1 < 1.0 and res.exact_nme > 0.0


def test_intervals_and_exact_readout_can_be_switched_off(generator: SynthFace,
                                                         probes: ProbeSet) -> None:
    kw = {"n_test": 8, "n_pairs": 4, "batch": 8}
    res = evaluate_decoder(oracle_decoder, generator, probes, n_boot=0, exact=False, **kw)
    assert res.ci == {} and res.n_boot == 0
    assert math.isnan(res.exact_seg_f1) and res.exact_note == "exact=False"
    assert res.exact_attribute_accuracy_per_attribute == {}
    text = res.summary()
    assert "exact readout: n/a (exact=False)" in text and "bootstrap" not in text
    assert res.table1_row("x") == res.table1_row("x", intervals=False)
    full = evaluate_decoder(oracle_decoder, generator, probes, **kw)
    for name in ("attribute_accuracy", "segmentation_f1", "landmark_nme", "psnr",
                 "verification_accuracy", "latent_r2"):
        assert getattr(res, name) == getattr(full, name), name  # same point estimates
    narrow = evaluate_decoder(noisy(0.7), generator, probes, ci_level=0.5, **kw)
    wide = evaluate_decoder(noisy(0.7), generator, probes, **kw)
    assert narrow.ci_level == 0.5
    for name in ("landmark_nme", "exact_nme", "latent_l1"):
        assert wide.ci[name][0] < narrow.ci[name][0] < narrow.ci[name][1] < wide.ci[name][1]
    for bad in ({"n_boot": -1}, {"n_boot": 2.5}, {"ci_level": 0.0}, {"ci_level": 1.5}):
        with pytest.raises(ConfigError):
            evaluate_decoder(oracle_decoder, generator, probes, **{**kw, **bad})


def test_exact_needs_a_generator_that_renders_ground_truth(generator: SynthFace,
                                                           probes: ProbeSet) -> None:
    class NoRender:  # only what the test set's rendering does not need is hidden
        def __getattr__(self, name: str):
            if name == "render":
                raise AttributeError(name)
            return getattr(generator, name)

    with pytest.raises(ConfigError, match="render"):
        evaluate_decoder(oracle_decoder, NoRender(), probes, n_test=4, n_pairs=4, batch=4,
                         exact=True)


def test_seg_f1_interval_resamples_faces_of_the_set_f1() -> None:
    """The set-accumulated F1's interval: per-face confusion matrices summed per resample
    (checked against a direct recomputation on resampled faces)."""
    from lsi_ml.evaluation.common import Bootstrap, seg_f1_ci

    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.integers(0, 5, size=(30, 6, 6)))
    pred = torch.where(torch.from_numpy(rng.random((30, 6, 6)) < 0.6), target,
                       torch.from_numpy(rng.integers(0, 5, size=(30, 6, 6))))
    boot = Bootstrap(200, 4, 0.95)
    direct = bootstrap_ci(
        statistic=lambda idx: metrics.segmentation_f1(pred[idx], target[idx], 5)[0], n=30,
        n_boot=200, seed=4)
    assert seg_f1_ci(pred, target, 5, boot) == pytest.approx(direct)


def test_every_metric_degrades_with_latent_noise(generator: SynthFace, probes: ProbeSet,
                                                 oracle: EvalResult) -> None:
    runs = [oracle] + [evaluate_decoder(noisy(std), generator, probes, **KW)
                       for std in (0.7, 2.0)]  # beyond ~3 the faces are random
    higher_better = ("verification_accuracy", "attribute_accuracy", "segmentation_f1",
                     "psnr", "ssim", "latent_r2", "identity_r2", "exact_attribute_accuracy",
                     "exact_seg_f1")
    lower_better = ("landmark_nme", "latent_l1", "latent_l2", "fd", "exact_nme")
    for name in higher_better:
        vals = [getattr(r, name) for r in runs]
        assert all(a >= b for a, b in itertools.pairwise(vals)), (name, vals)
        assert vals[-1] < vals[0], (name, vals)
    for name in lower_better:
        vals = [getattr(r, name) for r in runs]
        assert all(a <= b for a, b in itertools.pairwise(vals)), (name, vals)
        assert vals[-1] > vals[0], (name, vals)
    # the latent and image metrics move strictly at every step
    for name, sign in (("latent_l1", 1), ("fd", 1), ("exact_nme", 1), ("exact_seg_f1", -1),
                       ("exact_attribute_accuracy", -1)):
        vals = [sign * getattr(r, name) for r in runs]
        assert all(a < b for a, b in itertools.pairwise(vals)), (name, vals)
    assert runs[-1].verification_hard_accuracy < 1.0


def test_evaluation_is_deterministic(generator: SynthFace, probes: ProbeSet) -> None:
    a = evaluate_decoder(noisy(0.5), generator, probes, **KW).as_dict()
    b = evaluate_decoder(noisy(0.5), generator, probes, **KW).as_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


@pytest.mark.parametrize("bad", [
    lambda b: b["latent"][:, :2],
    lambda b: b["latent"][:-1],
    lambda b: b["latent"].numpy(),
    lambda b: b["latent"] * float("nan"),
])
def test_bad_decoder_output_raises(generator: SynthFace, probes: ProbeSet, bad) -> None:
    with pytest.raises(ConfigError):
        evaluate_decoder(bad, generator, probes, n_test=4, n_pairs=4, batch=4)


def test_bad_arguments_raise(generator: SynthFace, probes: ProbeSet) -> None:
    with pytest.raises(ConfigError):
        evaluate_decoder(oracle_decoder, generator, probes, n_test=1)
    with pytest.raises(ConfigError):
        evaluate_decoder(oracle_decoder, generator, probes, n_pairs=2)
    with pytest.raises(ConfigError, match="another generator"):
        evaluate_decoder(oracle_decoder, SynthFace(SIZE, seed=1), probes, n_test=4, n_pairs=4)


def test_decoder_sees_only_the_documented_batch(generator: SynthFace, probes: ProbeSet) -> None:
    seen: list[set[str]] = []

    def decode(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(set(batch))
        assert batch["image"].shape[1:] == (3, SIZE, SIZE)
        assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
        return batch["latent"]

    evaluate_decoder(decode, generator, probes, n_test=4, n_pairs=4, batch=4)
    assert all({"image", "latent"} <= keys for keys in seen)


class _FakeDlib:
    """dlib stand-in (the real one is an optional extra): every image holds a face; the
    descriptor is the mean colour, the landmarks a grid shifted by the mean brightness."""

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [(0, 0, image.shape[1], image.shape[0])]

    def descriptor(self, image: np.ndarray, box: object) -> np.ndarray:
        return image.reshape(-1, 3).mean(axis=0) / 255.0 * 4.0

    def landmarks(self, image: np.ndarray, box: object) -> np.ndarray:
        grid = np.stack(np.meshgrid(np.arange(17), np.arange(4)), -1).reshape(-1, 2)[:68]
        return grid * 10.0 + image.mean() / 10.0


def test_dlib_scores_get_intervals(generator: SynthFace, probes: ProbeSet,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import lsi_ml.evaluation.latent as evaluation

    monkeypatch.setattr(evaluation, "load_dlib_faces", _FakeDlib)
    res = evaluate_decoder(noisy(1.0), generator, probes, n_test=16, n_pairs=4, batch=8,
                           dlib=True, dlib_faces=12)
    assert res.dlib_n_faces == 12 and res.dlib_detected == 1.0
    for name in ("dlib_verification", "dlib_landmark_nme"):
        low, high = res.ci[name]
        assert low <= getattr(res, name) <= high, name
    assert res.ci["dlib_landmark_nme"][1] > res.ci["dlib_landmark_nme"][0]
    text = res.summary()
    lo, hi = res.ci["dlib_landmark_nme"]
    assert f"{res.dlib_landmark_nme:12.3f} [{lo:.3f}, {hi:.3f}]" in text


def test_recognizer_scores_decoded_images_against_their_originals(
        generator: SynthFace, probes: ProbeSet) -> None:
    """The oracle's decoded images ARE the originals: every genuine pair is accepted; a
    decoder returning the mean latent draws one face for everyone and scores far lower."""
    from lsi_ml.evaluation.recognizer import RecognizerConfig, train_recognizer

    tiny = RecognizerConfig(input_size=32, widths=(8, 16, 32), embedding_dim=16, steps=60,
                            identities=8, views=3, lr=5e-3, warmup=5, val_pairs=64,
                            batch=128, progress=False)
    recognizer = train_recognizer(generator, tiny)
    kw = {**KW, "n_boot": 200}
    perfect = evaluate_decoder(oracle_decoder, generator, probes, recognizer=recognizer, **kw)
    assert perfect.recognizer_genuine_accept == 1.0
    assert perfect.recognizer_note == ""
    lo, hi = perfect.ci["recognizer_accuracy"]
    assert lo <= perfect.recognizer_accuracy <= hi
    assert "recognizer" in perfect.summary() and "recognizer_accuracy_ci_lo" in perfect.ci_row()

    def mean_latent(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.zeros_like(batch["latent"])

    flat = evaluate_decoder(mean_latent, generator, probes, recognizer=recognizer, **kw)
    assert flat.recognizer_accuracy < perfect.recognizer_accuracy - 0.2
    plain = evaluate_decoder(oracle_decoder, generator, probes, **kw)
    assert math.isnan(plain.recognizer_accuracy) and plain.recognizer_note == "not computed"
