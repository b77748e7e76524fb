"""``lsi-ml``: train, evaluate, export and decode latent-space single-pixel cameras.

A *run folder* (``lsi-ml train --out RUN``) holds everything one model needs:
``model.pt`` (masks + decoder checkpoint, resumable), ``config.toml``, ``history.json``,
``training_curve.png``, ``patterns.npz`` (the masks for ``lsi-hw``) and ``probes.pt``
(attribute / segmentation / landmark probes trained on generator samples).  Every other
command takes the run folder (or a ``model.pt`` path).

While ``lsi-ml train`` writes into a run folder it holds ``RUN/.lsi-train.lock``; a second
``lsi-ml train`` into the same folder is refused (exit 2, naming the other process) instead
of overwriting the first one's model.  Every file is written atomically (temporary file,
``fsync``, rename).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from lsi_hw.atomic import atomic_write, atomic_write_text
from lsi_hw.benches import BENCH_NAMES as BACKENDS
from lsi_hw.cli_util import check_new_file, one_line_errors
from lsi_hw.errors import ConfigError, LSIError
from lsi_hw.plotting import save_figure
from lsi_hw.sim.detector import NOISE_PRESETS
from lsi_ml import __version__
from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet
from lsi_ml.training.config import TrainConfig
from lsi_ml.training.plan import parse_duration
from lsi_ml.training.run import (
    PROBES_FILE,
    load_trainer,
    make_model_bench,
    model_path,
    provide_probes,
    ratio_label,
    run,
)

if TYPE_CHECKING:
    import torch

    from lsi_hw.types import Measurement
    from lsi_ml.latent.reading_fit import ReadingFitConfig
    from lsi_ml.training.trainer import Trainer

__all__ = ["main"]

_DEFAULTS = TrainConfig()
_PROBE_DEFAULTS = ProbeConfig.cpu()



def _load_probes(trainer: Trainer, model: str | Path, probes: str | None,
                 train_if_missing: bool, progress: bool) -> ProbeSet | None:
    """Probes from ``--probes``, else ``RUN/probes.pt``; trained (and cached) if absent.
    They are returned on the trainer's device."""
    from lsi_ml.latent.probe_training import ProbeSet

    path = Path(probes) if probes else model_path(model).with_name(PROBES_FILE)
    if path.exists():
        return ProbeSet.load(path, trainer.generator).to(trainer.device)
    if probes:
        raise ConfigError(f"--probes {path} does not exist")
    if not train_if_missing:
        return None
    click.echo(f"no probes at {path}: taking them from the probe cache")
    return provide_probes(trainer, path, None, progress, click.echo)


def _parse_bench_options(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> options for :func:`lsi_hw.benches.make_bench` (values read
    as JSON when they parse, e.g. numbers and true/false, else kept as strings)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--bench-option {item!r}: write KEY=VALUE, e.g. daq_device=Dev2")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


# ---------------------------------------------------------------------------------- group
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsi-ml")
def main() -> None:
    """Train and evaluate latent-space single-pixel cameras (masks + decoder + probes)."""


# ---------------------------------------------------------------------------------- train
def _relaunch_torchrun(nproc: int) -> None:
    """Run this same ``train`` command under torchrun with ``nproc`` processes."""
    args = list(sys.argv[1:])
    cleaned: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        cleaned.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc_per_node", str(nproc), "-m", "lsi_ml.cli", *cleaned]
    click.echo("launching: " + " ".join(command[1:]))
    sys.exit(subprocess.call(command))


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="TOML training config (tables of lsi_ml.training.config.TrainConfig: "
                   "[data], [masks], [schedule], ...; flat keys of older configs too).")
@click.option("-o", "--out", type=click.Path(file_okay=False), default="lsi-run", show_default=True,
              help="Run folder; an existing model.pt in it is resumed. One training at a "
                   "time per folder (a second one is refused while the first runs).")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="sim: end to end through the torch twin (default). fake-hw/hw: record "
                   "faces on that bench and fine-tune the decoder, masks frozen.")
@click.option("--init-from", type=click.Path(), default=None,
              help="Start from this model (run folder or model.pt), e.g. to fine-tune.")
