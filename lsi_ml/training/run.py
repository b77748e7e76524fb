"""One training run into a run folder: the entry point of ``lsi-ml train``, the studies in
``sims`` and the examples.

A *run folder* holds everything one model needs: ``model.pt`` (masks + decoder checkpoint,
resumable), ``config.toml``, ``history.json``, ``training_curve.png``, ``patterns.npz``
(the masks for ``lsi-hw``) and ``probes.pt`` (attribute / segmentation / landmark probes
trained on generator samples). While :func:`run` writes into a folder it holds
``RUN/.lsi-train.lock``; a second run into the same folder is refused. Every file is
written atomically (temporary file, ``fsync``, rename).

Resuming never mixes settings: a folder whose ``model.pt`` exists is resumed only when the
caller asks for nothing but more steps (``schedule.steps``, ``bank.steps``), another device
or other progress output; anything else is refused with the differing settings named (by
their dotted keys).

Before any work a run prints its plan: the phases (end-to-end steps, bank steps, probes),
their step counts and the time each will take, measured from a few timed steps on this
machine (:mod:`lsi_ml.training.plan`). With ``budget_s`` the number of end-to-end steps is
chosen so that the whole run fits that wall-clock time. Probes come from the user's probe
cache (:mod:`lsi_ml.latent.probe_cache`): trained once per generator and probe config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsi_hw.atomic import atomic_write_text
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.plotting import save_figure

if TYPE_CHECKING:
    from lsi_hw.locking import PathLock
    from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet
    from lsi_ml.training.config import TrainConfig
    from lsi_ml.training.plan import RunPlan
    from lsi_ml.training.trainer import Trainer

__all__ = ["LOCK_FILE", "MODEL_FILE", "PROBES_FILE", "RESUMABLE_KEYS", "default_probe_config",
           "load_trainer", "lock_run", "make_model_bench", "model_path", "plot_history",
           "provide_probes", "ratio_label", "run", "run_probe_config"]

MODEL_FILE = "model.pt"
PROBES_FILE = "probes.pt"
LOCK_FILE = ".lsi-train.lock"
"""Lock file of a run folder while :func:`run` writes into it (removed at the end)."""
RESUMABLE_KEYS = ("schedule.steps", "bank.steps", "device", "progress", "checkpoint")
"""Settings (dotted keys) a resumed run may change; any other difference from the checkpoint
is refused."""
DEFAULT_CHECKPOINT_EVERY = 200
"""Checkpoint cadence of a run whose config sets none: a crash loses at most this many steps."""


def model_path(model: str | Path) -> Path:
    """``RUN`` folder or ``RUN/model.pt`` -> the checkpoint path (must exist)."""
    path = Path(model)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"no model checkpoint at {path} (train one with `lsi-ml train`)")
    return path


def load_trainer(model: str | Path, device: str = "cpu") -> Trainer:
    """The trained model of a run folder (or ``model.pt``), ready to decode on ``device``."""
    from lsi_ml.training.trainer import Trainer

    return Trainer.resume(model_path(model), progress=False, checkpoint=None,
                          init_from=None, device=device)


def ratio_label(trainer: Trainer) -> str:
    """Compression ratio of a model, pixels per reading, as ``"1:16"``."""
    pixels = trainer.config.data.size ** 2
    m = trainer.config.masks.n_masks
    return f"1:{pixels // m}" if pixels % m == 0 else f"1:{pixels / m:.1f}"


def default_probe_config(device: Any, progress: bool) -> ProbeConfig:
    """The probes a run trains when it has none: the laptop preset on a CPU, the quality
    defaults (``ProbeConfig()``: ~1 min on an H100 at 64 px) on a GPU."""
    import torch

    from lsi_ml.latent.probe_training import ProbeConfig

    device = str(device)
    if torch.device(device).type == "cpu":
        return ProbeConfig.cpu(progress=progress, device=device)
    return ProbeConfig(progress=progress, device=device)


def make_model_bench(backend: str, trainer: Trainer, seed: int,
                     options: Mapping[str, Any] | None = None) -> Bench:
    """The bench of ``backend`` set up like the model's simulated bench, plus ``options``
    (the keyword arguments of :class:`~lsi_hw.benches.twin.FakeHardwareBench` or
    :func:`~lsi_hw.benches.open_hardware_bench`; unknown ones are refused, naming the
    allowed ones)."""
    import inspect

    from lsi_hw.benches import make_bench, open_hardware_bench
    from lsi_hw.benches.twin import FakeHardwareBench

    options = dict(options or {})
    base: dict[str, Any] = {"config": trainer.sim_config}
    if backend == "fake-hw":  # the twin takes its noise from ``noise``, not from config
        base["seed"] = seed
        base["noise"] = trainer.sim_config.noise
    known = set(inspect.signature(FakeHardwareBench if backend == "fake-hw"
                                  else open_hardware_bench).parameters) - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"--bench-option {unknown} not understood by the {backend} bench; "
                          f"allowed: {', '.join(sorted(known))}")
    return make_bench(backend, **{**base, **options})


def run_probe_config(device: Any, progress: bool, probe_steps: int | None = None
                     ) -> ProbeConfig:
    """The probe config of a run: :func:`default_probe_config`, with ``probe_steps``."""
    pcfg = default_probe_config(device, progress)
    return pcfg if probe_steps is None else replace(pcfg, steps=probe_steps)


def provide_probes(trainer: Trainer, path: Path, probe_steps: int | None, progress: bool,
                   echo: Callable[[str], None]) -> ProbeSet:
    """Write the run's probes to ``path``: from the user's probe cache (trained and cached
    there first when this generator / config has none yet)."""
    from lsi_ml.latent.probe_cache import load_or_train_probes

    pcfg = run_probe_config(trainer.device, progress, probe_steps)
    probes, cached, trained = load_or_train_probes(trainer.generator, pcfg, echo=echo)
    probes.save(path)
    echo(f"{'trained' if trained else 'reused'} probes ({cached}) -> {path}")
    return probes


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Validation latent L1 and the last training loss over the steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, [h["val_latent_l1"] for h in history], "o-", label="val latent L1")
    ax.plot(steps, [h["loss"] for h in history], ".--", label="train loss (last step)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def lock_run(run_dir: Path) -> PathLock | None:
    """Create the run folder and hold its :data:`LOCK_FILE` (rank 0 only; None on the
    other ranks of a DDP launch, which never write into the folder and must not wait on a
    lock rank 0 holds). A second run into the same folder is refused with a
    :class:`~lsi_hw.errors.DeviceError` naming the folder and the holder's pid."""
    from lsi_hw.locking import PathLock

    if not _is_rank0():
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    return PathLock(run_dir / LOCK_FILE, f"run folder {run_dir}").acquire()


