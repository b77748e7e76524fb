"""VideoPortSink: the display process on SDL's dummy driver, under Xvfb, and its failures.

The sink's child process gets ``SDL_VIDEODRIVER=dummy`` through ``env`` (the parent's
environment is untouched); under Xvfb (``apt install xvfb x11-apps``) the frame is read
back from the X server with ``xwd -root``, i.e. what a monitor on that server receives.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from xserver import top_level_imports, xvfb, xwd_root

from lsi_hw.drivers import videoport as V
from lsi_hw.drivers.dlpc350 import DLP4500, FakeDLPC350
from lsi_hw.drivers.videoport import FRAME_SIZE, VideoPortSink
from lsi_hw.errors import ConfigError, DeviceError, DeviceTimeout, TransportError
from lsi_hw.patterns import DMD_COLUMNS, DMD_ROWS, PatternSet
from lsi_hw.types import image_id

DUMMY = {"SDL_VIDEODRIVER": "dummy"}
FAST = {"settle_frames": 0, "allow_virtual": True, "env": DUMMY}

pytest.importorskip("pygame", reason="pygame not installed; pip install pygame")


def random_frame(seed: int, n: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 1140, 912, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sink() -> Iterator[VideoPortSink]:
    s = VideoPortSink(0, **FAST)
    yield s
    s.close()


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


# -- module hygiene ----------------------------------------------------------------------


def test_module_imports_pygame_lazily_only():
    top = top_level_imports(V.__file__)
    assert "pygame" not in top and "lsi_hw" in top
    assert FRAME_SIZE == (DMD_COLUMNS, DMD_ROWS)


# -- the dummy driver ---------------------------------------------------------------------


def test_two_frames_acknowledged_with_their_hashes(sink):
    assert sink.alive and sink.pid not in (None, os.getpid())
    cfg = sink.settings()
    assert cfg["video_driver"] == "dummy" and cfg["virtual"] is True
    assert cfg["resolution_px"] == [912, 1140] and cfg["kind"] == "video-port"
    a, b = random_frame(1), random_frame(2)
    assert image_id(a[0]) != image_id(b[0])
    n0 = sink.n_frames_shown
    for frames in (a, b):
        assert sink(frames) == image_id(frames[0]) == sink.last_frame_hash
        assert sink.last_shown_at <= sink.last_ready_at
    assert sink(a[0]) == image_id(a[0])  # a single (1140, 912, 3) frame is accepted too
    assert sink.n_frames_shown == n0 + 3
    cfg = sink.settings()
    assert cfg["last_frame_hash"] == image_id(a[0]) and cfg["n_frames_shown"] == n0 + 3


def test_bad_frames_rejected_before_sending(sink):
    sink(random_frame(3))
    before = (sink.last_frame_hash, sink.n_frames_shown)
    with pytest.raises(ConfigError, match=r"2 frames.*split the sequence into loads of <= 24"):
        sink(random_frame(4, n=2))
    for bad in (np.zeros((1, 1140, 912), np.uint8), np.zeros((1, 912, 1140, 3), np.uint8),
                np.zeros((1, 1140, 912, 3), np.float64), np.zeros((1, 1140, 912, 4), np.uint8)):
        with pytest.raises(ConfigError):
            sink(bad)
    assert (sink.last_frame_hash, sink.n_frames_shown) == before


def test_dlp4500_load_streams_its_frame(sink):
    patterns = PatternSet.random(24, (16, 16), seed=5)
    dlp = DLP4500(FakeDLPC350(), poll_interval_s=0.001, frame_sink=sink)
    try:
        dlp.load(patterns, exposure_us=600)
        assert sink.last_frame_hash == image_id(dlp.frames[0])
        with pytest.raises(ConfigError, match="loads of <= 24"):
            dlp.load(PatternSet.random(30, (16, 16), seed=6), exposure_us=600)
    finally:
        dlp.close()


def test_closed_sink_and_config_errors():
    with VideoPortSink(0, **FAST) as s:
        assert s(random_frame(7)) == image_id(random_frame(7)[0])
        pid = s.pid
    assert s.closed and not s.alive and pid not in _children()
    with pytest.raises(ConfigError, match="closed"):
        s(random_frame(7))
    s.close()  # idempotent
    assert s.settings()["closed"] is True
    for kwargs in ({"settle_frames": -1}, {"start_timeout_s": 0}, {"frame_timeout_s": "1"},
                   {"allow_virtual": 1}, {"env": {"DISPLAY": 1}}):
        with pytest.raises(ConfigError):
            VideoPortSink(0, **kwargs)
    with pytest.raises(ConfigError):
        VideoPortSink(-1)


def test_missing_display_index_is_config_error():
    before = _children()
    with pytest.raises(ConfigError, match=r"display_index=3 but 1 display found"):
        VideoPortSink(3, **FAST)
    assert not _children() - before  # the child is gone


def test_parent_monitor_scene_and_sink_coexist(monkeypatch):
    """The point of the child process: the scene monitor keeps this process's window."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    from lsi_hw.drivers.display import MonitorScene

    with MonitorScene(fullscreen=False, size=(16, 8), settle_frames=0) as scene:
        with VideoPortSink(0, **FAST) as s:
            scene.show(np.full((4, 8), 9, np.uint8))
            frame = random_frame(12)
            assert s(frame) == image_id(frame[0])
            assert scene.last_frame_matches is True


