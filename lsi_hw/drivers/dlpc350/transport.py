"""The link to a DLPC350: the :class:`Transport` protocol and the pyusb HID transport.

:class:`Transport` is what :class:`~lsi_hw.drivers.dlpc350.dlp4500.DLP4500` talks to:
64-byte reports in, 64-byte reports out, every read bounded by a timeout.

* :class:`UsbHidTransport`: the real LightCrafter 4500 over pyusb (VID 0x0451,
  PID 0x6401, interrupt endpoints OUT 0x01 / IN 0x81).  pyusb is imported lazily, so
  this module imports without it.

The byte-level emulator that stands in for the device,
:class:`~lsi_hw.drivers.dlpc350.emulator.FakeDLPC350`, lives in
:mod:`lsi_hw.drivers.dlpc350.emulator`.

Errors are mapped onto :mod:`lsi_hw.errors` with the fix in the message: a missing
pyusb or libusb backend, a device that is not connected, permissions (udev rule), a
device held by another program, timeouts (:class:`~lsi_hw.errors.DeviceTimeout`) and
an unplugged device (:class:`~lsi_hw.errors.TransportError`).
"""

from __future__ import annotations

import errno
import importlib
from typing import Any, Protocol, runtime_checkable

from lsi_hw.drivers.dlpc350 import protocol as P
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
    TransportError,
)

__all__ = [
    "DLPC350_PID",
    "DLPC350_VID",
    "UDEV_RULE",
    "Transport",
    "UsbHidTransport",
]

#: USB vendor id of the LightCrafter 4500 (Texas Instruments).
DLPC350_VID: int = 0x0451
#: USB product id of the DLPC350 HID interface.
DLPC350_PID: int = 0x6401
#: udev rule giving users access to the device (Linux).
UDEV_RULE: str = 'SUBSYSTEM=="usb", ATTRS{idVendor}=="0451", ATTRS{idProduct}=="6401", MODE="0666"'

_UDEV_HINT = (
    "add this udev rule to /etc/udev/rules.d/99-dlpc350.rules:\n    "
    + UDEV_RULE
    + "\nthen run `sudo udevadm control --reload-rules && sudo udevadm trigger` and "
    "re-plug the USB cable"
)


@runtime_checkable
class Transport(Protocol):
    """A report-level link to a DLPC350.

    Methods
    -------
    write(report):
        Send one 64-byte report.
    read(timeout_s):
        Return one report (64 bytes, fewer if the link truncated it); raise
        :class:`~lsi_hw.errors.DeviceTimeout` if none arrives within ``timeout_s`` seconds.
    close():
        Release the link (idempotent).
    """

    def write(self, report: bytes) -> None: ...

    def read(self, timeout_s: float) -> bytes: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------
# pyusb transport
# --------------------------------------------------------------------------------------

# libusb error codes (pyusb's ``backend_error_code``) for platforms without errno
_LIBUSB_ACCESS = -3
_LIBUSB_NO_DEVICE = -4
_LIBUSB_BUSY = -6
_LIBUSB_TIMEOUT = -7


def _usb_error_kind(exc: BaseException, core: Any) -> str:
    """'timeout', 'access', 'busy', 'nodev' or 'other' for a pyusb exception."""
    timeout_cls = getattr(core, "USBTimeoutError", None)
    if timeout_cls is not None and isinstance(exc, timeout_cls):
        return "timeout"
    code = getattr(exc, "errno", None)
    backend = getattr(exc, "backend_error_code", None)
    if code == errno.ETIMEDOUT or backend == _LIBUSB_TIMEOUT:
        return "timeout"
    if code in (errno.EACCES, errno.EPERM) or backend == _LIBUSB_ACCESS:
        return "access"
    if code == errno.EBUSY or backend == _LIBUSB_BUSY:
        return "busy"
    if code == errno.ENODEV or backend == _LIBUSB_NO_DEVICE:
        return "nodev"
    return "other"