@click.option("--size", type=int, default=None, show_default=str(_DEFAULTS.data.size),
              help="Image and mask side, pixels.")
@click.option("--masks", "n_masks", type=int, default=None,
              show_default=str(_DEFAULTS.masks.n_masks), help="Number of masks m.")
@click.option("--noise", type=click.Choice(list(NOISE_PRESETS)), default=None,
              show_default=str(_DEFAULTS.bench.noise), help="Bench noise preset.")
@click.option("--steps", type=int, default=None, show_default=str(_DEFAULTS.schedule.steps),
              help="End-to-end optimizer steps (or let --budget choose them).")
@click.option("--budget", default=None, metavar="DURATION",
              help="Wall-clock budget of the whole run (e.g. 20m, 90s, 1.5h): the number of "
                   "end-to-end steps is chosen from a few timed steps so that every phase "
                   "fits. New runs on the simulated bench.")
@click.option("--batch", type=int, default=None, show_default=str(_DEFAULTS.schedule.batch),
              help="Global batch (scenes per step).")
@click.option("--seed", type=int, default=None, show_default=str(_DEFAULTS.seed),
              help="Seed of masks, decoder, data, noise.")
@click.option("--n-recorded", type=int, default=None,
              show_default=str(_DEFAULTS.bench.n_recorded),
              help="fake-hw/hw: faces recorded for fine-tuning.")
@click.option("--probe-steps", type=int, default=None,
              show_default=f"{_PROBE_DEFAULTS.steps} on a CPU",
              help="Probe training steps (probes are trained once per generator and "
                   "probe config, then taken from the user's cache).")
@click.option("--no-probes", is_flag=True, help="Do not train the probes after the decoder.")
@click.option("--mask-init", type=click.Choice(["random", "hadamard"]), default=None,
              show_default=str(_DEFAULTS.masks.init),
              help="Initial masks: uniform random weights (the paper; default) or the "
                   "lowest-sequency Walsh-Hadamard masks.")
@click.option("--bank-steps", type=int, default=None, show_default=str(_DEFAULTS.bank.steps),
              help="Decoder-only steps on a measurement bank after the end-to-end steps "
                   "(masks frozen; scenes rendered once; see TrainConfig.bank).")
@click.option("--bench-option", "bench_options", multiple=True, metavar="KEY=VALUE",
              help="fake-hw/hw bench setting, repeatable (e.g. daq_device=Dev2, "
                   "digitizer=visa, visa_resource=USB0::...); see lsi_hw.benches.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Processes (DDP, gloo on CPU) via torchrun; the global batch is split.")
@click.option("--device", default=None, show_default=str(_DEFAULTS.device),
              help="Torch device (cpu, cuda, cuda:1); a run may resume on another device.")
