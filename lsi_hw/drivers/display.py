"""Scene drivers: what the single-pixel camera looks at.

Two implementations of :class:`~lsi_hw.interfaces.Scene`:

:class:`MonitorScene`
    Shows each test image full-screen on an LCD monitor through pygame (SDL2).  A relay
    lens images the monitor onto the DMD, so the driver must (1) put exactly the intended
    pixels on the screen, (2) not return before the light is stable, and (3) leave a
    trace that proves what was on screen.  :meth:`MonitorScene.show` composes the frame,
    flips it, waits for the presentation plus ``settle_frames`` refresh periods (LCD
    response), reads the frame back from the display surface and records its hash.
:class:`CallbackScene`
    Any other scene source (a projector with its own API, an object on a motorised
    stage, ...): a user callback ``present(image)`` plus a fixed settle time.

Both return, and record as ``last_id``, the content hash :func:`image_id` of the image
*as given* (shape, dtype and bytes), the same definition the simulator uses for its
scene ids, so simulated and real recordings of the same scene carry the same id.

pygame is imported lazily (inside the functions that need it): importing this module
works without pygame; constructing a :class:`MonitorScene` without it raises
:class:`~lsi_hw.errors.TransportError` saying ``pip install pygame`` (pygame >= 2.1.3,
or pygame-ce).  Headless tests use ``SDL_VIDEODRIVER=dummy`` (an in-memory screen) or an
X virtual frame buffer (``Xvfb``, Debian package ``xvfb``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lsi_hw.errors import ConfigError, DeviceError, LSIError, TransportError
from lsi_hw.interfaces import Scene
from lsi_hw.types import image_id

__all__ = [
    "DEFAULT_REFRESH_RATE_HZ",
    "CallbackScene",
    "MonitorScene",
    "compose_frame",
    "image_id",
    "placement",
    "to_uint8_rgb",
]

#: Refresh rate assumed when neither the user nor SDL reports one, hertz.
DEFAULT_REFRESH_RATE_HZ = 60.0

Fit = Literal["contain", "stretch", "native"]
Interpolation = Literal["nearest", "smooth"]
_FITS = ("contain", "stretch", "native")
_INTERPOLATIONS = ("nearest", "smooth")
#: SDL drivers that draw into memory only: no light comes out of any monitor.
VIRTUAL_DRIVERS = ("dummy", "offscreen", "evdev")
_RENDERER_PRESENTVSYNC = 0x4  # SDL_RENDERER_PRESENTVSYNC

HEADLESS_HELP = (
    "set DISPLAY (X11, e.g. DISPLAY=:0 for the monitor's X server) or WAYLAND_DISPLAY; "
    "on a headless machine run under a virtual frame buffer (apt install xvfb; "
    "xvfb-run python ...), or for tests without a screen set SDL_VIDEODRIVER=dummy"
)

# Only one pygame display exists per process: the open MonitorScene, if any.
_open_scene: weakref.ref[MonitorScene] | None = None


# -- pure helpers ------------------------------------------------------------------------


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """Convert a validated scene to the monitor's 8-bit RGB drive values.

    Parameters
    ----------
    image:
        (H, W) grey or (H, W, 3) RGB; uint8 / integer 0..255 drive levels, or float in
        [0, 1] (fractions of full drive, rounded to the nearest of 256 levels:
        ``rint(x * 255)``).

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8, C-contiguous; a grey image is copied to all three channels.
    """
    arr = np.asarray(image)
    if arr.dtype.kind == "f":
        arr = np.rint(arr.astype(np.float64) * 255.0)
    arr = arr.astype(np.uint8, copy=False)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


def placement(
    image_hw: tuple[int, int], screen_wh: tuple[int, int], fit: Fit = "contain"
) -> tuple[int, int, int, int]:
    """Where an image lands on the screen: ``(x, y, width, height)`` in screen pixels.

    Parameters
    ----------
    image_hw:
        Image (rows, columns), pixels.
    screen_wh:
        Screen (width, height), pixels (pygame's order).
    fit:
        ``"contain"``: the largest size with square pixels that fits, centred (letter- or
        pillar-boxed with the background); the limiting side fills the screen exactly and
        the other side is rounded to the nearest pixel.  ``"stretch"``: the whole screen
        (pixels become rectangular when the aspect ratios differ).  ``"native"``: one
        image pixel per screen pixel, centred.

    Returns
    -------
    tuple of int
        Top-left corner ``x, y`` and size ``width, height``; for ``"native"`` an image
        larger than the screen gives a negative corner (see :meth:`MonitorScene.show`,
        which refuses it).
    """
    rows, cols = int(image_hw[0]), int(image_hw[1])
    sw, sh = int(screen_wh[0]), int(screen_wh[1])
    if fit == "stretch":
        return 0, 0, sw, sh
    if fit == "native":
        w, h = cols, rows
    elif fit == "contain":
        if cols * sh <= rows * sw:  # height-limited: full height, width rounded
            h = sh
            w = max(1, (2 * cols * sh + rows) // (2 * rows))
        else:  # width-limited
            w = sw
            h = max(1, (2 * rows * sw + cols) // (2 * cols))
    else:
        raise ConfigError(f"fit={fit!r} must be one of {_FITS}")
    return (sw - w) // 2, (sh - h) // 2, w, h


def _nearest_index(n_src: int, n_dst: int) -> np.ndarray:
    """Source index of every destination pixel: ``floor((d + 0.5) * n_src / n_dst)``."""
    d = np.arange(n_dst, dtype=np.int64)
    return np.minimum(((2 * d + 1) * n_src) // (2 * n_dst), n_src - 1)


def compose_frame(
    image: np.ndarray,
    screen_wh: tuple[int, int],
    *,
    fit: Fit = "contain",
    background: int | tuple[int, int, int] = 0,
) -> np.ndarray:
    """The full screen frame that :class:`MonitorScene` shows for ``image`` (nearest).

    Nearest-neighbour resampling: destination pixel ``d`` (0-based, along each axis)
    shows source pixel ``floor((d + 0.5) * n_src / n_dst)``, i.e. the source pixel under
    the destination pixel's centre.  For an integer scale factor ``k`` this replicates
    every image pixel into exactly ``k x k`` screen pixels.  Drive values are never mixed,
    so each screen pixel has one of the image's own 8-bit levels (mixing drive values
    would not mix luminances: the monitor's response is a gamma curve).

    Parameters
    ----------
    image:
        (H, W) or (H, W, 3), uint8 or float in [0, 1] (see :func:`to_uint8_rgb`).
    screen_wh:
        Screen (width, height), pixels.
    fit:
        See :func:`placement`.
    background:
        Drive level 0..255 of the screen outside the image, grey or (R, G, B).

    Returns
    -------
    numpy.ndarray
        (height, width, 3) uint8 frame, rows top to bottom.

    Raises
    ------
    ConfigError
        ``fit="native"`` and the image is larger than the screen.
    """
    rgb = to_uint8_rgb(image)
    sw, sh = int(screen_wh[0]), int(screen_wh[1])
    x, y, w, h = placement(rgb.shape[:2], (sw, sh), fit)
    if x < 0 or y < 0:
        raise ConfigError(
            f"image of {rgb.shape[1]} x {rgb.shape[0]} pixels does not fit the "
            f"{sw} x {sh} screen with fit='native'; use fit='contain' or a smaller image"
        )
    frame = np.empty((sh, sw, 3), dtype=np.uint8)
    frame[...] = np.asarray(_background_rgb(background), dtype=np.uint8)
    rows = _nearest_index(rgb.shape[0], h)
    cols = _nearest_index(rgb.shape[1], w)
    frame[y : y + h, x : x + w] = rgb[rows[:, None], cols[None, :]]
    return frame


def _background_rgb(background: Any) -> tuple[int, int, int]:
    """Validate a background drive level: 0..255 grey or (R, G, B)."""
    values = np.atleast_1d(np.asarray(background))
    if values.shape not in ((1,), (3,)) or values.dtype.kind not in "iuf":
        raise ConfigError(
            f"background={background!r} must be a drive level 0..255 or an (R, G, B) triple"
        )
    if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))
            and values.min() >= 0 and values.max() <= 255):
        raise ConfigError(f"background={background!r}: each level must be an integer 0..255")
    levels = [int(v) for v in values]
    return (levels[0],) * 3 if len(levels) == 1 else (levels[0], levels[1], levels[2])


def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic() >= deadline`` (sleep, then spin the last ~1 ms)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if left > 0.002:
            time.sleep(left - 0.001)


# -- pygame plumbing ---------------------------------------------------------------------


def import_pygame() -> Any:
    """Import pygame lazily; TransportError with the install command if it is missing."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as exc:
        raise TransportError(
            "pygame is not installed; it is needed to show scenes on a monitor: "
            f"pip install pygame (>= 2.1.3, or pygame-ce) [{exc}]"
        ) from None
    return pygame


def _sdl_library(pygame: Any) -> Any | None:
    """The SDL2 library pygame has loaded (same process state), via ctypes, or None."""
    here = Path(pygame.__file__).resolve().parent
    candidates: list[Path] = []
    for folder in (here, here / ".dylibs", here.parent / f"{here.name}.libs",
                   here.parent / "pygame.libs", here.parent / "pygame_ce.libs"):
        if folder.is_dir():
            candidates += sorted(
                p for p in folder.iterdir()
                if "SDL2" in p.name and "SDL2_" not in p.name
                and (p.suffix in (".so", ".dll", ".dylib") or ".so." in p.name)
            )
    system = ctypes.util.find_library("SDL2")
    names = [str(p) for p in candidates] + ([system] if system else [])
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class _SDLDisplayMode(ctypes.Structure):
    _fields_ = [  # ctypes layout of SDL_DisplayMode
        ("format", ctypes.c_uint32),
        ("w", ctypes.c_int),
        ("h", ctypes.c_int),
        ("refresh_rate", ctypes.c_int),
        ("driverdata", ctypes.c_void_p),
    ]


def _refresh_rate_hz(pygame: Any, display_index: int) -> tuple[float | None, str]:
    """The display's refresh rate in hertz and where it came from, or (None, "unknown").

    pygame-ce has ``pygame.display.get_desktop_refresh_rates()`` /
    ``get_current_refresh_rate()``; classic pygame has neither, so SDL's
    ``SDL_GetCurrentDisplayMode`` is called through ctypes on the SDL library pygame
    loaded (the same library instance, hence the same initialised video state; a
    different copy answers with an error and is ignored).  0 means "unknown" in SDL.
    """
    display = pygame.display
    rates = getattr(display, "get_desktop_refresh_rates", None)
    if rates is not None:
        try:
            rate = float(rates()[display_index])
            if rate > 0:
                return rate, "pygame"
        except Exception:  # optional API: fall through to the next source
            pass
    current = getattr(display, "get_current_refresh_rate", None)
    if current is not None:
        try:
            rate = float(current())
            if rate > 0:
                return rate, "pygame"
        except Exception:  # optional API
            pass
    try:
        lib = _sdl_library(pygame)
        if lib is not None:
            mode = _SDLDisplayMode()
            fn = lib.SDL_GetCurrentDisplayMode
            fn.argtypes = [ctypes.c_int, ctypes.POINTER(_SDLDisplayMode)]
            fn.restype = ctypes.c_int
            if fn(int(display_index), ctypes.byref(mode)) == 0 and mode.refresh_rate > 0:
                return float(mode.refresh_rate), "sdl"
    except (OSError, AttributeError):
        pass
    return None, "unknown"


# -- MonitorScene ------------------------------------------------------------------------


class MonitorScene(Scene):
    """Test images shown full-screen on a monitor via pygame / SDL2.

    Parameters
    ----------
    display_index:
        Which display (monitor) to use, 0-based, in SDL's order
        (``pygame.display.get_desktop_sizes()``).
    fullscreen:
        True: a borderless full-screen window covering the whole display at its desktop
        resolution, mouse cursor hidden.  False: an ordinary window of ``size`` (for
        testing; no vsync, window decorations and other windows may cover it).
    size:
        Window size (width, height) in pixels when ``fullscreen=False`` (default
        640 x 480); ignored in full screen.
    fit:
        How the image is mapped to the screen, see :func:`placement`.  Default
        ``"contain"``: square pixels, centred, background bars.
    interpolation:
        ``"nearest"`` (default): exact pixel replication, see :func:`compose_frame`; the
        frame read back is checked against the frame computed in numpy
        (``last_frame_matches``).  ``"smooth"``: ``pygame.transform.smoothscale``
        (bilinear / box filter in drive values, not luminance); ``last_frame_matches``
        is then None.
    background:
        Drive level 0..255 (grey) or (R, G, B) outside the image.
    settle_frames:
        Refresh periods to wait after the frame is presented, for the LCD's response
        time, before :meth:`show` returns (>= 0; 2 covers typical 5-15 ms grey-to-grey
        panels at 60 Hz; measure yours with the photodiode).
    vsync:
        Request a vsync'ed renderer (full screen only; pygame's ``SCALED`` renderer at
        the desktop resolution, i.e. 1:1).  Then ``flip()`` blocks until the swap (the
        driver may queue one frame, hence the settle frames); ``vsync_active`` is what
        SDL reports for the renderer it created.  If no such renderer exists the scene
        falls back to a plain window surface with a warning, ``vsync_active`` is False
        and :meth:`show` waits one extra refresh period instead.
    refresh_rate_hz:
        The display's refresh rate, hertz; default: asked from SDL, else 60 Hz
        (``refresh_rate_source`` in :meth:`settings` says which).
    caption:
        Window title.
    allow_virtual:
        Accept SDL's in-memory drivers (``dummy``, ``offscreen``).  Default: only when
        ``SDL_VIDEODRIVER`` names that driver explicitly; otherwise a silent fall-back to
        a screen that emits no light is refused with DeviceError.

    Raises
    ------
    ConfigError
        A parameter out of range; ``display_index`` beyond the displays present (the
        message gives their number); another MonitorScene is open in this process.
    TransportError
        pygame not installed.
    DeviceError
        No display available (no ``DISPLAY``/``WAYLAND_DISPLAY``, SDL: "No available
        video device"), or SDL could not open the window.

    Notes
    -----
    High-DPI displays (macOS Retina, Windows scaling > 100 %) report sizes in points, not
    pixels; set the OS scaling of the scene monitor to 100 % for pixel-exact frames.
    Only one MonitorScene can be open per process (pygame has one display).
    """

    def __init__(
        self,
        display_index: int = 0,
        *,
        fullscreen: bool = True,
        size: tuple[int, int] | None = None,
        fit: Fit = "contain",
        interpolation: Interpolation = "nearest",
        background: int | tuple[int, int, int] = 0,
        settle_frames: int = 2,
        vsync: bool = True,
        refresh_rate_hz: float | None = None,
        caption: str = "lsi-hw scene",
        allow_virtual: bool | None = None,
    ) -> None:
        global _open_scene
        # -- validate everything before touching the display --
        if isinstance(display_index, bool) or not isinstance(display_index, (int, np.integer)) \
                or display_index < 0:
            raise ConfigError(f"display_index={display_index!r} must be an integer >= 0")
        if fit not in _FITS:
            raise ConfigError(f"fit={fit!r} must be one of {_FITS}")
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"interpolation={interpolation!r} must be one of {_INTERPOLATIONS}")
        if isinstance(settle_frames, bool) or not isinstance(settle_frames, (int, np.integer)) \
                or not 0 <= settle_frames <= 1000:
            raise ConfigError(f"settle_frames={settle_frames!r} must be an integer 0..1000")
        if refresh_rate_hz is not None and not (
            isinstance(refresh_rate_hz, (int, float, np.number))
            and math.isfinite(refresh_rate_hz) and 1.0 <= refresh_rate_hz <= 1000.0
        ):
            raise ConfigError(f"refresh_rate_hz={refresh_rate_hz!r} must be in [1, 1000] Hz")
        if size is not None:
            try:
                w, h = (int(v) for v in size)
            except (TypeError, ValueError):
                raise ConfigError(f"size={size!r} must be (width, height) in pixels") from None
            if not (1 <= w <= 32768 and 1 <= h <= 32768):
                raise ConfigError(f"size={size!r}: width and height must be 1..32768 pixels")
            size = (w, h)
        self.background = _background_rgb(background)
        self.display_index = int(display_index)
        self.fullscreen = bool(fullscreen)
        self.fit: Fit = fit
        self.interpolation: Interpolation = interpolation
        self.settle_frames = int(settle_frames)
        self.vsync_requested = bool(vsync)
        self.caption = str(caption)

        self.last_id: str | None = None
        self.last_frame_hash: str | None = None
        self.last_frame_matches: bool | None = None
        self.last_shown_at: float | None = None
        self.last_ready_at: float | None = None
        self.n_shown = 0
        self._screen: Any = None
        self._closed = False

        if _open_scene is not None:
            other = _open_scene()
            if other is not None and not other._closed:
                raise ConfigError(
                    "another MonitorScene is open in this process (pygame has one display): "
                    "close() it first"
                )
        pg = import_pygame()
        self._pg = pg
        self._open(pg, size, allow_virtual)
        rate, source = _refresh_rate_hz(pg, self.display_index)
        if refresh_rate_hz is not None:
            rate, source = float(refresh_rate_hz), "user"
        elif rate is None:
            rate, source = DEFAULT_REFRESH_RATE_HZ, "default"
        self.refresh_rate_hz: float = rate
        self.refresh_rate_source: str = source
        _open_scene = weakref.ref(self)

    # -- opening ----------------------------------------------------------------------

    def _open(self, pg: Any, size: tuple[int, int] | None, allow_virtual: bool | None) -> None:
        try:
            pg.display.init()
        except pg.error as exc:
            raise DeviceError(
                f"no display available for the scene monitor (SDL: {exc}): {HEADLESS_HELP}"
            ) from None
        try:
            driver = str(pg.display.get_driver())
            requested = os.environ.get("SDL_VIDEODRIVER", "").strip().lower()
            if allow_virtual is None:
                allow_virtual = driver in requested.split(",")
            if driver in VIRTUAL_DRIVERS and not allow_virtual:
                raise DeviceError(
                    f"no real display: SDL fell back to its in-memory '{driver}' video driver, "
                    f"so no light would reach the camera; {HEADLESS_HELP} (or pass "
                    "allow_virtual=True)"
                )
            n = int(pg.display.get_num_displays())
            if self.display_index >= n:
                raise ConfigError(
                    f"display_index={self.display_index} but {n} display"
                    f"{'' if n == 1 else 's'} found (valid: 0..{n - 1}); sizes "
                    f"{pg.display.get_desktop_sizes()}"
                )
            self.video_driver = driver
            self.num_displays = n
            self.desktop_size = tuple(int(v) for v in pg.display.get_desktop_sizes()
                                      [self.display_index])
            self.vsync_active = False
            self.renderer: str | None = None
            if self.fullscreen:
                self._screen = self._open_fullscreen(pg)
                pg.mouse.set_visible(False)
            else:
                self._screen = pg.display.set_mode(size or (640, 480), 0,
                                                   display=self.display_index)
            pg.display.set_caption(self.caption)
            self._screen.fill(self.background)
            pg.display.flip()
        except BaseException:
            pg.display.quit()
            raise

    def _open_fullscreen(self, pg: Any) -> Any:
        size = self.desktop_size
        if self.vsync_requested:
            try:
                screen = pg.display.set_mode(size, pg.FULLSCREEN | pg.SCALED, vsync=1,
                                             display=self.display_index)
            except pg.error as exc:
                warnings.warn(
                    f"no vsync'ed renderer on SDL driver '{self.video_driver}' ({exc}); "
                    "showing scenes without vsync (one extra refresh period is waited)",
                    RuntimeWarning, stacklevel=4,
                )
            else:
                info = None
                get_info = getattr(pg.display, "_get_renderer_info", None)
                if get_info is not None:
                    try:
                        info = get_info()
                    except Exception:  # private helper, informational only
                        info = None
                if info:
                    self.renderer = str(info[0])
                    self.vsync_active = bool(int(info[1]) & _RENDERER_PRESENTVSYNC)
                if tuple(screen.get_size()) == size:
                    return screen
                raise DeviceError(  # pragma: no cover - would mean a scaled (non 1:1) frame
                    f"full-screen surface is {screen.get_size()}, not the desktop size {size}"
                )
        try:
            return pg.display.set_mode(size, pg.FULLSCREEN, display=self.display_index)
        except pg.error as exc:
            raise DeviceError(
                f"could not open a full-screen window on display {self.display_index} "
                f"(SDL: {exc})"
            ) from None

    # -- properties --------------------------------------------------------------------

    @property
    def screen_size(self) -> tuple[int, int]:
        """Size (width, height) of the drawn frame, pixels."""
        if self._screen is None:
            return (0, 0)
        w, h = self._screen.get_size()
        return int(w), int(h)

    @property
    def settle_s(self) -> float:
        """Wait after presentation: ``settle_frames`` refresh periods, seconds."""
        return self.settle_frames / self.refresh_rate_hz

    # -- showing -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed or self._screen is None:
            raise ConfigError("this MonitorScene is closed; create a new one")

    def _do_show(self, image: np.ndarray) -> str:
        self._check_open()
        pg = self._pg
        ident = image_id(image)
        sw, sh = self.screen_size
        expected: np.ndarray | None = None
        if self.interpolation == "nearest":
            expected = compose_frame(image, (sw, sh), fit=self.fit, background=self.background)
            surface = pg.image.frombuffer(expected.tobytes(), (sw, sh), "RGB")
            draw = [(surface, (0, 0))]
        else:
            rgb = to_uint8_rgb(image)
            x, y, w, h = placement(rgb.shape[:2], (sw, sh), self.fit)
            if x < 0 or y < 0:
                raise ConfigError(
                    f"image of {rgb.shape[1]} x {rgb.shape[0]} pixels does not fit the "
                    f"{sw} x {sh} screen with fit='native'; use fit='contain'"
                )
            src = pg.image.frombuffer(rgb.tobytes(), (rgb.shape[1], rgb.shape[0]), "RGB")
            if (w, h) != (rgb.shape[1], rgb.shape[0]):
                src = pg.transform.smoothscale(src.convert(), (w, h))
            draw = [(src, (x, y))]
        # -- everything is validated and prepared: draw and present --
        try:
            pg.event.pump()  # keep the window responsive (window managers, compositors)
            self._screen.fill(self.background)
            for surf, pos in draw:
                self._screen.blit(surf, pos)
            pg.display.flip()
            shown_at = time.monotonic()
            frame = self.read_frame()
        except pg.error as exc:
            raise DeviceError(f"showing the scene failed (SDL: {exc})") from exc
        periods = self.settle_frames + (0 if self.vsync_active else 1)
        ready_at = shown_at + periods / self.refresh_rate_hz
        self.last_id = ident
        self.last_frame_hash = image_id(frame)
        self.last_frame_matches = (None if expected is None
                                   else self.last_frame_hash == image_id(expected))
        self.last_shown_at = shown_at
        self.n_shown += 1
        _sleep_until(ready_at)
        self.last_ready_at = time.monotonic()
        return ident

    def read_frame(self) -> np.ndarray:
        """The frame on the display surface now, (height, width, 3) uint8 RGB.

        Read from the surface SDL presents (``pygame.image.tobytes(screen, "RGB")``),
        i.e. what was handed to the display after all scaling.
        """
        self._check_open()
        pg = self._pg
        tobytes = getattr(pg.image, "tobytes", None) or pg.image.tostring
        sw, sh = self.screen_size
        data = tobytes(self._screen, "RGB")
        return np.frombuffer(data, dtype=np.uint8).reshape(sh, sw, 3).copy()

    # -- settings / close --------------------------------------------------------------

    def _do_settings(self) -> dict[str, Any]:
        pg = getattr(self, "_pg", None)
        return {
            "kind": "monitor",
            "display_index": self.display_index,
            "num_displays": getattr(self, "num_displays", None),
            "video_driver": getattr(self, "video_driver", None),
            "resolution_px": list(self.screen_size),
            "desktop_size_px": list(getattr(self, "desktop_size", (0, 0))),
            "fullscreen": self.fullscreen,
            "refresh_rate_hz": self.refresh_rate_hz,
            "refresh_rate_source": self.refresh_rate_source,
            "fit": self.fit,
            "interpolation": self.interpolation,
            "background": list(self.background),
            "settle_frames": self.settle_frames,
            "settle_s": self.settle_s,
            "vsync_requested": self.vsync_requested,
            "vsync_active": getattr(self, "vsync_active", False),
            "renderer": getattr(self, "renderer", None),
            "pygame_version": None if pg is None else str(pg.version.ver),
            "sdl_version": None if pg is None else ".".join(map(str, pg.get_sdl_version())),
            "last_id": self.last_id,
            "last_frame_hash": self.last_frame_hash,
            "last_frame_matches": self.last_frame_matches,
            "last_shown_at": self.last_shown_at,
            "last_ready_at": self.last_ready_at,
            "n_shown": self.n_shown,
            "closed": self._closed,
        }

    def _do_close(self) -> None:
        global _open_scene
        if self._closed:
            return
        self._closed = True
        self._screen = None
        if _open_scene is not None and _open_scene() is self:
            _open_scene = None
        pg = self._pg
        if self.renderer is not None:
            # pygame 2.6 keeps stale renderer state across display.quit(): a later set_mode
            # on another SDL video driver then calls a NULL function (segfault).  Replacing
            # the SCALED renderer by a plain 1 x 1 window first tears it down cleanly.
            try:
                pg.display.set_mode((1, 1))
            except pg.error:
                pass
        pg.display.quit()


