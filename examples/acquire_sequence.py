"""Acquire a pattern sequence over the built-in scenes on any bench.

    python examples/acquire_sequence.py --backend sim
    python examples/acquire_sequence.py --backend fake-hw
    python examples/acquire_sequence.py --backend hw      # the real bench

Only ``--backend`` changes between the simulator, the digital twin and the real
hardware; the recording (``--out``) is resumable: rerun to continue after a stop.
"""

from __future__ import annotations

import argparse

from lsi_hw.acquisition import acquire
from lsi_hw.benches import BENCH_NAMES, make_bench
from lsi_hw.cli_util import one_line_errors
from lsi_hw.patterns import PatternSet
from lsi_hw.recording import Recording
from lsi_hw.testscenes import builtin_scenes


def main(argv: list[str] | None = None) -> Recording:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BENCH_NAMES, default="sim")
    parser.add_argument("--size", type=int, default=32, help="mask side (power of two)")
    parser.add_argument("--m", type=int, default=256, help="patterns per scene")
    parser.add_argument("--out", default="example_recording", help="recording folder")
    args = parser.parse_args(argv)

    scenes, _ = builtin_scenes(args.size)
    patterns = PatternSet.hadamard(args.size, m=args.m)
    options = {} if args.backend == "hw" else {"noise": "full", "seed": 0}
    with make_bench(args.backend, **options) as bench:
        summary = acquire(bench, scenes, patterns, args.out, batch_size=2)
    recording = Recording.open(args.out)
    print(f"{args.backend}: {summary.n_acquired} new, {summary.n_skipped} skipped; recording "
          f"holds {recording.values.shape[0]} scenes x {recording.values.shape[1]} readings, "
          f"{recording.values.min() * 1e3:.2f}..{recording.values.max() * 1e3:.2f} mV")
    return recording


if __name__ == "__main__":
    one_line_errors(main)()  # errors and OSError: one line, exit 2
