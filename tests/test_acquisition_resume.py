"""Resumed acquisitions: they never mix settings, and they give the volts of one
uninterrupted run (the benches' noise is keyed by scene, not by call order)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from lsi_hw.acquisition import acquire, run_settings
from lsi_hw.benches import make_bench
from lsi_hw.benches.twin import FakeHardwareBench
from lsi_hw.errors import ConfigError, DeviceTimeout
from lsi_hw.patterns import PatternSet
from lsi_hw.recording import Recording
from lsi_hw.sim import AmplifierConfig, NoiseConfig, SimBench, SimConfig
from lsi_hw.sim.bench import SceneNoiseStreams, patterns_key
from lsi_hw.sim.forward import measure_volts

BENCHES = ["sim", "fake-hw"]
N = 6


@pytest.fixture(scope="module")
def scenes() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (N, 16, 16), dtype=np.uint8)


@pytest.fixture(scope="module")
def patterns() -> PatternSet:
    return PatternSet.random(20, (16, 16), seed=4)


def config(gain_db: int = 40) -> SimConfig:
    return replace(SimConfig(), amplifier=AmplifierConfig(gain_db=gain_db))


def bench(name: str, **options):
    args = {"noise": "full", "seed": 5, "config": config(), **options}
    return make_bench(name, **args)


def run(b, scenes, patterns, path, batch_size: int = 2):
    try:
        return acquire(b, scenes, patterns, path, batch_size=batch_size, progress=False)
    finally:
        b.close()


# --------------------------------------------------------------------------- never mixed


@pytest.mark.parametrize("name", BENCHES)
@pytest.mark.parametrize(("change", "words"), [
    ({"config": config(gain_db=50)}, r"gain_db \(recorded 40, now 50\)"),
    ({"noise": "shot"}, r"noise\.preset \(recorded 'full', now 'shot'\)"),
    ({"seed": 6}, r"seed \(recorded 5, now 6\)"),
    ({"calibration_id": "cal-2"}, r"calibration_id \(recorded None, now 'cal-2'\)"),
])
def test_resume_with_other_settings_is_refused(tmp_path, scenes, patterns, name, change,
                                                 words):
    path = tmp_path / "run.lsirec"
    run(bench(name), scenes[:2], patterns, path)
    with pytest.raises(ConfigError, match=words) as info:
        run(bench(name, **change), scenes, patterns, path)
    message = str(info.value)
    assert f"cannot resume recording {path}" in message and "\n" not in message
    rec = Recording.open(path)
    assert rec.n_scenes == 2 and rec.n_batches == 1  # nothing was added
    assert not (path / "lock").exists()


@pytest.mark.parametrize("name", BENCHES)
def test_resume_with_other_masks_of_the_same_name_is_refused(tmp_path, scenes, patterns,
                                                             name):
    path = tmp_path / "run.lsirec"
    run(bench(name), scenes[:2], patterns, path)
    other = PatternSet(1 - patterns.masks, name=patterns.name, meta=patterns.meta)
    with pytest.raises(ConfigError, match=r"patterns\.sha256 \(recorded '[0-9a-f]{12}"):
        run(bench(name), scenes, other, path)


def test_simulator_config_and_method_are_compared(tmp_path, scenes, patterns):
    path = tmp_path / "run.lsirec"
    run(bench("sim"), scenes[:2], patterns, path)
    dim = replace(config(), monitor=replace(config().monitor, peak_luminance_cd_m2=150.0))
    recorded = re.escape(repr(config().monitor.peak_luminance_cd_m2))
    with pytest.raises(ConfigError, match=rf"peak_luminance_cd_m2 \(recorded {recorded}, now 150"):
        run(bench("sim", config=dim), scenes, patterns, path)
    with pytest.raises(ConfigError, match=r"method \(recorded 'auto', now 'numpy'\)"):
        run(bench("sim", method="numpy"), scenes, patterns, path)


@pytest.mark.parametrize("name", BENCHES)
def test_identical_resume_is_accepted_with_a_fresh_or_a_used_bench(tmp_path, scenes,
                                                                  patterns, name):
    """Run state (what was loaded, shown, read; timestamps; counters) is not compared."""
    path = tmp_path / "run.lsirec"
    with bench(name) as used:
        first = acquire(used, scenes[:2], patterns, path, batch_size=2, progress=False)
        assert first.n_acquired == 2
        used.measure(scenes[5:], PatternSet.random(3, (16, 16), seed=9))  # other state
        again = acquire(used, scenes[:4], patterns, path, batch_size=2, progress=False)
        assert (again.n_skipped, again.n_acquired) == (2, 2)
    summary = run(bench(name), scenes, patterns, path)
    assert (summary.n_skipped, summary.n_acquired) == (4, 2)
    rec = Recording.open(path)
    assert rec.n_scenes == N and rec.n_batches == 3
    recorded = rec.settings
    assert "acquisition" not in recorded["bench_settings"]
    assert "last_id" not in recorded["bench_settings"].get("scene", {})
    assert recorded["patterns"]["m"] == patterns.m and len(recorded["patterns"]["sha256"]) == 64


def test_run_settings_hold_every_acquisition_defining_setting(patterns):
    sim = run_settings(bench("sim"), patterns)["bench_settings"]
    assert sim["seed"] == 5 and sim["noise"]["preset"] == "full"
    assert sim["detector"]["amplifier"]["gain_db"] == 40
    assert {"digitizer", "timing", "photodiode"} <= set(sim["detector"])
    with bench("fake-hw") as twin:
        settings = run_settings(twin, patterns)
    assert settings["simulator"]["seed"] == 5
    assert settings["simulator"]["noise"]["preset"] == "full"
    assert settings["bench_settings"]["detector"]["gain_db"] == 40
    assert settings["bench_settings"]["detector"]["digitizer"]["noise_v_rms"] == 0.0
    assert settings["hardware"] == {"exposure_us": 235.0, "period_us": 235.0,
                                    "patterns_per_load": 128}


# --------------------------------------------------------------------------- bit-identical


@pytest.mark.parametrize(("name", "options"), [
    ("sim", {}),
    ("sim", {"method": "numpy"}),
    ("fake-hw", {}),
    ("fake-hw", {"digitizer_options": {"noise_v_rms": 2e-3}}),
])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, scenes, patterns, name,
                                                       options):
    whole = tmp_path / "whole.lsirec"
    run(bench(name, **options), scenes, patterns, whole)
    parts = tmp_path / "parts.lsirec"
    run(bench(name, **options), scenes[:2], patterns, parts)  # "crash" after one batch
    run(bench(name, **options), scenes, patterns, parts)  # a new process resumes
    a, b = Recording.open(whole), Recording.open(parts)
    assert a.scene_ids == b.scene_ids and b.n_batches == 3
    np.testing.assert_array_equal(a.values, b.values)
    # the noise is really on: another seed gives other volts
    other = tmp_path / "other.lsirec"
    run(bench(name, **{**options, "seed": 99}), scenes, patterns, other)
    assert not np.array_equal(Recording.open(other).values, a.values)


@pytest.mark.parametrize("name", BENCHES)
def test_a_failed_measurement_retried_draws_the_same_noise(tmp_path, scenes, patterns, name):
    with bench(name) as reference:
        expected = reference.measure(scenes[:3], patterns).values
    with bench(name) as b:
        if name == "sim":
            real = b._measure_block
            calls = {"n": 0}

            def fail_on_second_block(*args):
                calls["n"] += 1
                if calls["n"] == 2:
                    raise DeviceTimeout("simulated failure")
                return real(*args)

            b._measure_block = fail_on_second_block
            import lsi_hw.sim.bench as simbench

            chunk, simbench.CHUNK_SCENES = simbench.CHUNK_SCENES, 1
            try:
                with pytest.raises(DeviceTimeout):
                    b.measure(scenes[:3], patterns)
            finally:
                simbench.CHUNK_SCENES = chunk
        else:
            b.detector.digitizer.missing_triggers = 1
            with pytest.raises(DeviceTimeout):
                b.measure(scenes[:3], patterns)
            b.detector.digitizer.missing_triggers = 0
        np.testing.assert_array_equal(b.measure(scenes[:3], patterns).values, expected)


# --------------------------------------------------------------------------- noise keys


@pytest.mark.parametrize("name", BENCHES)
def test_repeated_measurements_of_a_scene_get_independent_noise(scenes, patterns, name):
    loud = NoiseConfig(shot=False, dark=False, read=True, flicker_rel_rms=0.0,
                       read_noise_v_rms=5e-3)  # ~16 LSB: every reading differs
    same = np.repeat(scenes[:1], 3, axis=0)
    with bench(name, noise=loud) as b:
        first = b.measure(same, patterns).values
        second = b.measure(scenes[:1], patterns).values
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert not any(np.array_equal(second[0], row) for row in first)
    with bench(name, noise=loud) as fresh:  # the same sequence of calls: the same volts
        np.testing.assert_array_equal(fresh.measure(same, patterns).values, first)
        np.testing.assert_array_equal(fresh.measure(scenes[:1], patterns).values, second)
    with bench(name, noise=loud) as fresh:  # a scene's 1st measurement: alone or in a batch
        np.testing.assert_array_equal(fresh.measure(scenes[:1], patterns).values[0], first[0])


def test_twin_noise_of_a_scene_does_not_depend_on_its_batch(scenes, patterns):
    with bench("fake-hw") as b:
        together = b.measure(scenes[:4], patterns).values
    with bench("fake-hw") as b:
        alone = b.measure(scenes[3:4], patterns).values
        reversed_ = b.measure(scenes[2::-1], patterns).values
    np.testing.assert_array_equal(alone[0], together[3])
    np.testing.assert_array_equal(reversed_[::-1], together[:3])


def test_sim_noise_of_a_scene_does_not_depend_on_its_batch(scenes, patterns):
    """The optics of a batch are one vectorised call (rounding may differ by batch), but
    the noise draws are the scene's own: loud noise agrees to within one ADC step."""
    loud = NoiseConfig(shot=True, dark=True, read=True, flicker_rel_rms=1e-3,
                       read_noise_v_rms=5e-3)
    with bench("sim", noise=loud, method="numpy") as b:
        together = b.measure(scenes[:4], patterns).values
    with bench("sim", noise=loud, method="numpy") as b:
        alone = b.measure(scenes[3:4], patterns).values
        lsb = b.config.digitizer.lsb_v
    assert np.max(np.abs(alone[0] - together[3])) <= lsb * 1.001
    with bench("sim", noise=loud, method="numpy", seed=6) as b:
        other = b.measure(scenes[3:4], patterns).values
    assert np.max(np.abs(other[0] - together[3])) > 5 * lsb  # another stream: far apart


