"""``lsi-hw``: the bench from the command line (simulate, patterns).

Every error we raise on purpose becomes one line on stderr and exit code 2, before
anything is written; outputs are written to a temporary folder and moved into place
only when complete.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from lsi_hw import __version__
from lsi_hw.benches import BENCH_NAMES
from lsi_hw.cli_util import OutputFolder, check_new_file, one_line_errors
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.sim.detector import NOISE_PRESETS, AmplifierConfig, DigitizerConfig

if TYPE_CHECKING:
    from lsi_hw.patterns import PatternSet
    from lsi_hw.sim import SimConfig
    from lsi_hw.types import Measurement

__all__ = ["main"]

_one_line_errors = one_line_errors
_Output = OutputFolder


DEFAULT_GAIN_DB = AmplifierConfig().gain_db
"""Default --gain-db: the simulator's default operating point (50 dB)."""
DEFAULT_RANGE_V = DigitizerConfig().range_v
"""Default --range-v: the simulator's default digitizer range (+-0.5 V)."""

MAX_SIDE = 2048
"""Largest mask / scene side (pixels) the command line accepts (the DLP4500 itself has
912 x 1140 micromirrors)."""


def check_job_memory(n_masks: int, side: int, n_scenes: int, what: str) -> None:
    """Refuse a job whose masks and scenes would not fit in memory, before building them.

    The estimate is what a simulation of ``n_masks`` masks of ``side`` x ``side`` pixels
    over ``n_scenes`` scenes keeps alive at once: the masks (uint8 plus the bit-packed and
    working copies, ~3 bytes a pixel) and the scenes' float64 light maps (~48 bytes a
    pixel).  Measured peaks stay below it (e.g. 0.85 GB above start-up for 256 masks at
    1024 px against 1.0 GB estimated).
    """
    from lsi_hw.limits import check_allocation

    pixels = float(side) * float(side)
    check_allocation(n_masks * pixels * 3 + n_scenes * pixels * 48, what)


def _check_side(side: int, option: str = "--size") -> None:
    if not 2 <= side <= MAX_SIDE:
        raise ConfigError(f"{option} {side} is outside [2, {MAX_SIDE}] pixels")


def _build_patterns(
    kind: str, m: int, size: int | None, seed: int, split: bool, n_scenes: int = 4
) -> Any:
    from lsi_hw.patterns import PatternSet

    if m < 1:
        raise ConfigError(f"--m {m} must be >= 1")
    if kind in ("hadamard", "random", "fourier"):
        side = 256 if size is None else size
        _check_side(side)
        check_job_memory(m * (2 if split else 1), side, n_scenes,
                         f"{m}{' split' if split else ''} {kind} masks of {side}x{side} px")
        if kind == "hadamard":
            if side < 2 or side & (side - 1):
                raise ConfigError(f"--size {side}: Hadamard patterns need a power of two >= 2")
            if m > side * side:
                raise ConfigError(
                    f"--m {m} exceeds the {side * side} Hadamard patterns of a {side}x{side} grid"
                )
            return PatternSet.hadamard(side, m=m, order="sequency", split=split)
        if kind == "random":
            patterns = PatternSet.random(m, (side, side), seed=seed)
        else:
            patterns = PatternSet.fourier(side, m, phases=4, seed=seed)
        return patterns.complementary() if split else patterns
    path = Path(kind)
    if not path.exists():
        raise ConfigError(
            f"--patterns {kind}: neither hadamard, random, fourier nor an existing .npy/.npz file"
        )
    if size is not None:
        _check_side(size)
    patterns = PatternSet.load(path)  # checks the file's size from its headers first
    check_job_memory(min(m, patterns.m) * (2 if split else 1), max(patterns.shape), n_scenes,
                     f"{path} ({patterns.m} masks of {patterns.shape[0]}x{patterns.shape[1]})")
    if size is not None and patterns.shape != (size, size):
        raise ConfigError(
            f"--patterns {path} holds masks of shape {patterns.shape}; --size {size} asks for "
            f"({size}, {size}) (omit --size to use the file's)"
        )
    if m < patterns.m:
        patterns = patterns[:m]
    return patterns.complementary() if split else patterns


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsi-hw")
def main() -> None:
    """The optical bench of a latent-space single-pixel camera: simulate it (the main job:
    `lsi-hw simulate`), record scenes on the real bench or its digital twin, calibrate and
    check it, make and export mask sets.  Every command takes -h and shows its defaults;
    --backend sim|fake-hw|hw picks the bench."""