@click.option("--estimate/--no-estimate", default=True, show_default=True,
              help="Time a few steps of each phase to print the plan with times.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@one_line_errors
def train(config_file: str | None, out: str, backend: str | None, init_from: str | None,
          size: int | None, n_masks: int | None, noise: str | None, steps: int | None,
          budget: str | None, batch: int | None, seed: int | None, n_recorded: int | None,
          probe_steps: int | None, no_probes: bool, mask_init: str | None,
          bank_steps: int | None,
          bench_options: tuple[str, ...], nproc: int, device: str | None,
          estimate: bool, progress: bool) -> None:
    """Train masks + decoder (sim) or fine-tune the decoder on bench recordings.

    Prints its plan first: each phase (end-to-end steps, bank steps, probes), its steps and
    its time measured from a few timed steps. The defaults take about 15 min on a 2-core
    laptop (probes: 5 min more the first time, then cached)."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} must be >= 1")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps {steps} must be >= 1 (the total number of optimizer "
                          "steps)")
    budget_s = parse_duration(budget) if budget is not None else None
    options = _parse_bench_options(bench_options)
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        _relaunch_torchrun(nproc)
    overrides: dict[str, Any] = {  # TrainConfig settings by their dotted keys
        k: v for k, v in {"data.size": size, "masks.n_masks": n_masks, "bench.noise": noise,
                          "schedule.steps": steps, "schedule.batch": batch, "seed": seed,
                          "bench.n_recorded": n_recorded, "bank.steps": bank_steps,
                          "masks.init": mask_init}.items()
        if v is not None}
    if device is not None:
        overrides["device"] = device
    if init_from:
        overrides["init_from"] = str(model_path(init_from))
    run(config_file, out, backend=backend, overrides=overrides, bench_options=options,
        probe_steps=probe_steps, train_probes=not no_probes, progress=progress,
        budget_s=budget_s, estimate=estimate, echo=click.echo)


# ---------------------------------------------------------------------------------- eval
def _bench_decoder(trainer: Trainer, backend: str, seed: int,
                   options: dict[str, Any] | None = None,
                   fit: ReadingFitConfig | None = None
                   ) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """decode(batch) for evaluate_decoder: measure the batch's faces, then decode (and fit
    the latents to the readings when ``fit`` is a ReadingFitConfig)."""
    from lsi_ml.training.bench_data import bench_decoder

    bench = None if backend == "sim" else make_model_bench(backend, trainer, seed, options or {})
    return bench_decoder(trainer, backend, seed, bench=bench, fit=fit)


@main.command("eval")
@click.argument("model", type=click.Path(exists=True))
@click.option("--backend", type=click.Choice(BACKENDS), default="sim", show_default=True,
              help="Bench that measures the test faces (the same model decodes them all).")
@click.option("--n-test", type=int, default=512, show_default=True, help="Test faces.")
@click.option("--pairs", "n_pairs", type=int, default=512, show_default=True,
              help="Verification pairs (val and test each).")
@click.option("--probes", type=click.Path(dir_okay=False), default=None,
              help="Probe file (default RUN/probes.pt; trained and cached if missing).")
@click.option("--ceiling", is_flag=True,
              help="Also score the probes on the TRUE latents (what a perfect decoder gets).")
@click.option("--recognizer/--no-recognizer", "use_recognizer", default=None,
              help="Score each decoded image against its original with the SynthFace "
                   "recognizer. Default: when `lsi-ml recognizer` has cached one; "
                   "--recognizer trains it here if missing (~5 min on a CPU core).")
@click.option("--seed", type=int, default=0, show_default=True, help="Test-set seed.")
@click.option("--dlib", is_flag=True,
              help="Also report dlib face verification (descriptor distance < 0.6) and dlib "
                   "68-landmark NME of the reconstructed images vs the originals (first 128 "
                   'faces; needs pip install "lsi-toolkit[faces]").')
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write every number to this JSON file.")
@click.option("--per-dim", "per_dim", type=int, default=None, metavar="N",
              help="Also list the N best and N worst decoded latent dimensions by R^2, "
                   "by parameter name (0: all of them).")
@click.option("--bench-option", "bench_options", multiple=True, metavar="KEY=VALUE",
              help="fake-hw/hw bench setting, repeatable (e.g. daq_device=Dev2, "
                   "digitizer=visa, visa_resource=USB0::...); see lsi_hw.benches.")
@click.option("--device", default="cpu", show_default=True,
              help="Torch device of the decoder and probes (cpu, cuda, cuda:1); the "
                   "simulated bench noise is drawn the same on every device.")
@click.option("--fit-iters", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Then fit each decoded latent to its own readings through the bench "
                   "twin: this many Levenberg-Marquardt iterations (0: decoder only; 15 "
                   "is a good value, ~0.1 s a face an iteration on a CPU core at 64 px).")
@click.option("--fit-flip-iters", type=click.IntRange(0, 1000), default=3, show_default=True,
              help="With --fit-iters: also try each near-threshold attribute switched, fitted "
                   "this many iterations, keep the best (0: no switches; costs ~2-4x the "
                   "fit).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@one_line_errors
def eval_(model: str, backend: str, n_test: int, n_pairs: int, probes: str | None,
          ceiling: bool, seed: int, dlib: bool, json_out: str | None, per_dim: int | None,
          bench_options: tuple[str, ...], device: str, progress: bool,
          use_recognizer: bool | None = None, fit_iters: int = 0,
          fit_flip_iters: int = 3) -> None:
    """Print a Table-1-style row: ratio, verification, FD, attributes, seg F1, NME."""
    from lsi_ml.evaluation.latent import evaluate_decoder

    if n_test < 2 or n_pairs < 4:
        raise ConfigError("--n-test must be >= 2 and --pairs >= 4")
    if per_dim is not None and per_dim < 0:
        raise ConfigError(f"--per-dim {per_dim} must be >= 0 (0: every dimension)")
    if dlib:  # fail before loading the model or training probes
        from lsi_ml.evaluation.faces import load_dlib_faces

        load_dlib_faces()
    options = _parse_bench_options(bench_options)
    if options and backend == "sim":
        raise ConfigError("--bench-option is for --backend fake-hw or hw")
    from lsi_ml.devices import check_device

    check_device(device, label="--device ", available=True)  # fails before any loading
    if json_out and not Path(json_out).resolve().parent.is_dir():
        raise ConfigError(f"--json {json_out}: its folder does not exist")
    trainer = load_trainer(model, device)
    from lsi_ml.evaluation.latent import check_eval_memory

    check_eval_memory(trainer.generator, n_test, n_pairs)  # before probes or the bench
    fit = None
    if fit_iters:
        from lsi_ml.latent.reading_fit import ReadingFitConfig

        fit = ReadingFitConfig(iters=fit_iters, flip_iters=fit_flip_iters, progress=progress)
    decode = _bench_decoder(trainer, backend, seed, options, fit)  # opens the bench first
    probe_set = _load_probes(trainer, model, probes, True, progress)
    recognizer = None
    if use_recognizer is not False and hasattr(trainer.generator,
                                               "sample_latent_same_identity"):
        from lsi_ml.evaluation.recognizer_cache import (
            load_or_train_recognizer,
            recognizer_cache_path,
        )

        cached = recognizer_cache_path(trainer.generator).exists()
        if use_recognizer or cached:
            recognizer = load_or_train_recognizer(trainer.generator, progress=progress,
                                                  device=str(trainer.device))
        else:
            click.echo("no SynthFace recognizer cached: identity scores of decoded images "
                       "left out (`lsi-ml recognizer` makes one, ~5 min)")
    result = evaluate_decoder(decode, trainer.generator, probe_set, n_test=n_test,
                              n_pairs=n_pairs, seed=seed, progress=progress,
                              with_ceiling=ceiling, dlib=dlib, recognizer=recognizer)
    ratio = ratio_label(trainer)
    click.echo(f"model {model_path(model)} (step {trainer.step}), backend {backend}, "
               f"noise {trainer.config.bench.noise}, SynthFace {trainer.config.data.size} px")
    click.echo(result.summary())
    fit_line = _fit_summary(getattr(decode, "fit_results", []))
    if fit_line:
        click.echo(fit_line)
    if per_dim is not None:
        click.echo("")
        click.echo(result.r2_report(per_dim or None))
    click.echo("")
    from lsi_ml.evaluation.frechet import INCEPTION_NAME
    from lsi_ml.evaluation.table1 import table1_header

    click.echo(table1_header(INCEPTION_NAME if result.fd_is_inception else result.fd_space))
    click.echo(result.table1_row(ratio))
    if json_out:
        doc = {"model": str(model_path(model)), "backend": backend, "ratio": ratio,
               "step": trainer.step, "fit_iters": fit_iters, **result.as_dict()}
        atomic_write_text(json_out, json.dumps(doc, indent=1, default=float))


def _fit_summary(results: list[Any]) -> str:
    """One line on how well the reading fits explain the readings ('' when none ran)."""
    if not results:
        return ""
    import torch

    start = torch.cat([r.chi2_start for r in results])
    end = torch.cat([r.chi2 for r in results])
    return (f"reading fit over {len(end)} decodes: median reduced chi^2 (reading residual "
            f"/ noise, squared) {start.median().item():.3g} from the decoder -> "
            f"{end.median().item():.3g} fitted (~1 explains the readings to their noise)")


# ---------------------------------------------------------------------------------- export
@main.command("export-patterns")
@click.argument("model", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing OUT file.")
@one_line_errors
def export_patterns(model: str, out: str, force: bool) -> None:
    """Write the model's binary masks as a PatternSet file for `lsi-hw`."""
    checkpoint = model_path(model)
    target = Path(out)
    if os.path.realpath(target) in {os.path.realpath(checkpoint),
                                    os.path.realpath(checkpoint.with_name(PROBES_FILE))}:
        raise ConfigError(f"OUT {out} is the model's own file; --force never replaces an "
                          "input: pick another OUT")
    check_new_file(target, force, "OUT")
    trainer = load_trainer(model)
    patterns = trainer.optical.export_patterns(trainer.pattern_name)
    path = patterns.save(out, overwrite=force)
    fill = patterns.masks.reshape(patterns.m, -1).mean(axis=1)
    click.echo(f"wrote {path}: {patterns.m} masks {patterns.masks.shape[1]}x"
               f"{patterns.masks.shape[2]}, name {patterns.name}, fill {fill.min():.2f}.."
               f"{fill.max():.2f}")
    click.echo(f"measure with: lsi-hw acquire --patterns {path} ...; then: "
               f"lsi-ml decode {model} <measurement or recording>")