def _base_config(config: TrainConfig | str | Path | None,
                 overrides: Mapping[str, Any]) -> TrainConfig | None:
    """The config a new run starts from (None: the defaults)."""
    from lsi_ml.training.config import TrainConfig

    if isinstance(config, TrainConfig):
        return config
    if config is not None:
        return TrainConfig.from_toml(config)
    if "init_from" in overrides:  # same architecture as the model we start from
        base = TrainConfig.from_checkpoint(overrides["init_from"])
        return base.with_overrides({"bench.backend": "sim", "bench.recording": None,
                                    "masks.freeze": False})
    return None


def _resume(checkpoint: Path, config: TrainConfig | str | Path | None,
            overrides: Mapping[str, Any], progress: bool) -> Trainer:
    """Continue the run in ``checkpoint``; refuse any setting other than more steps."""
    from lsi_ml.training.config import TrainConfig
    from lsi_ml.training.trainer import Trainer

    changed = sorted(k for k in overrides if k not in RESUMABLE_KEYS)
    if isinstance(config, TrainConfig):
        stored = TrainConfig.from_checkpoint(checkpoint).dotted_dict()
        wanted = config.dotted_dict()
        changed += sorted(k for k in wanted
                          if k not in (*RESUMABLE_KEYS, "schedule.checkpoint_every")
                          and wanted[k] != stored[k])
    elif config is not None:
        changed.append("config file")
    if changed:
        raise ConfigError(f"{checkpoint} exists and resuming never mixes settings "
                          f"({', '.join(changed)} differ): rerun with only --out (and "
                          "--steps to train longer) to resume it, or pick another --out")
    keep = {k: overrides[k] for k in ("schedule.steps", "bank.steps", "device")
            if k in overrides}
    if isinstance(config, TrainConfig):
        keep = {"schedule.steps": config.schedule.steps, "bank.steps": config.bank.steps,
                "device": config.device, **keep}
    return Trainer.resume(checkpoint, keep, progress=progress, checkpoint=str(checkpoint))