class UsbHidTransport:
    """The LightCrafter 4500's HID interface through pyusb (libusb).

    Opens on construction: finds VID 0x0451 / PID 0x6401, detaches the kernel HID
    driver if it is bound (re-attached on :meth:`close`), claims the interface and
    talks on the interrupt endpoints OUT 0x01 / IN 0x81 with 64-byte reports (no report
    id byte).  Usable as a context manager.

    Parameters
    ----------
    vid, pid:
        USB ids (defaults: the LightCrafter 4500).
    interface:
        HID interface number.
    write_timeout_s:
        Timeout of each report write, seconds.
    backend:
        Optional pyusb backend object (``usb.backend.libusb1.get_backend(...)``).

    Raises
    ------
    TransportError
        pyusb not installed (``pip install lsi-toolkit[usb]``), no libusb backend
        (install libusb-1.0), no permission (udev rule in the message), device busy
        (another program or kernel driver holds it).
    DeviceError
        No such device connected.
    """

    OUT_ENDPOINT: int = 0x01
    IN_ENDPOINT: int = 0x81

    def __init__(
        self,
        *,
        vid: int = DLPC350_VID,
        pid: int = DLPC350_PID,
        interface: int = 0,
        write_timeout_s: float = 1.0,
        backend: Any = None,
    ) -> None:
        if not write_timeout_s > 0:
            raise ConfigError(f"write_timeout_s={write_timeout_s} must be > 0")
        self._vid, self._pid, self._interface = int(vid), int(pid), int(interface)
        self._write_timeout_ms = max(1, round(write_timeout_s * 1000))
        self._dev: Any = None
        self._detached = False
        self._claimed = False
        try:
            self._core = importlib.import_module("usb.core")
            self._util = importlib.import_module("usb.util")
        except ImportError:
            raise TransportError(
                "pyusb is not installed; it is needed to talk to the DLP LightCrafter 4500: "
                "pip install lsi-toolkit[usb]"
            ) from None
        self._open(backend)

    # -- opening -------------------------------------------------------------------------

    def _where(self) -> str:
        return f"USB device {self._vid:04x}:{self._pid:04x}"

    def _map(self, exc: BaseException, doing: str) -> DeviceError:
        """Our exception for a pyusb exception raised while ``doing`` something."""
        kind = _usb_error_kind(exc, self._core)
        where = self._where()
        if kind == "timeout":
            return DeviceTimeout(f"{where}: timed out while {doing} ({exc})")
        if kind == "access":
            return TransportError(
                f"{where}: permission denied while {doing} ({exc}); on Linux {_UDEV_HINT}"
            )
        if kind == "busy":
            return TransportError(
                f"{where}: busy while {doing} ({exc}): another program (TI's LightCrafter "
                "GUI, a second lsi-hw session) or a kernel driver holds it; close it and retry"
            )
        if kind == "nodev":
            return TransportError(
                f"{where}: the device disappeared while {doing} ({exc}): it was unplugged or "
                "lost power; reconnect it and open it again"
            )
        return TransportError(f"{where}: USB error while {doing}: {exc}")

    def _open(self, backend: Any) -> None:
        core, util = self._core, self._util
        no_backend = getattr(core, "NoBackendError", None)
        usb_error = getattr(core, "USBError", OSError)
        try:
            dev = core.find(idVendor=self._vid, idProduct=self._pid, backend=backend)
        except Exception as exc:
            if no_backend is not None and isinstance(exc, no_backend):
                raise TransportError(
                    "pyusb found no libusb backend: install libusb-1.0 (Debian/Ubuntu: "
                    "sudo apt install libusb-1.0-0; macOS: brew install libusb; Windows: "
                    "bind the device to WinUSB with Zadig, or pip install libusb-package)"
                ) from None
            if isinstance(exc, usb_error):
                raise self._map(exc, "searching for the device") from None
            raise
        if dev is None:
            raise DeviceError(
                f"DLP LightCrafter 4500 ({self._where()}) not found: check the USB cable and "
                "that the EVM is powered (the power LED is on); list devices with "
                "`lsi-hw info`"
            )
        self._dev = dev
        try:
            try:
                active = dev.is_kernel_driver_active(self._interface)
            except NotImplementedError:  # Windows / macOS backends
                active = False
            if active:
                dev.detach_kernel_driver(self._interface)
                self._detached = True
            try:
                configured = dev.get_active_configuration() is not None
            except usb_error:
                configured = False
            if not configured:
                dev.set_configuration()
            util.claim_interface(dev, self._interface)
            self._claimed = True
        except usb_error as exc:
            err = self._map(exc, "claiming the HID interface")
            self._release_quietly()
            raise err from None

    # -- I/O ------------------------------------------------------------------------------

    def _require_open(self) -> Any:
        if self._dev is None:
            raise TransportError(f"{self._where()} is closed; open it again")
        return self._dev

    def write(self, report: bytes) -> None:
        """Send one 64-byte report on endpoint 0x01."""
        dev = self._require_open()
        if len(report) != P.REPORT_SIZE:
            raise ProtocolError(f"a report must be {P.REPORT_SIZE} bytes; got {len(report)}")
        try:
            n = dev.write(self.OUT_ENDPOINT, bytes(report), timeout=self._write_timeout_ms)
        except getattr(self._core, "USBError", OSError) as exc:
            raise self._map(exc, "writing a report") from None
        if n != P.REPORT_SIZE:
            raise TransportError(
                f"{self._where()}: wrote {n} of {P.REPORT_SIZE} bytes of a report"
            )

    def read(self, timeout_s: float) -> bytes:
        """Read one report from endpoint 0x81 within ``timeout_s`` seconds (never blocks
        longer: pyusb's timeout 0 would mean forever, so at least 1 ms is used)."""
        dev = self._require_open()
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s={timeout_s} must be > 0")
        ms = max(1, round(timeout_s * 1000))
        try:
            data = dev.read(self.IN_ENDPOINT, P.REPORT_SIZE, timeout=ms)
        except getattr(self._core, "USBError", OSError) as exc:
            err = self._map(exc, "reading a reply")
            if isinstance(err, DeviceTimeout):
                raise DeviceTimeout(
                    f"{self._where()}: no reply within {timeout_s} s"
                ) from None
            raise err from None
        return bytes(data)

    # -- closing --------------------------------------------------------------------------

    def _release_quietly(self) -> list[BaseException]:
        """Release, re-attach and dispose; return the errors (ENODEV ones dropped)."""
        dev, self._dev = self._dev, None
        errors: list[BaseException] = []
        if dev is None:
            return errors
        usb_error = getattr(self._core, "USBError", OSError)
        steps = []
        if self._claimed:
            steps.append(lambda: self._util.release_interface(dev, self._interface))
        if self._detached:
            steps.append(lambda: dev.attach_kernel_driver(self._interface))
        steps.append(lambda: self._util.dispose_resources(dev))
        for step in steps:
            try:
                step()
            except usb_error as exc:
                if _usb_error_kind(exc, self._core) != "nodev":
                    errors.append(exc)
        self._claimed = self._detached = False
        return errors

    def close(self) -> None:
        """Release the interface and give the device back to the kernel driver."""
        errors = self._release_quietly()
        if errors:
            raise self._map(errors[0], "releasing the device")

    def __enter__(self) -> UsbHidTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