@main.command()
@click.option("--noise", type=click.Choice(list(NOISE_PRESETS)), default="shot", show_default=True,
              help="Noise sources: none, shot only, read only, or all (shot, dark, read, flicker).")
@click.option("--patterns", "pattern_kind", default="hadamard", show_default=True,
              help="hadamard (sequency order), random, fourier, or a .npy/.npz mask file.")
@click.option("--m", "m", type=int, default=256, show_default=True,
              help="Number of patterns (measurements) per scene.")
@click.option("--size", type=int, default=None,
              help="Mask grid side in pixels [default: 256, or the mask file's].")
@click.option("--split/--no-split", default=False, show_default=True,
              help="Acquire each mask and its complement and recombine (differential).")
@click.option("--images", default="builtin", show_default=True,
              help="A built-in scene set (builtin: targets + astronaut; faces: 8 SynthFace "
                   "test faces + astronaut; synthface; astronaut; targets) or a folder of "
                   "square images.")
@click.option("--gain-db", type=int, default=DEFAULT_GAIN_DB, show_default=True,
              help="PDA100A2 gain step in dB (0, 10, ..., 70).")
@click.option("--range-v", type=float, default=DEFAULT_RANGE_V, show_default=True,
              help="Digitizer input range, volts (it reads -V..+V).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("lsi_sim_out"),
              show_default=True, help="Output folder (must be new or empty, or use --force).")
@click.option("--force", is_flag=True, help="Replace a non-empty --out folder.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Save preview.png.")
@_one_line_errors
def simulate(
    noise: str, pattern_kind: str, m: int, size: int | None, split: bool, images: str,
    gain_db: int, range_v: float, seed: int, out: Path, force: bool, plot: bool,
) -> None:
    """Simulate the bench on test scenes and save the readings with their settings.

    Writes OUT/measurement.npz (volts, timestamps, settings; scenes named as in
    --images), OUT/expected.npz (the noiseless analog readings), OUT/scenes.npz (the
    scenes shown, uint8, with their names), OUT/patterns.npz, OUT/summary.json and
    OUT/preview.png (masks, scenes, readings vs expected, a preview reconstruction).
    """
    from lsi_hw.benches import make_bench

    # --- validate everything before touching the output folder ---------------------
    config = _sim_config(gain_db, range_v)
    patterns, scenes, names = _simulation_inputs(pattern_kind, m, size, seed, split, images,
                                                 config)
    bench = make_bench("sim", noise=noise, seed=seed, config=config)
    inputs = [p for p in (pattern_kind, images) if Path(p).exists()]
    output = _Output(out, force, inputs=inputs, made_by="lsi-hw simulate")
    try:
        measured, elapsed, startup = _timed_measurement(bench, noise, seed, config, scenes,
                                                        patterns)
        expected = bench.expected(scenes, patterns)
        summary, message = _simulation_summary(measured, expected, config, patterns, names,
                                               noise, gain_db, seed, elapsed, startup)
        measured = replace(measured, scene_ids=tuple(names))
        expected = replace(expected, scene_ids=tuple(names))
        measured.save(str(output.path("measurement.npz")))
        expected.save(str(output.path("expected.npz")))
        _save_scenes(output.path("scenes.npz"), scenes, names)
        patterns.save(output.path("patterns.npz"))
        output.path("summary.json").write_text(json.dumps(summary, indent=2))
        if plot:
            _save_preview(output.path("preview.png"), patterns, scenes, names, measured,
                          expected, config, noise, gain_db)
        output.commit()
    except BaseException:
        output.abandon()
        raise
    _echo_simulation(summary, message, len(scenes), patterns, out, plot)


