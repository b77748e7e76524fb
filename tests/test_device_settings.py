"""The typed device-settings registry: one contract checked on every device we can build
here (real driver classes on emulators, and the simulator's devices), plus the registry's
own checks and the PDA100A2's writable settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from lsi_hw.benches import make_bench
from lsi_hw.device_settings import Setting, SettingsRegistry
from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Modulator
from lsi_hw.sim import SimBench


def _twin_detector() -> Any:
    return make_bench("fake-hw").detector


def _twin_modulator() -> Any:
    return make_bench("fake-hw").modulator


def _sim_modulator() -> Any:
    return SimBench("none").modulator


DEVICES: dict[str, Callable[[], Any]] = {
    "PDA100A2 on a fake digitizer": _twin_detector,
    "DLP4500 on the DLPC350 emulator": _twin_modulator,
    "simulated modulator": _sim_modulator,
}


def _outside(setting: Setting) -> Any:
    """A value the setting must refuse."""
    if setting.dtype == "enum":
        return "not-a-choice"
    if setting.dtype in ("int", "float"):
        low, high = setting.values or (None, None)
        if low is not None:
            return low - 1
        return high + 1 if high is not None else "text"
    return 12345 if setting.dtype in ("bool", "str") else None


@pytest.mark.parametrize("make", list(DEVICES.values()), ids=list(DEVICES))
def test_every_device_honours_the_settings_contract(make: Callable[[], Any]) -> None:
    device = make()
    described = device.describe_settings()
    assert described, "a device exposes at least one setting"
    json.dumps(described)  # describable without custom types
    values = device.get_all_settings()
    assert set(values) == set(described)
    for name, info in described.items():
        setting = device._setting(name)
        assert setting.check(values[name]) == values[name], name  # current value is valid
        if info["readonly"]:
            with pytest.raises(ConfigError, match="read-only"):
                device.set_setting(name, values[name])
            continue
        device.set_setting(name, values[name])  # writing the current value back is fine
        with pytest.raises(ConfigError, match=repr(name)):
            device.set_setting(name, _outside(setting))
        assert device.get_setting(name) == values[name], f"{name} changed on a refusal"
    with pytest.raises(ConfigError, match="no setting"):
        device.get_setting("no-such-setting")


def test_modulators_describe_their_loaded_sequence() -> None:
    modulator = _sim_modulator()
    assert isinstance(modulator, Modulator)
    assert modulator.get_setting("n_patterns") == 0
    assert modulator.describe_settings()["exposure_us"]["unit"] == "us"


def test_pda100a2_gain_and_load_follow_the_declared_knob() -> None:
    detector = _twin_detector()
    gain = detector.get_setting("gain_db")
    v_per_a = detector.v_per_a
    detector.set_setting("gain_db", gain - 20)
    assert detector.gain_db == gain - 20
    assert detector.v_per_a == pytest.approx(v_per_a / 10.0, rel=0.05)  # 20 dB: 10x in V/A
    assert detector.get_setting("bandwidth_hz") > 0
    detector.set_setting("load", "50ohm")
    assert detector.load == "50ohm" and detector.get_setting("saturation_v") == 5.0


def test_update_settings_checks_everything_before_applying_anything() -> None:
    detector = _twin_detector()
    before = detector.get_all_settings()
    with pytest.raises(ConfigError, match="gain_db"):
        detector.update_settings({"load": "50ohm", "gain_db": 35})
    assert detector.get_all_settings() == before


class _Toy(SettingsRegistry):
    def __init__(self) -> None:
        self.count = 3
        self.add_setting("count", "int", lambda: self.count,
                         lambda v: setattr(self, "count", v), (1, 8), unit="")
        self.add_setting("rate", "float", lambda: 1.5, lambda v: None, (0.0, None), unit="Hz")
        self.add_setting("flag", "bool", lambda: True, lambda v: None)


@pytest.mark.parametrize("name,value", [("count", 2.5), ("count", True), ("count", 9),
                                        ("count", "3"), ("rate", float("nan")),
                                        ("rate", -1.0), ("flag", 1)])
def test_values_of_the_wrong_type_or_range_are_refused(name: str, value: Any) -> None:
    toy = _Toy()
    with pytest.raises(ConfigError, match=name):
        toy.set_setting(name, value)
    assert toy.count == 3


def test_numbers_are_converted_to_the_declared_type() -> None:
    toy = _Toy()
    toy.set_setting("count", 5.0)
    assert toy.count == 5 and isinstance(toy.count, int)


def test_registration_mistakes_are_programming_errors() -> None:
    toy = _Toy()
    with pytest.raises(ValueError, match="already"):
        toy.add_setting("count", "int", lambda: 1)
    with pytest.raises(ValueError, match="dtype"):
        toy.add_setting("x", "complex", lambda: 1)
    with pytest.raises(ValueError, match="enum"):
        toy.add_setting("y", "enum", lambda: 1)
