"""What a training run will do and how long it will take, before it starts.

A run has up to three phases: end-to-end steps (masks and decoder through the simulated
bench), decoder-only steps on a measurement bank, and the probes that read attributes,
segmentation and landmarks from the latent (trained once per generator and probe config,
then taken from the user's cache). :func:`plan_run` times a few steps of each phase that
needs it on this machine and returns a :class:`RunPlan`; :func:`fit_to_budget` chooses the
number of end-to-end steps so that the whole run fits a wall-clock budget.

Timing uses throw-away models of the same configuration (a few seconds); the run itself
is not touched, so a planned run ends with the same parameters as an unplanned one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from lsi_hw.errors import ConfigError

if TYPE_CHECKING:
    from lsi_ml.latent.probe_training import ProbeConfig
    from lsi_ml.training.config import TrainConfig

__all__ = ["OVERRUN", "Phase", "RunPlan", "fit_to_budget", "format_duration",
           "parse_duration", "plan_run", "time_bank_steps", "time_probe_training",
           "time_train_steps"]

OVERRUN = 1.25
"""A budgeted run stops its end-to-end phase at this multiple of the budget (the machine
slowed down); the checkpoint is kept and the run can be resumed to finish."""

MIN_STEPS = 10
"""Fewest end-to-end steps a budget may leave; a smaller budget is refused."""


def parse_duration(text: str) -> float:
    """Seconds of ``"90s"``, ``"20m"``, ``"1.5h"``, ``"1h30m"`` or a plain number of
    minutes (``"20"``); ConfigError on anything else or a duration <= 0."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d*)?", value):
        seconds = 60.0 * float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d*)?)\s*([hms])", value)
        if not parts or re.sub(r"(\d+(?:\.\d*)?)\s*([hms])", "", value).strip():
            raise ConfigError(f"budget {text!r} is not a duration: write e.g. 20m, 90s, "
                              "1.5h or 1h30m")
        unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    if not seconds > 0:
        raise ConfigError(f"budget {text!r} must be longer than 0 s")
    return seconds


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"7.5 min"`` or ``"1.6 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Phase:
    """One phase of a run: ``steps`` at ``seconds_per_step`` plus ``setup_s`` once (e.g.
    rendering the bank); ``note`` says what it is. Times are None when not estimated."""

    name: str
    steps: int
    seconds_per_step: float | None
    setup_s: float = 0.0
    note: str = ""

    @property
    def seconds(self) -> float | None:
        """Estimated wall time of the phase, s (None: not estimated)."""
        if self.seconds_per_step is None:
            return None
        return self.setup_s + self.steps * self.seconds_per_step


@dataclass(frozen=True)
class RunPlan:
    """The phases of a run with their estimated times."""

    phases: tuple[Phase, ...]
    timing_s: float = 0.0

    @property
    def seconds(self) -> float | None:
        """Estimated wall time of all phases, s (None when a phase is not estimated)."""
        times = [p.seconds for p in self.phases]
        return None if any(t is None for t in times) else float(sum(times))  # type: ignore[arg-type]

    def lines(self) -> list[str]:
        """The plan as printed before a run starts."""
        out = ["plan (times measured on this machine from a few timed steps):"]
        for i, phase in enumerate(self.phases, 1):
            steps = f"{phase.steps:6d} steps" if phase.steps else ""
            if phase.steps and phase.seconds_per_step:
                steps += f" x {phase.seconds_per_step:.3f} s"
            when = ("time not estimated" if phase.seconds is None
                    else f"~ {format_duration(phase.seconds)}")
            out.append(f"  {i}. {phase.name:<10s} {steps:<22s} {when:<10s} "
                       f"{phase.note}".rstrip())
        total = self.seconds
        if total is not None:
            out.append(f"  total ~ {format_duration(total)}")
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train_steps(config: TrainConfig, warm: int = 2, timed: int = 5) -> float:
    """Mean wall time of one end-to-end step of ``config`` on this machine, s (``timed``
    steps after ``warm`` untimed ones, on a throw-away model)."""
    from lsi_ml.training.trainer import Trainer

    probe = Trainer(config.with_overrides({
        "schedule.steps": warm + timed, "bank.steps": 0, "checkpoint": None,
        "progress": False, "schedule.eval_every": 0, "schedule.warmup": 0}))
    for _ in range(warm):
        probe.train_step()
    _sync(probe.device)
    start = time.perf_counter()
    for _ in range(timed):
        probe.train_step()
    _sync(probe.device)
    return (time.perf_counter() - start) / timed


def time_bank_steps(config: TrainConfig, timed: int = 5) -> tuple[float, float]:
    """(seconds per bank step, seconds to build the whole bank) of ``config``: times a
    small bank of one batch and ``timed`` decoder-only steps on a throw-away model; the
    build time is scaled to ``bank.size`` scenes."""
    from lsi_ml.training.trainer import Trainer

    small = config.bank.batch
    probe = Trainer(config.with_overrides({
        "schedule.steps": 1, "bank.steps": timed + 1, "bank.size": small,
        "checkpoint": None, "progress": False, "schedule.eval_every": 0}))
    probe.train_step()  # the one end-to-end step
    start = time.perf_counter()
    probe.measurement_bank()
    build = (time.perf_counter() - start) * config.bank.size / small
    probe.train_step()  # first bank step (warm)
    _sync(probe.device)
    start = time.perf_counter()
    for _ in range(timed):
        probe.train_step()
    _sync(probe.device)
    return (time.perf_counter() - start) / timed, build