def _sim_config(gain_db: int, range_v: float) -> Any:
    """The default simulator configuration at gain step ``gain_db`` and range ``range_v``."""
    from lsi_hw.sim import SimConfig

    base = SimConfig()
    return replace(base, amplifier=AmplifierConfig(gain_db=gain_db),
                   digitizer=replace(base.digitizer, range_v=range_v))


def _simulation_inputs(pattern_kind: str, m: int, size: int | None, seed: int, split: bool,
                       images: str, config: Any) -> tuple[Any, np.ndarray, list[str]]:
    """(patterns, scenes, scene names) of ``simulate``, checked against the modulator."""
    from lsi_hw.testscenes import count_scenes, load_scenes

    n_scenes = count_scenes(images)
    patterns = _build_patterns(pattern_kind, m, size, seed, split, n_scenes)
    if patterns.m > config.dmd.max_patterns:
        raise ConfigError(
            f"{patterns.m} patterns exceed what the modulator holds ({config.dmd.max_patterns})"
        )
    side = patterns.shape[0]
    scenes, names = load_scenes(images, side)
    if patterns.shape[0] != patterns.shape[1]:
        scenes = np.stack([s[: patterns.shape[0], : patterns.shape[1]] for s in scenes])
    return patterns, scenes, names


def _save_scenes(path: Path, scenes: np.ndarray, names: list[str]) -> None:
    """``scenes.npz``: the uint8 scenes shown (``scenes``) and their ``names``."""
    import io

    from lsi_hw.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(buffer, scenes=np.asarray(scenes, dtype=np.uint8),
                        names=np.array(names, dtype=str))
    atomic_write_bytes(path, buffer.getvalue())


def _timed_measurement(bench: Bench, noise: str, seed: int, config: SimConfig,
                       scenes: np.ndarray, patterns: PatternSet
                       ) -> tuple[Measurement, float, float]:
    """(measurement, its seconds, seconds of the one-time start-up): a first measurement on
    a fresh bench pays the start-up, then ``bench`` measures every scene.  The first
    measurement takes as many scenes as one block of the real one (the kernels, their
    paths and work buffers depend on the batch), so none of its cost lands in the timing."""
    from lsi_hw.benches import make_bench
    from lsi_hw.sim.bench import CHUNK_SCENES

    started = time.perf_counter()  # one-time start-up: numba import, JIT cache, planner
    make_bench("sim", noise=noise, seed=seed, config=config).measure(
        scenes[:CHUNK_SCENES], patterns)
    startup = time.perf_counter() - started
    started = time.perf_counter()
    measured = bench.measure(scenes, patterns)
    elapsed = time.perf_counter() - started
    return measured, elapsed, startup


def _simulation_summary(measured: Measurement, expected: Measurement, config: SimConfig,
                        patterns: PatternSet,
                        names: list[str], noise: str, gain_db: int, seed: int, elapsed: float,
                        startup: float) -> tuple[dict[str, Any], str]:
    """(``summary.json`` of ``simulate``, the operating point in words)."""
    from lsi_hw.operating_point import assess_fraction

    volts = measured.values
    err = volts - expected.values
    dark = float(config.amplifier.v_per_a * config.photodiode.dark_current_a
                 + config.amplifier.offset_v)
    signal_rms = float(np.sqrt(np.mean((expected.values - dark) ** 2)))
    noise_rms = float(np.sqrt(np.mean(err**2)))
    snr_db = 20 * np.log10(signal_rms / noise_rms) if noise_rms > 0 else float("inf")
    acq = measured.settings["acquisition"]
    fraction, status, message = assess_fraction(
        float(np.abs(volts).max()), config.digitizer.range_v, config.amplifier.saturation_v)
    summary = {
        "scenes": names,
        "patterns": {"name": patterns.name, "m": patterns.m, "shape": list(patterns.shape)},
        "noise": noise,
        "gain_db": gain_db,
        "range_v": config.digitizer.range_v,
        "fraction_of_full_scale": fraction,
        "operating_point": status,
        "seed": seed,
        "snr_db": snr_db,
        "saturated_readings": acq["saturated_count"],
        "volts_min": float(volts.min()),
        "volts_max": float(volts.max()),
        "lsb_v": config.digitizer.lsb_v,
        "time_s": elapsed,
        "startup_s": startup,
        "real_time_s": acq["real_time_s"],
        "real_time_factor": acq["real_time_s"] / elapsed,
    }
    return summary, message


