"""Test helpers for the display drivers: an Xvfb server, reading its screen back with
``xwd``, and the "imports pygame lazily" check."""

from __future__ import annotations

import ast
import os
import select
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

__all__ = ["parse_xwd", "top_level_imports", "xvfb", "xwd_root"]


def top_level_imports(path: str | Path) -> set[str]:
    """Top-level package names a module imports at module level (not inside functions)."""
    tree = ast.parse(Path(path).read_text())
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    return top


def parse_xwd(data: bytes) -> np.ndarray:
    """An XWD (X Window Dump, version 7, ZPixmap, 24/32 bpp TrueColor) as (H, W, 3) uint8."""
    fields = struct.unpack(">25I", data[:100])
    header_size, version, pixmap_format = fields[0:3]
    width, height = fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    masks, ncolors = fields[14:17], fields[19]
    assert version == 7 and pixmap_format == 2 and bits_per_pixel in (24, 32)
    start = header_size + 12 * ncolors
    bpp = bits_per_pixel // 8
    rows = np.frombuffer(data, np.uint8, count=height * bytes_per_line, offset=start)
    px = rows.reshape(height, bytes_per_line)[:, : width * bpp].reshape(height, width, bpp)
    weights = 256 ** np.arange(bpp, dtype=np.uint64)
    if byte_order == 1:  # MSBFirst
        weights = weights[::-1]
    value = (px.astype(np.uint64) * weights).sum(axis=2)
    out = np.empty((height, width, 3), np.uint8)
    for c, mask in enumerate(masks):
        shift = (mask & -mask).bit_length() - 1
        out[..., c] = (value >> np.uint64(shift)) & np.uint64(0xFF)
    return out


def xwd_root(display: str) -> np.ndarray:
    out = subprocess.run(["xwd", "-root", "-silent", "-display", display],
                         capture_output=True, check=True, timeout=10)
    return parse_xwd(out.stdout)


@contextmanager
def xvfb(size: str) -> Iterator[str]:
    """An Xvfb server with one ``size`` (``WxHxD``) screen on a free display number."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb not installed (Debian/Ubuntu: apt install xvfb x11-apps)")
    if shutil.which("xwd") is None:
        pytest.skip("xwd not installed (Debian/Ubuntu: apt install x11-apps)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 10.0)
        number = os.read(read_fd, 32).decode().strip() if ready else ""
        if not number.isdigit():
            pytest.skip("Xvfb did not start within 10 s")
        yield f":{number}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