def run(config: TrainConfig | str | Path | None, out: str | Path, *,
        backend: str | None = None, overrides: Mapping[str, Any] | None = None,
        bench_options: Mapping[str, Any] | None = None, probe_steps: int | None = None,
        train_probes: bool = True, progress: bool = True, budget_s: float | None = None,
        estimate: bool = True, echo: Callable[[str], None] = print) -> Trainer:
    """Train (or resume) one model into the run folder ``out``.

    Parameters
    ----------
    config : TrainConfig, path of a TOML file, or None
        The run's settings (None: :class:`TrainConfig` defaults, or the architecture of
        ``overrides["init_from"]``).
    out : str or Path
        The run folder. An existing ``model.pt`` in it is resumed (see the module notes).
    backend : {"sim", "fake-hw", "hw"}, optional
        Where the training measurements come from (overrides the config's).
        ``fake-hw``/``hw`` record faces on that bench and fine-tune the decoder with the
        masks frozen; they need ``init_from`` (a model trained on the simulator).
    overrides : mapping, optional
        Settings changed from ``config``, by their dotted keys (e.g.
        ``{"schedule.steps": 500}``; see :meth:`TrainConfig.with_overrides`); the flat keys
        of earlier versions (``{"steps": 500}``) are read through
        :data:`~lsi_ml.training.config.FLAT_KEYS`.
    bench_options : mapping, optional
        Keyword arguments of the ``fake-hw``/``hw`` bench (see :func:`make_model_bench`).
    probe_steps : int, optional
        Steps of the probe training after the decoder (default: the probe preset's).
    train_probes : bool
        Train probes (``probes.pt``) when the folder has none.
    progress : bool
        Progress bars.
    budget_s : float, optional
        Wall-clock budget of the whole run, s (new runs on the simulated bench, one
        process): the number of end-to-end steps is chosen from a few timed steps so that
        all phases fit; the end-to-end phase stops at
        :data:`~lsi_ml.training.plan.OVERRUN` x the budget if the machine slows down
        (the checkpoint is resumable). Refused together with ``schedule.steps``.
    estimate : bool
        Time a few steps of each phase to print the plan with times (a few seconds);
        False: the plan shows step counts only.
    echo : callable
        Where the one-line status messages go.

    Returns
    -------
    Trainer
        The trained model (on every rank of a DDP launch; only rank 0 writes files).

    Raises
    ------
    ConfigError
        Bad settings, before anything is written; a resume that would change settings.
    DeviceError
        Another process is training into ``out``.
    """
    from lsi_ml.training.config import FLAT_KEYS

    run_dir = Path(out)
    values: dict[str, Any] = {FLAT_KEYS.get(str(k), str(k)): v
                              for k, v in (overrides or {}).items()}
    if backend is not None:
        values["bench.backend"] = backend
    values["progress"] = progress
    values["checkpoint"] = str(run_dir / MODEL_FILE)
    options = dict(bench_options or {})
    if budget_s is not None:
        if not budget_s > 0:
            raise ConfigError(f"budget {budget_s} s must be > 0")
        if "schedule.steps" in values:
            raise ConfigError("give either a budget or a number of steps (--steps), not "
                              "both: the budget chooses the steps")
    created = not run_dir.exists()
    lock = lock_run(run_dir)
    try:
        return _run_locked(run_dir, config, values, options,
                           _Extras(probe_steps, train_probes, progress, budget_s, estimate),
                           echo)
    finally:
        if lock is not None:
            lock.release(remove=True)
            if created:  # a run refused before writing anything leaves no empty folder
                try:
                    run_dir.rmdir()
                except OSError:
                    pass


