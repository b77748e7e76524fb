"""A fake ``usb`` (pyusb) package for driver tests: injected into ``sys.modules`` so the
DLPC350 USB transport runs against FakeUsbDevice (optionally wired to the FakeDLPC350
emulator) with no libusb and no device."""

from __future__ import annotations

import errno
import sys
import types

from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.errors import DeviceTimeout

__all__ = ["FakeUsbDevice", "NoBackendError", "USBError", "USBTimeoutError",
           "install_fake_usb"]


class USBError(OSError):
    def __init__(self, strerror, error_code=None, errno_=None):
        OSError.__init__(self, errno_, strerror)
        self.backend_error_code = error_code


class USBTimeoutError(USBError):
    pass


class NoBackendError(ValueError):
    pass


class FakeUsbDevice:
    """Looks like a pyusb Device; optionally wired to a FakeDLPC350."""

    def __init__(self, emulator: FakeDLPC350 | None = None, kernel_active: bool = True):
        self.emulator = emulator
        self.kernel_active = kernel_active
        self.calls: list[tuple] = []
        self.write_error: BaseException | None = None
        self.read_error: BaseException | None = None

    def is_kernel_driver_active(self, i):
        return self.kernel_active

    def detach_kernel_driver(self, i):
        self.calls.append(("detach", i))
        self.kernel_active = False

    def attach_kernel_driver(self, i):
        self.calls.append(("attach", i))
        self.kernel_active = True

    def get_active_configuration(self):
        return object()

    def set_configuration(self):
        self.calls.append(("set_configuration",))

    def write(self, ep, data, timeout):
        self.calls.append(("write", ep, len(data), timeout))
        if self.write_error is not None:
            raise self.write_error
        if self.emulator is not None:
            self.emulator.write(bytes(data))
        return len(data)

    def read(self, ep, size, timeout):
        self.calls.append(("read", ep, size, timeout))
        if self.read_error is not None:
            raise self.read_error
        if self.emulator is None:
            raise USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT)
        try:
            return bytearray(self.emulator.read(timeout / 1000))
        except DeviceTimeout:
            raise USBTimeoutError("Operation timed out", -7, errno.ETIMEDOUT) from None


def install_fake_usb(monkeypatch, *, device=None, find_error=None, claim_error=None):
    core = types.ModuleType("usb.core")
    core.USBError = USBError
    core.USBTimeoutError = USBTimeoutError
    core.NoBackendError = NoBackendError

    def find(idVendor=None, idProduct=None, backend=None):  # pyusb's argument names
        assert (idVendor, idProduct) == (0x0451, 0x6401)
        if find_error is not None:
            raise find_error
        return device

    core.find = find
    util = types.ModuleType("usb.util")

    def claim_interface(dev, i):
        if claim_error is not None:
            raise claim_error
        dev.calls.append(("claim", i))

    util.claim_interface = claim_interface
    util.release_interface = lambda dev, i: dev.calls.append(("release", i))
    util.dispose_resources = lambda dev: dev.calls.append(("dispose",))
    usb = types.ModuleType("usb")
    usb.core, usb.util = core, util
    monkeypatch.setitem(sys.modules, "usb", usb)
    monkeypatch.setitem(sys.modules, "usb.core", core)
    monkeypatch.setitem(sys.modules, "usb.util", util)
