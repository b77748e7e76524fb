"""SynthFace's drawing steps: soft shapes composited back to front, shading, camera.

Every part of the face is a soft shape: a signed-distance-like function ``d`` (face units)
is turned into coverage by ``sigmoid(-d / pixel)`` (:func:`soft`), and painted over the
image in painter's order (:class:`Canvas`), which also writes the segmentation (the top-most
layer with coverage > 0.5 wins). :func:`draw_faces` runs the steps in order:

background, clothing and neck, hair behind the head, ears, face skin; on a crop around the
landmarks: beard, nose, eyes, brows, mouth; hair in front; lighting (Lambert on an ellipsoid
plus a relief, :func:`relief_slopes`); on the crop again: glasses; camera response; resizing
to the output size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from lsi_ml.generators.synthface_geometry import chin_shift, face_width, lip_curves
from lsi_ml.generators.synthface_layout import HEAD_DEPTH
from lsi_ml.generators.synthface_textures import FixedTextures, face_texture

Params = dict[str, Tensor]


def _c(t: Tensor) -> Tensor:
    """Per-face values ``(n,)`` as ``(n, 1, 1)`` (broadcast over a map)."""
    return t.view(-1, 1, 1)


def _col(t: Tensor) -> Tensor:
    """Per-face colours ``(n, 3)`` as ``(n, 3, 1, 1)`` (broadcast over an image)."""
    return t.view(-1, 3, 1, 1)


def soft(d: Tensor, px: Tensor) -> Tensor:
    """Coverage of a shape with signed distance ``d``: a ~1 px sigmoid edge (10-90 %)."""
    return torch.sigmoid(-4.0 * d / px)


def ellipse(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse centred at the origin."""
    r = torch.sqrt((x / a).square() + (y / b).square() + 1e-8)
    return (r - 1.0) * torch.minimum(a, b)


def paste(full: Tensor, crop: Tensor, ys: slice, xs: slice) -> Tensor:
    """Copy of ``full`` with ``crop`` written into ``[..., ys, xs]`` (autograd-safe)."""
    out = full.clone()
    out[:, :, ys, xs] = crop
    return out


class Canvas:
    """Images ``(n, 3, h, w)`` being painted, with the class map ``(n, h, w)`` (or None)
    that :meth:`paint` writes."""

    def __init__(self, img: Tensor, seg: Tensor | None):
        self.img = img
        self.seg = seg

    def paint(self, alpha: Tensor, color: Tensor, cls: int | None = None) -> None:
        """Blend ``color`` over the image with coverage ``alpha`` ``(n, h, w)``; where
        ``alpha > 0.5`` the class map becomes ``cls`` (unless None)."""
        if self.seg is not None and cls is not None:
            self.seg.masked_fill_(alpha.detach() > 0.5, cls)
        img = self.img
        # expanding both operands keeps torch on its fast (non-broadcast) lerp kernel
        self.img = torch.lerp(img, color.expand_as(img), alpha.unsqueeze(1).expand_as(img))

    def crop(self, ys: slice, xs: slice) -> Canvas:
        """A canvas on ``[..., ys, xs]``: its class map is a view (painting writes through);
        its image comes back with :meth:`paste`."""
        return Canvas(self.img[:, :, ys, xs], None if self.seg is None else self.seg[:, ys, xs])

    def paste(self, crop: Canvas, ys: slice, xs: slice) -> None:
        """Write the image of ``crop`` (from :meth:`crop`) back into ``[..., ys, xs]``."""
        self.img = paste(self.img, crop.img, ys, xs)


@dataclass(frozen=True, eq=False)
class FaceFrame:
    """Face-local coordinates of a grid: ``u`` right, ``v`` down (face units, ``(n, h, w)``),
    with the faces' parameters ``p`` and feature layout ``f``."""

    p: Params
    f: Params
    u: Tensor
    v: Tensor
    px: Tensor
    """One pixel in face units, ``(n, 1, 1)``."""

    @classmethod
    def on_grid(cls, p: Params, f: Params, gx: Tensor, gy: Tensor) -> FaceFrame:
        """Undo each face's roll, scale and translation on the image grid ``gx, gy``."""
        r = gx.shape[-1]
        cr, sr, s = _c(torch.cos(p["roll"])), _c(torch.sin(p["roll"])), _c(p["scale"])
        dx, dy = gx - _c(p["tx"]), gy - _c(p["ty"])
        u = (cr * dx + sr * dy) / s
        v = (cr * dy - sr * dx) / s
        px = 2.0 / (r * s)
        return cls(p, f, u, v, px)

    def crop(self, ys: slice, xs: slice) -> FaceFrame:
        """The frame on ``[..., ys, xs]``."""
        return replace(self, u=self.u[:, ys, xs], v=self.v[:, ys, xs])


