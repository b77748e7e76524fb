"""One exception tree for the whole toolkit.

Every error the toolkit raises on purpose derives from :class:`LSIError`, so a caller
can catch everything of ours in one ``except`` while letting programming errors
(``TypeError`` from a wrong call, say) through.  Messages follow one rule: say what
was wrong, the allowed range, and what to do about it.

::

    LSIError
    +-- ConfigError        a setting is out of range or inconsistent
    +-- PatternError       a mask set is not binary, has the wrong shape, ...
    +-- DeviceError        anything a device (real or emulated) reports
    |   +-- TransportError     the link failed (USB error, cable, permissions)
    |   +-- ProtocolError      the device answered, but not as the protocol says (NACK, ...)
    |   +-- DeviceTimeout      no answer in time
    +-- CalibrationError   a calibration routine could not reach its tolerance
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CalibrationError",
    "ConfigError",
    "DeviceError",
    "DeviceTimeout",
    "LSIError",
    "PatternError",
    "ProtocolError",
    "TransportError",
    "is_int",
    "require_int",
    "require_known_keys",
]


class LSIError(Exception):
    """Base class of every error raised on purpose by lsi_hw and lsi_ml."""


class ConfigError(LSIError, ValueError):
    """A configuration value is out of its allowed range or inconsistent with another."""


class PatternError(LSIError, ValueError):
    """A pattern (mask) set is invalid: not binary, wrong shape, empty, non-finite."""


class DeviceError(LSIError):
    """A device, real or emulated, failed or refused a request."""


class TransportError(DeviceError):
    """The link to a device failed (USB/VISA/DAQ I/O error, permission, busy)."""


class ProtocolError(DeviceError):
    """A device answered in a way the protocol does not allow (NACK, bad length, ...)."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer within the allowed time."""


class CalibrationError(LSIError):
    """A calibration routine failed or did not reach its stated tolerance."""


def require_known_keys(keys: Iterable[str], known: Iterable[str], what: str) -> None:
    """Raise ConfigError naming the unknown ``keys`` of ``what`` and the known ones."""
    allowed = sorted(set(known))
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known: {allowed}")


def require_in_range(name: str, value: float, lo: float, hi: float, unit: str = "") -> float:
    """Return ``value`` as float if it is finite and in [lo, hi]; else raise ConfigError.

    The message names the setting, the value, the allowed range and the unit.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}={value!r} is not a number; allowed range [{lo}, {hi}] {unit}".rstrip()
        ) from None
    if not (number == number and lo <= number <= hi):  # NaN fails the first test
        suffix = f" {unit}" if unit else ""
        raise ConfigError(f"{name}={value} outside the allowed range [{lo}, {hi}]{suffix}")
    return number


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer; never for a bool (``True``, ``numpy.True_``).

    numpy is not imported here (``import lsi_hw`` stays light): a numpy integer can only
    exist once some module has imported numpy, so it is looked up in ``sys.modules``.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.integer)


def require_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Return ``value`` as int if it is an integer (:func:`is_int`) in [lo, hi] (``hi``
    None: no upper bound); else raise ConfigError.

    The message names the setting, the value and the allowed range:
    ``"{name}={value!r} must be an integer >= {lo}"`` or ``"... an integer {lo}..{hi}"``.
    """
    if not is_int(value) or value < lo or (hi is not None and value > hi):
        allowed = f">= {lo}" if hi is None else f"{lo}..{hi}"
        raise ConfigError(f"{name}={value!r} must be an integer {allowed}")
    return int(value)
