"""lsi_hw: the optical bench of a Latent Space Imaging single-pixel camera.

Abstract device roles (:mod:`lsi_hw.interfaces`), validated binary pattern sets
(:mod:`lsi_hw.patterns`), a physically modelled simulator (:mod:`lsi_hw.sim`) and, later,
real drivers.  Importing this package needs only numpy/scipy; torch, numba and vendor
packages are imported by the modules that use them.
"""

from __future__ import annotations

from lsi_hw.errors import (
    CalibrationError,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    LSIError,
    PatternError,
    ProtocolError,
    TransportError,
)

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "ConfigError",
    "DeviceError",
    "DeviceTimeout",
    "LSIError",
    "PatternError",
    "ProtocolError",
    "TransportError",
    "__version__",
]