def _save_preview(path: Path, patterns: PatternSet, scenes: np.ndarray, names: list[str],
                  measured: Measurement, expected: Measurement, config: SimConfig,
                  noise: str, gain_db: int) -> None:
    """``preview.png``: masks; per scene its readings against the noiseless ones, the
    residual in units of the predicted noise, and a preview reconstruction."""
    from lsi_hw.plotting import save_simulation_figure
    from lsi_hw.reconstruction import preview_reconstruction, preview_resolution
    from lsi_hw.sim.forward import noise_std_v

    previews, method = preview_reconstruction(patterns, measured.values)
    sigma = noise_std_v(expected.values, config.with_noise(noise))
    save_simulation_figure(
        path, patterns, scenes, names, measured.values, expected.values, sigma, previews,
        f"{method}\n{preview_resolution(patterns)}",
        f"{patterns.name}, m={patterns.m}, noise={noise}, gain {gain_db} dB",
    )


def _echo_simulation(summary: dict[str, Any], message: str, n_scenes: int,
                     patterns: PatternSet,
                     out: Path, plot: bool) -> None:
    """What ``simulate`` prints once its outputs are in place."""
    noise, gain_db = summary["noise"], summary["gain_db"]
    v_min, v_max, lsb_v = summary["volts_min"], summary["volts_max"], summary["lsb_v"]
    elapsed, real_time_s = summary["time_s"], summary["real_time_s"]
    click.echo(
        f"simulated {n_scenes} scenes x {patterns.m} patterns ({patterns.name}), "
        f"noise={noise}, gain {gain_db} dB"
    )
    click.echo(f"  SNR                {summary['snr_db']:8.1f} dB")
    click.echo(f"  saturated readings {summary['saturated_readings']:8d}")
    click.echo(f"  detector range     {v_min * 1e3:.3f} .. {v_max * 1e3:.3f} mV"
               f"  ({(v_max - v_min) / lsb_v:.0f} LSB)")
    click.echo(f"  full scale used    {summary['fraction_of_full_scale']:8.0%}  of "
               f"+-{summary['range_v']:g} V by the brightest reading ({message})")
    click.echo(f"  time taken         {elapsed:8.3f} s  for {real_time_s:.3f} s of DMD time"
               f"  (real-time factor {real_time_s / elapsed:.1f}x;"
               f" plus {summary['startup_s']:.2f} s one-time start-up)")
    if v_max - v_min < 100 * lsb_v:
        click.echo("  hint: the readings span few ADC steps; raise --gain-db for more signal")
    click.echo(f"  wrote {out}/ (measurement.npz, expected.npz, scenes.npz, patterns.npz, "
               "summary.json"
               f"{', preview.png' if plot else ''})")


