"""Scene drivers: MonitorScene on SDL's dummy driver and under Xvfb, CallbackScene.

The dummy driver draws into memory: the frame is read back from the display surface.
Under Xvfb (if the binary is installed: Debian ``apt install xvfb x11-apps``) the frame is
read back from the X server itself with ``xwd -root``, so the test sees what an X client
(a monitor) would get.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np
import pytest
from xserver import top_level_imports, xvfb, xwd_root

from lsi_hw.drivers import display as D
from lsi_hw.drivers.display import (
    CallbackScene,
    MonitorScene,
    compose_frame,
    image_id,
    placement,
    to_uint8_rgb,
)
from lsi_hw.errors import ConfigError, DeviceError, TransportError

FAST = {"settle_frames": 0, "refresh_rate_hz": 1000.0}  # tests need no LCD settling


def _pygame_or_skip():
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as exc:
        pytest.skip(f"pygame not importable ({exc}); pip install pygame")
    return pygame


@pytest.fixture
def dummy(monkeypatch):
    """SDL's in-memory video driver (set before pygame's display is initialised)."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame = _pygame_or_skip()
    pygame.display.quit()
    yield pygame
    pygame.display.quit()


@pytest.fixture
def scene(dummy):
    s = MonitorScene(fullscreen=False, size=(64, 32), **FAST)
    yield s
    s.close()


