"""Acquire split Hadamard measurements of the built-in scenes and reconstruct them.

    python examples/simulate_hadamard.py --backend sim --size 64 --noise full

The same script runs on any bench (``--backend sim|fake-hw|hw``): only the bench changes.
"""

from __future__ import annotations

import argparse

import numpy as np

from lsi_hw.benches import BENCH_NAMES, make_bench
from lsi_hw.cli_util import one_line_errors
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.kernels import fwht
from lsi_hw.testscenes import builtin_scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BENCH_NAMES, default="sim")
    parser.add_argument("--size", type=int, default=64, help="mask side (power of two)")
    parser.add_argument("--noise", default="full")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scenes, names = builtin_scenes(args.size)
    patterns = PatternSet.hadamard(args.size, order="natural", split=True)  # full basis
    bench = make_bench(args.backend, noise=args.noise, seed=args.seed)
    measurement = bench.measure(scenes, patterns)
    coefficients = patterns.differential(measurement.values)  # (+) - (-) = H x (scaled)
    images = fwht(coefficients) / coefficients.shape[-1]  # H H = n I: inverse transform
    images = images.reshape(len(scenes), args.size, args.size)
    for name, image, scene in zip(names, images, scenes, strict=True):
        ref = scene.mean(axis=-1).ravel()
        corr = np.corrcoef(image.ravel(), ref ** 2.2)[0, 1]
        print(f"{name:16s} correlation with the scene's linear light: {corr:.4f}")


if __name__ == "__main__":
    one_line_errors(main)()  # errors and OSError: one line, exit 2