def _bench_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--backend, --noise, --gain-db, --range-v, --seed: the options that pick and set up a
    bench."""
    func = click.option("--seed", type=int, default=0, show_default=True,
                        help="Seed of every random draw (sim, fake-hw).")(func)
    func = click.option("--range-v", type=float, default=DEFAULT_RANGE_V, show_default=True,
                        help="Digitizer input range, volts (it reads -V..+V; fake-hw and NI "
                             "X Series cards offer 0.1, 0.2, 0.5, 1, 2, 5, 10).")(func)
    func = click.option("--gain-db", type=int, default=DEFAULT_GAIN_DB, show_default=True,
                        help="PDA100A2 gain step in dB (on hw: the knob position).")(func)
    func = click.option("--noise", type=click.Choice(list(NOISE_PRESETS)), default="full",
                        show_default=True, help="Simulated noise (sim, fake-hw).")(func)
    func = click.option("--backend", type=click.Choice(list(BENCH_NAMES)), default="sim",
                        show_default=True, help="Which bench: simulator, digital twin, real.")(func)
    return func


def _open_bench(backend: str, noise: str, gain_db: int, seed: int,
                calibration_id: str | None = None, range_v: float = DEFAULT_RANGE_V) -> Any:
    from lsi_hw.benches import make_bench

    config = _sim_config(gain_db, range_v)
    if backend == "hw":
        return make_bench("hw", config=config, calibration_id=calibration_id)
    return make_bench(backend, noise=noise, seed=seed, config=config,
                      calibration_id=calibration_id)


@main.command()
def info() -> None:
    """List the devices found, their versions, or why each is missing and how to fix it."""
    from lsi_hw.devices_info import survey

    for line in survey():
        mark = "ok " if line.ok else "-- "
        click.echo(f"{mark}{line.name:24s} {line.detail}")


@main.command()
@click.argument("what", type=click.Choice(["dlp4500", "detector", "bench"]))
@_bench_options
@_one_line_errors
def check(what: str, backend: str, noise: str, gain_db: int, range_v: float, seed: int) -> None:
    """Short self-test of a device (no questions asked): status, a test sequence, a dark
    reading and the operating point: what fraction of the digitizer's range the brightest
    reading of the built-in test scenes uses (30-80 % wanted) and the recommended gain and
    range.  Lines start with ``ok``, ``!!`` (a warning, e.g. range wasted) or ``--`` (a
    failure, e.g. saturation).  Exit code 1 when a check fails."""
    from lsi_hw.patterns import PatternSet

    failures = 0
    bench = _open_bench(backend, noise, gain_db, seed, range_v=range_v)
    try:
        size = 32
        black = np.zeros((1, size, size), dtype=np.uint8)
        if what in ("dlp4500", "bench"):
            status = getattr(bench.modulator, "status", None)
            if callable(status):  # the real driver (hw, fake-hw): controller status words
                words = status()
                problems = [w for group in words.values() for w in group
                            if ("error" in w.lower() or "fail" in w.lower())
                            and not w.lower().startswith("no ")]
                failures += bool(problems)
                click.echo(f"{'-- ' if problems else 'ok '} DLPC350 status: "
                           f"{'; '.join(problems) if problems else 'no errors'}")
            test = PatternSet.hadamard(size, m=48)
            started = time.perf_counter()
            meas = bench.measure(black, test)
            took = time.perf_counter() - started
            kind = meas.settings.get("modulator", {}).get("kind", "DLP4500")
            click.echo(f"ok  modulator ({kind}): ran {test.m} patterns in {took:.2f} s")
        if what in ("detector", "bench"):
            dark = bench.measure(np.repeat(black, 1, axis=0),
                                 PatternSet(np.zeros((64, size, size)))).values
            click.echo(f"ok  dark level {dark.mean() * 1e3:.3f} mV, noise "
                       f"{dark.std() * 1e3:.3f} mV rms")
            failures += _check_operating_point(bench, size)
        if what == "bench":
            from lsi_hw.reconstruction import preview_reconstruction
            from lsi_hw.testscenes import siemens_star

            star = siemens_star(16)[None]
            patterns = PatternSet.hadamard(16)  # the complete basis: an exact image
            image, _ = preview_reconstruction(patterns, bench.measure(star, patterns).values)
            light = (star.astype(float) / 255) ** 2.2  # the monitor's light, roughly
            corr = float(np.corrcoef(image.ravel(), light.ravel())[0, 1])
            verdict = "ok " if corr > 0.9 else "-- "
            failures += verdict == "-- "
            click.echo(f"{verdict} 16x16 Siemens star through the full Hadamard basis: "
                       f"correlation {corr:.3f} with the displayed light (expected > 0.9)")
    finally:
        bench.close()
    if failures:
        sys.exit(1)


def _digitizer_ranges(bench: Bench) -> tuple[float, ...] | None:
    """The input ranges the bench's digitizer offers, volts (None: not listed)."""
    digitizer = getattr(getattr(bench, "detector", None), "digitizer", None)
    ranges = getattr(digitizer, "ranges_v", None)
    return tuple(float(r) for r in ranges) if ranges else None