def test_sim_noise_stage_mirrors_measure_volts(scenes, patterns):
    """SimBench's per-scene noise stage draws exactly what forward.measure_volts draws."""
    for method in ("numpy", "auto"):
        b = SimBench("full", seed=7, method=method)
        got = b.measure(scenes[:1], patterns).values
        streams = SceneNoiseStreams(7)
        claim = streams.take(b.scene.current_id, patterns_key(patterns))
        assert claim[2] == 0
        rng = streams.generator(claim, SceneNoiseStreams.PHYSICS)
        want = measure_volts(scenes[:1], patterns, b.config, rng, method).volts
        np.testing.assert_array_equal(got, want)


def test_seed_none_is_fresh_randomness_and_bad_seeds_are_refused(scenes, patterns):
    noise = NoiseConfig(shot=False, dark=False, read=True, flicker_rel_rms=0.0,
                        read_noise_v_rms=5e-3)
    a = SimBench(noise, seed=None).measure(scenes[:1], patterns).values
    b = SimBench(noise, seed=None).measure(scenes[:1], patterns).values
    assert not np.array_equal(a, b)
    assert SimBench(noise, seed=None).settings()["seed"] is None
    for seed in (-1, 1.5, "3", True):
        with pytest.raises(ConfigError, match=r"seed=.* must be an integer >= 0, or None"):
            SimBench(noise, seed=seed)
        with pytest.raises(ConfigError, match="seed="):
            FakeHardwareBench(noise, seed=seed)


