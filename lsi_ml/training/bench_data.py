"""Record generator faces on a bench (sim, fake-hw or the real one) for training.

The faces are shown on the bench's scene display as 8-bit RGB frames and measured with a
model's masks; :func:`lsi_hw.acquisition.acquire` writes them to a crash-safe recording
(rerunning resumes: faces already recorded are skipped).  Beside it, ``targets.npz`` holds
the latent of every scene id, so :class:`~lsi_ml.data.recorded.RecordedMeasurements` can
pair readings with targets for fine-tuning the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lsi_hw.acquisition import acquire
from lsi_hw.atomic import atomic_write
from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_hw.recording import Recording
from lsi_hw.types import image_id
from lsi_ml.data.recorded import RecordedMeasurements

if TYPE_CHECKING:
    from torch import Tensor

    from lsi_hw.interfaces import Bench
    from lsi_hw.sim import SimConfig
    from lsi_ml.latent.reading_fit import FitResult, ReadingFitConfig
    from lsi_ml.training.trainer import Trainer

__all__ = ["TARGETS_FILE", "bench_decoder", "faces_as_scenes", "record_faces"]

TARGETS_FILE = "targets.npz"


def faces_as_scenes(images: torch.Tensor) -> np.ndarray:
    """Generator images (B, 3, H, W) in [0, 1] -> monitor frames (B, H, W, 3) uint8."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"images must be (B, 3, H, W); got {tuple(images.shape)}")
    frames = torch.round(images.detach().clamp(0, 1) * 255).to(torch.uint8)
    return np.ascontiguousarray(frames.permute(0, 2, 3, 1).cpu().numpy())


def _save_targets(path: Path, targets: dict[str, np.ndarray]) -> None:
    ids = sorted(targets)
    atomic_write(path / TARGETS_FILE, lambda fh: np.savez(
        fh, scene_ids=np.array(ids), latents=np.stack([targets[i] for i in ids])))


def load_targets(path: str | Path) -> dict[str, np.ndarray]:
    """Scene id -> latent of a recording made by :func:`record_faces` (empty if none)."""
    file = Path(path) / TARGETS_FILE
    if not file.exists():
        return {}
    with np.load(file) as data:
        return {str(i): lat for i, lat in zip(data["scene_ids"], data["latents"], strict=True)}


def record_faces(
    bench: Any,
    generator: Any,
    patterns: PatternSet,
    dataset: Any,
    n: int,
    path: str | Path,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> RecordedMeasurements:
    """Measure the first ``n`` faces of ``dataset`` on ``bench`` into ``path``.

    Parameters
    ----------
    bench : lsi_hw.interfaces.Bench
        Any bench; its scene display shows the faces.
    generator : Generator
        Renders the faces (``dataset.batch(...)["image"]``); kept for the docstring's sake.
    patterns : PatternSet
        The model's masks (the recording is checked against their name when read).
    dataset : SyntheticFaces
        Source of the faces and their target latents.
    n : int
        Faces to record.
    path : str or Path
        Recording folder (created, or resumed: faces already in it are not measured again).
        ``targets.npz`` (scene id -> latent) is written into it after each batch.
    batch_size : int
        Faces rendered and committed per batch (what a crash can lose at most).
    progress : bool
        Progress bar.

    Returns
    -------
    RecordedMeasurements
        Readings (volts) with their target latents.
    """
    del generator
    if int(n) < 1 or int(n) > len(dataset):
        raise ConfigError(f"n={n} faces asked; the dataset has {len(dataset)}")
    folder = Path(path)
    targets = load_targets(folder)
    done: set[str] = set()
    if (folder / "manifest.json").exists():
        done = Recording.open(folder).completed_scene_ids()
    iterator: Any = range(0, int(n), int(batch_size))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"recording on {type(bench).__name__}", unit="batch")
    for lo in iterator:
        data = dataset.batch(range(lo, min(lo + int(batch_size), int(n))))
        scenes = faces_as_scenes(data["image"])
        ids = [image_id(s) for s in scenes]
        new = any(i not in targets for i in ids)
        for ident, latent in zip(ids, data["latent"].numpy(), strict=True):
            targets[ident] = latent
        if not all(i in done for i in ids):
            acquire(bench, scenes, patterns, folder, batch_size=len(scenes), progress=False)
            new = True
        if new:  # after the batch is committed: a crash in between re-renders its targets
            _save_targets(folder, targets)
    return RecordedMeasurements(folder, targets, expected_patterns=patterns.name)