def _check_operating_point(bench: Bench, size: int) -> int:
    """Print where the brightest reading of the built-in scenes sits in the digitizer's
    range and the recommended gain and range; returns 1 when it saturates, else 0."""
    from lsi_hw.calibration import measure_operating_point

    point = measure_operating_point(bench, size=size, ranges_v=_digitizer_ranges(bench))
    est = ", extrapolated: the all-on reading clips" if point.peak_estimated else ""
    where = (f"brightest typical reading {point.peak_v:.4g} V ({point.peak_scene}, all "
             f"mirrors on{est})")
    mark = {"ok": "ok ", "saturating": "-- "}.get(point.status, "!! ")
    if point.fraction is None or point.range_v is None:
        click.echo(f"!!  {where}: {point.message}")
    elif point.status == "saturating":
        click.echo(f"--  {where}: SATURATED at the +-{point.range_v:g} V range: lower the gain "
                   "or take a larger range")
    else:
        state = ("headroom" if point.status == "ok" else point.message.split(" (")[0])
        click.echo(f"{mark} {where} = {point.fraction:.0%} of the +-{point.range_v:g} V range "
                   f"(wanted 30-80 %; {state})")
    if point.recommended_gain_db is not None:
        same = (point.recommended_gain_db == point.gain_db
                and point.recommended_range_v == point.range_v)
        click.echo(f"    recommended: {point.recommended_gain_db} dB, "
                   f"+-{point.recommended_range_v:g} V -> {point.recommended_fraction:.0%} of "
                   f"full scale, settling residual after one pattern "
                   f"{point.settling_residual:.2g}" + (" (the current setting)" if same else
                                                       f" ({point.recommendation})"))
    if point.clip_v is not None and point.white_v >= 0.98 * point.clip_v:
        click.echo(f"    full-screen white, all mirrors on: ~{point.white_v:.3g} V, beyond the "
                   f"{point.clip_v:g} V clipping level (expected when the range is set for "
                   "typical scenes; calibrate scales its stimuli)")
    for note in point.notes:
        click.echo(f"    note: {note}")
    return int(point.status == "saturating")


@main.command()
@_bench_options
@click.option("--patterns", "pattern_kind", default="hadamard", show_default=True,
              help="hadamard, random, fourier, or a .npy/.npz mask file.")
@click.option("--m", "m", type=int, default=256, show_default=True, help="Patterns per scene.")
@click.option("--size", type=int, default=None, help="Mask side [default 256 or the file's].")
@click.option("--images", default="builtin", show_default=True,
              help="A built-in scene set (builtin: targets + astronaut; faces: 8 SynthFace "
                   "test faces + astronaut; synthface; astronaut; targets) or a folder of "
                   "square images.")
@click.option("--batch-size", type=int, default=16, show_default=True,
              help="Scenes per committed batch (what a crash can lose at most).")
@click.option("--calibration", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="Calibration file whose id goes into every snapshot.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Recording folder; rerunning the command resumes it.")
@_one_line_errors
def acquire(backend: str, noise: str, gain_db: int, range_v: float, seed: int,
            pattern_kind: str, m: int, size: int | None, images: str, batch_size: int,
            calibration: Path | None, out: Path) -> None:
    """Acquire scenes into a crash-safe recording; rerun to resume where it stopped."""
    from lsi_hw.acquisition import acquire as run_acquisition
    from lsi_hw.testscenes import count_scenes, load_scenes

    calibration_id = None
    if calibration is not None:
        from lsi_hw.calibration import CalibrationFile

        calibration_id = CalibrationFile.load(calibration).id
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1")
    n_scenes = count_scenes(images)
    patterns = _build_patterns(pattern_kind, m, size, seed, False, n_scenes)
    side = patterns.shape[0]
    scenes, _ = load_scenes(images, side)
    bench = _open_bench(backend, noise, gain_db, seed, calibration_id, range_v=range_v)
    try:
        summary = run_acquisition(bench, scenes, patterns, out, batch_size=batch_size)
    finally:
        bench.close()
    click.echo(f"{out}: {summary.n_acquired} scenes acquired, {summary.n_skipped} already "
               f"recorded, {summary.n_batches} batches in {summary.elapsed_s:.2f} s "
               f"(backend {backend})")


