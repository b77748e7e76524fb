"""Data-sheet facts shared by the simulator and the drivers (which never import each other).

Every value says where it comes from.  "unconfirmed" marks values taken from
third-party code or data files that still need checking against the vendor manual
(the DLPC350 programmer's guide, the PDA100A2 manual and the digitizer manuals).
"""

from __future__ import annotations

from dataclasses import dataclass

from lsi_hw.errors import ConfigError

__all__ = [
    "DLP4500_MIN_EXPOSURE_US",
    "DLP4500_PATTERN_PERIOD_US",
    "PDA100A2_GAINS",
    "GainStep",
    "pda100a2_gain",
]

#: Shortest exposure per bit depth 1..8, microseconds (TI DLPC350 programmer's guide via
#: HARDWARE.md).  A 1-bit pattern needs 235 us, so at most ~4250 binary patterns/s.
DLP4500_MIN_EXPOSURE_US: dict[int, float] = {
    1: 235.0, 2: 700.0, 3: 1570.0, 4: 1700.0, 5: 2000.0, 6: 2500.0, 7: 4500.0, 8: 8333.0,
}
#: Fastest binary pattern period of the DLP4500, microseconds.
DLP4500_PATTERN_PERIOD_US: float = 235.0


@dataclass(frozen=True)
class GainStep:
    """One gain setting of the Thorlabs PDA100A2 transimpedance amplifier.

    Attributes
    ----------
    gain_db: knob position, dB.
    hi_z_v_per_a: transimpedance into a high-impedance load, V/A.
    bandwidth_hz: -3 dB bandwidth, Hz.
    noise_v_rms: output noise over the full bandwidth, volts rms (Hi-Z load).
    confirmed: whether gain and bandwidth were confirmed against the Thorlabs spec sheet.
    noise_confirmed: whether the noise value was; False = documented placeholder.
    """

    gain_db: int
    hi_z_v_per_a: float
    bandwidth_hz: float
    noise_v_rms: float
    confirmed: bool
    noise_confirmed: bool = False

    def v_per_a(self, load: str) -> float:
        """Transimpedance for ``load`` ("hi-z" or "50ohm"; 50 ohm halves it), V/A."""
        return self.hi_z_v_per_a * (0.5 if _check_load(load) == "50ohm" else 1.0)

    def saturation_v(self, load: str) -> float:
        """Output saturation voltage: 10 V into Hi-Z, 5 V into 50 ohm."""
        return 5.0 if _check_load(load) == "50ohm" else 10.0

    def noise_for(self, load: str) -> float:
        """Output noise rms for ``load``, volts (halved into 50 ohm like the signal)."""
        return self.noise_v_rms * (0.5 if _check_load(load) == "50ohm" else 1.0)


def _check_load(load: str) -> str:
    if load not in ("hi-z", "50ohm"):
        raise ConfigError(f"amplifier load={load!r} is not one of 'hi-z', '50ohm'")
    return load


# Gains and bandwidths: HARDWARE.md table (third-party data; 50-70 dB bandwidths
# unconfirmed).  Noise: no vendor value was available here; these are placeholders of the
# order Thorlabs quotes for this family (a few hundred uV rising at high gain),
# marked noise_confirmed=False until checked against the spec sheet.
PDA100A2_GAINS: dict[int, GainStep] = {
    s.gain_db: s
    for s in (
        GainStep(0, 1.51e3, 11e6, 3.0e-4, confirmed=False),
        GainStep(10, 4.75e3, 1.4e6, 2.8e-4, confirmed=False),
        GainStep(20, 1.5e4, 800e3, 2.6e-4, confirmed=False),
        GainStep(30, 4.75e4, 260e3, 2.6e-4, confirmed=False),
        GainStep(40, 1.51e5, 90e3, 3.0e-4, confirmed=False),
        GainStep(50, 4.75e5, 33e3, 4.5e-4, confirmed=False),
        GainStep(60, 1.5e6, 11e3, 1.0e-3, confirmed=False),
        GainStep(70, 4.75e6, 3e3, 1.5e-3, confirmed=False),
    )
}


def pda100a2_gain(gain_db: float) -> GainStep:
    """The gain step for ``gain_db``; ConfigError naming the allowed steps otherwise."""
    try:
        key = int(gain_db)
    except (TypeError, ValueError, OverflowError):
        key = -1
    if key != gain_db or key not in PDA100A2_GAINS:
        allowed = ", ".join(str(g) for g in PDA100A2_GAINS)
        raise ConfigError(f"gain_db={gain_db} is not a PDA100A2 gain step; allowed: {allowed} dB")
    return PDA100A2_GAINS[key]
