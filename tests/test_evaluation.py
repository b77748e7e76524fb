"""evaluate_decoder: oracle scores, monotone degradation with latent noise, input checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.evaluation import EvalResult, evaluate_decoder, oracle_decoder
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.probe_training import ProbeConfig, ProbeSet, train_probes

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
    assert row.startswith("| oracle | 100.00 |")
    assert "FD, substitute: random-conv-256" in row and "FID" not in row
    text = oracle.summary()
    assert "ceiling" in text and "not FID" in text and "landmark NME" in text
    assert "identity dims R^2" in text
    assert len(oracle.latent_dim_names) == 96 and oracle.latent_dim_names[0] == "coarse.yaw"
    report = oracle.r2_report(top=3)
    assert len(report.splitlines()) == 1 + 3 + 1 + 3  # header, 3 best, "...", 3 worst
    assert "1.000" in report and "..." in report
    assert len(oracle.r2_report().splitlines()) == 1 + 96
    data = oracle.as_dict()
    assert data["fd_label"] == oracle.fd_label
    assert data["ceiling"]["latent_l1"] == 0.0
    assert set(data["segmentation_f1_per_class"]) == set(SynthFace(SIZE).class_names)


def test_every_metric_degrades_with_latent_noise(generator: SynthFace, probes: ProbeSet,
                                                 oracle: EvalResult) -> None:
    runs = [oracle] + [evaluate_decoder(noisy(std), generator, probes, **KW)
                       for std in (0.7, 2.0)]  # beyond ~3 the faces are random
    higher_better = ("verification_accuracy", "attribute_accuracy", "segmentation_f1",
                     "psnr", "ssim", "latent_r2", "identity_r2")
    lower_better = ("landmark_nme", "latent_l1", "latent_l2", "fd")
    for name in higher_better:
        vals = [getattr(r, name) for r in runs]
        assert all(a >= b for a, b in itertools.pairwise(vals)), (name, vals)
        assert vals[-1] < vals[0], (name, vals)
    for name in lower_better:
        vals = [getattr(r, name) for r in runs]
        assert all(a <= b for a, b in itertools.pairwise(vals)), (name, vals)
        assert vals[-1] > vals[0], (name, vals)
    # the latent and image metrics move strictly at every step
    for name in ("latent_l1", "fd"):
        vals = [getattr(r, name) for r in runs]
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