@dataclass(frozen=True)
class _Extras:
    """The settings of :func:`run` that are not TrainConfig settings."""

    probe_steps: int | None
    train_probes: bool
    progress: bool
    budget_s: float | None
    estimate: bool


def _probe_status(run_dir: Path, trainer_config: TrainConfig, extras: _Extras) -> str:
    """What the probe phase will do: off, kept, cached or train."""
    if not extras.train_probes:
        return "off"
    if (run_dir / PROBES_FILE).exists():
        return "kept"
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.latent.probe_cache import probe_cache_path

    generator = SynthFace(trainer_config.data.size, seed=trainer_config.seed)
    pcfg = run_probe_config(trainer_config.device, False, extras.probe_steps)
    return "cached" if probe_cache_path(generator, pcfg).is_file() else "train"


def _new_config(run_dir: Path, config: TrainConfig | str | Path | None,
                overrides: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a new run in ``run_dir`` (checked, not yet budgeted)."""
    from lsi_ml.training.config import TrainConfig

    base = _base_config(config, overrides) or TrainConfig()
    values = dict(overrides)
    merged = {**base.dotted_dict(), **values}  # the settings of the new run
    if merged.get("bench.backend") != "sim":
        values["masks.freeze"] = True
        values["bench.recording"] = (merged.get("bench.recording")
                                     or str(run_dir / "recording"))
        if not merged.get("init_from"):
            raise ConfigError(f"--backend {merged.get('bench.backend')} fine-tunes a "
                              "trained model: give --init-from RUN (a model trained on "
                              "the simulator)")
    if not merged.get("schedule.checkpoint_every"):
        values["schedule.checkpoint_every"] = DEFAULT_CHECKPOINT_EVERY
    new = base.with_overrides(values)
    new.check_memory()  # refuse a run that cannot fit before writing anything
    return new


def _train_within(trainer: Trainer, deadline: float, echo: Callable[[str], None]) -> None:
    """Train to the end, but stop the end-to-end phase once past ``deadline``
    (``time.perf_counter`` seconds); the bank phase then does not start."""
    import time

    cfg = trainer.config
    chunk = max(1, min(cfg.schedule.checkpoint_every or 100, 100))
    while trainer.step < cfg.schedule.steps:
        trainer.train(min(cfg.schedule.steps, trainer.step + chunk))
        if trainer.step < cfg.schedule.steps and time.perf_counter() > deadline:
            from lsi_ml.training.plan import OVERRUN

            trainer.evaluate()
            trainer.save()
            echo(f"stopped at step {trainer.step} of {cfg.schedule.steps}: the machine "
                 f"slowed down and the run passed {OVERRUN}x its budget; resume it with "
                 "lsi-ml train --out on the same folder to finish the schedule")
            return
    trainer.train()


def _run_locked(run_dir: Path, config: TrainConfig | str | Path | None,
                overrides: dict[str, Any], options: dict[str, Any], extras: _Extras,
                echo: Callable[[str], None]) -> Trainer:
    """The body of :func:`run` once the run folder is locked."""
    import time

    from lsi_ml.training.distributed import init_distributed
    from lsi_ml.training.plan import OVERRUN, fit_to_budget, plan_run
    from lsi_ml.training.trainer import Trainer

    started = time.perf_counter()
    checkpoint = run_dir / MODEL_FILE
    rank, world = init_distributed()
    estimate = extras.estimate and world == 1
    if checkpoint.exists():
        if extras.budget_s is not None:
            raise ConfigError(f"{checkpoint} exists: a budget applies to new runs (resume "
                              "it with --steps, or pick another --out)")
        trainer = _resume(checkpoint, config, overrides, extras.progress)
        echo(f"resuming {checkpoint} at step {trainer.step}/{trainer.total_steps}")
        plan = plan_run(trainer.config, done_steps=trainer.step,
                        probes=_probe_status(run_dir, trainer.config, extras),
                        probe_config=run_probe_config(trainer.config.device, False,
                                                      extras.probe_steps),
                        estimate=estimate)
    else:
        new = _new_config(run_dir, config, overrides)
        probes = _probe_status(run_dir, new, extras)
        pcfg = run_probe_config(new.device, False, extras.probe_steps)
        if extras.budget_s is not None:
            if world > 1 or new.bench.backend != "sim":
                raise ConfigError("a budget is for a new run on the simulated bench in one "
                                  "process (no --nproc, no --backend fake-hw/hw)")
            timed = plan_run(new, probes=probes, probe_config=pcfg, estimate=True)
            new = fit_to_budget(new, extras.budget_s, timed)
            plan = _rescaled(timed, new)  # the timings taken, with the chosen steps
        else:
            plan = plan_run(new, probes=probes, probe_config=pcfg, estimate=estimate)
        trainer = Trainer(new)
        if rank == 0:
            atomic_write_text(run_dir / "config.toml", new.to_toml())
    cfg = trainer.config
    if options and cfg.bench.backend == "sim":
        raise ConfigError("--bench-option is for --backend fake-hw or hw")
    if cfg.bench.backend != "sim":  # open the bench now: errors before any work
        trainer.use_bench(make_model_bench(cfg.bench.backend, trainer, cfg.seed, options))
    if rank == 0:
        echo(f"training {ratio_label(trainer)} ({cfg.masks.n_masks} masks at "
             f"{cfg.data.size} px, noise {cfg.bench.noise}, backend "
             f"{cfg.bench.backend}, {world} process(es)) -> {run_dir}")
        for line in plan.lines():
            echo(line)
    if extras.budget_s is not None:
        _train_within(trainer, started + OVERRUN * extras.budget_s, echo)
    else:
        trainer.train()
    history = trainer.history
    if rank != 0:
        return trainer
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1))
    plot_history(history, run_dir / "training_curve.png")
    trainer.optical.export_patterns(trainer.pattern_name).save(run_dir / "patterns.npz")
    last = history[-1] if history else {}
    echo(f"step {trainer.step}: val latent L1 {last.get('val_latent_l1', float('nan')):.4f}"
         f"; wrote {checkpoint}, patterns.npz, history.json, training_curve.png")
    if extras.train_probes:
        probes_path = run_dir / PROBES_FILE
        if probes_path.exists():
            echo(f"probes kept: {probes_path}")
        else:
            provide_probes(trainer, probes_path, extras.probe_steps, extras.progress, echo)
    if extras.budget_s is not None:
        spent = time.perf_counter() - started
        echo(f"wall time {spent / 60:.1f} min of a {extras.budget_s / 60:.1f} min budget")
    echo(f"next: lsi-ml eval {run_dir}")
    return trainer


_PLAN_WITH_STEPS = ("end-to-end",)


def _rescaled(plan: RunPlan, config: TrainConfig) -> RunPlan:
    """``plan`` with the end-to-end phase's steps set to ``config.schedule.steps``."""
    phases = tuple(replace(p, steps=config.schedule.steps) if p.name in _PLAN_WITH_STEPS
                   else p for p in plan.phases)
    return replace(plan, phases=phases)
