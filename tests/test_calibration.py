"""Calibration routines recover known simulated bench parameters (through the Bench API only).

Every bench here is a :class:`SimBench` with KNOWN parameters wrapped in :class:`ApiOnly`,
a bench that forwards ``measure``, ``settings`` and the typed Bench properties (timing,
ADC step and range, saturation, gain, bandwidth) and nothing else, so a routine that
reached into simulator internals would fail.  Estimates are checked against the true
values of the configuration (or against the simulator's noiseless forward model), never
against themselves.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from lsi_hw import calibration as cal
from lsi_hw.calibration import common
from lsi_hw.errors import CalibrationError, ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.patterns import PatternSet
from lsi_hw.sim import (
    AmplifierConfig,
    DigitizerConfig,
    MonitorConfig,
    PhotodiodeConfig,
    RelayOpticsConfig,
    SimBench,
    SimConfig,
)
from lsi_hw.sim.detector import ELEMENTARY_CHARGE_C, settling_coefficients
from lsi_hw.types import Measurement

#: The typed properties every Bench has (None where a bench does not know the value).
BENCH_PROPERTIES = ("timing", "digitizer_lsb_v", "digitizer_range_v", "saturation_v",
                    "gain_db", "gain_v_per_a", "bandwidth_hz")


class ApiOnly(Bench):
    """A bench exposing only the public Bench API of another one (optionally without
    any settings and with every typed property None, like a minimal third-party bench)."""

    name = "api-only"

    def __init__(self, inner: Bench, *, hide_settings: bool = False) -> None:
        self._inner = inner
        self._hide = hide_settings

    def _do_measure(self, scenes: np.ndarray, patterns: PatternSet) -> Measurement:
        meas = self._inner.measure(scenes, patterns)
        if self._hide:
            return Measurement(values=meas.values, settings={}, timestamps=meas.timestamps)
        return meas

    def _do_settings(self) -> dict[str, Any]:
        return {} if self._hide else self._inner.settings()


def _forwarded(name: str) -> property:
    return property(lambda self: None if self._hide else getattr(self._inner, name))


for _name in BENCH_PROPERTIES:
    setattr(ApiOnly, _name, _forwarded(_name))


#: The bench the single-routine tests were written for (the defaults before the operating
#: point was set for typical scenes): 40 dB on a +-10 V digitizer and a 300 cd/m^2
#: monitor, where a full-screen white with every mirror on stays below full scale at every
#: gain up to 70 dB.  The default operating point (50 dB, +-0.5 V: white clips, run_all
#: scales its stimuli) is tested through run_all and in test_operating_point.py.
WIDE_OPEN = {"amplifier": AmplifierConfig(gain_db=40), "digitizer": DigitizerConfig(range_v=10.0),
             "monitor": MonitorConfig(peak_luminance_cd_m2=300.0, black_luminance_cd_m2=0.3)}


def sim(seed: int = 0, noise: str = "full", **stages: Any) -> tuple[ApiOnly, SimConfig]:
    cfg = SimConfig(**{**WIDE_OPEN, **stages})
    return ApiOnly(SimBench(noise=noise, seed=seed, config=cfg)), cfg


def expected_levels(cfg: SimConfig, level: int, size: int = 32) -> tuple[float, float]:
    """Noiseless analog readings (all-off, all-on) of a uniform scene: the truth."""
    bench = SimBench(noise="none", config=cfg)
    masks = PatternSet(np.stack([np.zeros((size, size)), np.ones((size, size))]))
    v = bench.expected(np.full((1, size, size), level, dtype=np.uint8), masks).values[0]
    return float(v[0]), float(v[1])


# --------------------------------------------------------------------------------------------
# dark level, noise, leakage
# --------------------------------------------------------------------------------------------


def test_measure_dark_recovers_offset_dark_current_noise_and_leakage():
    bench, cfg = sim(
        seed=11,
        amplifier=AmplifierConfig(gain_db=60, offset_v=3e-3),
        photodiode=PhotodiodeConfig(dark_current_a=2e-9),
        monitor=MonitorConfig(black_luminance_cd_m2=0.6),
    )
    r = cal.measure_dark(bench)
    true_dark = 3e-3 + 2e-9 * 1.5e6  # offset + dark current x 1.5e6 V/A (60 dB, Hi-Z)
    assert r.dark_level_u_v < 50e-6
    assert abs(r.dark_level_v - true_dark) < 4 * r.dark_level_u_v
    # noise: read noise of the 60 dB step + dark shot noise + quantization
    window_s = cfg.timing.window_us * 1e-6
    shot = 2e-9 * 1.5e6 / math.sqrt(2e-9 * window_s / ELEMENTARY_CHARGE_C)
    read = bench.settings()["detector"]["read_noise_v_rms_per_reading"]
    true_noise = math.sqrt(read**2 + shot**2 + cfg.digitizer.lsb_v**2 / 12)
    assert abs(r.noise_v_rms - true_noise) < max(4 * r.noise_u_v_rms, 0.05 * true_noise)
    assert r.leakage_ratio is not None and r.leakage_ratio_u is not None
    assert r.leakage_ratio_u < 3e-5
    assert abs(r.leakage_ratio - cfg.dmd.off_state_leakage) < 4 * r.leakage_ratio_u
    off, on = expected_levels(cfg, 0)
    assert abs(r.black_level_v - (on - off)) < 4 * r.black_level_u_v
    assert r.gain_db == 60 and r.mask_shape == (32, 32)


def test_measure_dark_without_white_and_failures():
    bench, _ = sim(seed=1)
    r = cal.measure_dark(bench, allow_white=False, repeats=32)
    assert r.leakage_ratio is None and r.n_readings == 64
    with pytest.raises(CalibrationError, match="tolerance"):
        cal.measure_dark(bench, repeats=8, tolerance_v=1e-9)
    clipped, _ = sim(amplifier=AmplifierConfig(gain_db=60), digitizer=DigitizerConfig(range_v=2))
    with pytest.raises(CalibrationError, match="clipping"):
        cal.measure_dark(clipped, repeats=8)


# --------------------------------------------------------------------------------------------
# linearity and gain
# --------------------------------------------------------------------------------------------


def test_linearity_slopes_match_the_true_signal_per_level():
    bench, cfg = sim(seed=2, monitor=MonitorConfig(gamma=2.4))
    r = cal.check_linearity_and_gain(bench)
    assert r.max_nonlinearity_pct < 0.2
    for level, slope, u in zip(r.levels, r.slopes_v, r.slopes_u_v, strict=True):
        off, on = expected_levels(cfg, level)
        assert abs(slope - (on - off)) < 4 * u + 1e-3 * (on - off), level
    assert r.v_per_a == pytest.approx(1.51e5)
    assert r.photocurrent_a is not None
    assert r.photocurrent_a[-1] == pytest.approx(r.slopes_v[-1] / 1.51e5)


def test_linearity_detects_clipping():
    bench, _ = sim(seed=3, amplifier=AmplifierConfig(gain_db=60),
                   digitizer=DigitizerConfig(range_v=2.0))
    r = cal.check_linearity_and_gain(bench)  # clipped points dropped, counted
    assert r.n_saturated > 0 and r.max_nonlinearity_pct < 0.2
    with pytest.raises(CalibrationError, match="nonlinearity"):
        cal.check_linearity_and_gain(bench, exclude_saturated=False)


def test_compare_gains_measures_the_declared_step_and_flags_a_wrong_knob():
    a, _ = sim(seed=4, amplifier=AmplifierConfig(gain_db=50))
    b, _ = sim(seed=5, amplifier=AmplifierConfig(gain_db=60))
    ra, rb = cal.check_linearity_and_gain(a), cal.check_linearity_and_gain(b)
    c = cal.compare_gains(ra, rb)
    true_step = 20 * math.log10(1.5e6 / 4.75e5)  # data-sheet V/A of 60 and 50 dB
    assert abs(c.measured_step_db - true_step) < 0.05
    assert c.declared_step_db == pytest.approx(true_step)
    assert c.within_tolerance
    # the user declared 70 dB for run b, but the knob was at 60 dB
    wrong = replace(rb, gain_db=70.0, v_per_a=4.75e6)
    assert cal.compare_gains(ra, wrong).within_tolerance is False
    with pytest.raises(CalibrationError, match="gain knob"):
        cal.compare_gains(ra, wrong, raise_on_mismatch=True)
    with pytest.raises(CalibrationError, match="mask shapes"):
        cal.compare_gains(ra, replace(rb, mask_shape=(16, 16)))


# --------------------------------------------------------------------------------------------
# monitor gamma
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [2.4, 1.8])
def test_fit_monitor_gamma_recovers_gamma_and_black_ratio(gamma):
    monitor = MonitorConfig(gamma=gamma, peak_luminance_cd_m2=250.0, black_luminance_cd_m2=0.5)
    bench, _ = sim(seed=6, monitor=monitor, amplifier=AmplifierConfig(gain_db=60))
    r = cal.fit_monitor_gamma(bench)
    assert r.gamma_u < 0.005
    assert abs(r.gamma - gamma) < 0.005
    assert abs(r.black_to_peak - 0.002) < 0.05 * 0.002
    assert r.black_to_peak_u < 0.1 * 0.002
    assert r.residual_rms_rel < 1e-3


def test_fit_monitor_gamma_failures():
    bench, _ = sim(seed=7)
    with pytest.raises(CalibrationError, match="uncertainty"):
        cal.fit_monitor_gamma(bench, repeats=4, passes=1, gamma_tolerance=1e-9)
    with pytest.raises(CalibrationError, match="at least 4"):
        cal.fit_monitor_gamma(bench, levels=(0, 128, 255))
    dark_room, _ = sim(seed=7, optics=RelayOpticsConfig(shift_px=(500.0, 500.0)))
    with pytest.raises(CalibrationError, match="not increasing"):
        cal.fit_monitor_gamma(dark_room, repeats=4, passes=1)


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------

MISALIGNMENTS = [
    # shift (rows, cols) px, rotation deg, scale, blur px, gain dB, discard
    ((1.5, -2.0), 2.0, 1.03, 0.5, 40, 0),
    ((3.2, 2.7), -5.0, 0.95, 1.0, 70, 1),
]


@pytest.mark.parametrize(("shift", "rotation", "scale", "blur", "gain", "discard"),
                         MISALIGNMENTS)
def test_registration_recovers_known_misalignment(shift, rotation, scale, blur, gain, discard):
    optics = RelayOpticsConfig(shift_px=shift, rotation_deg=rotation, scale=scale,
                               blur_sigma_px=blur)
    bench, _ = sim(seed=8, optics=optics, amplifier=AmplifierConfig(gain_db=gain))
    r = cal.register_dmd_to_scene(bench, size=32, discard=discard)
    assert abs(r.shift_px[0] - shift[0]) < 0.05
    assert abs(r.shift_px[1] - shift[1]) < 0.05
    assert abs(r.rotation_deg - rotation) < 0.15
    assert abs(r.scale - scale) < 0.002
    assert abs(r.blur_sigma_px - blur) < 0.1
    assert r.n_patterns == 2 * 32 * 32 * (1 + discard)
    assert max(r.shift_u_px) < 0.05 and r.rotation_u_deg < 0.1 and r.scale_u < 0.002
    assert r.relay_settings()["shift_px"] == r.shift_px


def test_registration_at_64_pixels():
    optics = RelayOpticsConfig(shift_px=(-1.2, 0.7), rotation_deg=-1.0, scale=1.02)
    bench, _ = sim(seed=9, optics=optics)
    r = cal.register_dmd_to_scene(bench, size=64)
    assert np.allclose(r.shift_px, (-1.2, 0.7), atol=0.05)
    assert abs(r.rotation_deg + 1.0) < 0.1 and abs(r.scale - 1.02) < 0.002


def test_registration_fails_on_blank_target_and_on_a_scene_off_the_dmd():
    bench, _ = sim(seed=10)
    with pytest.raises(CalibrationError, match="blank"):
        cal.register_dmd_to_scene(bench, size=32, target=np.zeros((32, 32), dtype=np.uint8))
    missed, _ = sim(seed=10, optics=RelayOpticsConfig(shift_px=(40.0, 40.0)))
    with pytest.raises(CalibrationError, match="not seen"):
        cal.register_dmd_to_scene(missed, size=32)
    with pytest.raises(ConfigError):
        cal.register_dmd_to_scene(bench, size=48)


# --------------------------------------------------------------------------------------------
# settling
# --------------------------------------------------------------------------------------------


def test_settling_beta_matches_the_simulator_formula_and_inverts():
    for gain in (50, 60, 70):
        cfg = SimConfig(amplifier=AmplifierConfig(gain_db=gain))
        _, beta = settling_coefficients(cfg.amplifier, cfg.timing)
        tau = cfg.amplifier.time_constant_s
        assert cal.settling_beta(tau, 60e-6, 150e-6) == pytest.approx(beta, rel=1e-9)
        assert cal.tau_from_beta(beta, 60e-6, 150e-6) == pytest.approx(tau, rel=1e-6)


@pytest.mark.parametrize(("gain", "rel_tol"), [(70, 0.005), (60, 0.03)])
def test_measure_settling_recovers_the_amplifier_bandwidth(gain, rel_tol):
    bench, cfg = sim(seed=12, amplifier=AmplifierConfig(gain_db=gain))
    r = cal.measure_settling(bench)
    true_tau = 1 / (2 * math.pi * cfg.amplifier.bandwidth_hz)
    assert r.resolved and r.tau_s is not None and r.bandwidth_ratio is not None
    assert abs(r.tau_s / true_tau - 1) < rel_tol
    assert abs(r.bandwidth_ratio - 1) < rel_tol
    assert r.declared_bandwidth_hz == cfg.amplifier.bandwidth_hz
    _, true_beta = settling_coefficients(cfg.amplifier, cfg.timing)
    assert abs(r.beta - true_beta) < 5 * r.beta_u


def test_measure_settling_unresolved_gives_a_true_bound():
    bench, cfg = sim(seed=13)  # 40 dB: 90 kHz, tau 1.8 us << 60 us settling delay
    r = cal.measure_settling(bench)
    assert not r.resolved and r.tau_s is None
    assert r.bandwidth_lower_hz < cfg.amplifier.bandwidth_hz
    with pytest.raises(CalibrationError, match="not resolved"):
        cal.measure_settling(bench, require_resolved=True)


def test_routines_run_on_a_bench_without_settings():
    """A bench that reports nothing: results say what was left out, never a silent 0."""
    bench = ApiOnly(SimBench(noise="full", seed=14,
                             config=SimConfig(**{**WIDE_OPEN,
                                                 "amplifier": AmplifierConfig(gain_db=70)})),
                    hide_settings=True)
    assert all(getattr(bench, name) is None for name in BENCH_PROPERTIES)
    # no timing: the carry-over is measured but cannot become a time constant
    unknown = cal.measure_settling(bench)
    assert not unknown.resolved and unknown.tau_s is None and unknown.beta > 0
    assert unknown.unresolved_reason is not None
    assert "bench.timing is None" in unknown.unresolved_reason
    assert unknown.tau_upper_s is None and unknown.period_us is None
    assert common.NOTE_NO_BANDWIDTH in unknown.notes and common.NOTE_NO_CLIP in unknown.notes
    assert "unresolved because" in unknown.summary()
    with pytest.raises(CalibrationError, match=r"bench\.timing is None"):
        cal.measure_settling(bench, require_resolved=True)
    r = cal.measure_settling(
        bench, timing={"period_us": 235.0, "settling_delay_us": 60.0, "window_us": 150.0})
    assert r.resolved and r.declared_bandwidth_hz is None and r.bandwidth_hz is not None
    assert abs(r.bandwidth_hz / 3e3 - 1) < 0.005
    assert r.unresolved_reason is None and r.bandwidth_ratio is None
    d = cal.measure_dark(bench, repeats=16)
    assert d.gain_db is None and d.lsb_v is None
    assert common.NOTE_NO_LSB in d.notes and common.NOTE_NO_CLIP in d.notes
    lin = cal.check_linearity_and_gain(bench, repeats=4)
    assert lin.v_per_a is None and lin.photocurrent_a is None
    assert set(lin.notes) == {common.NOTE_NO_LSB, common.NOTE_NO_CLIP, common.NOTE_NO_V_PER_A}


def test_api_only_forwards_every_typed_property():
    inner = SimBench(config=SimConfig(amplifier=AmplifierConfig(gain_db=50)))
    bench = ApiOnly(inner)
    for name in BENCH_PROPERTIES:
        assert getattr(bench, name) == getattr(inner, name) is not None, name


def test_declared_values_come_from_the_typed_properties_not_the_settings():
    """A bench whose settings snapshot says one thing and whose properties another: the
    routines use the properties (the snapshot is only recorded)."""

    class Lying(ApiOnly):
        def _do_settings(self) -> dict[str, Any]:
            return {"detector": {"gain_db": 0, "lsb_v": 1.0, "v_per_a": 1.0,
                                 "bandwidth_hz": 1.0, "saturation_v": 1e-3,
                                 "timing": {"period_us": 1e3, "settling_delay_us": 0.0,
                                            "window_us": 1.0}}}

    inner = SimBench(noise="full", seed=21,
                     config=SimConfig(**{**WIDE_OPEN, "amplifier": AmplifierConfig(gain_db=70)}))
    bench = Lying(inner)
    d = cal.measure_dark(bench, repeats=16)
    assert d.gain_db == 70 and d.lsb_v == inner.config.digitizer.lsb_v and d.notes == ()
    s = cal.measure_settling(bench, size=16)
    assert s.resolved and s.declared_bandwidth_hz == 3e3 and s.window_us == pytest.approx(150)


@pytest.mark.parametrize(("name", "value"), [("digitizer_lsb_v", -1.0),
                                             ("gain_v_per_a", float("nan")),
                                             ("saturation_v", "10 V"), ("gain_db", True)])
def test_a_bench_property_out_of_range_is_refused(name, value):
    class Broken(ApiOnly):
        pass

    setattr(Broken, name, property(lambda self: value))
    with pytest.raises(ConfigError, match=rf"Broken\.{name}=.* or None"):
        cal.measure_dark(Broken(SimBench(seed=22)), repeats=4)


def test_settling_timing_override_is_checked():
    bench, _ = sim(seed=23)
    with pytest.raises(ConfigError, match="unknown"):
        cal.measure_settling(bench, timing={"period_s": 1e-3})
    with pytest.raises(ConfigError, match="window_s"):
        cal.measure_settling(bench, timing={"window_us": -1.0})
    with pytest.raises(ConfigError, match="not a number"):
        cal.measure_settling(bench, timing={"window_us": "long"})


# --------------------------------------------------------------------------------------------
# calibration file
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration() -> cal.CalibrationFile:
    optics = RelayOpticsConfig(shift_px=(0.5, -1.0), rotation_deg=1.0)
    bench = ApiOnly(SimBench(noise="full", seed=15, config=SimConfig(optics=optics)))
    # the misaligned relay leaves the edge of the mask grid partly uncovered: about 0.5 %
    # nonlinearity at full scale without any noise, so allow 1 % here
    return cal.run_all(bench, progress=False, options={"linearity": {"tolerance_pct": 1.0}})


def test_run_all_collects_every_routine(calibration):
    assert list(calibration.results) == list(cal.ROUTINES)
    assert calibration.schema_version == cal.CALIBRATION_SCHEMA_VERSION
    reg = calibration.results["registration"]
    assert isinstance(reg, cal.RegistrationResult)
    assert np.allclose(reg.shift_px, (0.5, -1.0), atol=0.05)
    assert calibration.bench_settings["bench"] == "sim"
    assert len(calibration.id) == 12


def test_calibration_file_round_trip_and_id(calibration, tmp_path):
    path = tmp_path / "cal.json"
    assert calibration.save(path) == calibration.id
    calibration.save(path)  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]  # no temporary left over
    loaded = cal.CalibrationFile.load(path)
    assert loaded == calibration and loaded.id == calibration.id
    assert loaded.results["registration"].shift_px == calibration.results["registration"].shift_px
    # same content, another creation time: same id; other content: another id
    again = replace(calibration, created="2000-01-01T00:00:00+00:00")
    assert again.id == calibration.id
    changed = dict(calibration.results)
    changed["dark"] = replace(changed["dark"], dark_level_v=changed["dark"].dark_level_v + 1e-6)
    assert replace(calibration, results=changed).id != calibration.id


def _refused(path: Any, match: str) -> str:
    """Load ``path``; it must fail with one line that names it (ConfigError, and still a
    CalibrationError for callers that catch that)."""
    with pytest.raises(ConfigError, match=match) as info:
        cal.CalibrationFile.load(path)
    message = str(info.value)
    assert isinstance(info.value, CalibrationError)
    assert "\n" not in message and os.fspath(path) in message
    return message


def test_calibration_file_rejects_other_schema_and_edits(calibration, tmp_path):
    doc = calibration.to_dict()
    path = tmp_path / "old.json"
    path.write_text(json.dumps({**doc, "schema_version": 999}))
    _refused(path, "schema version 999")
    doc["results"]["gamma"]["gamma"] = 1.0
    path.write_text(json.dumps(doc))
    _refused(path, "does not match")
    path.write_text("{not json")
    _refused(path, "not valid JSON")


def test_calibration_file_without_its_id_is_refused(calibration, tmp_path):
    doc = calibration.to_dict()
    del doc["id"]
    path = tmp_path / "no-id.json"
    path.write_text(json.dumps(doc))
    _refused(path, "'id' missing")
    with pytest.raises(ConfigError, match="'id' missing"):
        cal.CalibrationFile.from_dict(doc)
    path.write_text(json.dumps({**calibration.to_dict(), "id": 12}))
    _refused(path, "'id' is the number 12; expected a string")


@pytest.mark.parametrize(("content", "match"), [
    (b'{"id": "\xff\xfe"}', "not UTF-8"),
    (b"\xef\xbb\xbf{}", "not valid JSON"),  # a byte-order mark is not JSON either
    (b"", "not valid JSON"),
    (b'{"a": NaN}', "NaN"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    (b"[1, 2]", "must hold a JSON object; got an array"),
])
def test_unreadable_calibration_files_give_one_line(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    _refused(path, match)


def test_missing_or_huge_calibration_file(tmp_path, monkeypatch):
    _refused(tmp_path / "absent.json", "cannot be read")
    monkeypatch.setattr(cal.file, "MAX_CALIBRATION_FILE_BYTES", 100)  # where load reads it
    path = tmp_path / "big.json"
    path.write_text(" " * 101 + "{}")
    _refused(path, "larger than")


def _set(doc: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc[key]
    doc[last] = value


@pytest.mark.parametrize(("field", "value", "match"), [
    ("results.dark.dark_level_v", "3 mV", r"results\.dark\.dark_level_v is the string"),
    ("results.dark.n_readings", 512.5, r"dark\.n_readings is the number 512.5; expected an "
                                       "integer$"),
    ("results.dark.n_readings", True, r"dark\.n_readings is a boolean; expected an integer"),
    ("results.dark.mask_shape", [32], r"dark\.mask_shape is an array; expected an array of "
                                      "2 integers"),
    ("results.dark.gain_db", {"db": 40}, r"dark\.gain_db is an object; expected a number or null"),
    ("results.dark.notes", "none", r"dark\.notes is the string 'none'; expected an array of "
                                   "strings"),
    ("results.settling.resolved", 1, r"settling\.resolved is the number 1; expected a boolean"),
    ("results.registration.shift_px", [1.0, None], r"registration\.shift_px is an array"),
    ("results.gamma.levels", [0, "8"], r"gamma\.levels is an array"),
    ("results.dark.extra", 1.0, r"results\.dark: unknown fields \['extra'\]"),
    ("results.magic", {}, "unknown calibration routine 'magic'"),
    ("results.gamma", [], r"results\.gamma must be a JSON object"),
    ("bench_settings", [], "'bench_settings' is an array; expected an object"),
    ("created", 2024, "'created' is the number 2024; expected a string"),
    ("schema_version", True, "schema version True is not supported"),
    ("comment", "hi", r"unknown entries \['comment'\]"),
])
def test_calibration_file_fields_of_the_wrong_type_are_refused(calibration, tmp_path, field,
                                                               value, match):
    doc = calibration.to_dict()
    _set(doc, field, value)
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(doc))
    _refused(path, match)


def test_missing_result_field_is_refused(calibration, tmp_path):
    doc = calibration.to_dict()
    del doc["results"]["dark"]["dark_level_v"]
    path = tmp_path / "short.json"
    path.write_text(json.dumps(doc))
    _refused(path, r"results\.dark: field 'dark_level_v' missing")


def test_files_from_before_notes_keep_their_id(calibration, tmp_path):
    """notes / unresolved_reason are left out of the file while empty: a file written
    before they existed loads with the same id; a note, once present, is kept and hashed."""
    doc = calibration.to_dict()
    assert all("notes" not in r for r in doc["results"].values())
    assert "unresolved_reason" in doc["results"]["settling"]  # 40 dB: unresolved
    settling = calibration.results["settling"]
    assert isinstance(settling, cal.SettlingResult) and not settling.resolved
    noted = dict(calibration.results)
    noted["dark"] = replace(noted["dark"], notes=("digitizer step unknown",))
    other = replace(calibration, results=noted)
    assert other.id != calibration.id
    path = tmp_path / "noted.json"
    other.save(path)
    again = cal.CalibrationFile.load(path)
    assert again.results["dark"].notes == ("digitizer step unknown",) and again.id == other.id


def test_save_refuses_to_overwrite_unless_asked_and_honours_the_umask(calibration, tmp_path):
    path = tmp_path / "cal.json"
    old_mask = os.umask(0o027)
    try:
        calibration.save(path, overwrite=False)
    finally:
        os.umask(old_mask)
    assert path.stat().st_mode & 0o777 == 0o640
    path.write_text("precious")
    with pytest.raises(ConfigError, match="exists"):
        calibration.save(path, overwrite=False)
    assert path.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["cal.json"]  # no temporary left over
    assert calibration.save(path, overwrite=True) == calibration.id
    assert cal.CalibrationFile.load(path) == calibration


def test_summary_lines_name_every_routine(calibration):
    lines = calibration.summary_lines()
    heads = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert heads == list(cal.ROUTINES)
    text = "\n".join(lines)
    assert re.search(r"gamma: gamma 2\.(19|20?\b)", text), text
    assert re.search(r"registration: shift \(\+0\.(49|50)\d*, -(0\.99|1\.00)", text), text
    assert "dark: dark level" in text
    assert "settling: unresolved because the carry-over" in text
    assert "{" not in text and len(lines) <= 12  # a summary, not the JSON
    assert max(len(line) for line in lines) < 200


def test_bench_records_the_calibration_id(calibration, tmp_path):
    path = os.fspath(tmp_path / "cal.json")
    calibration.save(path)
    cid = cal.CalibrationFile.load(path).id
    bench = SimBench(calibration_id=cid)
    meas = bench.measure(np.zeros((1, 8, 8), dtype=np.uint8), PatternSet.random(2, 8, seed=0))
    assert meas.settings["calibration_id"] == cid
    assert bench.settings()["calibration_id"] == cid
