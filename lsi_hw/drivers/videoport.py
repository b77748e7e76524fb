"""Video-port frame sink: puts DLP4500 frames on the LightCrafter's HDMI input.

In video-port mode the TI DLP LightCrafter 4500 shows, as 24 binary bitplanes, the 24-bit
RGB frame that the computer sends over HDMI; the EVM appears as a second monitor of
912 x 1140 pixels.  :class:`VideoPortSink` is the ``frame_sink`` of
:class:`~lsi_hw.drivers.dlpc350.DLP4500`: after a video-source load the driver calls
``sink(frames)`` and, once the call returns, the frame is on the video input, pixel for
pixel, and has been for ``settle_frames`` refresh periods.

Why a separate process
    pygame (SDL2) allows one window per process, and the scene monitor
    (:class:`~lsi_hw.drivers.display.MonitorScene`) already owns the main process's
    window.  The sink therefore starts a child process (``multiprocessing``, "spawn"
    context: a fresh interpreter, no forked SDL or thread state) that runs its own
    full-screen :class:`~lsi_hw.drivers.display.MonitorScene` on the LightCrafter's
    display with ``fit="native"`` (one frame pixel per screen pixel, no scaling).

Protocol
    The frame (3.1 MB) goes through a shared-memory block; only small messages use the
    pipe, so no send can block on a stalled child.  For each frame the child copies it
    out of shared memory, draws and flips it, waits ``settle_frames`` refresh periods,
    reads the frame back from the display surface and answers with the content hash
    (:func:`~lsi_hw.types.image_id`) of the read-back frame.  The parent checks that hash
    against the frame it sent.  Every wait has a deadline; messages carry sequence
    numbers, so a late answer to a call that timed out is recognised and dropped.

pygame is imported only in the child (this module imports without it).  A child that
cannot start reports why, and the parent raises the same kind of error:
:class:`~lsi_hw.errors.TransportError` (pygame missing, the child died),
:class:`~lsi_hw.errors.DeviceError` (no display, SDL failed),
:class:`~lsi_hw.errors.ConfigError` (no such display, or not 912 x 1140).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Mapping
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from lsi_hw import errors as _errors
from lsi_hw.errors import (
    ConfigError,
    DeviceError,
    DeviceTimeout,
    LSIError,
    TransportError,
    require_int,
)
from lsi_hw.types import image_id

__all__ = ["FRAME_SIZE", "MAX_PATTERNS_PER_FRAME", "VideoPortSink"]

#: The LightCrafter 4500 video port: (width, height) in pixels, one pixel per mirror
#: (the same numbers as :data:`lsi_hw.patterns.DMD_COLUMNS` / ``DMD_ROWS``; not imported
#: from there to keep the child process free of scipy).
FRAME_SIZE: tuple[int, int] = (912, 1140)
#: Binary patterns carried by one 24-bit frame.
MAX_PATTERNS_PER_FRAME = 24

_FRAME_SHAPE = (FRAME_SIZE[1], FRAME_SIZE[0], 3)
_FRAME_NBYTES = FRAME_SIZE[0] * FRAME_SIZE[1] * 3
_POLL_S = 0.05  # parent: how often a wait checks that the child still lives
_IDLE_PUMP_S = 0.1  # child: event pump interval while idle (keeps the window responsive)
_CLOSE_TIMEOUT_S = 3.0  # orderly shutdown before the child is terminated
_KILL_TIMEOUT_S = 2.0
#: Errors the child may report, by class name (anything else arrives as DeviceError).
_ERROR_CLASSES: dict[str, type[LSIError]] = {
    cls.__name__: cls
    for cls in (getattr(_errors, name) for name in _errors.__all__)
    if isinstance(cls, type) and issubclass(cls, DeviceError | ConfigError)
}
# SDL hints for the child (environment variables, set only if the user has not):
_CHILD_SDL_DEFAULTS = {
    # SDL2 minimises a full-screen window when it loses focus (a click on the main
    # monitor): the frame would vanish from the video port.
    "SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS": "0",
    # Windows: sizes in pixels, not scaled points (display scaling other than 100 %).
    "SDL_WINDOWS_DPI_AWARENESS": "permonitorv2",
    # SDL turns SIGTERM / SIGINT into a quit event by default: the child would then
    # outlive terminate() until killed.
    "SDL_NO_SIGNAL_HANDLERS": "1",
    "PYGAME_HIDE_SUPPORT_PROMPT": "1",
}


def _check_seconds(name: str, value: Any, hi: float = 3600.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{name}={value!r} must be a number of seconds in (0, {hi}]")
    number = float(value)
    if not (math.isfinite(number) and 0.0 < number <= hi):
        raise ConfigError(f"{name}={value!r} must be in (0, {hi}] s")
    return number


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


# -- child process ------------------------------------------------------------------------


def _error_message(exc: BaseException) -> tuple[str, str]:
    """(error class name, message) of an exception raised in the child."""
    if isinstance(exc, LSIError):
        name = type(exc).__name__
        if name not in _ERROR_CLASSES:
            name = "ConfigError" if isinstance(exc, ConfigError) else "DeviceError"
        return name, str(exc)
    return "DeviceError", f"{type(exc).__name__}: {exc}"


def _open_scene(display_index: int, settle_frames: int, allow_virtual: bool | None) -> Any:
    """In the child: check the display, then open a full-screen native MonitorScene."""
    from lsi_hw.drivers.display import (
        HEADLESS_HELP,
        VIRTUAL_DRIVERS,
        MonitorScene,
        import_pygame,
    )

    pg = import_pygame()  # TransportError if missing
    try:
        pg.display.init()
    except pg.error as exc:
        raise DeviceError(
            f"no display available for the LightCrafter's video port (SDL: {exc}): "
            f"{HEADLESS_HELP}"
        ) from None
    try:
        driver = str(pg.display.get_driver())
        requested = os.environ.get("SDL_VIDEODRIVER", "").strip().lower()
        if allow_virtual is None:
            allow_virtual = driver in requested.split(",")
        virtual = driver in VIRTUAL_DRIVERS
        if virtual and not allow_virtual:
            raise DeviceError(
                f"no real display: SDL fell back to its in-memory '{driver}' video driver, "
                f"so nothing would reach the LightCrafter's video port; {HEADLESS_HELP} "
                "(or pass allow_virtual=True)"
            )
        n = int(pg.display.get_num_displays())
        sizes = [tuple(int(v) for v in s) for s in pg.display.get_desktop_sizes()]
        if display_index >= n:
            raise ConfigError(
                f"display_index={display_index} but {n} display{'' if n == 1 else 's'} "
                f"found (valid: 0..{n - 1}); sizes (width, height) {sizes}"
            )
        width, height = sizes[display_index]
        if not virtual and (width, height) != FRAME_SIZE:
            raise ConfigError(
                f"display {display_index} is {width} x {height} pixels (width x height), "
                f"not the LightCrafter's {FRAME_SIZE[0]} x {FRAME_SIZE[1]}: pick the "
                f"LightCrafter's display (sizes of all displays: {sizes}), set its mode to "
                f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]} and its OS scaling to 100 %"
            )
    except BaseException:
        pg.display.quit()
        raise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scene = MonitorScene(
            display_index,
            fullscreen=not virtual,
            size=FRAME_SIZE if virtual else None,
            fit="native",
            interpolation="nearest",
            background=0,
            settle_frames=settle_frames,
            caption="lsi-hw LightCrafter video port",
            allow_virtual=allow_virtual,
        )
    scene.startup_warnings = [str(w.message) for w in caught]
    return scene


def _child_info(scene: Any) -> dict[str, Any]:
    cfg = scene.settings()
    keys = ("video_driver", "num_displays", "resolution_px", "desktop_size_px", "fullscreen",
            "refresh_rate_hz", "refresh_rate_source", "settle_s", "vsync_active", "renderer",
            "pygame_version", "sdl_version")
    info = {k: cfg.get(k) for k in keys}
    info["virtual"] = not cfg.get("fullscreen", False)
    info["warnings"] = list(getattr(scene, "startup_warnings", []))
    info["pid"] = os.getpid()
    return info


def _child_main(
    conn: Any,
    shm_name: str,
    display_index: int,
    settle_frames: int,
    allow_virtual: bool | None,
    env: dict[str, str | None],
) -> None:
    """Entry point of the display process (module level: the spawn context pickles it).

    Messages from the parent: ``("show", seq)`` (the frame is in shared memory),
    ``("close", seq)``.  Answers: ``("ready", None, info)`` once, then
    ``("shown", seq, ack)`` / ``("closed", seq, None)`` / ``("error", seq, (name, msg))``;
    a start-up failure is ``("error", None, (name, msg))`` and the process exits.
    """
    if hasattr(signal, "SIGINT"):  # Ctrl+C reaches the whole process group: the parent,
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # not the child, decides what to do
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for key, value in _CHILD_SDL_DEFAULTS.items():
        os.environ.setdefault(key, value)
    shm = None
    scene = None
    try:
        try:
            shm = shared_memory.SharedMemory(name=shm_name)
            scene = _open_scene(display_index, settle_frames, allow_virtual)
        except Exception as exc:
            conn.send(("error", None, _error_message(exc)))
            return
        conn.send(("ready", None, _child_info(scene)))
        pg = scene._pg
        while True:
            if not conn.poll(_IDLE_PUMP_S):
                try:
                    pg.event.get()  # drain the queue: the window stays responsive
                except pg.error:
                    pass
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            kind, seq = message[0], message[1]
            if kind == "close":
                scene.close()
                conn.send(("closed", seq, None))
                return
            if kind != "show":
                conn.send(("error", seq, ("DeviceError", f"unknown request {kind!r}")))
                continue
            try:
                view = np.ndarray(_FRAME_SHAPE, dtype=np.uint8, buffer=shm.buf)
                frame = view.copy()
                del view
                received = image_id(frame)
                scene.show(frame)
                ack = {
                    "received_hash": received,
                    "frame_hash": scene.last_frame_hash,
                    "matches": scene.last_frame_matches,
                    "shown_at": scene.last_shown_at,
                    "ready_at": scene.last_ready_at,
                    "n_shown": scene.n_shown,
                }
            except Exception as exc:
                conn.send(("error", seq, _error_message(exc)))
            else:
                conn.send(("shown", seq, ack))
    except (EOFError, OSError, KeyboardInterrupt):
        return  # pipe gone (parent died) or interrupted: just leave
    finally:
        if scene is not None:
            try:
                scene.close()
            except Exception:  # shutting down anyway
                pass
        if shm is not None:
            shm.close()
        conn.close()


# -- parent side --------------------------------------------------------------------------


def _shutdown(proc: Any, conn: Any, shm: Any, polite: bool) -> None:
    """Stop the child (ask, then terminate, then kill) and free the pipe and memory."""
    try:
        if polite and proc.is_alive():
            try:
                conn.send(("close", -1))
            except (OSError, ValueError):
                pass
            proc.join(_CLOSE_TIMEOUT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(_KILL_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(_KILL_TIMEOUT_S)
    finally:
        try:
            conn.close()
        except OSError:
            pass
        try:
            shm.close()
            shm.unlink()
        except (FileNotFoundError, BufferError, OSError):
            pass


class VideoPortSink:
    """Frame sink that shows DLP4500 frames full screen on the LightCrafter's HDMI input.

    Pass it as ``DLP4500(frame_sink=VideoPortSink(...))``.  It starts a display process
    (``multiprocessing`` "spawn" context) with a full-screen pygame window at the native
    912 x 1140 resolution of the given display; each call shows one frame there and
    returns once the frame is on screen, settled and verified.

    Parameters
    ----------
    display_index:
        The LightCrafter's display, 0-based, in SDL's order (default 1: the second
        monitor).  It must be 912 pixels wide and 1140 high.
    start_timeout_s:
        Longest wait for the display process to start and open its window, seconds.
    settle_frames:
        Refresh periods waited after the frame is presented and before the call returns
        (0..1000; plus one period when SDL gives no vsync'ed renderer), so the frame is
        the one the video port carries when the pattern sequence starts.
    allow_virtual:
        Accept SDL's in-memory drivers (``dummy``, ``offscreen``: no video reaches the
        LightCrafter; for tests).  Default: only when the child's ``SDL_VIDEODRIVER``
        names that driver explicitly.  In virtual mode the window is 912 x 1140 whatever
        the (virtual) display size.
    frame_timeout_s:
        Longest wait for the acknowledgement of one frame, seconds, on top of the
        ``settle_frames`` periods.
    env:
        Environment variables for the display process, set before pygame is imported
        (e.g. ``{"DISPLAY": ":1"}`` or ``{"SDL_VIDEODRIVER": "dummy"}``); a value of None
        removes the variable.  The child otherwise inherits this process's environment.

    Attributes
    ----------
    last_frame_hash:
        :func:`~lsi_hw.types.image_id` of the frame (1140, 912, 3) uint8 last confirmed on
        the video port (sent, shown and read back equal), None before the first frame
        and after a failed call (the screen content is then unknown).
    last_shown_at, last_ready_at:
        ``time.monotonic()`` (child clock; system-wide on Linux and Windows) of the last
        flip and of the end of its settling.
    n_frames_shown:
        Frames confirmed so far.

    Raises
    ------
    ConfigError
        A parameter out of range; ``display_index`` beyond the displays present or not
        912 x 1140 (the message gives the size found).
    TransportError
        pygame not installed in the child's interpreter; the child died while starting.
    DeviceError
        No display available (no ``DISPLAY``/``WAYLAND_DISPLAY``), SDL fell back to an
        in-memory driver without ``allow_virtual``, or SDL could not open the window.
    DeviceTimeout
        The child did not report ready within ``start_timeout_s`` (it is terminated).

    Notes
    -----
    The read-back check proves what SDL handed to the display, not what left the GPU:
    the HDMI output must carry full-range RGB 4:4:4 (not "limited range" 16-235 or
    YCbCr, which GPU drivers often pick for HDMI), with no colour management, night
    light or dithering on that output; each of them changes bitplanes.  Scripts that
    create a sink must guard their entry point with ``if __name__ == "__main__":`` (the
    spawn start method re-imports the main module in the child).
    """

    def __init__(
        self,
        display_index: int = 1,
        *,
        start_timeout_s: float = 10.0,
        settle_frames: int = 2,
        allow_virtual: bool | None = None,
        frame_timeout_s: float = 5.0,
        env: Mapping[str, str | None] | None = None,
    ) -> None:
        require_int("display_index", display_index, 0)
        require_int("settle_frames", settle_frames, 0, 1000)
        if allow_virtual is not None and not isinstance(allow_virtual, bool):
            raise ConfigError(f"allow_virtual={allow_virtual!r} must be None, True or False")
        child_env: dict[str, str | None] = {}
        if env is not None:
            if not isinstance(env, Mapping):
                raise ConfigError(f"env must be a mapping of names to strings; got {env!r}")
            for key, value in env.items():
                if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                    raise ConfigError(
                        f"env[{key!r}]={value!r}: names and values must be strings (or None)"
                    )
                child_env[key] = value
        self.display_index = int(display_index)
        self.start_timeout_s = _check_seconds("start_timeout_s", start_timeout_s)
        self.frame_timeout_s = _check_seconds("frame_timeout_s", frame_timeout_s)
        self.settle_frames = int(settle_frames)
        self.allow_virtual = allow_virtual
        self._env = child_env

        self.last_frame_hash: str | None = None
        self.last_shown_at: float | None = None
        self.last_ready_at: float | None = None
        self.n_frames_shown = 0
        self.display_info: dict[str, Any] = {}
        self._closed = False
        self._dead: str | None = None  # why the child is unusable, once it is
        self._seq = 0
        self._lock = threading.Lock()

        ctx = multiprocessing.get_context("spawn")
        self._shm = shared_memory.SharedMemory(create=True, size=_FRAME_NBYTES)
        try:
            self._conn, child_conn = ctx.Pipe(duplex=True)
            self._proc = ctx.Process(
                target=_child_main,
                args=(child_conn, self._shm.name, self.display_index, self.settle_frames,
                      allow_virtual, child_env),
                name=f"lsi-hw video port (display {self.display_index})",
                daemon=True,
            )
            try:
                self._proc.start()
            finally:
                child_conn.close()  # the child holds its own copy: EOF when it dies
        except BaseException:
            self._shm.close()
            self._shm.unlink()
            raise
        self._finalizer = weakref.finalize(
            self, _shutdown, self._proc, self._conn, self._shm, False
        )
        try:
            kind, _, payload = self._receive(None, time.monotonic() + self.start_timeout_s,
                                             "starting the display process")
        except BaseException:
            self._closed = True
            self._finalizer()
            raise
        if kind != "ready":  # pragma: no cover - _receive raises on anything else
            self._closed = True
            self._finalizer()
            raise DeviceError(f"display process answered {kind!r} instead of 'ready'")
        self.display_info = dict(payload)
        for text in self.display_info.get("warnings", []):
            warnings.warn(f"video-port display process: {text}", RuntimeWarning, stacklevel=2)

    # -- properties ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the display process (None before it started)."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """Whether the display process is running."""
        return (not self._closed) and self._proc.is_alive()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the start failed)."""
        return self._closed

    # -- messaging -------------------------------------------------------------------------

    def _died(self) -> TransportError:
        self._proc.join(0.5)
        self.last_frame_hash = None  # its window, and the frame, are gone
        self._dead = (
            f"the video-port display process died ({_describe_exit(self._proc.exitcode)})"
        )
        return TransportError(f"{self._dead}; close() this sink and create a new one")

    def _receive(self, seq: int | None, deadline: float, doing: str) -> tuple[str, Any, Any]:
        """Wait for the answer numbered ``seq`` (None: the start-up answer) until deadline.

        Answers to earlier requests (late acknowledgements after a timeout) are dropped.
        """
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(
                    f"no answer from the video-port display process within the timeout "
                    f"while {doing} (process {_describe_exit(self._proc.exitcode)})"
                )
            try:
                ready = self._conn.poll(min(left, _POLL_S))
                message = self._conn.recv() if ready else None
            except (EOFError, OSError):
                raise self._died() from None
            if message is None:
                if not self._proc.is_alive() and not self._conn.poll(0):
                    raise self._died()
                continue
            kind, answer_seq, payload = message
            if answer_seq != seq:
                continue  # a late answer to a request that timed out
            if kind == "error":
                name, text = payload
                cls = _ERROR_CLASSES.get(name, DeviceError)
                raise cls(f"video-port display process: {text}")
            return kind, answer_seq, payload

    def _request_ready(self) -> None:
        if self._closed:
            raise ConfigError("this VideoPortSink is closed; create a new one")
        if self._dead is not None:
            raise TransportError(f"{self._dead}; close() this sink and create a new one")
        if not self._proc.is_alive():
            raise self._died()

    # -- the sink ----------------------------------------------------------------------------

    def __call__(self, frames: np.ndarray) -> str:
        """Show one frame on the video port; return once it is there, settled and verified.

        Parameters
        ----------
        frames:
            (1, 1140, 912, 3) uint8 RGB, as :class:`~lsi_hw.drivers.dlpc350.DLP4500`
            passes it (one load of at most 24 patterns), or a single (1140, 912, 3) frame.

        Returns
        -------
        str
            :func:`~lsi_hw.types.image_id` of the frame (1140, 912, 3), also stored as
            :attr:`last_frame_hash`.

        Raises
        ------
        ConfigError
            More than one frame (a sequence of more than 24 patterns: split it into loads
            of <= 24 patterns, one frame each), wrong shape or dtype, or the sink is
            closed.
        DeviceTimeout
            No acknowledgement within ``frame_timeout_s`` plus the settle time.
        TransportError
            The display process died.
        DeviceError
            The display process failed to show the frame, or the frame read back differs
            from the frame sent.
        """
        arr = np.asarray(frames)
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise ConfigError(
                    f"VideoPortSink shows one frame per load; got {arr.shape[0]} frames "
                    f"(shape {arr.shape}), i.e. more than {MAX_PATTERNS_PER_FRAME} patterns: "
                    f"split the sequence into loads of <= {MAX_PATTERNS_PER_FRAME} patterns "
                    "(one 24-bit frame each)"
                )
            arr = arr[0]
        if arr.shape != _FRAME_SHAPE:
            raise ConfigError(
                f"frames must be (1, {_FRAME_SHAPE[0]}, {_FRAME_SHAPE[1]}, 3) RGB (rows x "
                f"columns x channels of the {FRAME_SIZE[0]} x {FRAME_SIZE[1]} video port); "
                f"got shape {np.shape(frames)}"
            )
        if arr.dtype != np.uint8:
            raise ConfigError(f"frames must be uint8 (24-bit RGB); got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr)
        sent = image_id(arr)
        with self._lock:
            self._request_ready()
            self.last_frame_hash = None  # from here on the screen content is unknown
            self._seq += 1
            seq = self._seq
            view = np.ndarray(_FRAME_SHAPE, dtype=np.uint8, buffer=self._shm.buf)
            view[...] = arr
            del view
            try:
                self._conn.send(("show", seq))
            except (OSError, ValueError):
                raise self._died() from None
            settle_s = float(self.display_info.get("settle_s") or 0.0)
            deadline = time.monotonic() + self.frame_timeout_s + 2.0 * settle_s
            _, _, ack = self._receive(seq, deadline, "showing a frame")
            if ack["received_hash"] != sent:
                raise DeviceError(
                    f"the display process received frame {ack['received_hash']}, not the "
                    f"frame sent ({sent}): shared-memory transfer corrupted"
                )
            if ack["frame_hash"] != sent or ack["matches"] is False:
                raise DeviceError(
                    f"the frame read back from the display surface ({ack['frame_hash']}) "
                    f"differs from the frame sent ({sent}): the window is not a 1:1 "
                    f"{FRAME_SIZE[0]} x {FRAME_SIZE[1]} surface"
                )
            self.last_frame_hash = sent
            self.last_shown_at = ack["shown_at"]
            self.last_ready_at = ack["ready_at"]
            self.n_frames_shown += 1
            return sent

    # -- settings / close --------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Snapshot of the sink's settings and of the display process (JSON-serialisable)."""
        info = self.display_info
        return {
            "kind": "video-port",
            "display_index": self.display_index,
            "frame_size_px": list(FRAME_SIZE),
            "settle_frames": self.settle_frames,
            "start_timeout_s": self.start_timeout_s,
            "frame_timeout_s": self.frame_timeout_s,
            "allow_virtual": self.allow_virtual,
            "env": dict(self._env),
            "virtual": info.get("virtual"),
            "video_driver": info.get("video_driver"),
            "num_displays": info.get("num_displays"),
            "resolution_px": info.get("resolution_px"),
            "desktop_size_px": info.get("desktop_size_px"),
            "fullscreen": info.get("fullscreen"),
            "refresh_rate_hz": info.get("refresh_rate_hz"),
            "refresh_rate_source": info.get("refresh_rate_source"),
            "settle_s": info.get("settle_s"),
            "vsync_active": info.get("vsync_active"),
            "renderer": info.get("renderer"),
            "pygame_version": info.get("pygame_version"),
            "sdl_version": info.get("sdl_version"),
            "pid": self.pid,
            "alive": self.alive,
            "last_frame_hash": self.last_frame_hash,
            "last_shown_at": self.last_shown_at,
            "last_ready_at": self.last_ready_at,
            "n_frames_shown": self.n_frames_shown,
            "closed": self._closed,
        }

    def close(self) -> None:
        """Close the window and end the display process (idempotent, never hangs).

        The process is asked to quit and given a few seconds, then terminated, then
        killed; the shared memory is released.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.last_frame_hash = None
            self._finalizer.detach()
            _shutdown(self._proc, self._conn, self._shm, polite=True)

    def __enter__(self) -> VideoPortSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self.alive else "dead")
        return f"VideoPortSink(display_index={self.display_index}, {state})"
