"""Pick a bench by name: the one place every CLI command and example goes through.

``sim`` is the physical simulator, ``fake-hw`` the real drivers on emulated devices
(the digital twin), ``hw`` the real DLP4500 + PDA100A2 + digitizer + monitor.
"""

from __future__ import annotations

from typing import Any

from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench

__all__ = ["BENCH_NAMES", "make_bench", "open_hardware_bench"]

BENCH_NAMES = ("sim", "fake-hw", "hw")


def make_bench(name: str, **options: Any) -> Bench:
    """Return the bench called ``name`` (``sim``, ``fake-hw`` or ``hw``).

    ``options`` go to the bench's constructor: for ``sim`` and ``fake-hw`` ``noise``,
    ``seed``, ``config`` (a :class:`~lsi_hw.sim.forward.SimConfig`), ``calibration_id``;
    for ``hw`` see :func:`open_hardware_bench`.
    """
    if name == "sim":
        from lsi_hw.sim import SimBench

        return SimBench(**options)
    if name == "fake-hw":
        from lsi_hw.benches.twin import FakeHardwareBench

        return FakeHardwareBench(**options)
    if name == "hw":
        return open_hardware_bench(**options)
    raise ConfigError(f"bench {name!r} is unknown; allowed: {', '.join(BENCH_NAMES)}")


def open_hardware_bench(
    *,
    gain_db: int | None = None,
    load: str = "hi-z",
    range_v: float | None = None,
    digitizer: str = "nidaq",
    daq_device: str = "Dev1",
    daq_channel: str = "ai0",
    trigger_line: str = "PFI0",
    visa_resource: str | None = None,
    digitizer_bits: int | None = None,
    display_index: int = 0,
    dlp_display_index: int = 1,
    frame_sink: Any = None,
    exposure_us: float = 235.0,
    period_us: float = 235.0,
    calibration_id: str | None = None,
    config: Any = None,
    noise: Any = None,
    seed: Any = None,
) -> Bench:
    """Open the real bench: DLP4500 on USB, PDA100A2 on a digitizer, the scene monitor.

    Parameters
    ----------
    gain_db, load:
        The PDA100A2 knob position and output load as set on the device (user-declared);
        None = the simulator's default operating point (``AmplifierConfig().gain_db``).
    range_v:
        Digitizer input range, volts (it reads -range_v..+range_v); None = the simulator's
        default (``DigitizerConfig().range_v``), the range set for typical scenes (see
        :mod:`lsi_hw.operating_point`; ``lsi-hw check`` reports the fraction used).
    digitizer:
        ``nidaq`` (NI-DAQmx card ``daq_device``/``daq_channel`` triggered on
        ``trigger_line``) or ``visa`` (oscilloscope at ``visa_resource``).
    digitizer_bits:
        ADC resolution of that digitizer, bits (default: the driver's, 16 for NI cards,
        8 for scopes); it sets the quantization step calibration accounts for.
    display_index:
        The monitor that shows the scenes.
    dlp_display_index:
        The display output wired to the LightCrafter's HDMI video input (912 x 1140).
    frame_sink:
        A callable that shows the DMD's 24-bit frames on the DLP's video input; default a
        :class:`~lsi_hw.drivers.videoport.VideoPortSink` on ``dlp_display_index``, which
        shows one static frame per load (so loads hold at most 24 patterns).
    config, noise, seed:
        Accepted for symmetry with the simulated benches and ignored (the physics is real);
        ``config`` may still give ``gain_db``/``load`` through its amplifier and
        ``range_v`` through its digitizer.
    """
    from lsi_hw.benches.hardware import HardwareBench
    from lsi_hw.drivers.digitizers import NiDaqDigitizer, VisaScopeDigitizer
    from lsi_hw.drivers.display import MonitorScene
    from lsi_hw.drivers.dlpc350.dlp4500 import DLP4500
    from lsi_hw.drivers.pda100a2 import PDA100A2
    from lsi_hw.locking import DeviceLock
    from lsi_hw.sim.detector import AmplifierConfig, DigitizerConfig

    if config is not None:
        gain_db, load = config.amplifier.gain_db, config.amplifier.load
        range_v = config.digitizer.range_v
    if gain_db is None:
        gain_db = AmplifierConfig().gain_db
    if range_v is None:
        range_v = DigitizerConfig().range_v
    if digitizer == "nidaq":
        adc: Any = NiDaqDigitizer(device=daq_device, channel=daq_channel,
                                  trigger_line=trigger_line)
    elif digitizer == "visa":
        if not visa_resource:
            raise ConfigError("digitizer='visa' needs visa_resource, e.g. 'USB0::...::INSTR'")
        adc = VisaScopeDigitizer(visa_resource)
    else:
        raise ConfigError(f"digitizer={digitizer!r} is not one of 'nidaq', 'visa'")
    if digitizer_bits is not None:
        adc.resolution_bits = digitizer_bits  # ConfigError unless 1..32
    # validates before any device I/O
    detector = PDA100A2(adc, gain_db=gain_db, load=load, range_v=range_v)
    lock = DeviceLock("dlp4500").acquire()  # before any device is opened
    opened: list[Any] = [detector]
    try:
        per_load, owned = None, ()
        if frame_sink is None:
            from lsi_hw.drivers.videoport import MAX_PATTERNS_PER_FRAME, VideoPortSink

            frame_sink = VideoPortSink(dlp_display_index)
            opened.append(frame_sink)
            per_load, owned = MAX_PATTERNS_PER_FRAME, (frame_sink,)
        dmd = DLP4500.open(source="video", frame_sink=frame_sink)
        opened.append(dmd)
        scene = MonitorScene(display_index)
        return HardwareBench(dmd, detector, scene, exposure_us=exposure_us,
                             period_us=period_us, calibration_id=calibration_id, lock=lock,
                             patterns_per_load=per_load, resources=owned)
    except BaseException:
        for device in opened:
            try:
                device.close()
            except Exception:  # the original error is the one to report
                pass
        lock.release()
        raise
