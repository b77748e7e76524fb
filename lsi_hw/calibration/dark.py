"""Dark level and noise of the detector, monitor black level and DMD off-state leakage
(:func:`measure_dark`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lsi_hw.calibration.common import (
    CalibrationResult,
    check_count,
    check_mask_shape,
    check_saturation,
    finite_or_none,
    format_si,
    held_patterns,
    held_readings,
    mean_level,
    measure_checked,
    progress_bar,
    read_declared,
    uniform_scenes,
    unknown_notes,
)
from lsi_hw.errors import CalibrationError
from lsi_hw.interfaces import Bench


@dataclass(frozen=True)
class DarkResult(CalibrationResult):
    """Dark level and noise of the detector, monitor black level, DMD off-state leakage.

    Attributes
    ----------
    dark_level_v, dark_level_u_v:
        Mean reading with a black scene and every mirror off (amplifier offset + dark
        current x gain + digitizer offset), volts, and its standard uncertainty (statistical
        plus the quantization-bias term).
    noise_v_rms, noise_u_v_rms:
        rms of those readings (read + dark shot noise + quantization), volts.
    black_level_v, black_level_u_v:
        Black scene, every mirror on, minus the dark level: the monitor's black light, volts.
    leakage_ratio, leakage_ratio_u:
        Off-state leakage ``(W_off - B_off) / (W_on - B_on)`` from a white (W) and the black
        (B) scene, all mirrors off / on; None when no white scene was allowed.
    drift_v, drift_u_v:
        Dark level of the second half of the readings minus the first half, volts.
    n_readings:
        Dark readings used (after discarding settling readings).
    mask_shape, gain_db, lsb_v:
        Mask shape (H, W) used, declared gain (dB) and ADC step (V) of the bench
        (``bench.gain_db``, ``bench.digitizer_lsb_v``; None when it does not know).
    notes:
        What the bench did not know and so was left out (e.g. the quantization term).
    """

    dark_level_v: float
    dark_level_u_v: float
    noise_v_rms: float
    noise_u_v_rms: float
    black_level_v: float
    black_level_u_v: float
    leakage_ratio: float | None
    leakage_ratio_u: float | None
    drift_v: float
    drift_u_v: float
    n_readings: int
    mask_shape: tuple[int, int]
    gain_db: float | None
    lsb_v: float | None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """Dark level, noise, leakage and drift on one line."""
        text = (f"dark level {format_si(self.dark_level_v, 'V')} +- "
                f"{format_si(self.dark_level_u_v, 'V', 2)}, noise "
                f"{format_si(self.noise_v_rms, 'V', 3)} rms, black "
                f"{format_si(self.black_level_v, 'V')}")
        if self.leakage_ratio is not None:
            text += f", leakage {self.leakage_ratio:.3g} +- {self.leakage_ratio_u or 0:.2g}"
        return text + f", drift {format_si(self.drift_v, 'V', 2)} ({self.n_readings} readings)"


def measure_dark(
    bench: Bench,
    *,
    size: int | tuple[int, int] = 32,
    repeats: int = 256,
    discard: int = 4,
    allow_white: bool = True,
    white_level: int = 255,
    tolerance_v: float = 1e-3,
    max_drift_sigma: float = 6.0,
    progress: bool = False,
) -> DarkResult:
    """Dark level (V), dark noise (V rms), monitor black light and DMD off-state leakage.

    A black scene (and, if ``allow_white``, a white one) is measured with the all-off and
    the all-on mask, each held for ``discard + repeats`` patterns, twice in the order
    off, on, off, on.  The first ``discard`` readings of every hold are dropped (settling).

    Parameters
    ----------
    bench:
        Any bench.
    size:
        Mask shape (H, W) or side, pixels; scenes have the same shape.
    repeats:
        Readings kept per hold (two holds per mask and scene).
    discard:
        Readings dropped at the start of each hold.
    allow_white:
        Also show a full-screen ``white_level`` scene to measure the off-state leakage.
    white_level:
        Drive level 0..255 of the white scene.
    tolerance_v:
        Largest acceptable uncertainty of the dark level, volts.
    max_drift_sigma:
        Largest acceptable |drift| between the two dark holds, in units of its uncertainty.
    progress:
        Show a progress bar.

    Returns
    -------
    DarkResult

    Raises
    ------
    CalibrationError
        Dark level uncertainty above ``tolerance_v``, drift above ``max_drift_sigma``,
        white readings at the clipping level, or no light reaching the detector from the
        white scene.
    """
    shape = check_mask_shape(size)
    repeats = check_count("repeats", repeats, 2)
    discard = check_count("discard", discard, 0)
    masks = np.stack([np.zeros(shape), np.ones(shape), np.zeros(shape), np.ones(shape)])
    patterns = held_patterns(masks, repeats, discard, "calibration-dark")
    levels = [0, int(white_level)] if allow_white else [0]
    scenes = uniform_scenes(levels, shape)
    declared = read_declared(bench)
    with progress_bar(progress, 1, "dark") as step:
        meas = measure_checked(bench, scenes, patterns)
        step("measured")
    lsb = declared.lsb_v
    r = held_readings(meas.values, 4, repeats, discard)  # (B, 4 holds, repeats)
    dark = r[0, [0, 2]]
    dark_v, dark_u, noise = mean_level(dark, lsb)
    noise_u = noise / math.sqrt(2.0 * (dark.size - 1))
    on_v, on_u, _ = mean_level(r[0, [1, 3]], lsb)
    first, first_u, _ = mean_level(r[0, 0], lsb)
    second, second_u, _ = mean_level(r[0, 2], lsb)
    drift, drift_u = second - first, math.hypot(first_u, second_u)
    leak = leak_u = None
    if allow_white:
        check_saturation(r[1], declared.clip_v, "measure_dark (white scene)")
        w_off, w_off_u, _ = mean_level(r[1, [0, 2]], lsb)
        w_on, w_on_u, _ = mean_level(r[1, [1, 3]], lsb)
        num, num_u = w_off - dark_v, math.hypot(w_off_u, dark_u)
        den, den_u = w_on - on_v, math.hypot(w_on_u, on_u)
        if not den > 10 * den_u:
            raise CalibrationError(
                f"measure_dark: the white scene gives no clear signal (all-on minus black "
                f"{den:.3g} +- {den_u:.2g} V); check the light path, the monitor and the gain"
            )
        leak = num / den
        leak_u = math.hypot(num_u / den, leak * den_u / den)
    if dark_u > tolerance_v:
        raise CalibrationError(
            f"measure_dark: dark level uncertainty {dark_u:.3g} V exceeds the tolerance "
            f"{tolerance_v:g} V; increase repeats or check for noise pick-up"
        )
    if abs(drift) > max_drift_sigma * drift_u + 1e-15:
        raise CalibrationError(
            f"measure_dark: dark level drifted by {drift:.3g} V between the two holds "
            f"(uncertainty {drift_u:.2g} V, limit {max_drift_sigma:g} sigma); let the "
            "amplifier warm up and shield it from stray light, then run again"
        )
    return DarkResult(
        dark_level_v=dark_v,
        dark_level_u_v=dark_u,
        noise_v_rms=noise,
        noise_u_v_rms=noise_u,
        black_level_v=on_v - dark_v,
        black_level_u_v=math.hypot(on_u, dark_u),
        leakage_ratio=finite_or_none(leak),
        leakage_ratio_u=finite_or_none(leak_u),
        drift_v=drift,
        drift_u_v=drift_u,
        n_readings=int(dark.size),
        mask_shape=shape,
        gain_db=declared.gain_db,
        lsb_v=lsb,
        notes=unknown_notes(declared, lsb=True, clip=allow_white),
    )
