"""``python -m sims STUDY|all [--quick]``: run the studies, write tables and figures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from lsi_hw.cli_util import one_line_errors
from lsi_hw.errors import ConfigError
from sims.common import RESULTS_DIR, Context, held, provenance, write_bytes_atomic

STUDIES = ("compression_sweep", "baselines", "noise_sweep", "misalignment_sweep",
           "sim_vs_fakehw")


def _study(name: str):
    import importlib

    return importlib.import_module(f"sims.{name}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("studies", nargs=-1, required=True)
@click.option("--quick", is_flag=True,
              help="Reduced sizes ([quick] tables of the configs): every study in < 20 min "
                   "on 2 cores.")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default sims/results, or sims/results/quick with --quick).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Use this TOML file instead of sims/configs/<study>.toml "
                                 "(one study only).")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Worker processes for independent cells (trainings, settings).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Torch threads per worker.")
@click.option("--device", default="cpu", show_default=True,
              help="Torch device of training and evaluation (cpu, cuda).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@one_line_errors
def main(studies: tuple[str, ...], quick: bool, out: str | None, config_path: str | None,
         jobs: int, threads: int, device: str, progress: bool) -> None:
    """Run STUDIES (any of compression_sweep, baselines, noise_sweep, misalignment_sweep,
    sim_vs_fakehw, or ``all``). Finished cells are reused on a rerun (crash-safe); delete
    OUT/cache to start over."""
    names = list(STUDIES) if "all" in studies else list(dict.fromkeys(studies))
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        raise ConfigError(f"unknown study {unknown}; choose from {', '.join(STUDIES)} or all")
    if jobs < 1 or threads < 1:
        raise ConfigError("--jobs and --threads must be >= 1")
    if config_path and len(names) != 1:
        raise ConfigError("--config replaces one study's config: name exactly one study")
    import torch

    from lsi_ml.devices import check_device

    check_device(device, label="--device ", available=True)
    folder = Path(out) if out else (RESULTS_DIR / "quick" if quick else RESULTS_DIR)
    ctx = Context(folder, quick=quick, jobs=jobs, threads=threads, device=device,
                  progress=progress, config_path=Path(config_path) if config_path else None)
    for name in names:  # read every config first: a typo fails before hours of work
        ctx.config_path = Path(config_path) if config_path else None
        ctx.study_config(name)
    folder.mkdir(parents=True, exist_ok=True)
    prov_path = folder / "PROVENANCE.json"
    torch.set_num_threads(threads)
    for name in names:
        t0 = time.perf_counter()
        computed = ctx.computed
        click.echo(f"== {name} ({'quick' if quick else 'full'}) -> {folder}")
        _study(name).run(ctx)
        seconds = time.perf_counter() - t0
        click.echo(f"== {name} done in {seconds / 60:.1f} min")
        entry = {**provenance(ctx, sys.argv[1:]), "minutes": round(seconds / 60, 2)}
        with held(folder / "cache" / "provenance.lock"):  # studies may run side by side
            prov = (json.loads(prov_path.read_text(encoding="utf-8"))
                    if prov_path.exists() else {})
            old = prov.get(name)
            if ctx.computed == computed and old and old.get("mode") == entry["mode"]:
                # every cell was read back: the numbers are the earlier run's
                entry = {**old, "tables_regenerated_utc": entry["date_utc"]}
            prov[name] = entry
            write_bytes_atomic(prov_path, json.dumps(prov, indent=1).encode())
    from sims.report import write_summary

    summary = write_summary(folder)
    if summary:
        click.echo(f"summary with the paper's numbers beside ours: {summary}")


if __name__ == "__main__":
    main()
