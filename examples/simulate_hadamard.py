"""Acquire split Hadamard measurements of the built-in scenes and reconstruct them.

    python examples/simulate_hadamard.py --backend sim --size 64 --noise full

The same script runs on any bench (``--backend sim|fake-hw|hw``): only the bench changes.
At 64 px the full split basis is 8192 patterns a scene: about 1 s a scene on the
simulator, 15 s on the twin (which emulates the DMD and digitizer timing).
"""

from __future__ import annotations

import click
import numpy as np
from tqdm.auto import tqdm

from lsi_hw.benches import BENCH_NAMES, make_bench
from lsi_hw.cli_util import one_line_errors
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import NOISE_PRESETS
from lsi_hw.sim.kernels import fwht
from lsi_hw.testscenes import builtin_scenes


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "show_default": True})
@click.option("--backend", type=click.Choice(BENCH_NAMES), default="sim",
              help="Where the readings come from.")
@click.option("--size", type=int, default=64, help="Mask side, pixels (a power of two).")
@click.option("--noise", type=click.Choice(list(NOISE_PRESETS)), default="full",
              help="Noise of the simulated benches (sim, fake-hw).")
@click.option("--seed", type=int, default=0, help="Seed of the noise.")
@click.option("--progress/--no-progress", default=True, help="A bar over the scenes.")
@one_line_errors
def main(backend: str, size: int, noise: str, seed: int, progress: bool) -> dict[str, float]:
    """Measure the full split Hadamard basis, invert it, and compare with each scene."""
    scenes, names = builtin_scenes(size)
    patterns = PatternSet.hadamard(size, order="natural", split=True)  # full basis
    options = {} if backend == "hw" else {"noise": noise, "seed": seed}
    correlations = {}
    with make_bench(backend, **options) as bench:
        for name, scene in tqdm(list(zip(names, scenes, strict=True)), desc="scenes",
                                unit="scene", disable=not progress, leave=False):
            values = bench.measure(scene[None], patterns).values
            coefficients = patterns.differential(values)  # (+) - (-) = H x (scaled)
            image = fwht(coefficients)[0] / coefficients.shape[-1]  # H H = n I
            ref = scene.mean(axis=-1).ravel()
            correlations[name] = float(np.corrcoef(image.ravel(), ref ** 2.2)[0, 1])
            click.echo(f"{name:16s} correlation with the scene's linear light: "
                       f"{correlations[name]:.4f}")
    return correlations


if __name__ == "__main__":
    main()
