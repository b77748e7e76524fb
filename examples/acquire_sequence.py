"""Acquire a pattern sequence over the built-in scenes on any bench.

    python examples/acquire_sequence.py --backend sim
    python examples/acquire_sequence.py --backend fake-hw
    python examples/acquire_sequence.py --backend hw      # the real bench

Only ``--backend`` changes between the simulator, the digital twin and the real
hardware; the recording (``--out``) is resumable: rerun to continue after a stop.
"""

from __future__ import annotations

import click

from lsi_hw.acquisition import acquire
from lsi_hw.benches import BENCH_NAMES, make_bench
from lsi_hw.cli_util import one_line_errors
from lsi_hw.patterns import PatternSet
from lsi_hw.recording import Recording
from lsi_hw.testscenes import builtin_scenes


@click.command(context_settings={"help_option_names": ["-h", "--help"],
                                 "show_default": True})
@click.option("--backend", type=click.Choice(BENCH_NAMES), default="sim",
              help="Where the readings come from.")
@click.option("--size", type=int, default=32, help="Mask side, pixels (a power of two).")
@click.option("--m", type=int, default=256, help="Patterns per scene.")
@click.option("-o", "--out", default="example_recording", help="Recording folder.")
@click.option("--progress/--no-progress", default=True)
@one_line_errors
def main(backend: str, size: int, m: int, out: str, progress: bool) -> Recording:
    """Acquire the built-in scenes into a resumable recording and summarise it."""
    scenes, _ = builtin_scenes(size)
    patterns = PatternSet.hadamard(size, m=m)
    options = {} if backend == "hw" else {"noise": "full", "seed": 0}
    with make_bench(backend, **options) as bench:
        summary = acquire(bench, scenes, patterns, out, batch_size=2, progress=progress)
    recording = Recording.open(out)
    click.echo(f"{backend}: {summary.n_acquired} new, {summary.n_skipped} skipped; "
               f"recording holds {recording.values.shape[0]} scenes x "
               f"{recording.values.shape[1]} readings, {recording.values.min() * 1e3:.2f}.."
               f"{recording.values.max() * 1e3:.2f} mV")
    return recording


if __name__ == "__main__":
    main()
