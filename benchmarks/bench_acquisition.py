"""Whole simulated acquisition vs the DLP4500's real time (target: >= 100x real time).

One acquisition = 64 scenes (256 x 256 RGB, uint8) x m binary patterns through every
stage of the physical model with all noise sources on (``SimBench(noise="full")``):
monitor gamma, relay blur + vignetting, DMD leakage, photodiode, gain, settling, shot /
dark / read / flicker noise, saturation and 16-bit digitization.  The DLP4500 needs
235 us per binary pattern, so the real acquisition takes 64 * m * 235 us.

    python benchmarks/bench_acquisition.py [--quick]

Prints the median of several runs (the machine is noisy) and the ratio to real time,
measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lsi_hw.patterns import PatternSet
from lsi_hw.sim import SimBench

TARGET = 100.0


def time_acquisition(m: int, kind: str, batch: int, repeats: int) -> tuple[float, float, str]:
    """Median seconds of one acquisition, real time in seconds, projection method used."""
    rng = np.random.default_rng(0)
    scenes = rng.integers(0, 256, size=(batch, 256, 256, 3), dtype=np.uint8)
    if kind == "hadamard":
        patterns = PatternSet.hadamard(256, m=m)
    else:
        patterns = PatternSet.random(m, (256, 256), seed=0)
    bench = SimBench(noise="full", seed=0)
    bench.measure(scenes, patterns)  # warm-up: JIT and planner for this batch size
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bench.measure(scenes, patterns)
        times.append(time.perf_counter() - start)
    real = batch * m * bench.config.timing.period_us * 1e-6
    from lsi_hw.sim.kernels import explain_plan

    return statistics.median(times), real, explain_plan(patterns, batch, np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    repeats = 3 if args.quick else 11
    print(f"whole acquisition, batch {args.batch}, 256x256 RGB scenes, noise=full; "
          f"median of {repeats} runs")
    print(f"{'patterns':>22} {'sim [s]':>9} {'real [s]':>9} {'x real time':>12} "
          f"{'target':>7}  result  projection")
    for m, kind in ((256, "hadamard"), (256, "random"), (4096, "hadamard"), (4096, "random")):
        sim_s, real_s, method = time_acquisition(m, kind, args.batch, repeats)
        ratio = real_s / sim_s
        verdict = "PASS" if ratio >= TARGET else "MISS"
        print(f"{kind + ' m=' + str(m):>22} {sim_s:9.3f} {real_s:9.3f} {ratio:12.1f} "
              f"{TARGET:7.0f}  {verdict:6}  {method}")


if __name__ == "__main__":
    main()
