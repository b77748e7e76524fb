"""Pattern generation speed: ``PatternSet.hadamard(256, m=4096)`` (target: <= 3 s).

Generates 4096 Walsh-Hadamard masks of 256 x 256 pixels (sequency order; 256 MiB of
uint8) the way ``lsi-hw patterns generate`` and the simulations do.  The first call of
the process (cold: imports, page faults of the fresh output) carries the target; the
median of the later calls (warm) is printed for information, with the ratio of the
DLP4500's time to display the same sequence (235 us per binary pattern) to the cold
generation time.  This speed check used to be an assert in tests/test_patterns.py, where
a loaded machine made it fail; the unit test now checks only the masks.

    python benchmarks/bench_patterns.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from lsi_hw.patterns import PatternSet

TARGET_S = 3.0
DMD_PERIOD_S = 235e-6  # DLP4500 minimum exposure of a binary pattern


def time_hadamard(n_side: int, m: int, repeats: int) -> tuple[float, float]:
    """Seconds of the first (cold) call and median seconds of ``repeats`` later calls."""
    start = time.perf_counter()
    PatternSet.hadamard(n_side, m=m)
    cold = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        PatternSet.hadamard(n_side, m=m)
        times.append(time.perf_counter() - start)
    return cold, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    n_side, m = 256, 4096
    print(f"PatternSet.hadamard({n_side}, m={m}); warm = median of {repeats} runs")
    print(f"{'patterns':>22} {'cold [s]':>9} {'warm [s]':>9} {'target [s]':>11}  result  "
          f"{'x DMD display time':>19}")
    cold, warm = time_hadamard(n_side, m, repeats)
    verdict = "PASS" if cold <= TARGET_S else "MISS"
    ratio = m * DMD_PERIOD_S / cold
    print(f"{'hadamard m=' + str(m):>22} {cold:9.3f} {warm:9.3f} {TARGET_S:11.1f}  "
          f"{verdict:6}  {ratio:19.2f}")


if __name__ == "__main__":
    main()
