"""Calibrate a bench and use the calibration: estimate, save, and record its id.

    python examples/calibrate_bench.py --backend sim
    python examples/calibrate_bench.py --backend fake-hw

On the simulator (and the twin) the true misalignment and monitor gamma are known, so
the script prints the estimates beside them.
"""

from __future__ import annotations

from dataclasses import replace

import click

from lsi_hw.benches import make_bench
from lsi_hw.calibration import CalibrationFile, run_all
from lsi_hw.cli_util import one_line_errors
from lsi_hw.sim import MonitorConfig, RelayOpticsConfig, SimConfig


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "show_default": True})
@click.option("--backend", type=click.Choice(["sim", "fake-hw"]), default="sim",
              help="A bench whose true misalignment and gamma are known.")
@click.option("-o", "--out", default="example_calibration.json", help="Calibration file.")
@click.option("--progress/--no-progress", default=True)
@one_line_errors
def main(backend: str, out: str, progress: bool) -> CalibrationFile:
    """Calibrate a bench with a known misalignment and gamma; print estimate vs truth."""
    truth = replace(
        SimConfig(),
        monitor=MonitorConfig(gamma=2.4),
        optics=RelayOpticsConfig(rotation_deg=2.0, scale=1.03, shift_px=(1.5, -2.0)),
    )
    with make_bench(backend, noise="full", seed=0, config=truth) as bench:
        calibration = run_all(bench, size=32, routines=["dark", "gamma", "registration"],
                              progress=progress)
    calibration.save(out)
    results = calibration.to_dict()["results"]
    reg, gamma = results["registration"], results["gamma"]
    click.echo(f"calibration {calibration.id} written to {out}")
    click.echo(f"  gamma     {gamma['gamma']:.3f}  (true {truth.monitor.gamma})")
    click.echo(f"  rotation  {reg['rotation_deg']:.3f} deg  (true {truth.optics.rotation_deg})")
    click.echo(f"  scale     {reg['scale']:.4f}  (true {truth.optics.scale})")
    click.echo(f"  shift     {reg['shift_px']}  (true {truth.optics.shift_px})")
    with make_bench("sim", calibration_id=calibration.id) as bench:
        click.echo(f"  benches now record calibration_id={bench.settings()['calibration_id']}")
    return calibration


if __name__ == "__main__":
    main()
