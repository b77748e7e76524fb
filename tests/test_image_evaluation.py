"""evaluate_images: perfect reconstruction = ceiling, noise/grey near chance, same faces and
shared metrics as evaluate_decoder, input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.baselines.image_probes import ImageProbeConfig, ImageProbeSet
from lsi_ml.evaluation.images import (
    EXACT_NOTE,
    evaluate_images,
    identity_reconstructor,
    latent_route_reconstructor,
)
from lsi_ml.evaluation.latent import evaluate_decoder, oracle_decoder
from lsi_ml.evaluation.result import EvalResult
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet, train_probes

SIZE = 32
KW = {"n_test": 64, "n_pairs": 128, "batch": 64, "seed": 0}
FAST = ProbeConfig(steps=100, batch=16, n_train=128, render_batch=128, seg_width=16,
                   seg_depth=1, landmark_maps=(1, 2), landmark_width=24, landmark_depth=2,
                   lr=3e-2, lr_attributes=0.1, warmup=10, progress=False)
TINY = ImageProbeConfig(steps=300, batch=32, lr=3e-3, n_train=4096, width=16, seed=0)


@pytest.fixture(scope="module")
def generator() -> SynthFace:
    return SynthFace(SIZE, seed=0)


@pytest.fixture(scope="module")
def probes(generator: SynthFace) -> ProbeSet:
    return train_probes(generator, FAST)


@pytest.fixture(scope="module")
def image_probes(generator: SynthFace) -> ImageProbeSet:
    return ImageProbeSet.fit(generator, TINY)


@pytest.fixture(scope="module")
def perfect(generator: SynthFace, probes: ProbeSet,
            image_probes: ImageProbeSet) -> EvalResult:
    return evaluate_images(identity_reconstructor, generator, probes, image_probes,
                           with_ceiling=True, **KW)


@pytest.fixture(scope="module")
def majority(generator: SynthFace) -> float:
    from lsi_ml.data.synthetic import SyntheticFaces

    data = SyntheticFaces(generator, KW["n_test"], seed=KW["seed"], split="test")
    truth = data.batch(range(KW["n_test"]))["attributes"].float()
    return float(torch.maximum(truth.mean(0), 1 - truth.mean(0)).mean())


def _comparable(result: EvalResult) -> dict:
    data = result.as_dict()
    for key in ("seconds", "ceiling"):
        data.pop(key)
    return data


def _same(a: dict, b: dict) -> bool:
    """Equal dicts, NaN equal to NaN."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not _same(x, y):
                return False
        elif isinstance(x, float) and math.isnan(x):
            if not (isinstance(y, float) and math.isnan(y)):
                return False
        elif x != y:
            return False
    return True


def test_perfect_reconstruction_is_its_ceiling_and_scores_high(
        perfect: EvalResult, majority: float) -> None:
    assert perfect.ceiling is not None
    assert _same(_comparable(perfect), _comparable(perfect.ceiling))
    assert perfect.psnr == math.inf or perfect.psnr > 60
    assert perfect.ssim == pytest.approx(1.0, abs=1e-6)
    assert perfect.fd == pytest.approx(0.0, abs=1e-6)
    assert perfect.attribute_accuracy > majority + 0.08, (perfect.attribute_accuracy, majority)
    assert perfect.verification_accuracy > 0.65
    assert perfect.verification_val_accuracy > 0.65
    assert 0.0 < perfect.segmentation_f1 <= 1.0 and math.isfinite(perfect.landmark_nme)
    for name in ("latent_l1", "latent_mse", "latent_l2"):
        assert math.isnan(getattr(perfect, name))
    assert tuple(perfect.attribute_accuracy_per_attribute) == SynthFace(SIZE).attribute_names


def test_report_formats(perfect: EvalResult) -> None:
    row = perfect.table1_row("image oracle")
    assert row.startswith("| image oracle |") and "FID" not in row
    assert "FD, substitute: random-conv-256" in row
    lo, hi = perfect.ci["verification_accuracy"]
    assert f"{100 * perfect.verification_accuracy:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]" in row
    text = perfect.summary()
    assert "segmentation F1" in text and "not FID" in text
    assert f"exact readout: n/a ({EXACT_NOTE})" in text and "exact attribute" not in text
    assert "bootstrap intervals" in text


IMAGE_CI = {"attribute_accuracy", "segmentation_f1", "landmark_nme", "psnr", "ssim",
            "verification_accuracy", "verification_hard_accuracy", "verification_tpr",
            "verification_tnr"}


