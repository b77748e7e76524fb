"""SynthFace geometry: the 2.5-D yaw, the face outline, feature positions and landmarks.

Pure functions of the named parameters ``p`` (:meth:`SynthFace.params
<lsi_ml.generators.synthface.SynthFace.params>`) and the feature layout ``f``
(:func:`feature_positions`), in face units unless said otherwise. Shared by the parameter
mapping (eye alignment), the renderer and the landmarks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def project(p: dict[str, Tensor], x0: Tensor, y0: Tensor, dz: float | Tensor = 0.0
            ) -> tuple[Tensor, Tensor]:
    """2.5-D yaw: projected x and horizontal foreshortening of a point on the face."""
    w = p["W"].unsqueeze(-1) if x0.dim() == 2 else p["W"]
    depth = p["depth"].unsqueeze(-1) if x0.dim() == 2 else p["depth"]
    yaw = p["yaw"].unsqueeze(-1) if x0.dim() == 2 else p["yaw"]
    q = (x0 / w).square()
    z = depth * (1 - 0.6 * q) - 0.1 * (y0.square()) + dz
    dzdx = -depth * 1.2 * x0 / (w ** 2)
    x = x0 * torch.cos(yaw) + z * torch.sin(yaw)
    k = (torch.cos(yaw) + dzdx * torch.sin(yaw)).clamp(min=0.35)
    return x, k


def face_width(p: dict[str, Tensor], v: Tensor) -> Tensor:
    """Half-width of the face at height ``v`` (broadcasts ``(n,1,1)`` params)."""
    def c(t: Tensor) -> Tensor:
        return t.view(-1, *([1] * (v.dim() - 1)))

    w, ht, hb, wc, jp = c(p["W"]), c(p["Ht"]), c(p["Hb"]), c(p["Wc"]), c(p["jaw_p"])
    up = w * c(p["forehead"]) ** (-v / ht).clamp(0, 1) * torch.sqrt(
        (1 - (v / ht).square()).clamp(min=1e-4))
    t = (v / hb).clamp(1e-4, 1.0)
    prof = (1 - t ** jp).clamp(min=1e-6) ** (1 / jp)
    harm = 1 + c(p["cheek"]) * torch.sin(math.pi * t) + c(p["h1"]) * torch.sin(
        2 * math.pi * t) + c(p["h2"]) * torch.sin(3 * math.pi * t)
    low = (wc + (w - wc) * prof) * harm
    return torch.where(v < 0, up, low)


def chin_shift(p: dict[str, Tensor], v: Tensor) -> Tensor:
    """Sideways shift of the jaw's centre line at height ``v`` when the face is turned."""
    def c(t: Tensor) -> Tensor:
        return t.view(-1, *([1] * (v.dim() - 1)))

    t = (v / c(p["Hb"])).clamp(0, 1)
    return t.square() * c(p["depth"]) * torch.sin(c(p["yaw"]))


def feature_positions(p: dict[str, Tensor]) -> dict[str, Tensor]:
    """Positions and sizes of the facial features (face units, per face ``(n,)``)."""
    f: dict[str, Tensor] = {}
    for side, s in (("l", -1.0), ("r", 1.0)):
        x0 = s * p["eye_x"]
        y0 = p["eye_y"] + s * p["asym"]
        x, k = project(p, x0, y0)
        f[f"eye_{side}_x"], f[f"eye_{side}_y"], f[f"eye_{side}_k"] = x, y0, k
        f[f"eye_{side}_tilt"] = -s * p["eye_tilt"]
        bx0 = s * (p["eye_x"] + 0.01)
        by0 = y0 - p["brow_dy"] - p["brow_raise"]
        bx, bk = project(p, bx0, by0)
        f[f"brow_{side}_x"], f[f"brow_{side}_y"], f[f"brow_{side}_k"] = bx, by0, bk
    f["eye_b"] = p["eye_a"] * p["eye_aspect"] * p["eye_open"]
    f["eye_b_full"] = p["eye_a"] * p["eye_aspect"]
    top = p["eye_y"] + 0.02
    tip = p["eye_y"] + p["nose_len"]
    f["nose_top"], f["nose_tip"] = top, tip
    f["nose_top_x"], _ = project(p, torch.zeros_like(top), top, 0.05)
    f["nose_tip_x"], f["nose_k"] = project(p, torch.zeros_like(tip), tip, 0.18)
    my = tip + p["mouth_dy"]
    f["mouth_y"] = my
    f["mouth_x"], f["mouth_k"] = project(p, torch.zeros_like(my), my, 0.04)
    f["mouth_w"] = p["mouth_w"] * (1 + 0.18 * p["smile"]) * f["mouth_k"]
    f["mouth_ho"] = 0.07 * p["open"]
    f["smile_c"] = 0.08 * (p["smile"] - 0.3)
    return f