def rgb_ramp(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(h * 1000 + w)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# -- pure helpers -------------------------------------------------------------------------


def test_module_imports_pygame_lazily_only():
    top = top_level_imports(D.__file__)
    assert "pygame" not in top and "lsi_hw" in top


def test_image_id_is_content_hash():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert image_id(a) == image_id(a.copy()) == image_id(np.asfortranarray(a))
    assert image_id(a) != image_id(a.reshape(4, 3))
    assert image_id(a) != image_id(a.astype(np.float64))
    b = a.copy()
    b[0, 0] = 1
    assert image_id(a) != image_id(b)
    assert len(image_id(a)) == 12


def test_placement_and_nearest_scaling():
    assert placement((8, 8), (64, 32), "contain") == (16, 0, 32, 32)  # pillar-boxed
    assert placement((8, 16), (64, 64), "contain") == (0, 16, 64, 32)  # letter-boxed
    assert placement((8, 8), (64, 32), "stretch") == (0, 0, 64, 32)
    assert placement((8, 8), (64, 32), "native") == (28, 12, 8, 8)
    img = rgb_ramp(3, 5)
    k = 4
    frame = compose_frame(img, (5 * k, 3 * k))
    assert np.array_equal(frame, np.repeat(np.repeat(img, k, 0), k, 1))
    f = np.array([[0.0, 1.0], [0.5, 0.25]])
    assert to_uint8_rgb(f)[..., 0].tolist() == [[0, 255], [128, 64]]
    with pytest.raises(ConfigError, match="does not fit"):
        compose_frame(rgb_ramp(40, 40), (32, 32), fit="native")


# -- MonitorScene on the dummy driver ---------------------------------------------------


def test_grey_rgb_float_frames_read_back_exactly(scene):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgb = rgb_ramp(8, 8)
    flt = np.linspace(0, 1, 64).reshape(8, 8)
    hashes = set()
    for img in (grey, rgb, flt):
        ident = scene.show(img)
        assert ident == image_id(img) == scene.last_id
        frame = scene.read_frame()
        expected = np.zeros((32, 64, 3), np.uint8)  # 8x8 -> 32x32 (x4), pillar-boxed
        expected[:, 16:48] = np.repeat(np.repeat(to_uint8_rgb(img), 4, 0), 4, 1)
        np.testing.assert_array_equal(frame, expected)
        assert scene.last_frame_hash == image_id(expected)
        assert scene.last_frame_matches is True
        hashes.add(scene.last_frame_hash)
    assert len(hashes) == 3  # the on-screen hash follows the image
    assert np.array_equal(scene.read_frame()[0, 16:48:4, 0], np.rint(flt[0] * 255))
    s = scene.settings()
    assert s["last_id"] == image_id(flt) and s["n_shown"] == 3
    assert s["video_driver"] == "dummy" and s["resolution_px"] == [64, 32]


def test_letterbox_background_and_fits(dummy):
    img = rgb_ramp(4, 8)
    with MonitorScene(fullscreen=False, size=(32, 40), background=(7, 8, 9), **FAST) as s:
        s.show(img)  # 8x4 -> 32x16, letter-boxed: bars of 12 rows top and bottom
        frame = s.read_frame()
        assert np.all(frame[:12] == (7, 8, 9)) and np.all(frame[28:] == (7, 8, 9))
        np.testing.assert_array_equal(frame[12:28], np.repeat(np.repeat(img, 4, 0), 4, 1))
    with MonitorScene(fullscreen=False, size=(32, 40), fit="stretch", **FAST) as s:
        s.show(img)
        np.testing.assert_array_equal(s.read_frame(),
                                      np.repeat(np.repeat(img, 10, 0), 4, 1))
    with MonitorScene(fullscreen=False, size=(32, 40), fit="native", **FAST) as s:
        s.show(img)
        frame = s.read_frame()
        np.testing.assert_array_equal(frame[18:22, 12:20], img)
        assert frame.sum() == img.astype(np.int64).sum()
        with pytest.raises(ConfigError, match="does not fit"):
            s.show(rgb_ramp(48, 8))
    with MonitorScene(fullscreen=False, size=(30, 20), interpolation="smooth", **FAST) as s:
        s.show(np.full((4, 4), 200, np.uint8))  # smooth scaling of a flat image stays flat
        frame = s.read_frame()
        assert np.all(frame[:, 5:25] == 200) and np.all(frame[:, :5] == 0)
        assert s.last_frame_matches is None


def test_bad_images_rejected_before_drawing(scene, monkeypatch, dummy):
    good = rgb_ramp(8, 8)
    scene.show(good)
    before = scene.read_frame()
    state = (scene.last_id, scene.last_frame_hash, scene.last_shown_at, scene.n_shown)
    flips = []
    monkeypatch.setattr(dummy.display, "flip", lambda: flips.append(1))
    bad = [
        np.full((8, 8), np.nan),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((2, 8, 8), np.uint8),  # a batch, not one image
        np.full((8, 8), 1.5),
        np.full((8, 8), -1),
        np.full((8, 8), 256, np.int32),
        np.zeros((0, 8), np.uint8),
        np.zeros((8, 8), bool),
    ]
    for img in bad:
        with pytest.raises(ConfigError):
            scene.show(img)
    assert not flips
    np.testing.assert_array_equal(scene.read_frame(), before)
    assert (scene.last_id, scene.last_frame_hash, scene.last_shown_at, scene.n_shown) == state


def test_settle_frames_wait_and_timestamps(dummy):
    with MonitorScene(fullscreen=False, size=(16, 16), settle_frames=3,
                      refresh_rate_hz=100.0) as s:
        assert s.settle_s == pytest.approx(0.03)
        t0 = time.monotonic()
        s.show(np.zeros((4, 4), np.uint8))
        t1 = time.monotonic()
        # no vsync in a window: one extra period is waited
        assert t1 - t0 >= 0.04 - 1e-3
        assert t0 <= s.last_shown_at <= s.last_ready_at <= t1
        assert s.last_ready_at - s.last_shown_at >= 0.04 - 1e-3
        assert s.settings()["refresh_rate_source"] == "user"


def test_fullscreen_uses_desktop_size_and_closes(dummy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no fast renderer" on the dummy driver
        s = MonitorScene(**FAST)
    try:
        assert list(s.screen_size) == list(dummy.display.get_desktop_sizes()[0])
        w, h = s.screen_size
        s.show(np.full((h // 8, w // 8), 255, np.uint8))
        assert s.last_frame_matches is True
        cfg = s.settings()
        assert cfg["fullscreen"] and cfg["fit"] == "contain" and cfg["settle_frames"] == 0
        for key in ("display_index", "refresh_rate_hz", "video_driver", "vsync_active",
                    "last_id", "last_frame_hash", "sdl_version"):
            assert key in cfg
        with pytest.raises(ConfigError, match="another MonitorScene"):
            MonitorScene(fullscreen=False, size=(8, 8))
    finally:
        s.close()
    assert not dummy.display.get_init()
    with pytest.raises(ConfigError, match="closed"):
        s.show(np.zeros((2, 2), np.uint8))
    s.close()  # idempotent


def test_sdl_display_mode_binding(dummy):
    """The ctypes SDL_DisplayMode layout used for the refresh rate matches pygame's view."""
    import ctypes

    dummy.display.init()
    lib = D._sdl_library(dummy)
    if lib is None:
        pytest.skip("pygame's SDL2 library not found for ctypes")
    mode = D._SDLDisplayMode()
    assert lib.SDL_GetCurrentDisplayMode(0, ctypes.byref(mode)) == 0
    assert (mode.w, mode.h) == tuple(dummy.display.get_desktop_sizes()[0])
    rate, source = D._refresh_rate_hz(dummy, 0)
    assert (rate is None and source == "unknown") or (rate > 0 and source in ("pygame", "sdl"))


def test_config_errors(dummy):
    with pytest.raises(ConfigError, match="1 display found"):
        MonitorScene(display_index=3, fullscreen=False, size=(8, 8))
    assert not dummy.display.get_init()  # nothing left open
    for kwargs in ({"fit": "cover"}, {"settle_frames": -1}, {"background": 300},
                   {"background": (1, 2)}, {"size": (0, 10)}, {"refresh_rate_hz": 0},
                   {"interpolation": "cubic"}, {"display_index": -1}):
        with pytest.raises(ConfigError):
            MonitorScene(fullscreen=False, **kwargs)


def test_missing_pygame(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # import pygame -> ImportError
    with pytest.raises(TransportError, match="pip install pygame"):
        MonitorScene()


def test_missing_display(monkeypatch):
    pygame = _pygame_or_skip()
    if not sys.platform.startswith("linux"):
        pytest.skip("headless behaviour checked on Linux only")
    pygame.display.quit()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    with pytest.raises(DeviceError, match="DISPLAY"):  # SDL: "x11 not available"
        MonitorScene()
    monkeypatch.delenv("SDL_VIDEODRIVER")
    with pytest.raises(DeviceError, match="offscreen"):  # SDL falls back to 'offscreen'
        MonitorScene()
    assert not pygame.display.get_init()


# -- MonitorScene under Xvfb, read back from the X server -------------------------------


@pytest.fixture
def xvfb_screen(monkeypatch):
    """An Xvfb server of 64 x 48 pixels on a free display number, as pygame's display."""
    pygame = _pygame_or_skip()
    with xvfb("64x48x24") as display:
        pygame.display.quit()
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
        try:
            yield display
        finally:
            pygame.display.quit()


def test_xvfb_fullscreen_frame_read_from_x_server(xvfb_screen):
    with MonitorScene(settle_frames=1) as s:
        assert s.settings()["video_driver"] == "x11"
        assert s.screen_size == (64, 48)
        img = rgb_ramp(6, 8)  # 8 x 6 -> 64 x 48 (x8)
        assert s.show(img) == image_id(img)
        expected = compose_frame(img, (64, 48))
        got = None
        for _ in range(20):  # the X server may composite a moment after the swap
            got = xwd_root(xvfb_screen)
            if np.array_equal(got, expected):
                break
            time.sleep(0.05)
        np.testing.assert_array_equal(got, expected)
        assert s.last_frame_hash == image_id(expected)
        grey = np.full((6, 6), 77, np.uint8)  # pillar-boxed 48 x 48
        s.show(grey)
        expected = compose_frame(grey, (64, 48))
        for _ in range(20):
            got = xwd_root(xvfb_screen)
            if np.array_equal(got, expected):
                break
            time.sleep(0.05)
        np.testing.assert_array_equal(got, expected)


# -- CallbackScene ------------------------------------------------------------------------


def test_callback_scene_records_ids_and_settles():
    seen = []
    closed = []
    s = CallbackScene(lambda im: seen.append(im.copy()), settle_s=0.02,
                      on_close=lambda: closed.append(1), name="stage")
    img = rgb_ramp(4, 5)
    t0 = time.monotonic()
    assert s.show(img) == image_id(img) == s.last_id
    t1 = time.monotonic()
    assert np.array_equal(seen[0], img)
    assert t1 - t0 >= 0.02 - 1e-3
    assert t0 <= s.last_shown_at <= s.last_ready_at <= t1
    assert s.last_ready_at - s.last_shown_at >= 0.02 - 1e-3
    f = np.full((3, 3), 0.5)
    assert s.show(f) == image_id(f)
    cfg = s.settings()
    assert cfg["n_shown"] == 2 and cfg["last_id"] == image_id(f) and cfg["name"] == "stage"
    with pytest.raises(ConfigError):
        s.show(np.full((3, 3), np.nan))
    assert len(seen) == 2
    s.close()
    s.close()
    assert closed == [1]
    with pytest.raises(ConfigError, match="closed"):
        s.show(f)


def test_callback_scene_errors():
    def broken(image):
        raise RuntimeError("stage jammed")

    s = CallbackScene(broken)
    with pytest.raises(DeviceError, match="stage jammed") as info:
        s.show(np.zeros((2, 2), np.uint8))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert s.last_id is None
    with pytest.raises(ConfigError):
        CallbackScene("not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CallbackScene(print, settle_s=-1)