def test_noise_counts_are_per_scene_and_masks_and_kept_only_on_success():
    streams = SceneNoiseStreams(1)
    assert [streams.take("a", 1)[2] for _ in range(3)] == [0, 1, 2]
    assert streams.take("a", 2)[2] == 0 and streams.take("b", 1)[2] == 0
    with pytest.raises(RuntimeError), streams.measuring():
        assert streams.take("a", 1)[2] == 3
        assert streams.take("a", 1)[2] == 4
        raise RuntimeError
    assert streams.count("a", 1) == 3
    with streams.measuring():
        assert streams.take("a", 1)[2] == 3
        with streams.measuring():  # nested scopes join the outer one
            assert streams.take("a", 1)[2] == 4
    assert streams.count("a", 1) == 5
    g1 = streams.generator((1, 2, 0), SceneNoiseStreams.PHYSICS)
    g2 = streams.generator((1, 2, 0), SceneNoiseStreams.PHYSICS)
    g3 = streams.generator((1, 2, 0), SceneNoiseStreams.DIGITIZER)
    x1, x2, x3 = (g.standard_normal(4) for g in (g1, g2, g3))
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)


def test_cli_acquire_refuses_to_resume_with_another_gain_or_noise(tmp_path):
    from click.testing import CliRunner

    from lsi_hw.cli import main

    out = tmp_path / "run.lsirec"
    base = ["acquire", "--backend", "sim", "--m", "8", "--size", "16", "--batch-size", "2",
            "--out", str(out)]

    def cli(*extra: str):
        return CliRunner().invoke(main, [*base, *extra])

    first = cli("--noise", "full", "--gain-db", "40")
    assert first.exit_code == 0, first.output
    n = Recording.open(out).n_scenes
    for extra, words in ((("--noise", "full", "--gain-db", "50"),
                          "gain_db (recorded 40, now 50)"),
                         (("--noise", "shot", "--gain-db", "40"),
                          "noise.preset (recorded 'full', now 'shot')"),
                         (("--noise", "full", "--gain-db", "40", "--seed", "1"),
                          "seed (recorded 0, now 1)")):
        result = cli(*extra)
        assert result.exit_code != 0, result.output
        assert words in result.output and f"cannot resume recording {out}" in result.output
        assert "Traceback" not in result.output
    again = cli("--noise", "full", "--gain-db", "40")
    assert again.exit_code == 0, again.output
    assert f"0 scenes acquired, {n} already recorded" in again.output
    assert Recording.open(out).n_scenes == n