def lip_curves(f: dict[str, Tensor], p: dict[str, Tensor], x: Tensor
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Lip line, inner half-opening and outer lip thicknesses at mouth-local ``x``."""
    def c(t: Tensor) -> Tensor:
        return t.view(-1, *([1] * (x.dim() - 1)))

    xr = x / c(f["mouth_w"])
    prof = torch.sqrt((1 - xr.square()).clamp(min=0.0))
    line = c(f["smile_c"]) * (0.4 - xr.square())
    ho = c(f["mouth_ho"]) * prof
    tu = c(p["lip_t"]) * prof * (1 - 0.25 * torch.exp((-(xr / 0.18).square()).clamp(min=-30)))
    tl = c(p["lip_t"]) * 1.25 * prof
    return line, ho, tu, tl, xr


# ------------------------------------------------------------------ iBUG-68 landmarks
def landmarks_face_units(p: dict[str, Tensor], f: dict[str, Tensor]) -> Tensor:
    """iBUG-68 landmarks ``(n, 68, 2)`` in face units (before roll, scale and translation)."""
    return torch.cat([*_jaw_points(p), *_brow_points(p, f), *_nose_points(p, f),
                      *_eye_points(p, f), *_mouth_points(p, f)], 1)


def _jaw_points(p: dict[str, Tensor]) -> list[Tensor]:
    """Points 0-16: the image-left jaw line, three on the chin, the image-right jaw line."""
    n = p["W"].shape[0]
    dev = p["W"].device
    v_start = p["eye_y"] - 0.02
    ks = torch.arange(7, device=dev, dtype=torch.float32) / 6.6
    vj = v_start[:, None] + (p["Hb"] - 0.006 - v_start)[:, None] * ks ** 0.85
    wj = face_width(p, vj)
    cj = chin_shift(p, vj)
    hb = p["Hb"][:, None]
    chin_c = chin_shift(p, hb)
    left = torch.stack([cj - wj + 0.01, vj], -1)
    right = torch.stack([cj + wj - 0.01, vj], -1).flip(1)
    bottom = torch.stack([
        torch.cat([chin_c - 0.55 * p["Wc"][:, None], chin_c,
                   chin_c + 0.55 * p["Wc"][:, None]], 1),
        (hb - 0.006).expand(n, 3)], -1)
    return [left, bottom, right]


def _brow_points(p: dict[str, Tensor], f: dict[str, Tensor]) -> list[Tensor]:
    """Points 17-26: five along each brow."""
    bx = torch.tensor([-0.9, -0.45, 0.0, 0.45, 0.9], device=p["W"].device)
    pts = []
    for side in ("l", "r"):
        ln = p["brow_len"][:, None] * bx
        curve = -p["brow_arch"][:, None] * (1 - bx.square())
        xx = f[f"brow_{side}_x"][:, None] + ln * f[f"brow_{side}_k"][:, None]
        yy = f[f"brow_{side}_y"][:, None] + curve
        pts.append(torch.stack([xx, yy], -1))
    return pts


def _nose_points(p: dict[str, Tensor], f: dict[str, Tensor]) -> list[Tensor]:
    """Points 27-35: four down the bridge, five along the base."""
    dev = p["W"].device
    tt = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], device=dev)
    ny = f["nose_top"][:, None] + (f["nose_tip"] - f["nose_top"] - 0.03)[:, None] * tt
    nx = f["nose_top_x"][:, None] + (f["nose_tip_x"] - f["nose_top_x"])[:, None] * tt
    nb = torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8], device=dev)
    nw = p["nose_w"][:, None] * f["nose_k"][:, None]
    nbx = f["nose_tip_x"][:, None] + nb * nw
    nby = f["nose_tip"][:, None] - 0.012 + 0.012 * nb.abs()
    return [torch.stack([nx, ny], -1), torch.stack([nbx, nby.expand_as(nbx)], -1)]


def _eye_points(p: dict[str, Tensor], f: dict[str, Tensor]) -> list[Tensor]:
    """Points 36-47: six around each eye."""
    ang = torch.tensor([180.0, 120.0, 60.0, 0.0, -60.0, -120.0],
                       device=p["W"].device) * math.pi / 180
    pts = []
    for side in ("l", "r"):
        a = p["eye_a"][:, None] * 0.97
        b = f["eye_b"][:, None] * 0.9
        ex = a * torch.cos(ang)
        ey = -b * torch.sin(ang)
        t = f[f"eye_{side}_tilt"][:, None]
        rx = ex * torch.cos(t) - ey * torch.sin(t)
        ry = ex * torch.sin(t) + ey * torch.cos(t)
        xx = f[f"eye_{side}_x"][:, None] + rx * f[f"eye_{side}_k"][:, None]
        yy = f[f"eye_{side}_y"][:, None] + ry
        pts.append(torch.stack([xx, yy], -1))
    return pts


def _mouth_points(p: dict[str, Tensor], f: dict[str, Tensor]) -> list[Tensor]:
    """Points 48-67: outer lip 48-59, inner 60-67 (mouth-local x, already foreshortened)."""
    dev = p["W"].device
    mw = f["mouth_w"][:, None]
    outer_x = torch.tensor([-0.97, -0.6, -0.25, 0.0, 0.25, 0.6, 0.97, 0.6, 0.25, 0.0,
                            -0.25, -0.6], device=dev)
    outer_up = torch.tensor([0, 1, 1, 1, 1, 1, 0, -1, -1, -1, -1, -1.0], device=dev)
    inner_x = torch.tensor([-0.85, -0.4, 0.0, 0.4, 0.85, 0.4, 0.0, -0.4], device=dev)
    inner_up = torch.tensor([0, 1, 1, 1, 0, -1, -1, -1.0], device=dev)
    pts = []
    for xs, ups, outer in ((outer_x, outer_up, True), (inner_x, inner_up, False)):
        x = mw * xs
        line, ho, tu, tl, _ = lip_curves(f, p, x)
        if outer:
            off = torch.where(ups > 0, -(ho + tu * 0.92), ho + tl * 0.92)
        else:
            off = torch.where(ups > 0, -ho, ho)
        off = torch.where(ups == 0, torch.zeros_like(off), off)
        yy = f["mouth_y"][:, None] + line + off
        pts.append(torch.stack([f["mouth_x"][:, None] + x, yy], -1))
    return pts


def to_pixels(p: dict[str, Tensor], local: Tensor, size: int) -> Tensor:
    """Face-unit points ``(n, k, 2)`` to pixel coordinates ``(x, y)`` of a ``size`` image."""
    u, v = local[..., 0], local[..., 1]
    cr, sr = torch.cos(p["roll"])[:, None], torch.sin(p["roll"])[:, None]
    s = p["scale"][:, None]
    x = p["tx"][:, None] + s * (cr * u - sr * v)
    y = p["ty"][:, None] + s * (sr * u + cr * v)
    return torch.stack([(x + 1) * size / 2 - 0.5, (y + 1) * size / 2 - 0.5], -1)
