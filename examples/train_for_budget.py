"""Train an LSI model (masks + decoder) for a wall-clock budget, on any device, from Python.

The same as ``lsi-ml train --budget``: :func:`lsi_ml.training.run.run` times a few steps of
the configuration on this machine, then sets ``schedule.steps`` so that the whole run (its
measurement-bank phase and first-time probe training included) ends when the budget does.
If the machine slows down later (another job starts), the end-to-end phase stops at 1.25x
the budget at the latest and says so; the run folder can then be resumed to finish.

    python examples/train_for_budget.py --config examples/configs/lsi_1to16_64px_gpu.toml \\
        --minutes 4.5 --device cuda --out run-gpu
    lsi-ml eval run-gpu --device cuda

Writes the run folder (``model.pt``, ``config.toml``, ``history.json``, ``probes.pt``, ...)
and ``budget.json``: device name, steps chosen and done, budget and wall time (s).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch

from lsi_hw.atomic import atomic_write_text
from lsi_hw.cli_util import one_line_errors
from lsi_ml.training.run import MODEL_FILE, run


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "show_default": True})
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="TOML training config (tables of TrainConfig); default: "
                                 "the TrainConfig defaults.")
@click.option("--minutes", type=float, required=True,
              help="Wall-clock budget of the whole run, minutes.")
@click.option("--device", default=None, help="Torch device (cpu, cuda, cuda:1); default: "
                                             "the config's.")
@click.option("-o", "--out", type=click.Path(file_okay=False), required=True,
              help="Run folder (must not hold a model yet).")
@click.option("--probes/--no-probes", default=True, help="Train (or reuse) the probes.")
@click.option("--progress/--no-progress", default=True)
@one_line_errors
def main(config_file: str | None, minutes: float, device: str | None, out: str,
         probes: bool, progress: bool) -> None:
    """Fit the step count to the budget, train, report."""
    if not minutes > 0:
        raise click.BadParameter(f"{minutes} must be > 0", param_hint="--minutes")
    folder = Path(out)
    if (folder / MODEL_FILE).exists():
        raise click.ClickException(f"{folder / MODEL_FILE} exists: pick another --out "
                                   "(or resume it with lsi-ml train --out)")
    budget = 60.0 * minutes
    started = time.perf_counter()
    trainer = run(config_file, folder, overrides={"device": device} if device else None,
                  budget_s=budget, train_probes=probes, progress=progress,
                  echo=click.echo)
    dev = torch.device(trainer.config.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    report = {"device": name, "batch": trainer.config.schedule.batch,
              "steps_planned": trainer.config.schedule.steps, "steps_done": trainer.step,
              "stopped_early": trainer.step < trainer.config.schedule.steps,
              "budget_s": budget, "wall_s": time.perf_counter() - started,
              "val_latent_l1": trainer.history[-1]["val_latent_l1"]}
    atomic_write_text(folder / "budget.json", json.dumps(report, indent=1))
    click.echo(json.dumps(report))


if __name__ == "__main__":
    main()
