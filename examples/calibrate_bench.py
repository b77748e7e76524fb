"""Calibrate a bench and use the calibration: estimate, save, and record its id.

    python examples/calibrate_bench.py --backend sim
    python examples/calibrate_bench.py --backend fake-hw

On the simulator (and the twin) the true misalignment and monitor gamma are known, so
the script prints the estimates beside them.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from lsi_hw.benches import make_bench
from lsi_hw.calibration import CalibrationFile, run_all
from lsi_hw.cli_util import one_line_errors
from lsi_hw.sim import MonitorConfig, RelayOpticsConfig, SimConfig


def main(argv: list[str] | None = None) -> CalibrationFile:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sim", "fake-hw"), default="sim")
    parser.add_argument("--out", default="example_calibration.json")
    args = parser.parse_args(argv)

    truth = replace(
        SimConfig(),
        monitor=MonitorConfig(gamma=2.4),
        optics=RelayOpticsConfig(rotation_deg=2.0, scale=1.03, shift_px=(1.5, -2.0)),
    )
    with make_bench(args.backend, noise="full", seed=0, config=truth) as bench:
        calibration = run_all(bench, size=32, routines=["dark", "gamma", "registration"],
                              progress=False)
    calibration.save(args.out)
    results = calibration.to_dict()["results"]
    reg, gamma = results["registration"], results["gamma"]
    print(f"calibration {calibration.id} written to {args.out}")
    print(f"  gamma     {gamma['gamma']:.3f}  (true {truth.monitor.gamma})")
    print(f"  rotation  {reg['rotation_deg']:.3f} deg  (true {truth.optics.rotation_deg})")
    print(f"  scale     {reg['scale']:.4f}  (true {truth.optics.scale})")
    print(f"  shift     {reg['shift_px']}  (true {truth.optics.shift_px})")
    with make_bench("sim", calibration_id=calibration.id) as bench:
        print(f"  benches now record calibration_id={bench.settings()['calibration_id']}")
    return calibration


if __name__ == "__main__":
    one_line_errors(main)()  # errors and OSError: one line, exit 2