def time_probe_training(config: TrainConfig, probe_config: ProbeConfig,
                        timed: int = 3, faces: int = 64) -> tuple[float, float]:
    """(seconds per probe step, seconds to render the probes' training faces) for the
    probes of ``config``'s generator: ``timed`` steps on ``faces`` faces, scaled to
    ``probe_config.n_train``."""
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.latent.probe_training import ProbeSet

    generator = SynthFace(config.data.size, seed=config.seed)
    small = replace(probe_config, steps=timed, n_train=faces, progress=False,
                    warmup=min(probe_config.warmup, timed))
    stats = ProbeSet(generator, small).train_on(generator)
    render = stats["seconds_data"] * probe_config.n_train / faces
    return stats["seconds_train"] / timed, render


def plan_run(config: TrainConfig, *, done_steps: int = 0, probes: str = "off",
             probe_config: ProbeConfig | None = None, estimate: bool = True) -> RunPlan:
    """The plan of a run of ``config`` from step ``done_steps`` on.

    Parameters
    ----------
    config : TrainConfig
    done_steps : int
        Steps already done (a resumed run).
    probes : {"off", "kept", "cached", "train"}
        What the probe phase does: nothing, keep the run's probes, copy them from the
        user's cache, or train them (then cache them).
    probe_config : ProbeConfig, optional
        The probes' config (needed for ``probes="train"``).
    estimate : bool
        Time a few steps of each phase (a few seconds); False: steps only.
    """
    started = time.perf_counter()
    sim = config.bench.backend == "sim"
    e2e_left = max(0, config.schedule.steps - done_steps)
    bank_left = max(0, config.bank.steps - max(0, done_steps - config.schedule.steps))
    phases = []
    if e2e_left:
        per = time_train_steps(config) if estimate and sim else None
        note = ("masks + decoder through the simulated bench" if sim else
                f"decoder on {config.bench.n_recorded} faces recorded on the "
                f"{config.bench.backend} bench (recorded first)")
        phases.append(Phase("end-to-end", e2e_left, per, 0.0, note))
    if bank_left:
        per, build = (time_bank_steps(config) if estimate and sim else (None, 0.0))
        phases.append(Phase("bank", bank_left, per,
                            build if bank_left == config.bank.steps else 0.0,
                            f"decoder only, {config.bank.size} scenes rendered once"))
    if probes == "train":
        if probe_config is None:
            raise ConfigError("plan_run: probes='train' needs probe_config")
        per, render = (time_probe_training(config, probe_config) if estimate
                       else (None, 0.0))
        phases.append(Phase("probes", probe_config.steps, per, render,
                            "once per generator and probe config, then cached"))
    elif probes in ("cached", "kept"):
        phases.append(Phase("probes", 0, 0.0, 0.0,
                            "from the probe cache" if probes == "cached"
                            else "kept from the run folder"))
    elif probes != "off":
        raise ConfigError(f"plan_run: probes={probes!r} is not one of off, kept, cached, train")
    return RunPlan(tuple(phases), time.perf_counter() - started)


def fit_to_budget(config: TrainConfig, budget_s: float, plan: RunPlan) -> TrainConfig:
    """``config`` with ``schedule.steps`` chosen so that ``plan``'s phases fit ``budget_s``
    seconds (the time already spent planning included); ConfigError with the estimate when
    the budget cannot hold :data:`MIN_STEPS` end-to-end steps."""
    e2e = next((p for p in plan.phases if p.name == "end-to-end"), None)
    if e2e is None or e2e.seconds_per_step is None:
        raise ConfigError("a budget needs a timed end-to-end phase (a new run on the "
                          "simulated bench)")
    others = sum(p.seconds or 0.0 for p in plan.phases if p is not e2e)
    left = budget_s - plan.timing_s - others - e2e.setup_s
    steps = int(left / e2e.seconds_per_step)
    if steps < MIN_STEPS:
        need = plan.timing_s + others + MIN_STEPS * e2e.seconds_per_step
        raise ConfigError(
            f"budget {format_duration(budget_s)} is too short: planning took "
            f"{format_duration(plan.timing_s)}, the other phases need ~ "
            f"{format_duration(others)} and {MIN_STEPS} end-to-end steps "
            f"{format_duration(MIN_STEPS * e2e.seconds_per_step)}; give at least "
            f"{format_duration(need)} (or fewer bank steps, --no-probes)")
    eval_every = config.schedule.eval_every
    return config.with_overrides({
        "schedule.steps": steps,  # and every scene of the run fresh, as without a budget
        "data.n_train": max(config.data.n_train, steps * config.schedule.batch),
        "schedule.eval_every": min(eval_every, max(1, steps // 10)) if eval_every else 0})