# -- CallbackScene -----------------------------------------------------------------------


class CallbackScene(Scene):
    """A scene presented by user code: ``present(image) -> None``, then ``settle_s``.

    For scene sources without a monitor driver: a projector with its own API, an object
    moved on a motorised stage (the image then names the position), a second computer.

    Parameters
    ----------
    present:
        Called with the validated image ((H, W) or (H, W, 3), uint8 or float in [0, 1],
        as given; do not modify it).  Must return once the scene is physically in place.
        Exceptions that are not toolkit errors are re-raised as
        :class:`~lsi_hw.errors.DeviceError` chained to the original.
    settle_s:
        Extra wait after ``present`` returns, seconds (>= 0).
    on_close:
        Optional callable run by :meth:`close` (release the projector / park the stage).
    name:
        Free text stored in :meth:`settings`.
    """

    def __init__(
        self,
        present: Callable[[np.ndarray], None],
        *,
        settle_s: float = 0.0,
        on_close: Callable[[], None] | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(present):
            raise ConfigError(f"present must be callable; got {type(present).__name__}")
        if on_close is not None and not callable(on_close):
            raise ConfigError(f"on_close must be callable; got {type(on_close).__name__}")
        try:
            settle = float(settle_s)
        except (TypeError, ValueError):
            raise ConfigError(f"settle_s={settle_s!r} must be a number of seconds") from None
        if not (math.isfinite(settle) and 0.0 <= settle <= 3600.0):
            raise ConfigError(f"settle_s={settle_s!r} must be in [0, 3600] s")
        self.present = present
        self.settle_s = settle
        self.on_close = on_close
        self.name = name or getattr(present, "__qualname__", type(present).__name__)
        self.last_id: str | None = None
        self.last_shown_at: float | None = None
        self.last_ready_at: float | None = None
        self.n_shown = 0
        self._closed = False

    def _do_show(self, image: np.ndarray) -> str:
        if self._closed:
            raise ConfigError("this CallbackScene is closed; create a new one")
        ident = image_id(image)  # before the callback, which could alter the array
        try:
            self.present(image)
        except LSIError:
            raise
        except Exception as exc:
            raise DeviceError(f"scene callback {self.name!r} failed: {exc!r}") from exc
        shown_at = time.monotonic()
        self.last_id = ident
        self.last_shown_at = shown_at
        self.n_shown += 1
        _sleep_until(shown_at + self.settle_s)
        self.last_ready_at = time.monotonic()
        return ident

    def _do_settings(self) -> dict[str, Any]:
        return {
            "kind": "callback",
            "name": self.name,
            "settle_s": self.settle_s,
            "last_id": self.last_id,
            "last_shown_at": self.last_shown_at,
            "last_ready_at": self.last_ready_at,
            "n_shown": self.n_shown,
            "closed": self._closed,
        }

    def _do_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.on_close is not None:
            self.on_close()
