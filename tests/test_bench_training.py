"""Training through the Bench abstraction: faces recorded on fake-hw fine-tune the decoder
(masks frozen), recordings resume, and one model decodes sim, fake-hw and torch readings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lsi_hw.benches.twin import FakeHardwareBench
from lsi_hw.errors import ConfigError
from lsi_hw.recording import Recording
from lsi_hw.sim import SimBench
from lsi_ml.training.bench_data import faces_as_scenes, load_targets, record_faces
from lsi_ml.training.config import TrainConfig
from lsi_ml.training.trainer import Trainer

TINY = TrainConfig.from_dict({
    "data": {"size": 32, "n_val": 8}, "masks": {"n_masks": 16},
    "decoder": {"hidden": 32, "block_hidden": 16},
    "schedule": {"steps": 3, "batch": 8, "eval_every": 0, "eval_batch": 8},
    "progress": False})


class CountingBench:
    """Wraps a bench and counts the scenes it measures."""

    def __init__(self, bench: object) -> None:
        self.bench = bench
        self.scenes = 0

    def measure(self, scenes: np.ndarray, patterns: object) -> object:
        self.scenes += len(scenes)
        return self.bench.measure(scenes, patterns)  # type: ignore[attr-defined]

    def settings(self) -> dict:
        return self.bench.settings()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base") / "model.pt"
    Trainer(TINY.with_overrides({"checkpoint": str(path)})).train()
    return path


def test_backend_needs_frozen_masks_and_recording() -> None:
    with pytest.raises(ConfigError, match=r"masks\.freeze"):
        TINY.with_overrides({"bench.backend": "fake-hw", "bench.recording": "x"})
    with pytest.raises(ConfigError, match=r"bench\.recording"):
        TINY.with_overrides({"bench.backend": "fake-hw", "masks.freeze": True})
    with pytest.raises(ConfigError, match=r"bench\.backend"):
        TINY.with_overrides({"bench.backend": "camera"})


def test_fake_hw_finetune_records_then_trains_decoder_only(base_model: Path,
                                                          tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    cfg = TINY.with_overrides({"bench.backend": "fake-hw", "masks.freeze": True,
                               "init_from": str(base_model), "bench.recording": str(rec),
                               "bench.n_recorded": 12, "schedule.steps": 4})
    bench = CountingBench(FakeHardwareBench(config=Trainer(TINY).sim_config, seed=1))
    trainer = Trainer(cfg, bench=bench)
    masks0 = trainer.optical.weights.detach().clone()
    dec0 = {k: v.clone() for k, v in trainer.decoder.state_dict().items()}
    trainer.train()
    assert bench.scenes == 12
    assert torch.equal(trainer.optical.weights, masks0)
    assert any(not torch.equal(v, dec0[k]) for k, v in trainer.decoder.state_dict().items())
    recording = Recording.open(rec)
    assert recording.n_scenes == 12 and recording.pattern_name == trainer.pattern_name
    targets = load_targets(rec)
    assert set(recording.scene_ids) <= set(targets)
    # targets are the latents of the recorded faces
    latents = trainer.train_data.batch(range(12))["latent"].numpy()
    for i, ident in enumerate(recording.scene_ids):
        np.testing.assert_array_equal(targets[ident], latents[i])
    # a second run resumes the recording: nothing is measured again
    again = CountingBench(bench.bench)
    Trainer(cfg, bench=again).recorded_data()
    assert again.scenes == 0


def test_record_faces_resumes_a_partial_recording(base_model: Path, tmp_path: Path) -> None:
    trainer = Trainer.resume(base_model)
    patterns = trainer.optical.export_patterns(trainer.pattern_name)
    bench = CountingBench(SimBench(config=trainer.sim_config, seed=0))
    record_faces(bench, trainer.generator, patterns, trainer.train_data, 8, tmp_path / "r",
                 batch_size=4, progress=False)
    assert bench.scenes == 8
    data = record_faces(bench, trainer.generator, patterns, trainer.train_data, 12,
                        tmp_path / "r", batch_size=4, progress=False)
    assert bench.scenes == 12 and len(data) == 12
    with pytest.raises(ConfigError):
        record_faces(bench, trainer.generator, patterns, trainer.train_data, 0,
                     tmp_path / "r", progress=False)


def test_one_model_decodes_sim_fake_hw_and_torch_alike(base_model: Path) -> None:
    trainer = Trainer.resume(base_model)
    images = trainer.val_data.batch(range(6))["image"]
    scenes = faces_as_scenes(images)
    patterns = trainer.optical.export_patterns(trainer.pattern_name)
    sim = SimBench(config=trainer.sim_config.with_noise("none"), seed=0)
    fake = FakeHardwareBench(config=trainer.sim_config.with_noise("none"), seed=0)
    v_sim = sim.measure(scenes, patterns).values
    v_fake = fake.measure(scenes, patterns).values
    v_torch = trainer.measure(images, noise=False).detach().double().numpy()
    lsb = trainer.sim_config.digitizer.lsb_v
    assert np.max(np.abs(v_sim - v_fake)) <= lsb + 1e-12
    assert np.max(np.abs(v_sim - v_torch)) <= 2 * lsb
    z_sim, z_fake = trainer.decode(v_sim), trainer.decode(v_fake)
    z_torch = trainer.decode(torch.as_tensor(v_torch))
    spread = float(trainer.decode(v_sim[::-1].copy()).sub(z_sim).abs().mean())
    assert float((z_sim - z_fake).abs().mean()) < 0.05 * spread
    assert float((z_sim - z_torch).abs().mean()) < 0.05 * spread


def test_fake_hw_bench_keeps_the_models_noise(base_model: Path, tmp_path: Path) -> None:
    """The twin takes its noise from its ``noise`` argument: the trainer and the CLI must
    pass the model's, or fake-hw readings come out noise-free beside noisy sim ones."""
    from lsi_ml.training.run import make_model_bench

    cfg = TINY.with_overrides({"bench.backend": "fake-hw", "masks.freeze": True,
                               "init_from": str(base_model),
                               "bench.recording": str(tmp_path / "rec"), "bench.noise": "shot"})
    trainer = Trainer(cfg)
    assert trainer.sim_config.noise.shot
    assert trainer.bench().sim_config.noise == trainer.sim_config.noise
    assert make_model_bench("fake-hw", trainer, 0, {}).sim_config.noise == trainer.sim_config.noise