def bench_decoder(trainer: Trainer, backend: str = "sim", seed: int = 0, *,
                  bench: Bench | None = None, sim_config: SimConfig | None = None,
                  fit: ReadingFitConfig | None = None
                  ) -> Callable[[dict[str, Tensor]], Tensor]:
    """``decode(batch) -> latent`` for :func:`lsi_ml.evaluation.latent.evaluate_decoder`: show the
    batch's faces on a bench, measure them with the trainer's masks, decode the readings.

    Parameters
    ----------
    trainer : lsi_ml.training.trainer.Trainer
        The model (masks + decoder).
    backend : str
        ``sim``: the differentiable torch model of the bench (noise drawn per face from
        seeded generators, so a face's readings do not depend on its batch mates);
        ``fake-hw``/``hw``: ``bench`` (opened by the caller) measures the faces.
    seed : int
        Seed of the ``sim`` noise.
    bench : Bench or None
        The opened bench for ``fake-hw``/``hw``.
    sim_config : SimConfig or None
        ``sim`` only: measure through THIS simulated bench instead of the one the model was
        trained on (test-time misalignment, another photon budget, other ADC bits, ...);
        the masks are the trainer's.
    fit : lsi_ml.latent.reading_fit.ReadingFitConfig or None
        Also fit each decoded latent to its own readings through the trainer's bench twin
        (:func:`lsi_ml.latent.reading_fit.fit_latent_to_readings`); the fits' reading residuals
        collect in ``decode.fit_results`` (a list of :class:`~lsi_ml.latent.reading_fit.FitResult`).

    Returns
    -------
    callable
    """
    fit_results: list[FitResult] = []

    def finish(readings: Tensor, latent: Tensor) -> Tensor:
        if fit is None:
            return latent
        result = _fit_to_readings(trainer, readings, latent, fit)
        fit_results.append(result)
        return result.latent

    from lsi_hw.sim.torch_model import TorchForwardModel
    from lsi_ml.training.streams import EVAL_STREAM, as_8bit, row_generators

    if backend == "sim":
        physics = None
        if sim_config is not None:
            size = tuple(trainer.optical.weights.shape[1:])
            physics = TorchForwardModel(sim_config, size).to(trainer.device)
        counter = [0]

        def decode_sim(batch: dict[str, Tensor]) -> Tensor:
            images = batch["image"]
            rows = torch.arange(counter[0], counter[0] + len(images))
            counter[0] += len(images)
            gens = row_generators(seed, EVAL_STREAM + 1, 0, rows)
            with torch.no_grad():
                if physics is None:
                    readings = trainer.measure(images, generator=gens)
                else:
                    scenes = as_8bit(images.to(trainer.device)).permute(0, 2, 3, 1)
                    readings = physics(scenes, trainer.optical.masks(), generator=gens)
                latent = finish(readings, trainer.decode(readings))
            return latent.to(images.device)

        decode_sim.fit_results = fit_results  # type: ignore[attr-defined]
        return decode_sim
    if bench is None:
        raise ConfigError(f"backend {backend!r} needs an opened bench")
    if sim_config is not None:
        raise ConfigError("sim_config is for backend 'sim'; configure the bench instead")
    patterns = trainer.optical.export_patterns(trainer.pattern_name)

    def decode_bench(batch: dict[str, Tensor]) -> Tensor:
        measurement = bench.measure(faces_as_scenes(batch["image"]), patterns)
        readings = torch.as_tensor(measurement.values, dtype=torch.float32)
        return finish(readings, trainer.decode(readings))

    decode_bench.fit_results = fit_results  # type: ignore[attr-defined]
    return decode_bench


def _fit_to_readings(trainer: Trainer, readings: Tensor, latent: Tensor,
                     config: ReadingFitConfig) -> FitResult:
    """FitResult of ``latent`` fitted to ``readings`` through the trainer's bench twin."""
    from lsi_ml.latent.reading_fit import TwinReadings, fit_latent_to_readings

    twin = TwinReadings(trainer.optical)
    readings = readings.to(trainer.device)
    with torch.no_grad():
        sigma = twin.noise_sigma(trainer.generator.synthesize(latent.to(trainer.device)),
                                 draws=config.noise_draws)
    result = fit_latent_to_readings(trainer.generator, twin, readings,
                                    latent.to(trainer.device), sigma, config)
    return result