@dataclass(frozen=True, eq=False)
class Palette:
    """Per-face colours ``(n, 3)``. Identity sets lightness; hue-only variation (tan, tints)
    is nuisance and leaves the grey value (the channel mean) unchanged."""

    skin: Tensor
    hair: Tensor
    brow: Tensor
    lip: Tensor
    iris: Tensor
    white: Tensor

    @classmethod
    def of(cls, p: Params) -> Palette:
        n, dev = p["W"].shape[0], p["W"].device
        sl, tan = p["skin_light"], p["tan"]
        skin = torch.stack([0.45 + 0.5 * sl + tan, 0.3 + 0.5 * sl, 0.22 + 0.5 * sl - tan],
                           1).clamp(0, 1)
        hd, ht = p["hair_dark"], p["hair_tint"]
        hair = torch.stack([0.7 - 0.6 * hd + ht, 0.58 - 0.5 * hd, 0.4 - 0.35 * hd - ht],
                           1).clamp(0.02, 1)
        brow = 0.35 * skin + (0.05 + 0.3 * (1 - p["brow_dark"]))[:, None] * torch.tensor(
            [1.0, 0.9, 0.8], device=dev)
        lip = skin * torch.stack([0.95 + 0 * sl, 0.62 - 0.15 * p["lip_red"],
                                  0.62 - 0.1 * p["lip_red"]], 1)
        it, ed = p["iris_tint"], p["eye_dark"]
        iris = torch.stack([0.35 + it, 0.35 + 0 * it, 0.35 - it], 1)
        iris = iris * (1 - 0.8 * ed)[:, None]
        return cls(skin, hair, brow, lip, iris, torch.ones(n, 3, device=dev))


def draw_faces(p: Params, f: Params, gx: Tensor, gy: Tensor, seg: Tensor | None,
               crop: tuple[slice, slice], textures: FixedTextures, size: int
               ) -> tuple[Tensor, Tensor | None]:
    """Images ``(n, 3, size, size)`` in ``[0, 1]`` and class maps of faces ``p, f`` drawn
    on the grid ``gx, gy`` ``(r, r)``.

    Class ids are written into ``seg`` ``(n, r, r)`` (if given; returned resized). The
    facial features and glasses are drawn only inside ``crop`` (rows, columns), which must
    hold them.

    The order of the steps, and of the operations within them, is part of the result:
    autograd sums the gradients reaching a shared tensor (``u``, ``v``, a parameter) in
    reverse order of creation, so reordering changes gradients in the last bit.

    Memory: the output is resized and clamped here, while the chunk's maps are still
    referenced, and the lit image is kept to the end, as when the renderer was one
    function. Then the output lands at the top of glibc's heap and the next chunk reuses
    the memory below it; freed first, a fresh process trims its heap and faults it back in
    at every chunk (2-4x the page faults, up to 1.4x the time on one core).
    """
    ys, xs = crop
    fr = FaceFrame.on_grid(p, f, gx, gy)
    cv = Canvas(draw_background(p, gx, gy, textures.bg_basis), seg)
    pal = Palette.of(p)
    draw_body(cv, fr, pal)
    hair_vol = _c(p["hair_vol"])  # one node for back and front hair: the same gradients
    hair_back = hair_back_coverage(fr, hair_vol)
    u_surf = fr.u - _c(torch.sin(p["yaw"]) * HEAD_DEPTH)  # a point's place on the face
    hair_tex = face_texture(p["hair_tex"], textures.hair_waves, u_surf, fr.v)
    hair_col = _col(pal.hair) * (1 + hair_tex)
    cv.paint(hair_back, hair_col, 10)
    draw_ears(cv, fr, pal)
    face_d = face_distance(fr)
    face = soft(face_d, fr.px)
    skin_tex = face_texture(p["skin_tex"], textures.skin_waves, u_surf, fr.v)
    draw_skin(cv, fr, pal, face, skin_tex)
    # the facial features only touch a box around the landmarks: paint them on that crop
    inner = cv.crop(ys, xs)
    draw_features(inner, fr.crop(ys, xs), pal, face_d[:, ys, xs], hair_col[:, :, ys, xs])
    cv.paste(inner, ys, xs)
    hair_front = draw_hair_front(cv, fr, hair_col, hair_vol)
    lit = apply_lighting(cv.img, fr, crop, face, hair_front, hair_back)
    cv.img = lit  # ``lit`` stays referenced to the end (see Memory above)
    inner = cv.crop(ys, xs)
    draw_glasses(inner, fr.crop(ys, xs), pal)
    cv.paste(inner, ys, xs)
    return resize_output(camera_response(cv.img, p), seg, size)


