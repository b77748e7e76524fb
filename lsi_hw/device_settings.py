"""What a device exposes: a typed registry of named settings.

Each device registers its settings once (:meth:`SettingsRegistry.add_setting`) with a
type, the allowed values (a tuple of choices or a ``(low, high)`` range), a unit and a
getter, plus a setter when the setting can be changed. Callers then discover
(:meth:`~SettingsRegistry.describe_settings`), read (:meth:`~SettingsRegistry.get_setting`)
and change (:meth:`~SettingsRegistry.set_setting`) them by name, and every change is
checked against the declared type and values before the device's setter runs, so a bad
value never reaches the hardware.

This is the registry only; the full snapshot a recording stores stays the device's
``settings()``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsi_hw.errors import ConfigError

__all__ = ["SETTING_TYPES", "Setting", "SettingsRegistry"]

SETTING_TYPES = ("int", "float", "bool", "str", "enum")
"""Types a setting may declare; ``enum`` takes one of ``values``."""


@dataclass(frozen=True)
class Setting:
    """One named setting of a device.

    Attributes
    ----------
    name : str
        The name callers use.
    dtype : str
        One of :data:`SETTING_TYPES`.
    getter : callable
        Returns the current value.
    setter : callable or None
        Applies a checked value; None for a read-only setting.
    values : tuple or None
        ``enum``: the allowed values; ``int``/``float``: ``(low, high)`` inclusive bounds
        (None for an open end); None: any value of the type.
    unit : str
        Unit of the value ("" for none), e.g. ``"dB"``, ``"us"``, ``"V"``.
    doc : str
        One line on what the setting does.
    """

    name: str
    dtype: str
    getter: Callable[[], Any]
    setter: Callable[[Any], None] | None = None
    values: tuple[Any, ...] | None = None
    unit: str = ""
    doc: str = ""

    @property
    def readonly(self) -> bool:
        """Whether the setting can only be read."""
        return self.setter is None

    def describe(self) -> dict[str, Any]:
        """Type, allowed values, unit, read-only flag and doc (JSON-serialisable)."""
        return {"type": self.dtype, "values": None if self.values is None else list(self.values),
                "unit": self.unit, "readonly": self.readonly, "doc": self.doc}

    def check(self, value: Any) -> Any:
        """``value`` converted to the setting's type, or ConfigError naming the setting
        and what it accepts."""
        where = f"setting {self.name!r}"
        if self.dtype == "enum":
            assert self.values is not None
            for allowed in self.values:
                if value == allowed and type(value) is not bool:
                    return allowed
            raise ConfigError(f"{where} = {value!r}: allowed values are "
                              f"{', '.join(repr(v) for v in self.values)}")
        if self.dtype == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} = {value!r}: give true or false")
            return value
        if self.dtype == "str":
            if not isinstance(value, str):
                raise ConfigError(f"{where} = {value!r}: give a string")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where} = {value!r}: give a number ({self.dtype})")
        if self.dtype == "int":
            if int(value) != value:
                raise ConfigError(f"{where} = {value!r}: give a whole number")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where} = {value!r}: give a finite number")
        if self.values is not None:
            low, high = self.values
            if (low is not None and value < low) or (high is not None and value > high):
                unit = f" {self.unit}" if self.unit else ""
                raise ConfigError(f"{where} = {value!r}{unit} is outside "
                                  f"[{'-inf' if low is None else low}, "
                                  f"{'inf' if high is None else high}]{unit}")
        return value


class SettingsRegistry:
    """Mixin: the typed settings registry of a device (see the module notes)."""

    def _registry(self) -> dict[str, Setting]:
        registry = self.__dict__.get("_settings_registry")
        if registry is None:
            registry = {}
            self.__dict__["_settings_registry"] = registry
        return registry

    def add_setting(self, name: str, dtype: str, getter: Callable[[], Any],
                    setter: Callable[[Any], None] | None = None,
                    values: tuple[Any, ...] | None = None, *, unit: str = "",
                    doc: str = "") -> None:
        """Register a setting (once per name; a second registration is a programming
        error). ``values``: choices for ``enum``, ``(low, high)`` for numbers."""
        if dtype not in SETTING_TYPES:
            raise ValueError(f"setting {name!r}: dtype {dtype!r} not in {SETTING_TYPES}")
        if dtype == "enum" and not values:
            raise ValueError(f"setting {name!r}: an enum needs its values")
        if dtype in ("int", "float") and values is not None and len(values) != 2:
            raise ValueError(f"setting {name!r}: numeric values are (low, high)")
        registry = self._registry()
        if name in registry:
            raise ValueError(f"setting {name!r} is already registered")
        registry[name] = Setting(name, dtype, getter, setter,
                                 None if values is None else tuple(values), unit, doc)

    def _setting(self, name: str) -> Setting:
        registry = self._registry()
        if name not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise ConfigError(f"{type(self).__name__} has no setting {name!r}; "
                              f"its settings: {known}")
        return registry[name]

    def describe_settings(self) -> dict[str, dict[str, Any]]:
        """Every registered setting with its type, values, unit, read-only flag, doc."""
        return {name: s.describe() for name, s in sorted(self._registry().items())}

    def get_setting(self, name: str) -> Any:
        """The current value of setting ``name`` (ConfigError if there is none)."""
        return self._setting(name).getter()

    def get_all_settings(self) -> dict[str, Any]:
        """``{name: current value}`` of every registered setting."""
        return {name: s.getter() for name, s in sorted(self._registry().items())}

    def set_setting(self, name: str, value: Any) -> None:
        """Check ``value`` against the setting's type and values, then apply it.

        Raises
        ------
        ConfigError
            Unknown name, read-only setting, or a value of the wrong type or outside the
            allowed values; the device is not touched.
        """
        setting = self._setting(name)
        if setting.setter is None:
            raise ConfigError(f"setting {name!r} of {type(self).__name__} is read-only")
        setting.setter(setting.check(value))

    def update_settings(self, values: dict[str, Any]) -> None:
        """Set several settings; all are checked before the first one is applied."""
        checked = []
        for name, value in values.items():
            setting = self._setting(name)
            if setting.setter is None:
                raise ConfigError(f"setting {name!r} of {type(self).__name__} is read-only")
            checked.append((setting, setting.check(value)))
        for setting, value in checked:
            assert setting.setter is not None
            setting.setter(value)
