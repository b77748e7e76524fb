"""Learned image-space reconstruction (lsi_ml.baselines.image_reconstruction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_ml.baselines.image_reconstruction import (
    ImageDecoder,
    ImageReconConfig,
    ImageReconTrainer,
    psnr,
)

FAST = {"size": 32, "n_masks": 64, "batch": 16, "width": 8, "lr": 3e-3, "progress": False,
        "eval_every": 0, "eval_batch": 32, "n_val": 64}


@pytest.fixture(scope="module")
def trained() -> ImageReconTrainer:
    trainer = ImageReconTrainer(ImageReconConfig(steps=60, **FAST))
    trainer.train()
    return trainer


def test_training_lowers_loss_and_beats_the_mean_image(trained: ImageReconTrainer) -> None:
    fresh = ImageReconTrainer(ImageReconConfig(steps=60, **FAST))
    before = fresh.evaluate()
    after = trained.history[-1]
    assert after["step"] == 60
    assert after["val_mse"] < 0.8 * before["val_mse"]
    # held-out (test split) faces against the best constant image: the train-set mean
    from lsi_ml.data.synthetic import SyntheticFaces

    test = SyntheticFaces(trained.generator, 48, seed=0, split="test").images(range(48))["image"]
    mean_img = trained.train_data.images(range(256))["image"].mean(0, keepdim=True)
    gens = [torch.Generator().manual_seed(i) for i in range(48)]
    pred = trained.reconstruct(trained.measure(test, generator=gens))
    assert pred.shape == test.shape
    assert float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0
    ours = float(psnr(pred, test).mean())
    const = float(psnr(mean_img.expand_as(test), test).mean())
    assert ours > const + 0.3, (ours, const)
    # masks were trained: still binary and different from the initial random ones
    masks = trained.optical.masks().detach()
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(masks, fresh.optical.masks().detach())


def test_save_load_round_trip(trained: ImageReconTrainer, tmp_path: Path) -> None:
    path = trained.save(tmp_path / "recon.pt")
    again = ImageReconTrainer.load(path)
    assert again.step == trained.step and again.history == trained.history
    images = trained.val_data.images(range(8))["image"]
    y = trained.measure(images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(trained.reconstruct(y), again.reconstruct(y))
    assert torch.equal(trained.optical.masks(), again.optical.masks())
    assert np.array_equal(trained.export_patterns().masks, again.export_patterns().masks)
    # loading continues training identically to never stopping (same step-keyed data/noise)
    again_cfg = again.config
    assert again_cfg == trained.config
    with pytest.raises(ConfigError):
        ImageReconTrainer.load(tmp_path / "missing.pt")
    torch.save({"format_version": 1, "config": {}, "step": 0, "model": {}, "extra": {}},
               tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="ImageReconTrainer"):
        ImageReconTrainer.load(tmp_path / "foreign.pt")


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = ImageReconConfig(steps=4, **FAST)
    whole = ImageReconTrainer(cfg)
    whole.train()
    part = ImageReconTrainer(cfg)
    part.train(2)
    part.save(tmp_path / "half.pt")
    rest = ImageReconTrainer.load(tmp_path / "half.pt")
    rest.train()
    for a, b in zip(whole.decoder.state_dict().values(), rest.decoder.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole.optical.weights, rest.optical.weights)


@pytest.mark.parametrize("m", [1, 4096])
def test_any_number_of_masks(m: int) -> None:
    trainer = ImageReconTrainer(ImageReconConfig(steps=1, **{**FAST, "n_masks": m,
                                                             "batch": 4}))
    loss = trainer.train_step()
    assert np.isfinite(loss)
    out = trainer.reconstruct(torch.zeros(m) + trainer.decoder.normalizer.mean)
    assert out.shape == (1, 3, 32, 32)
    patterns = trainer.export_patterns()
    assert isinstance(patterns, PatternSet) and patterns.masks.shape == (m, 32, 32)


@pytest.mark.parametrize("field, value", [
    ("size", 30), ("size", 34), ("n_masks", 0), ("batch", 1), ("steps", -1), ("width", 0),
    ("mask_bits", 0), ("noise", "loud"), ("lr", -1.0), ("l1_weight", float("nan")),
    ("device", "warp-drive"),
])
def test_bad_config_raises(field: str, value: object) -> None:
    with pytest.raises(ConfigError):
        ImageReconConfig(**{field: value})


def test_bad_inputs_raise(trained: ImageReconTrainer) -> None:
    with pytest.raises(ConfigError, match="readings"):
        trained.reconstruct(torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="non-finite"):
        trained.reconstruct(torch.full((1, 64), float("nan")))
    with pytest.raises(ConfigError, match="images"):
        trained.measure(torch.zeros(2, 32, 32))
    with pytest.raises(ConfigError):
        trained.train(steps=1)  # already past step 1
    with pytest.raises(ConfigError):
        ImageReconTrainer({"size": 32})  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ImageReconConfig.from_dict({"size": 32, "colour": "red"})
    with pytest.raises(ConfigError):
        ImageDecoder(0, 32)
    with pytest.raises(ConfigError):
        psnr(torch.zeros(1, 3), torch.zeros(1, 4))
    # an 8-bit-mask encoder trains but has no binary patterns to export
    eight = ImageReconTrainer(ImageReconConfig(steps=1, **{**FAST, "mask_bits": 8}))
    with pytest.raises(ConfigError, match="bit"):
        eight.export_patterns()
