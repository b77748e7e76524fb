"""TI DLPC350 (DLP LightCrafter 4500) driver.

Modules
-------
protocol
    Pure USB-HID codec: :func:`~lsi_hw.drivers.dlpc350.protocol.encode`,
    :func:`~lsi_hw.drivers.dlpc350.protocol.decode_reply`, the command table and typed
    message builders, pattern LUT entries, status decoders.
transport
    :class:`Transport` protocol and :class:`UsbHidTransport` (pyusb, imported lazily).
emulator
    :class:`FakeDLPC350` (byte-level emulator with fault injection).
dlp4500
    :class:`DLP4500`, the :class:`~lsi_hw.interfaces.Modulator` implementation.
"""

from __future__ import annotations

from lsi_hw.drivers.dlpc350 import protocol
from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500, LoadPlan
from lsi_hw.drivers.dlpc350.emulator import FakeDLPC350
from lsi_hw.drivers.dlpc350.transport import Transport, UsbHidTransport

__all__ = ["DLP4500", "FakeDLPC350", "LoadPlan", "Transport", "UsbHidTransport", "protocol"]
