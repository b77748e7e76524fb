"""The full-image reference (lsi_ml.baselines.reference): training, refinement, save/load,
scoring."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.baselines.reference import (
    FullImageReference,
    ImageDecoder,
    RefineConfig,
    TrainStats,
    grey,
    grey_loss,
    refine_latent,
    render_grey_set,
    train_image_decoder,
)
from lsi_ml.evaluation.latent import evaluate_decoder
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.probe_training import ProbeConfig, train_probes

SIZE = 32
TINY = {"steps": 150, "batch": 32, "n_scenes": 128, "seed": 0, "width": 4, "hidden": 32,
        "lr": 5e-3}


@pytest.fixture(scope="module")
def generator() -> SynthFace:
    return SynthFace(SIZE, seed=0)


@pytest.fixture(scope="module")
def trained(generator: SynthFace) -> tuple[ImageDecoder, TrainStats]:
    torch.set_num_threads(1)
    stats = TrainStats()
    net = train_image_decoder(generator, stats=stats, **TINY)
    return net, stats


def test_training_loss_drops(trained: tuple[ImageDecoder, TrainStats]) -> None:
    net, stats = trained
    assert len(stats.losses) == TINY["steps"]
    assert stats.loss_last < 0.8 * stats.loss_first
    assert math.isfinite(stats.val_l1)
    assert not net.training
    out = net(torch.rand(3, SIZE, SIZE))
    assert out.shape == (3, 4, 24)
    with pytest.raises(ConfigError):
        net(torch.rand(3, SIZE + 16, SIZE + 16))


def test_rgb_and_grey_inputs_agree(trained: tuple[ImageDecoder, TrainStats]) -> None:
    net, _ = trained
    rgb = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(net(rgb), net(rgb.mean(1)), atol=1e-6)


def test_refinement_lowers_grey_error(generator: SynthFace,
                                      trained: tuple[ImageDecoder, TrainStats]) -> None:
    net, _ = trained
    images, _ = render_grey_set(generator, 8, seed=3, split="test")
    target = images.float()
    with torch.no_grad():
        start = net(target)
        before = grey_loss(grey(generator.synthesize(start)), target)
    refined, after = refine_latent(generator, target, start, steps=40, lr=0.05, chunk=8,
                                   return_loss=True)
    assert refined.shape == start.shape
    with torch.no_grad():  # the reported error is that of the returned latents
        check = grey_loss(grey(generator.synthesize(refined)), target)
    assert torch.allclose(check, after, rtol=1e-4, atol=1e-6)
    assert (after <= before + 1e-6).all()
    assert after.mean() < 0.5 * before.mean()  # a real improvement, not a no-op


def test_refinement_zero_steps_and_bad_settings(generator: SynthFace) -> None:
    start = generator.sample_latent(2, generator=torch.Generator().manual_seed(0))
    target = torch.rand(2, SIZE, SIZE)
    assert torch.equal(refine_latent(generator, target, start, steps=0), start)
    with pytest.raises(ConfigError):
        refine_latent(generator, target, start, lr=0.0)
    with pytest.raises(ConfigError):
        refine_latent(generator, target[:1], start)


def test_save_load_round_trip(tmp_path: Path, generator: SynthFace,
                              trained: tuple[ImageDecoder, TrainStats]) -> None:
    net, _ = trained
    ref = FullImageReference(generator, net, RefineConfig(steps=2, lr=0.02))
    path = ref.save(tmp_path / "sub" / "ref.pt")
    back = FullImageReference.load(path, generator)
    assert back.refine == ref.refine
    images = torch.rand(3, 3, SIZE, SIZE)
    assert torch.equal(back.cnn(images), ref.cnn(images))
    override = FullImageReference.load(path, generator, RefineConfig(steps=0))
    assert override.refine.steps == 0
    with pytest.raises(ConfigError, match="trained for"):
        FullImageReference.load(path, SynthFace(SIZE, seed=1))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError):
        FullImageReference.load(junk, generator)
    with pytest.raises(ConfigError):
        FullImageReference.load(tmp_path / "missing.pt", generator)


def test_decoder_scores_with_evaluate_decoder(generator: SynthFace,
                                              trained: tuple[ImageDecoder, TrainStats]) -> None:
    net, _ = trained
    probes = train_probes(generator, ProbeConfig(
        steps=10, batch=8, n_train=32, render_batch=32, seg_width=8, seg_depth=1,
        landmark_maps=(1, 2), landmark_width=8, landmark_depth=1, warmup=2, progress=False))
    ref = FullImageReference(generator, net, RefineConfig(steps=3, lr=0.03, chunk=8))
    seen: list[set[str]] = []
    decode = ref.decoder()

    def spy(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(set(batch))
        return decode({"image": batch["image"]})  # the image alone is enough

    kw = {"n_test": 8, "n_pairs": 4, "batch": 8, "seed": 0, "n_boot": 50}
    refined = evaluate_decoder(spy, generator, probes, exact=True, **kw)
    cnn_only = evaluate_decoder(ref.decoder(refine=False), generator, probes, exact=True, **kw)
    for res in (refined, cnn_only):
        assert res.has_exact
        assert 0.0 <= res.exact_attribute_accuracy <= 1.0
        assert math.isfinite(res.exact_nme) and math.isfinite(res.identity_r2)
        assert "exact_seg_f1" in res.ci
    assert seen and all("image" in keys for keys in seen)