# ------------------------------------------------------------------ back layers
def draw_background(p: Params, gx: Tensor, gy: Tensor, bg_basis: Tensor) -> Tensor:
    """Two-colour gradient + blob + the fixed random waves, vignette: ``(n, 3, r, r)``."""
    n, r = p["W"].shape[0], gx.shape[-1]
    ang = _c(p["bg_angle"])
    g = (gx * torch.cos(ang) + gy * torch.sin(ang)) * 0.35 + 0.5
    bxy = p["bg_blob_xy"]
    blob = torch.exp((-((gx - _c(bxy[:, 0])).square() + (gy - _c(bxy[:, 1])).square()) * 3.0)
                     .clamp(min=-30))
    waves = (p["bg_waves"] @ bg_basis.to(gx.device).view(len(bg_basis), -1)).view(n, r, r)
    shade_bg = (g.unsqueeze(1) * (_col(p["bg2"]) - _col(p["bg1"])) + _col(p["bg1"])
                + (_c(p["bg_blob"]) * blob + waves).unsqueeze(1))
    return shade_bg * (1 - _c(p["vignette"]).unsqueeze(1) * (gx.square() + gy.square()))


def draw_body(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Clothing (shoulders) and neck."""
    p, u, v, px = fr.p, fr.u, fr.v, fr.px
    cloth_d = ellipse(u, v - _c(p["Hb"] + p["shoulder_y"] + 0.9), _c(p["shoulder_w"]),
                      torch.full_like(_c(p["W"]), 0.95))
    cv.paint(soft(cloth_d, px), _col(p["cloth"]), 13)
    neck_d = torch.maximum(u.abs() - _c(p["neck_w"]), 0.2 - v)
    cv.paint(soft(neck_d, px), _col(pal.skin * 0.6), 12)


def hair_back_coverage(fr: FaceFrame, hv: Tensor) -> Tensor:
    """Coverage of the hair behind the head (volume ``hv`` ``(n, 1, 1)``, down to the
    hair's length)."""
    p, u, v = fr.p, fr.u, fr.v
    hl = _c(p["hair_len"])
    back_top = ellipse(u, v + 0.05, _c(p["W"]) * 1.08 + hv, _c(p["Ht"]) * 1.02 + hv)
    back_len = torch.maximum((u.abs() - _c(p["W"]) - hv * 0.9),
                             torch.maximum(-v, v - (0.15 + 1.1 * hl)))
    return soft(torch.minimum(back_top, back_len), fr.px)


def draw_ears(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Both ears (the far ear tucks behind the head when turned)."""
    p, u, v = fr.p, fr.u, fr.v
    for sgn in (-1.0, 1.0):
        far = (torch.sin(p["yaw"]) * sgn).clamp(min=0)
        ex = sgn * (p["W"] * (1.0 - 0.25 * far) + 0.02)
        ear_d = ellipse(u - _c(ex), v - _c(p["ear_y"]), torch.full_like(_c(ex), 0.07),
                        _c(p["ear_size"]))
        cv.paint(soft(ear_d, fr.px), _col(pal.skin * 0.8), 1)


def face_distance(fr: FaceFrame) -> Tensor:
    """Signed distance to the face's outline: jaw and cheeks below, forehead above."""
    p, u, v = fr.p, fr.u, fr.v
    w = face_width(p, v)
    face_d = torch.where(v < 0, u.abs() - w, (u - chin_shift(p, v)).abs() - w)
    return torch.maximum(torch.maximum(face_d, v - _c(p["Hb"])), -v - _c(p["Ht"]))


def draw_skin(cv: Canvas, fr: FaceFrame, pal: Palette, face: Tensor, skin_tex: Tensor
              ) -> None:
    """The face's skin (coverage ``face``): textured (``skin_tex`` ``(n, 1, h, w)``),
    blushed cheeks."""
    p, f, u, v = fr.p, fr.f, fr.u, fr.v
    n, dev = p["W"].shape[0], u.device
    cheek = torch.exp((-((u.abs() - _c(p["eye_x"])).square()
                         + (v - _c(f["nose_tip"])).square()) * 30).clamp(min=-30))
    skin_col = _col(pal.skin) * (1 + skin_tex) + (_c(p["blush"]) * cheek).unsqueeze(1) * _col(
        torch.tensor([0.25, -0.1, -0.08], device=dev).expand(n, 3))
    cv.paint(face, skin_col, 1)


# ------------------------------------------------------------------ facial features
def draw_features(cv: Canvas, fr: FaceFrame, pal: Palette, face_d: Tensor, hair_col: Tensor
                  ) -> None:
    """Beard, nose, eyes, brows and mouth (``face_d``, ``hair_col`` on ``cv``'s grid)."""
    draw_beard(cv, fr, face_d, hair_col)
    draw_nose(cv, fr, pal)
    draw_eyes(cv, fr, pal)
    draw_brows(cv, fr, pal)
    draw_mouth(cv, fr, pal)


def draw_beard(cv: Canvas, fr: FaceFrame, face_d: Tensor, hair_col: Tensor) -> None:
    """Beard: darkens the lower face around the mouth."""
    p, f = fr.p, fr.f
    bd = torch.maximum(face_d, _c(f["mouth_y"]) - 0.06 - fr.v)
    beard = soft(bd, fr.px * 8) * _c(p["beard"]) * 0.9
    cv.paint(beard, hair_col * 0.6)


def draw_nose(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Nose: a wedge shaded away from the light, and nostrils."""
    p, f, u, v, px = fr.p, fr.f, fr.u, fr.v, fr.px
    nt, nb_ = _c(f["nose_top"]), _c(f["nose_tip"])
    tt = ((v - nt) / (nb_ - nt)).clamp(0, 1)
    nxc = _c(f["nose_top_x"]) + (_c(f["nose_tip_x"]) - _c(f["nose_top_x"])) * tt
    nhw = 0.03 + (_c(p["nose_w"]) * _c(f["nose_k"]) - 0.03) * tt.square()
    nose_d = torch.maximum((u - nxc).abs() - nhw, torch.maximum(nt - v, v - nb_))
    nose = soft(nose_d, px)
    side = torch.sigmoid((u - nxc) / (nhw + 1e-3) * 4 * _c(torch.sin(p["light_az"]).sign()))
    cv.paint(nose, _col(pal.skin) * (0.97 - 0.12 * side.unsqueeze(1)), 6)
    for sgn in (-1.0, 1.0):
        nd = ellipse(u - _c(f["nose_tip_x"] + sgn * 0.45 * p["nose_w"] * f["nose_k"]),
                     v - nb_ + 0.012, _c(p["nose_w"] * 0.3 * f["nose_k"]),
                     torch.full_like(nb_, 0.014))
        cv.paint(soft(nd, px) * 0.8, _col(pal.skin * 0.35))


def draw_eyes(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Eyes: white, iris, pupil, lid outline."""
    p, f, u, v, px = fr.p, fr.f, fr.u, fr.v, fr.px
    for side, cls in (("l", 4), ("r", 5)):
        t = _c(f[f"eye_{side}_tilt"])
        ex = (u - _c(f[f"eye_{side}_x"])) / _c(f[f"eye_{side}_k"])
        ey = v - _c(f[f"eye_{side}_y"])
        rx = ex * torch.cos(t) + ey * torch.sin(t)
        ry = -ex * torch.sin(t) + ey * torch.cos(t)
        eye_d = ellipse(rx, ry, _c(p["eye_a"]), _c(f["eye_b"]))
        eye = soft(eye_d, px)
        cv.paint(eye, _col(pal.white * 0.93), cls)
        ir = _c(f["eye_b_full"]) * 1.05
        iris_d = torch.sqrt((rx - _c(p["gaze"] * p["eye_a"])).square() + ry.square() + 1e-8) - ir
        cv.paint(soft(iris_d, px) * eye, _col(pal.iris))
        cv.paint(soft(iris_d + ir * 0.55, px) * eye, _col(pal.white * 0.03))
        lid = soft(eye_d.abs() - 0.008, px) * torch.sigmoid(-ry / px)
        cv.paint(lid, _col(pal.brow * 0.5))


def draw_brows(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Brows: arched bands thinning towards their ends."""
    p, f, u, v = fr.p, fr.f, fr.u, fr.v
    for side, cls in (("l", 2), ("r", 3)):
        bx = (u - _c(f[f"brow_{side}_x"])) / _c(f[f"brow_{side}_k"])
        xr = bx / _c(p["brow_len"])
        curve = -_c(p["brow_arch"]) * (1 - xr.square())
        th = _c(p["brow_th"]) * (1 - 0.4 * (xr.square()).clamp(max=1))
        bd = torch.maximum((v - _c(f[f"brow_{side}_y"]) - curve).abs() - th,
                           bx.abs() - _c(p["brow_len"]))
        cv.paint(soft(bd, fr.px), _col(pal.brow), cls)


def draw_mouth(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Mouth: interior, teeth, upper and lower lip (with gloss)."""
    p, f, px = fr.p, fr.f, fr.px
    n, dev = p["W"].shape[0], fr.u.device
    mx = fr.u - _c(f["mouth_x"])
    line, ho, tu, tl, xr = lip_curves(f, p, mx)
    my = fr.v - _c(f["mouth_y"]) - line
    inside = xr.abs() - 1.0
    mouth_d = torch.maximum(my.abs() - ho, inside * _c(f["mouth_w"]))
    interior = _col(torch.tensor([0.3, 0.08, 0.1], device=dev).expand(n, 3))
    cv.paint(soft(mouth_d, px), interior, 9)
    teeth = soft(torch.maximum(mouth_d, -(my + ho * 0.35)), px) * _c(p["open"])
    cv.paint(teeth * 0.9, _col(pal.white * 0.92))
    up_d = torch.maximum((my + ho + tu / 2).abs() - tu / 2, inside * _c(f["mouth_w"]))
    cv.paint(soft(up_d, px), _col(pal.lip * 0.9), 7)
    lo_d = torch.maximum((my - ho - tl / 2).abs() - tl / 2, inside * _c(f["mouth_w"]))
    gloss = (1 + 0.2 * _c(p["lip_gloss"]) * torch.exp(
        (-((my - ho - tl * 0.4) / 0.01).square()).clamp(min=-30))
             ).unsqueeze(1)
    cv.paint(soft(lo_d, px), _col(pal.lip) * gloss, 8)


# ------------------------------------------------------------------ front layers
def draw_hair_front(cv: Canvas, fr: FaceFrame, hair_col: Tensor, hv: Tensor) -> Tensor:
    """Hair in front (volume ``hv`` ``(n, 1, 1)``): a top cap down to the hairline, bangs
    lower it over the forehead; returns its coverage."""
    p, f, u, v = fr.p, fr.f, fr.u, fr.v
    hxc = _c(f["nose_top_x"])
    hline = _c(p["hairline"]) + 0.25 * (u - hxc - _c(p["parting"])).square()
    bang_line = _c(f["brow_l_y"] + f["brow_r_y"]) * 0.5 - 0.07 + 0.04 * (
        1 - torch.cos(18 * (u - hxc)))
    hline = hline + _c(p["bangs"]) * (bang_line - hline).clamp(min=0)
    cap_d = torch.maximum(ellipse(u, v + 0.02, _c(p["W"]) * 1.0 + hv * 0.4,
                                  _c(p["Ht"]) * 1.02 + hv), v - hline)
    hair_front = soft(cap_d, fr.px)
    cv.paint(hair_front, hair_col, 10)
    return hair_front


def draw_glasses(cv: Canvas, fr: FaceFrame, pal: Palette) -> None:
    """Glasses: tinted lenses, rims and bridge."""
    p, f, u, v, px = fr.p, fr.f, fr.u, fr.v, fr.px
    n, dev = p["W"].shape[0], u.device
    rims = []
    for side in ("l", "r"):
        ex = (u - _c(f[f"eye_{side}_x"])) / _c(f[f"eye_{side}_k"])
        ey = v - _c(f[f"eye_{side}_y"]) + 0.01
        rims.append(ellipse(ex, ey, _c(p["eye_a"]) * 1.6, _c(p["eye_a"]) * 1.15))
    lens = torch.minimum(rims[0], rims[1])
    rim_d = lens.abs() - torch.clamp(0.6 * px, min=0.012)
    yb = _c(f["eye_l_y"] + f["eye_r_y"]) * 0.5 - 0.02
    xl = _c(f["eye_l_x"] + p["eye_a"] * 1.4 * f["eye_l_k"])
    xrr = _c(f["eye_r_x"] - p["eye_a"] * 1.4 * f["eye_r_k"])
    bridge = torch.maximum((v - yb).abs() - torch.clamp(0.6 * px, min=0.01),
                           torch.maximum(xl - u, u - xrr))
    gl = _c(p["glasses"])
    cv.paint(soft(lens, px) * gl * _c(p["lens_tint"]),
             _col(torch.tensor([0.2, 0.3, 0.4], device=dev).expand(n, 3)))
    frame = _col(pal.white * (0.6 - 0.55 * p["frame_dark"][:, None]))
    cv.paint(soft(torch.minimum(rim_d, bridge), px) * gl, frame, 11)


# ------------------------------------------------------------------ shading and camera
def relief_slopes(p: Params, f: Params, u: Tensor, v: Tensor, px: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """Slopes ``(dh/du, dh/dv)`` of the face relief ``h`` (face units) on a grid crop.

    The relief: nose ridge, brow ridge, eye sockets, cheekbones, chin and lips.
    """
    def bump(du: Tensor, dv: Tensor, su: float | Tensor, sv: float | Tensor) -> Tensor:
        return torch.exp((-(du / su).square() - (dv / sv).square()).clamp(min=-30))

    nt, nb = _c(f["nose_top"]), _c(f["nose_tip"])
    tt = ((v - nt) / (nb - nt)).clamp(0, 1)
    nxc = _c(f["nose_top_x"]) + (_c(f["nose_tip_x"]) - _c(f["nose_top_x"])) * tt
    along = torch.sigmoid((v - nt) / 0.02) * torch.sigmoid((nb + 0.02 - v) / 0.02)
    h = 0.07 * (0.3 + 0.7 * tt) * along * torch.exp(
        (-((u - nxc) / (_c(p["nose_w"]) * 0.8 + 0.02)).square()).clamp(min=-30))
    mid = _c(0.5 * (f["eye_l_x"] + f["eye_r_x"]))
    h = h + 0.03 * bump(u - mid, v - _c(0.5 * (f["brow_l_y"] + f["brow_r_y"])),
                        _c(p["eye_x"]) + 0.15, 0.05)
    for side in ("l", "r"):
        h = h - 0.035 * bump(u - _c(f[f"eye_{side}_x"]), v - _c(f[f"eye_{side}_y"]),
                             _c(p["eye_a"]) + 0.02, 0.07)
    for sgn in (-1.0, 1.0):
        h = h + 0.03 * bump(u - _c(f["nose_tip_x"] + sgn * 1.05 * p["eye_x"]),
                            v - _c(f["nose_tip"]) + 0.03, 0.1, 0.08)
    h = h + 0.02 * bump(u - _c(f["mouth_x"]), v - _c(p["Hb"]) + 0.12, 0.12, 0.07)
    h = h + 0.015 * bump(u - _c(f["mouth_x"]), v - _c(f["mouth_y"]), _c(f["mouth_w"]), 0.05)
    # central differences (one-sided at the crop's border); a grid step is ``px``
    gu = torch.cat([h[:, :, 1:2] - h[:, :, :1], h[:, :, 2:] - h[:, :, :-2],
                    h[:, :, -1:] - h[:, :, -2:-1]], 2) / (2 * px)
    gv = torch.cat([h[:, 1:2] - h[:, :1], h[:, 2:] - h[:, :-2],
                    h[:, -1:] - h[:, -2:-1]], 1) / (2 * px)
    return gu, gv


def head_normals(fr: FaceFrame, crop: tuple[slice, slice], face: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Unnormalised normals ``(nx, ny, nz)`` of the head: an ellipsoid whose normals the
    relief's slopes tilt where the face (coverage ``face``) is, inside ``crop``."""
    p, u, v = fr.p, fr.u, fr.v
    ys, xs = crop
    nx = u / _c(p["W"] * 1.1)
    ny = v / _c(p["Ht"] * 1.15)
    nz = torch.sqrt((1 - nx.square() - ny.square()).clamp(min=0.02))
    gu, gv = relief_slopes(p, fr.f, u[:, ys, xs], v[:, ys, xs], fr.px)
    slope_u, slope_v = torch.zeros_like(nx), torch.zeros_like(ny)
    slope_u[:, ys, xs] = gu * face[:, ys, xs]
    slope_v[:, ys, xs] = gv * face[:, ys, xs]
    return nx - slope_u * nz, ny - slope_v * nz, nz


def apply_lighting(img: Tensor, fr: FaceFrame, crop: tuple[slice, slice], face: Tensor,
                   hair_front: Tensor, hair_back: Tensor) -> Tensor:
    """Lambert (with a softness wrap), specular and warmth on the head (face, hair, neck);
    the rest is dimmed by the light's intensity."""
    p = fr.p
    nx, ny, nz = head_normals(fr, crop, face)
    norm = torch.sqrt(nx.square() + ny.square() + nz.square())
    az, el = _c(p["light_az"]), _c(p["light_el"])
    cos_in = (nx * torch.sin(az) * torch.cos(el) - ny * torch.sin(el)
              + nz * torch.cos(az) * torch.cos(el)) / norm
    soft_ = _c(p["light_soft"])
    lam = ((cos_in + soft_) / (1 + soft_)).clamp(min=0)
    shade = _c(p["ambient"]) + _c(p["light_int"]) * lam
    spec = (_c(p["specular"]) * face + _c(p["hair_shine"]) * torch.maximum(
        hair_front, hair_back) * (1 - face)) * lam ** 8
    head = torch.maximum(torch.maximum(face, hair_front), hair_back).unsqueeze(1)
    warm = _col(torch.stack([1 + p["warmth"], torch.ones_like(p["warmth"]),
                             1 - p["warmth"]], 1))
    lit = img * shade.unsqueeze(1) * warm + spec.unsqueeze(1)
    return torch.lerp(img * (0.5 + 0.5 * _c(p["light_int"]).unsqueeze(1)), lit,
                      head.expand_as(lit))


def camera_response(img: Tensor, p: Params) -> Tensor:
    """Saturation, contrast and gamma."""
    grey = img.mean(1, keepdim=True)
    img = grey + (img - grey) * _c(p["saturation"]).unsqueeze(1)
    img = (img - 0.5) * _c(p["contrast"]).unsqueeze(1) + 0.5
    return img.clamp(1e-4, 1.0) ** _c(p["gamma"]).unsqueeze(1)


def resize_output(img: Tensor, seg: Tensor | None, size: int) -> tuple[Tensor, Tensor | None]:
    """Images bilinearly (antialiased when shrinking) and class maps nearest-resized to
    ``size``; images clamped to ``[0, 1]``."""
    r = img.shape[-1]
    if r != size:
        img = F.interpolate(img, size=(size, size), mode="bilinear",
                            align_corners=False, antialias=r > size)
        if seg is not None:
            seg = F.interpolate(seg[:, None].float(), size=(size, size),
                                mode="nearest")[:, 0].long()
    return img.clamp(0, 1), seg
