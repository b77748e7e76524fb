"""Real device drivers of the optical bench.

Each driver implements one role of :mod:`lsi_hw.interfaces` on top of a vendor link
(USB, VISA, NI-DAQmx).  Vendor packages are imported lazily inside the functions that
need them, so importing a driver module works without the package or the device.
Drivers never import :mod:`lsi_hw.sim` (and the simulator never imports drivers).

Subpackages
-----------
dlpc350
    TI DLP LightCrafter 4500 (DLP4500 DMD, DLPC350 controller) over USB HID: a pure
    protocol codec, a pyusb transport plus a byte-level emulator, and the
    :class:`~lsi_hw.interfaces.Modulator` implementation.
"""
