"""What is connected, and why not: the survey behind ``lsi-hw info``.

Every check catches its own failure and turns it into a line that says what is missing
and how to fix it (pyusb missing, no libusb backend, permission denied, device busy,
NI-DAQmx driver missing, no display); nothing here raises.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass

from lsi_hw.errors import LSIError

__all__ = ["InfoLine", "survey"]


@dataclass(frozen=True)
class InfoLine:
    """One surveyed item: name, whether it is usable, and the detail or the fix."""

    name: str
    ok: bool
    detail: str


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _dlp4500() -> list[InfoLine]:
    version = _version("pyusb")
    if version is None:
        return [InfoLine("pyusb", False, "not installed: pip install lsi-toolkit[usb]")]
    lines = [InfoLine("pyusb", True, version)]
    try:
        from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
        from lsi_hw.drivers.dlpc350.transport import UsbHidTransport

        with UsbHidTransport() as transport:
            dmd = DLP4500(transport)
            try:
                fw = dmd.version()
            finally:
                dmd.close()
        lines.append(InfoLine("DLP LightCrafter 4500", True, f"found, firmware {fw}"))
    except LSIError as exc:
        lines.append(InfoLine("DLP LightCrafter 4500", False, str(exc)))
    return lines


def _nidaq() -> list[InfoLine]:
    version = _version("nidaqmx")
    if version is None:
        return [InfoLine("nidaqmx", False, "not installed (only for NI cards): "
                                           "pip install lsi-toolkit[daq]")]
    try:
        system = importlib.import_module("nidaqmx.system").System.local()
        names = [f"{d.name} ({d.product_type})" for d in system.devices]
        driver = system.driver_version
        detail = (f"driver {driver.major_version}.{driver.minor_version}; devices: "
                  f"{', '.join(names) or 'none connected'}")
        return [InfoLine("NI-DAQmx", bool(names), detail)]
    except Exception as exc:  # no NI driver: DaqNotFoundError and friends
        return [InfoLine("NI-DAQmx", False, f"package {version} present but NI's driver is "
                         f"not usable ({type(exc).__name__}: {exc}); install NI-DAQmx, or use "
                         "the fake-hw bench")]


def _visa() -> list[InfoLine]:
    version = _version("pyvisa")
    if version is None:
        return [InfoLine("pyvisa", False, "not installed (only for oscilloscopes): "
                                          "pip install lsi-toolkit[visa]")]
    backend = _version("pyvisa-py")
    # No discovery: pyvisa-py's list_resources() queries every session type, TCPIP
    # included, which broadcasts on the local network even for a USB-only query.
    return [InfoLine("VISA", backend is not None,
                     f"pyvisa {version}, pyvisa-py {backend or 'missing (pip install pyvisa-py)'}; "
                     "instrument discovery skipped (it would broadcast on the network): give "
                     "the scope's resource string, e.g. USB0::0x0957::...::INSTR")]


def _display() -> list[InfoLine]:
    version = _version("pygame") or _version("pygame-ce")
    if version is None:
        return [InfoLine("pygame", False, "not installed (scene monitor): "
                                          "pip install lsi-toolkit[display]")]
    import os

    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not display:
        return [InfoLine("scene monitor", False, f"pygame {version}; no DISPLAY: run on the "
                         "bench computer's desktop (or under Xvfb for tests)")]
    return [InfoLine("scene monitor", True, f"pygame {version}; display {display}")]


def survey() -> list[InfoLine]:
    """Check every device family; never raises."""
    from lsi_hw import __version__

    lines = [InfoLine("lsi-toolkit", True, __version__)]
    for check in (_dlp4500, _nidaq, _visa, _display):
        try:
            lines.extend(check())
        except Exception as exc:  # a survey must report, not crash
            lines.append(InfoLine(check.__name__.strip("_"), False, f"check failed: {exc}"))
    return lines