@main.command()
@_bench_options
@click.option("--size", type=int, default=32, show_default=True,
              help="Mask side of the calibration patterns (a power of two).")
@click.option("--routines", default=None,
              help="Comma-separated subset of: dark, linearity, gamma, registration, settling "
                   "(the operating point is always measured first).")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Calibration file to write (.json).")
@click.option("--force", is_flag=True, default=False,
              help="Replace an existing --out file (refused otherwise).")
@_one_line_errors
def calibrate(backend: str, noise: str, gain_db: int, range_v: float, seed: int, size: int,
              routines: str | None, out: Path, force: bool) -> None:
    """Run the calibration routines on a bench and write a versioned calibration file.

    Prints the file written and one line per routine (what it found, and what the bench
    did not report, e.g. why the settling is unresolved).  The first, the operating point,
    gives the fraction of the digitizer's range the brightest reading of the built-in
    scenes uses (30-80 % wanted; a warning when the range is wasted or saturates) and the
    recommended gain and range.
    """
    from lsi_hw.calibration import ROUTINES, run_all

    chosen = None
    if routines:
        chosen = [r.strip() for r in routines.split(",") if r.strip()]
        unknown = sorted(set(chosen) - set(ROUTINES))
        if unknown:
            raise ConfigError(f"--routines {','.join(unknown)} unknown; allowed: "
                              f"{', '.join(ROUTINES)}")
    if size < 8 or size > 512 or size & (size - 1):
        raise ConfigError(f"--size {size} must be a power of two from 8 to 512 (Hadamard "
                          "calibration patterns)")
    if out.suffix != ".json":
        raise ConfigError(f"--out {out}: the calibration file must end in .json")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a .json file name")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
    check_new_file(out, force, "--out")  # before the long calibration
    bench = _open_bench(backend, noise, gain_db, seed, range_v=range_v)
    try:
        result = run_all(bench, size=size, routines=chosen,
                         options={"operating_point": {"ranges_v": _digitizer_ranges(bench)}})
    finally:
        bench.close()
    result.save(out, overwrite=force)  # refuses a file that appeared meanwhile
    click.echo(f"wrote {out} (calibration id {result.id})")
    for line in result.summary_lines():
        click.echo(f"  {line}")


@main.group()
def patterns() -> None:
    """Generate, inspect and export pattern (mask) sets."""


@patterns.command("generate")
@click.argument("kind", type=click.Choice(["hadamard", "random", "fourier"]))
@click.option("--m", "m", type=int, default=256, show_default=True, help="Number of masks.")
@click.option("--size", type=int, default=64, show_default=True, help="Mask side, pixels.")
@click.option("--order", type=click.Choice(["sequency", "natural", "cake-cutting", "random"]),
              default="sequency", show_default=True, help="Hadamard ordering.")
@click.option("--split/--no-split", default=False, show_default=True,
              help="Add complementary masks for differential measurement.")