def test_image_methods_have_no_exact_readout_but_intervals(perfect: EvalResult) -> None:
    """An image-space method has no latent to render: exact readout NaN with the reason;
    every image-space score has a bootstrap interval (no latent ones)."""
    for res in (perfect, perfect.ceiling):
        assert res is not None and not res.has_exact
        for name in ("exact_attribute_accuracy", "exact_seg_f1", "exact_nme"):
            assert math.isnan(getattr(res, name))
        assert res.exact_note == EXACT_NOTE and "no latent" in EXACT_NOTE
        assert set(res.ci) == IMAGE_CI and res.n_boot == 1000
    for name, (low, high) in perfect.ci.items():
        assert low <= getattr(perfect, name) <= high, name
    row = perfect.ci_row()
    assert math.isnan(row["exact_seg_f1"]) and "latent_l1_ci_lo" not in row


def _grey(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.full_like(batch["image"], 0.5)


def _noise():
    gen = torch.Generator().manual_seed(0)

    def reconstruct(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.rand(batch["image"].shape, generator=gen)

    return reconstruct


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # grey: FD of constant images
@pytest.mark.parametrize("name", ["grey", "noise"])
def test_uninformative_reconstructions_score_near_chance(
        name: str, generator: SynthFace, probes: ProbeSet, image_probes: ImageProbeSet,
        perfect: EvalResult, majority: float) -> None:
    reconstruct = _grey if name == "grey" else _noise()
    res = evaluate_images(reconstruct, generator, probes, image_probes, **KW)
    assert res.attribute_accuracy <= majority + 0.06, (res.attribute_accuracy, majority)
    assert res.verification_accuracy <= 0.70, res.verification_accuracy
    if name == "grey":  # every distance is 0: one class for all pairs
        assert res.verification_accuracy == pytest.approx(0.5)
    assert res.ssim < 0.3 and res.psnr < 20
    assert res.fd > 10 * max(perfect.fd, 1e-3)
    assert res.segmentation_f1 < perfect.segmentation_f1 - 0.05
    assert res.landmark_nme > perfect.landmark_nme


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_blur_scores_between_grey_and_perfect(
        generator: SynthFace, probes: ProbeSet, image_probes: ImageProbeSet,
        perfect: EvalResult) -> None:
    def blur(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        low = torch.nn.functional.avg_pool2d(batch["image"], 4)
        return torch.nn.functional.interpolate(low, size=SIZE, mode="bilinear",
                                               align_corners=False).clamp(0, 1)

    res = evaluate_images(blur, generator, probes, image_probes, **KW)
    grey = evaluate_images(_grey, generator, probes, image_probes, **KW)
    for name in ("psnr", "ssim", "segmentation_f1"):
        assert getattr(grey, name) < getattr(res, name) < getattr(perfect, name), name
    assert perfect.fd < res.fd < grey.fd


def test_same_faces_and_shared_metrics_as_evaluate_decoder(
        generator: SynthFace, probes: ProbeSet, image_probes: ImageProbeSet) -> None:
    seen: dict[str, list[torch.Tensor]] = {"decoder": [], "images": []}
    route = "decoder"

    def decode(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen[route].append(batch["image"].clone())
        return batch["latent"]

    kw = {"n_test": 24, "n_pairs": 8, "batch": 8, "seed": 3}
    by_latent = evaluate_decoder(decode, generator, probes, **kw)
    route = "images"
    by_image = evaluate_images(latent_route_reconstructor(decode, generator), generator,
                               probes, image_probes, **kw)
    assert len(seen["decoder"]) == len(seen["images"]) == 3 + 4
    for a, b in zip(seen["decoder"], seen["images"], strict=True):
        assert torch.equal(a, b)
    # the oracle decoder through the image route: same images -> same image-side metrics
    for name in ("segmentation_f1", "landmark_nme", "ssim", "fd"):
        assert getattr(by_image, name) == pytest.approx(getattr(by_latent, name), rel=1e-6,
                                                        abs=1e-9), name
    assert by_image.psnr == by_latent.psnr
    # ... with the same intervals (same faces, same seeded resamples)
    for name in ("segmentation_f1", "landmark_nme", "ssim"):
        assert by_image.ci[name] == pytest.approx(by_latent.ci[name], rel=1e-6), name
    assert by_latent.exact_seg_f1 == 1.0 and math.isnan(by_image.exact_seg_f1)
    assert by_image.segmentation_f1_per_class.keys() == by_latent.segmentation_f1_per_class.keys()
    assert math.isnan(by_image.latent_l1) and by_latent.latent_l1 == 0.0
    # a different seed gives different faces
    other: list[torch.Tensor] = []
    evaluate_images(lambda b: other.append(b["image"]) or b["image"], generator, probes,
                    image_probes, **{**kw, "seed": 4})
    assert not torch.equal(other[0], seen["images"][0])


def test_latent_route_of_the_oracle_equals_the_perfect_reconstruction(
        generator: SynthFace, probes: ProbeSet, image_probes: ImageProbeSet,
        perfect: EvalResult) -> None:
    res = evaluate_images(latent_route_reconstructor(oracle_decoder, generator), generator,
                          probes, image_probes, **KW)
    # synthesize(true latent) is the scene (up to SynthFace's per-call crop, a few 1e-2)
    assert res.psnr > 30 and res.ssim > 0.98
    assert abs(res.attribute_accuracy - perfect.attribute_accuracy) <= 0.03
    assert res.verification_accuracy == pytest.approx(perfect.verification_accuracy,
                                                      abs=0.05)


def test_evaluation_is_deterministic(generator: SynthFace, probes: ProbeSet,
                                     image_probes: ImageProbeSet) -> None:
    kw = {"n_test": 16, "n_pairs": 8, "batch": 8}
    a = evaluate_images(_noise(), generator, probes, image_probes, **kw)
    b = evaluate_images(_noise(), generator, probes, image_probes, **kw)
    assert _same(_comparable(a), _comparable(b))


@pytest.mark.parametrize("bad", [
    lambda b: b["image"][:, :2],
    lambda b: b["image"][:-1],
    lambda b: b["image"][..., :-1],
    lambda b: b["image"].numpy(),
    lambda b: b["image"] * float("nan"),
    lambda b: b["image"] + 1.0,
    lambda b: b["image"] - 0.5,
    lambda b: b["latent"],
])
def test_bad_reconstruct_output_raises(generator: SynthFace, probes: ProbeSet,
                                       image_probes: ImageProbeSet, bad) -> None:
    with pytest.raises(ConfigError, match="reconstruct"):
        evaluate_images(bad, generator, probes, image_probes, n_test=4, n_pairs=4, batch=4)


def test_bad_decoder_through_the_latent_route_raises(
        generator: SynthFace, probes: ProbeSet, image_probes: ImageProbeSet) -> None:
    route = latent_route_reconstructor(lambda b: b["latent"][:, :2], generator)
    with pytest.raises(ConfigError, match="decode"):
        evaluate_images(route, generator, probes, image_probes, n_test=4, n_pairs=4, batch=4)


def test_bad_arguments_raise(generator: SynthFace, probes: ProbeSet,
                             image_probes: ImageProbeSet) -> None:
    small = {"n_test": 4, "n_pairs": 4, "batch": 4}
    for kwargs in ({"n_test": 1}, {"n_pairs": 2}, {"batch": 0}, {"seed": -1}, {"n_boot": -1},
                   {"ci_level": 1.0}):
        with pytest.raises(ConfigError):
            evaluate_images(identity_reconstructor, generator, probes, image_probes,
                            **{**small, **kwargs})
    with pytest.raises(ConfigError, match="callable"):
        evaluate_images(None, generator, probes, image_probes, **small)  # type: ignore[arg-type]
    other = SynthFace(SIZE, seed=1)
    with pytest.raises(ConfigError, match="image probes were trained for another"):
        evaluate_images(identity_reconstructor, generator, probes,
                        ImageProbeSet(other, ImageProbeConfig(width=4)), **small)
    with pytest.raises(ConfigError, match="another generator"):
        evaluate_images(identity_reconstructor, other, probes, image_probes, **small)
    with pytest.raises(ConfigError, match="ImageProbeSet"):
        evaluate_images(identity_reconstructor, generator, probes, probes.attributes, **small)


def test_per_attribute_scores_are_fractions(perfect: EvalResult) -> None:
    per = np.array(list(perfect.attribute_accuracy_per_attribute.values()))
    assert per.shape == (10,) and np.all((per >= 0) & (per <= 1))
    assert float(per.mean()) == pytest.approx(perfect.attribute_accuracy)