def test_unclosed_sink_is_cleaned_up_when_collected():
    s = VideoPortSink(0, **FAST)
    pid = s.pid
    assert pid in _children()
    del s
    gc.collect()
    assert pid not in _children()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_child_reported_as_transport_error():
    s = VideoPortSink(0, **FAST)
    try:
        s(random_frame(8))
        os.kill(s.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="died"):
            s(random_frame(9))
        assert time.monotonic() - t0 < 3.0
        assert s.last_frame_hash is None
        with pytest.raises(TransportError, match="died"):
            s(random_frame(9))
    finally:
        s.close()
    assert not s.alive


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP/SIGCONT")
def test_stalled_child_times_out_and_late_ack_is_dropped():
    s = VideoPortSink(0, frame_timeout_s=0.3, **FAST)
    try:
        os.kill(s.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout, match="showing a frame"):
            s(random_frame(10))
        assert time.monotonic() - t0 < 2.0 and s.last_frame_hash is None
        os.kill(s.pid, signal.SIGCONT)  # the child now answers the old request late
        s.frame_timeout_s = 10.0  # a loaded machine may take > 0.3 s to wake the child
        frame = random_frame(11)
        assert s(frame) == image_id(frame[0]) == s.last_frame_hash
    finally:
        os.kill(s.pid, signal.SIGCONT)
        s.close()


def test_start_timeout_terminates_child():
    before = _children()
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match="starting the display process"):
        VideoPortSink(0, start_timeout_s=0.001, **FAST)
    assert time.monotonic() - t0 < 5.0
    assert not _children() - before


def test_child_without_pygame_reports_transport_error(tmp_path, monkeypatch):
    fake = tmp_path / "pygame"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no pygame in this interpreter')\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the child gets sys.path
    with pytest.raises(TransportError, match="pip install pygame"):
        VideoPortSink(0, **FAST)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="headless check on Linux")
def test_child_without_display_reports_device_error():
    env = {"SDL_VIDEODRIVER": "x11", "DISPLAY": None, "WAYLAND_DISPLAY": None,
           "XDG_RUNTIME_DIR": "/nonexistent"}
    with pytest.raises(DeviceError, match="DISPLAY"):
        VideoPortSink(0, settle_frames=0, env=env)
    env.pop("SDL_VIDEODRIVER")  # SDL falls back to 'offscreen': refused without allow_virtual
    with pytest.raises(DeviceError, match="offscreen"):
        VideoPortSink(0, settle_frames=0, env=env)


# -- Xvfb: the frame as the X server has it ------------------------------------------------


def _wait_for_root(display: str, expected: np.ndarray) -> np.ndarray:
    got = xwd_root(display)
    for _ in range(20):  # the X server may composite a moment after the swap
        if np.array_equal(got, expected):
            break
        time.sleep(0.05)
        got = xwd_root(display)
    return got


def test_xvfb_frames_on_x_server_equal_frames_sent():
    with xvfb("912x1140x24") as display:
        env = {"DISPLAY": display, "SDL_VIDEODRIVER": "x11"}
        with VideoPortSink(0, settle_frames=1, env=env) as s:
            cfg = s.settings()
            assert cfg["video_driver"] == "x11" and cfg["fullscreen"] is True
            assert cfg["virtual"] is False and cfg["resolution_px"] == [912, 1140]
            for seed in (20, 21):
                frame = random_frame(seed)
                assert s(frame) == image_id(frame[0])
                np.testing.assert_array_equal(_wait_for_root(display, frame[0]), frame[0])


def test_xvfb_wrong_size_is_config_error():
    with xvfb("800x600x24") as display:
        with pytest.raises(ConfigError, match=r"800 x 600 pixels.*912 x 1140"):
            VideoPortSink(0, env={"DISPLAY": display, "SDL_VIDEODRIVER": "x11"})