@click.option("--p", "p", type=float, default=0.5, show_default=True,
              help="Fill probability of random masks.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", "--output", "output", type=click.Path(path_type=Path),
              required=True, help="Output .npz file.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@_one_line_errors
def patterns_generate(
    kind: str, m: int, size: int, order: str, split: bool, p: float, seed: int, output: Path,
    force: bool,
) -> None:
    """Generate a pattern set and save it (.npz with provenance)."""
    from lsi_hw.patterns import PatternSet

    if output.suffix != ".npz":
        raise ConfigError(f"--out {output}: the output must be a .npz file")
    check_new_file(output, force, "--out")
    if m < 1:
        raise ConfigError(f"--m {m} must be >= 1")
    _check_side(size)
    check_job_memory(m * (2 if split else 1), size, 0,
                     f"{m}{' split' if split else ''} {kind} masks of {size}x{size} px")
    if kind == "hadamard":
        ps = PatternSet.hadamard(size, m=m, order=order, split=split,
                                 seed=seed if order == "random" else None)
    elif kind == "random":
        ps = PatternSet.random(m, (size, size), p=p, seed=seed)
        ps = ps.complementary() if split else ps
    else:
        ps = PatternSet.fourier(size, m, phases=4, seed=seed)
        ps = ps.complementary() if split else ps
    written = ps.save(output, overwrite=force)
    click.echo(f"wrote {written}: {ps.m} masks of {ps.shape[0]}x{ps.shape[1]} ({ps.name})")


@patterns.command("inspect")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Also save a grid of the first 64 masks.")
@click.option("--force", is_flag=True, help="Replace an existing --png file.")
@_one_line_errors
def patterns_inspect(file: Path, png: Path | None, force: bool) -> None:
    """Print what a pattern file holds (shape, fill, Hadamard rows, DMD fit, memory)."""
    from lsi_hw.patterns import PatternSet, superpixel_for

    if png is not None:
        if png.suffix.lower() != ".png":
            raise ConfigError(f"--png {png}: the figure file must end in .png")
        check_new_file(png, force, "--png")
    ps = PatternSet.load(file)
    fill = ps.masks.reshape(ps.m, -1).mean(axis=1)
    click.echo(f"{file}: {ps.name}")
    click.echo(f"  masks       {ps.m} x {ps.shape[0]} x {ps.shape[1]}")
    click.echo(f"  fill        mean {fill.mean():.3f}, min {fill.min():.3f}, max {fill.max():.3f}")
    click.echo(f"  hadamard    {'yes' if ps.hadamard_rows is not None else 'no'}"
               f"{', split +/- pairs' if ps.is_split else ''}")
    click.echo(f"  packed      {ps.pack().nbytes} bytes "
               f"(float32 would be {ps.m * ps.n_pixels * 4})")
    click.echo(f"  DMD fit     superpixel {superpixel_for(ps.shape, diamond=True)} (diamond), "
               f"{superpixel_for(ps.shape, diamond=False)} (square); "
               f"{-(-ps.m // 24)} DLP 24-bit frames")
    click.echo(f"  provenance  {json.dumps(ps.meta, default=str)[:200]}")
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        k = min(64, ps.m)
        cols = min(8, k)
        rows = -(-k // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < k:
                ax.imshow(ps.masks[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.axis("off")
        from lsi_hw.plotting import save_figure

        save_figure(fig, png, overwrite=force, dpi=80)
        click.echo(f"  wrote {png}")


@patterns.command("export")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["dlp-frames", "packed"]), required=True,
              help="dlp-frames: 24-bit RGB PNGs for the DLP4500 (G0..G7, R0..R7, B0..B7); "
                   "packed: bit-packed .npy.")
@click.option("--diamond/--square", default=True, show_default=True,
              help="Superpixel geometry on the DMD's diamond array.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--force", is_flag=True, help="Replace a non-empty --out folder.")
@_one_line_errors
def patterns_export(file: Path, fmt: str, diamond: bool, out: Path, force: bool) -> None:
    """Export a pattern file for a DMD: DLP 24-bit frames (PNG) or packed bits (.npy)."""
    from lsi_hw.patterns import PatternSet

    ps = PatternSet.load(file)
    output = _Output(out, force, inputs=[file], made_by="lsi-hw patterns export")
    try:
        if fmt == "packed":
            np.save(output.path("packed.npy"), ps.pack())
            written = 1
        else:
            import matplotlib.image as mpimg

            frames = ps.to_dlp_frames(diamond=diamond)
            for i, frame in enumerate(frames):
                mpimg.imsave(output.path(f"frame_{i:04d}.png"), frame)
            written = len(frames)
        output.commit()
    except BaseException:
        output.abandon()
        raise
    click.echo(f"wrote {written} file(s) to {out}/")


if __name__ == "__main__":  # pragma: no cover
    main()
