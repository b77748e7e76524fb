"""ImageProbeSet: beats chance on clean images, deterministic, save/load, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.baselines.image_probes import ImageProbeConfig, ImageProbeSet
from lsi_ml.checkpoint import save_checkpoint
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.evaluation import metrics
from lsi_ml.generators.synthface import SynthFace

SIZE = 32
TINY = ImageProbeConfig(steps=600, batch=32, lr=3e-3, n_train=8192, width=16, seed=0)
MICRO = ImageProbeConfig(steps=5, batch=8, n_train=64, width=8, seed=3)


@pytest.fixture(scope="module")
def generator() -> SynthFace:
    return SynthFace(SIZE, seed=0)


@pytest.fixture(scope="module")
def image_probes(generator: SynthFace) -> ImageProbeSet:
    return ImageProbeSet.fit(generator, TINY)


def _verification_accuracy(generator: SynthFace, probes: ImageProbeSet, n: int) -> float:
    scores, labels = {}, {}
    for split, seed in (("val", 11), ("test", 12)):
        a, b, same = generator.verification_pairs(n, torch.Generator().manual_seed(seed))
        ea = probes.predict(generator.synthesize(a))["identity"]
        eb = probes.predict(generator.synthesize(b))["identity"]
        scores[split] = torch.linalg.vector_norm(ea - eb, dim=1).numpy()
        labels[split] = same.numpy()
    return metrics.verification_accuracy(scores["val"], labels["val"], scores["test"],
                                         labels["test"]).accuracy


def test_probes_beat_chance_on_clean_images(generator: SynthFace,
                                            image_probes: ImageProbeSet) -> None:
    test = SyntheticFaces(generator, 256, seed=0, split="test", cache=False).batch(range(256))
    pred = image_probes.predict(test["image"])
    assert pred["attribute_logits"].shape == (256, len(generator.attribute_names))
    assert pred["attributes"].dtype == torch.bool
    assert pred["identity"].shape == (256, generator.identity_dim)
    truth = test["attributes"].float()
    majority = float(torch.maximum(truth.mean(0), 1 - truth.mean(0)).mean())
    acc = float((pred["attributes"] == test["attributes"]).float().mean())
    assert acc > majority + 0.08, (acc, majority)
    # the embedding regresses the standardised identity better than its mean (mse 1)
    target = image_probes.standardise(test["identity"])
    assert float(torch.mean((pred["identity"] - target) ** 2)) < 0.97
    ver = _verification_accuracy(generator, image_probes, 128)
    assert ver > 0.65, ver
    stats = image_probes.train_stats
    assert stats["seconds_train"] > 0 and np.isfinite(stats["loss_identity"])


def test_fit_is_deterministic_and_leaves_the_rng_alone(generator: SynthFace) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = ImageProbeSet.fit(generator, MICRO)
    after = torch.rand(1)
    b = ImageProbeSet.fit(generator, MICRO)
    assert torch.equal(before, after)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    c = ImageProbeSet.fit(generator, ImageProbeConfig(**{**MICRO.to_dict(), "seed": 4}))
    assert not torch.equal(a.head[-1].weight, c.head[-1].weight)


def test_save_load_round_trip(generator: SynthFace, image_probes: ImageProbeSet,
                              tmp_path) -> None:
    path = image_probes.save(tmp_path / "image_probes.pt")
    loaded = ImageProbeSet.load(path, generator)
    assert loaded.config == image_probes.config
    images = generator.synthesize(generator.sample_latent(8, torch.Generator().manual_seed(0)))
    p, q = image_probes.predict(images), loaded.predict(images)
    for key in p:
        assert torch.equal(p[key], q[key]), key
    assert torch.equal(loaded.identity_std, image_probes.identity_std)
    with pytest.raises(ConfigError, match="another generator"):
        ImageProbeSet.load(path, SynthFace(SIZE, seed=1))
    with pytest.raises(ConfigError, match="size"):
        ImageProbeSet.load(path, SynthFace(2 * SIZE, seed=0))
    other = save_checkpoint(tmp_path / "other.pt", config={}, step=0, model={},
                            extra={"kind": "lsi_ml.ProbeSet"})
    with pytest.raises(ConfigError, match="not an ImageProbeSet"):
        ImageProbeSet.load(other, generator)
    with pytest.raises(ConfigError):
        ImageProbeSet.load(tmp_path / "missing.pt", generator)


def test_other_sizes_build(generator: SynthFace) -> None:
    for size in (48, 128):
        probes = ImageProbeSet(SynthFace(size, seed=0), MICRO)
        out = probes.predict(torch.rand(2, 3, size, size))
        assert out["identity"].shape == (2, generator.identity_dim)


@pytest.mark.parametrize("bad", [
    torch.rand(2, 3, SIZE, SIZE + 1),
    torch.rand(2, 1, SIZE, SIZE),
    torch.rand(3, SIZE, SIZE),
    torch.full((2, 3, SIZE, SIZE), float("nan")),
    torch.rand(0, 3, SIZE, SIZE),
    np.zeros((2, 3, SIZE, SIZE), dtype=np.float32),
])
def test_predict_rejects_bad_images(generator: SynthFace, bad) -> None:
    probes = ImageProbeSet(generator, MICRO)
    with pytest.raises(ConfigError):
        probes.predict(bad)


@pytest.mark.parametrize("kwargs", [
    {"steps": -1}, {"batch": 0}, {"n_train": 0}, {"width": 0}, {"lr": 0.0},
    {"lr": float("nan")}, {"seed": -2}, {"device": "no-such-device"},
])
def test_bad_config_raises(kwargs) -> None:
    with pytest.raises(ConfigError):
        ImageProbeConfig(**kwargs)


def test_config_round_trip() -> None:
    assert ImageProbeConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ConfigError):
        ImageProbeConfig.from_dict({**TINY.to_dict(), "bogus": 1})


def test_train_on_refuses_another_generator(generator: SynthFace) -> None:
    probes = ImageProbeSet(generator, MICRO)
    with pytest.raises(ConfigError, match="differs"):
        probes.train_on(SynthFace(SIZE, seed=1))