# ---------------------------------------------------------------------------------- decode
def _check_readings(values: np.ndarray, path: Path) -> None:
    """Refuse readings the decoder cannot take: non-finite, or beyond float32, naming
    ``path`` (the layout and dtype are checked when the file is read)."""
    from lsi_hw.limits import check_finite

    check_finite(values, f"{path}: readings 'values'")
    limit = float(np.finfo(np.float32).max)
    if float(np.max(np.abs(values))) > limit:
        raise ConfigError(f"{path}: readings 'values' exceed {limit:.3g} V in magnitude "
                          "(the decoder computes in float32)")


def _read_measurement(path: Path) -> Measurement:
    """The :class:`~lsi_hw.types.Measurement` in a measurement file or recording folder.

    Refused with one ConfigError line naming ``path`` (by ``Measurement.load`` and
    ``read_measurements``): a truncated or corrupt file, a plain ``.npy``, an archive
    without ``values``/``timestamps``, readings that are not a 2-D floating-point array,
    NaN or infinite readings, or a file that would not fit in memory.
    """
    from lsi_hw.recording import read_measurements
    from lsi_hw.types import Measurement

    try:
        measurement = (read_measurements(path) if path.is_dir()
                       else Measurement.load(str(path)))
    except LSIError as exc:
        text = " ".join(str(exc).split())
        raise ConfigError(text if str(path) in text else f"{path}: {text}") from None
    _check_readings(measurement.values, path)
    return measurement


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through :func:`~lsi_hw.atomic.atomic_write` (no pickles)."""
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


def _read_scenes(path: Path | None, measurement_path: Path, n: int) -> np.ndarray | None:
    """The scenes a measurement was made of, for the figure: ``path`` (a ``scenes.npz`` of
    ``lsi-hw simulate``), else the ``scenes.npz`` beside the measurement file, else None."""
    candidate = path if path is not None else measurement_path.with_name("scenes.npz")
    if not candidate.is_file():
        if path is not None:
            raise ConfigError(f"--scenes {path} does not exist")
        return None
    try:
        with np.load(candidate, allow_pickle=False) as data:
            scenes = np.asarray(data["scenes"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"scenes {candidate} unreadable ({exc})") from None
    if scenes.ndim not in (3, 4) or len(scenes) != n:
        raise ConfigError(f"scenes {candidate} hold {scenes.shape}; expected {n} scenes "
                          "(one per measured scene)")
    return scenes


def _save_overlay(images: np.ndarray, landmarks: np.ndarray | None, seg: np.ndarray | None,
                  names: list[str], path: Path, scenes: np.ndarray | None = None,
                  limit: int = 16) -> None:
    """The decode figure: per scene (columns) the scene shown (when known), the decoded
    face with its landmarks, and the decoded segmentation over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(images), limit)
    rows = [r for r, keep in (("scene", scenes is not None), ("decoded", True),
                              ("segmentation", seg is not None)) if keep]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.8 * n, 1.9 * len(rows)),
                             squeeze=False, dpi=100)
    for i in range(n):
        for r, row in enumerate(rows):
            ax = axes[r, i]
            ax.axis("off")
            if row == "scene":
                assert scenes is not None
                ax.imshow(scenes[i], cmap="gray" if scenes[i].ndim == 2 else None)
                ax.set_title(names[i][:18], fontsize=7)
            elif row == "decoded":
                ax.imshow(images[i])
                if landmarks is not None:
                    ax.scatter(landmarks[i, :, 0], landmarks[i, :, 1], s=2, c="lime")
                if scenes is None:
                    ax.set_title(names[i][:18], fontsize=7)
            else:
                ax.imshow(images[i])
                ax.imshow(seg[i], cmap="tab20", alpha=0.55, interpolation="nearest")
        for r, row in enumerate(rows):
            if i == 0:
                axes[r, 0].text(-0.08, 0.5, {"scene": "shown", "decoded": "decoded",
                                             "segmentation": "segments"}[row],
                                transform=axes[r, 0].transAxes, rotation=90, va="center",
                                ha="right", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


@main.command()
@click.argument("model", type=click.Path(exists=True))
@click.argument("measurements", type=click.Path(exists=True))
@click.option("-o", "--out", type=click.Path(file_okay=False), default="decoded", show_default=True)
@click.option("--probes", type=click.Path(dir_okay=False), default=None,
              help="Probe file (default RUN/probes.pt); without probes only latents/images.")
@click.option("--scenes", "scenes_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The scenes.npz of `lsi-hw simulate`, shown beside the "
                                 "decoded faces [default: the one beside MEASUREMENTS, if any].")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
@one_line_errors
def decode(model: str, measurements: str, out: str, probes: str | None,
           scenes_file: Path | None, force: bool) -> None:
    """Measurements (sim, fake-hw or hw) -> latent, image, attributes, landmarks, seg.

    Writes OUT/latents.npy, images.npy, decoded.json (attributes per scene), landmarks.npy,
    segmentation.npy and overlay.png (each scene shown beside its decoded face)."""
    import torch

    from lsi_hw.cli_util import OutputFolder
    from lsi_hw.limits import check_allocation

    # every check happens before the output folder (or its temporary twin) is created
    trainer = load_trainer(model)
    measurement = _read_measurement(Path(measurements))
    expected = trainer.pattern_name
    if measurement.values.shape[1] != trainer.config.masks.n_masks:
        raise ConfigError(f"{measurements} has {measurement.values.shape[1]} readings per "
                          f"scene; the model has {trainer.config.masks.n_masks} masks")
    if measurement.pattern_name and measurement.pattern_name != expected:
        raise ConfigError(f"{measurements} was measured with patterns "
                          f"{measurement.pattern_name!r}, not this model's {expected!r} "
                          f"(export them with `lsi-ml export-patterns {model} FILE`)")
    size = trainer.config.data.size
    check_allocation(256 * measurement.n_scenes * size * size,
                     f"decoding {measurement.n_scenes} scenes at {size} px")
    shown = _read_scenes(scenes_file, Path(measurements), measurement.n_scenes)
    probe_set = _load_probes(trainer, model, probes, False, False)
    probe_file = Path(probes) if probes else model_path(model).with_name(PROBES_FILE)
    inputs = [model, model_path(model), measurements]
    if probe_set is not None:
        inputs.append(str(probe_file))
    output = OutputFolder(Path(out), force, inputs=inputs, made_by="lsi-ml decode")
    try:
        latent = trainer.decode(torch.as_tensor(measurement.values, dtype=torch.float32))
        with torch.no_grad():
            images = trainer.generator.synthesize(latent).permute(0, 2, 3, 1).numpy()
        _save_npy(output.path("latents.npy"), latent.numpy())
        _save_npy(output.path("images.npy"), images.astype(np.float32))
        names = list(measurement.scene_ids)
        landmarks = seg = None
        report: dict[str, Any] = {"model": str(model_path(model)),
                                  "measurements": str(measurements), "scenes": names}
        if probe_set is not None:
            pred = probe_set.predict(latent)
            landmarks = pred["landmarks"].numpy()
            seg = pred["segmentation"].numpy()
            _save_npy(output.path("landmarks.npy"), landmarks)
            _save_npy(output.path("segmentation.npy"), seg.astype(np.uint8))
            attrs = pred["attributes"].numpy()
            report["attributes"] = {
                name: {a: bool(v) for a, v in zip(probe_set.attribute_names, row, strict=True)}
                for name, row in zip(names, attrs, strict=True)}
            report["segmentation_classes"] = list(probe_set.class_names)
        else:
            report["note"] = "no probes: attributes/landmarks/segmentation not decoded"
        atomic_write_text(output.path("decoded.json"), json.dumps(report, indent=1))
        _save_overlay(images, landmarks, seg, names, output.path("overlay.png"), shown)
        output.commit()
    except BaseException:
        output.abandon()
        raise
    click.echo(f"decoded {len(names)} scenes -> {out}/ (latents.npy, images.npy, "
               f"decoded.json{', landmarks.npy, segmentation.npy' if probe_set else ''}, "
               "overlay.png)")


# ---------------------------------------------------------------------------------- recognizer
@main.command("recognizer")
@click.option("--steps", type=int, default=None,
              help="Training steps (default 600: ~5 min on one idle CPU core at 64 px).")
@click.option("--size", type=int, default=64, show_default=True,
              help="SynthFace image size, pixels: the generator the recognizer is made for.")
@click.option("--generator-seed", type=int, default=0, show_default=True,
              help="SynthFace seed (its fixed textures).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the weights, training identities and threshold pairs.")
@click.option("--device", default="cpu", show_default=True, help="Torch device.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: the cache that evaluation reads, "
                   "$XDG_CACHE_HOME or ~/.cache, /lsi-toolkit/recognizer/<key>.pt).")
@click.option("--force", is_flag=True, help="Retrain and replace an existing file.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@one_line_errors
def recognizer(steps: int | None, size: int, generator_seed: int, seed: int, device: str,
               out: str | None, force: bool, progress: bool) -> None:
    """Train the SynthFace face recognizer (identity metric) and cache it; never downloaded."""
    from lsi_ml.devices import check_device
    from lsi_ml.evaluation.recognizer import RecognizerConfig, train_recognizer
    from lsi_ml.evaluation.recognizer_cache import (
        load_recognizer,
        recognizer_cache_path,
        save_recognizer,
    )
    from lsi_ml.generators.synthface import SynthFace

    if not 32 <= size <= 512:
        raise ConfigError(f"--size {size} must be in 32..512 pixels (SynthFace renders 64..256 "
                          "as intended)")
    if not 0 <= generator_seed <= 2**63 - 1:
        raise ConfigError(f"--generator-seed {generator_seed} must be in 0..2**63-1")
    check_device(device, label="--device ", available=True)
    overrides: dict[str, Any] = {"seed": seed, "device": device, "progress": progress}
    if steps is not None:
        overrides["steps"] = steps
    try:
        config = RecognizerConfig(**overrides)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (--steps / --seed)") from None
    generator = SynthFace(size, seed=generator_seed)
    path = Path(out) if out else recognizer_cache_path(generator, config)
    if out:
        check_new_file(path, force, "--out")
    elif path.exists() and not force:
        model = load_recognizer(path, generator)  # a corrupt / stale file fails here
        click.echo(f"recognizer already made: {path} (threshold {model.threshold:.3f}, "
                   f"validation accuracy {model.train_stats.get('val_accuracy', float('nan')):.3f}"
                   "); --force retrains it")
        return
    model = train_recognizer(generator, config)
    save_recognizer(model, path, generator)
    stats = model.train_stats
    click.echo(f"wrote {path}: {config.steps} steps in {stats['seconds_train']:.0f} s, "
               f"threshold {model.threshold:.3f}, accuracy {stats['val_accuracy']:.3f} on "
               f"{config.val_pairs} held-out validation pairs (SynthFace {size} px)")


if __name__ == "__main__":  # pragma: no cover
    main()
