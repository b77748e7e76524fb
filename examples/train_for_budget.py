"""Train an LSI model (masks + decoder) for a wall-clock budget, on any device.

The number of end-to-end steps is not guessed: the script times a few steps of the same
configuration on this machine, then sets ``schedule.steps`` so that the warm-up + cosine
learning-rate schedule ends when the budget does. If the machine slows down later (another
job starts), training stops at 1.25x the budget at the latest; the report says so. The
measurement-bank phase of the config (``bank.steps``) is kept as given and comes on top of
the budget.

    python examples/train_for_budget.py --config examples/configs/lsi_1to16_64px_gpu.toml \\
        --minutes 4.5 --device cuda --out run-gpu
    lsi-ml eval run-gpu --device cuda

Writes ``OUT/model.pt`` (resumable, loadable by every ``lsi-ml`` command), ``OUT/config.toml``,
``OUT/history.json`` and ``OUT/budget.json`` (the calibration: seconds per step, steps
chosen, wall time used, device name).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch

from lsi_hw.atomic import atomic_write_text
from lsi_hw.cli_util import one_line_errors
from lsi_ml.training.config import TrainConfig
from lsi_ml.training.trainer import Trainer

OVERRUN = 1.25  # stop at this multiple of the budget, whatever the schedule says


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(config: TrainConfig, warm: int = 10, timed: int = 40) -> float:
    """Mean wall time of one end-to-end step (``timed`` steps after ``warm`` untimed ones), s."""
    probe = Trainer(config.with_overrides({
        "schedule.steps": warm + timed, "bank.steps": 0, "checkpoint": None, "progress": False,
        "schedule.eval_every": 0, "schedule.warmup": 0}))
    for _ in range(warm):
        probe.train_step()
    _sync(probe.device)
    start = time.perf_counter()
    for _ in range(timed):
        probe.train_step()
    _sync(probe.device)
    return (time.perf_counter() - start) / timed


@click.command()
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="TOML training config (tables of TrainConfig).")
@click.option("--minutes", type=float, required=True,
              help="Wall-clock budget of the end-to-end phase, minutes.")
@click.option("--device", default=None, help="Torch device (cpu, cuda, cuda:1).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run folder.")
@click.option("--chunk", type=int, default=200, show_default=True,
              help="Steps between two looks at the clock (and checkpoints).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@one_line_errors
def main(config_file: str | None, minutes: float, device: str | None, out: str, chunk: int,
         progress: bool) -> None:
    """Calibrate the step count to the budget, train, checkpoint, report."""
    if not minutes > 0:
        raise click.BadParameter(f"{minutes} must be > 0", param_hint="--minutes")
    if chunk < 1:
        raise click.BadParameter(f"{chunk} must be >= 1", param_hint="--chunk")
    run = Path(out)
    if (run / "model.pt").exists():
        raise click.ClickException(f"{run / 'model.pt'} exists: pick another --out "
                                   "(or resume it with lsi-ml train --out)")
    base = TrainConfig.from_toml(config_file) if config_file else TrainConfig()
    if device is not None:
        base = base.with_overrides({"device": device})
    budget = 60.0 * minutes
    t0 = time.perf_counter()
    per_step = seconds_per_step(base)
    calibration_s = time.perf_counter() - t0
    steps = max(1, int((budget - calibration_s) / per_step))
    config = base.with_overrides({
        "schedule.steps": steps, "checkpoint": str(run / "model.pt"), "progress": progress,
        "schedule.eval_every": max(1, steps // 10),
        "data.n_train": max(base.data.n_train, steps * base.schedule.batch)})
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.toml", config.to_toml())
    dev = torch.device(config.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    click.echo(f"{name}: {per_step * 1e3:.1f} ms per step at batch {config.schedule.batch} -> "
               f"{steps} steps for {minutes:g} min")
    trainer = Trainer(config)
    deadline = t0 + OVERRUN * budget
    stopped_early = False
    while trainer.step < config.schedule.steps:
        trainer.train(min(config.schedule.steps, trainer.step + chunk))
        if trainer.step < config.schedule.steps and time.perf_counter() > deadline:
            stopped_early = True
            break
    if not stopped_early and config.bank.steps:
        trainer.train()  # the bank phase, on top of the budget
    if not trainer.history or trainer.history[-1]["step"] != trainer.step:
        trainer.evaluate()
    trainer.save()
    wall = time.perf_counter() - t0
    atomic_write_text(run / "history.json", json.dumps(trainer.history, indent=1))
    report = {"device": name, "batch": config.schedule.batch, "seconds_per_step": per_step,
              "steps_planned": steps, "steps_done": trainer.step,
              "stopped_early": stopped_early, "budget_s": budget, "wall_s": wall,
              "val_latent_l1": trainer.history[-1]["val_latent_l1"]}
    atomic_write_text(run / "budget.json", json.dumps(report, indent=1))
    click.echo(json.dumps(report))
    if stopped_early:
        click.echo(f"stopped at step {trainer.step} of {steps}: the machine slowed down "
                   f"(over {OVERRUN}x the budget); the schedule did not finish")


if __name__ == "__main__":
    main()
