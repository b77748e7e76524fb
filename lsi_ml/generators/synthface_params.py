"""SynthFace's latent-to-parameter mapping: fixed squashing of each latent dimension.

Each latent dimension (:mod:`lsi_ml.generators.synthface_layout`) is mapped to a named
physical parameter through a fixed squashing function: linear near the prior's centre for
identity geometry, ``tanh`` / ``sigmoid`` onto a plausible range elsewhere. Lengths are in
face units (head half-width ~0.7), angles in radians.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lsi_ml.generators.synthface_geometry import project
from lsi_ml.generators.synthface_layout import EYE_TARGET, FACE_SCALE, HEAD_DEPTH, PARAM_INDEX

DEG = math.pi / 180
"""One degree in radians."""


def _rng(z: Tensor, lo: float, hi: float, k: float = 1.6) -> Tensor:
    """Squash ``z`` onto ``(lo, hi)`` with a sigmoid (``z = 0`` maps to the middle)."""
    return lo + (hi - lo) * torch.sigmoid(k * z)


def _lin(z: Tensor, mid: float, per_sd: float, lim: float = 2.5) -> Tensor:
    """``mid + per_sd * z`` near the prior's centre, saturating at ``mid +- per_sd * lim``."""
    return mid + per_sd * lim * torch.tanh(z / lim)


def _logn(z: Tensor, mid: float, per_sd: float, lim: float = 2.0) -> Tensor:
    """A positive size: ``mid * exp(per_sd * z)`` near the centre, saturating at ``lim`` SD."""
    return mid * torch.exp(per_sd * lim * torch.tanh(z / lim))


def face_params(latent: Tensor, aligned: bool) -> dict[str, Tensor]:
    """Named parameters ``(n,)`` (a few ``(n, k)``) of latents ``(n, 4, 24)``.

    ``aligned``: only yaw, a small nod and sub-pixel jitter vary in pose, and the midpoint
    of the eyes lands on ``EYE_TARGET``; otherwise roll, scale and translation vary too.
    """
    z = {name: latent.reshape(latent.shape[0], -1)[:, i] for name, i in PARAM_INDEX.items()}
    p: dict[str, Tensor] = {}
    _coarse_params(p, z, aligned)
    _middle_params(p, z)
    _fine_params(p, z)
    _texture_params(p, z)
    _align(p, z, aligned)
    return p


def _coarse_params(p: dict[str, Tensor], z: dict[str, Tensor], aligned: bool) -> None:
    """Pose (aligned: only yaw, a small nod and sub-pixel jitter vary), head outline, ears,
    neck, shoulders, light softness and hair shine."""
    p["yaw"] = (20 if aligned else 30) * DEG * torch.tanh(0.9 * z["yaw"])
    p["roll"] = (0 if aligned else 15) * DEG * torch.tanh(0.9 * z["roll"])
    p["scale"] = FACE_SCALE * (1 + 0 * z["scale"] if aligned
                               else _rng(z["scale"], 0.85, 1.1))
    p["nod"] = 0.03 * torch.tanh(z["nod"])
    p["W"] = _lin(z["head_width"], 0.68, 0.05)
    p["Ht"] = _lin(z["head_top"], 0.95, 0.07)
    p["Hb"] = _lin(z["chin_length"], 0.9, 0.06)
    p["Wc"] = _lin(z["chin_width"], 0.21, 0.085, 1.5)
    p["jaw_p"] = _lin(z["jaw_profile"], 2.1, 0.5, 1.8)
    p["ear_size"] = _lin(z["ear_size"], 0.15, 0.06, 1.6)
    p["ear_y"] = _lin(z["ear_height"], -0.01, 0.07, 2.0)
    p["hairline"] = _lin(z["hairline"], -0.53, 0.07)
    p["neck_w"] = _lin(z["neck_width"], 0.36, 0.07, 2.0)
    p["h1"] = _lin(z["jaw_harm1"], 0.0, 0.09, 2.0)
    p["h2"] = _lin(z["jaw_harm2"], 0.0, 0.09, 2.0)
    p["feat_y"] = _lin(z["feature_height"], 0.0, 0.05) + p["nod"]
    p["shoulder_w"] = _rng(z["shoulder_width"], 1.2, 1.6)
    p["shoulder_y"] = _rng(z["shoulder_drop"], 0.25, 0.45)
    p["cheek"] = _lin(z["cheek_width"], 0.0, 0.1, 2.0)
    p["forehead"] = _lin(z["forehead_width"], 0.98, 0.2, 1.2)
    p["depth"] = torch.full_like(p["W"], HEAD_DEPTH)
    p["asym"] = torch.zeros_like(p["W"])
    p["light_soft"] = _rng(z["light_softness"], 0.0, 0.5)
    p["hair_shine"] = _rng(z["hair_shine"], 0.0, 0.3)


def _middle_params(p: dict[str, Tensor], z: dict[str, Tensor]) -> None:
    """Feature geometry (identity) and expression, hair style and glasses (nuisance)."""
    p["eye_x"] = _lin(z["eye_spacing"], 0.275, 0.058, 1.8)
    p["eye_a"] = _logn(z["eye_size"], 0.105, 0.4)
    p["eye_y"] = _lin(z["eye_height"], -0.11, 0.05) + p["feat_y"]
    p["eye_tilt"] = torch.zeros_like(p["W"])
    p["eye_aspect"] = torch.full_like(p["W"], 0.46)
    p["squint"] = _rng(z["squint"], 0.0, 0.3)
    p["eye_shadow"] = _rng(z["eye_shadow"], 0.0, 0.15)
    p["brow_th"] = _lin(z["brow_thickness"], 0.034, 0.018, 1.5)
    p["brow_dy"] = _lin(z["brow_height"], 0.155, 0.052, 1.7)
    p["brow_arch"] = _lin(z["brow_arch"], 0.025, 0.055, 2.0)
    p["brow_len"] = _lin(z["brow_length"], 0.15, 0.065, 1.6)
    p["nose_len"] = _lin(z["nose_length"], 0.27, 0.05, 2.0)
    p["nose_w"] = _logn(z["nose_width"], 0.09, 0.6)
    p["mouth_w"] = _logn(z["mouth_width"], 0.18, 0.3)
    p["lip_t"] = 0.037 * _rng(z["lip_press"], 0.7, 1.2)
    p["mouth_dy"] = _lin(z["mouth_height"], 0.14, 0.05, 2.0)
    p["smile"] = torch.sigmoid(1.5 * z["smile"])
    p["open"] = torch.sigmoid(2.5 * (z["mouth_open"] - 0.3))
    p["brow_raise"] = 0.04 * torch.tanh(z["brow_raise"])
    p["eye_open"] = _rng(z["eye_open"] + 1.0, 0.3, 1.1) * (1 - p["squint"])
    p["gaze"] = 0.35 * torch.tanh(z["gaze_x"])
    p["hair_vol"] = _rng(z["hair_volume"], 0.04, 0.12)
    p["hair_len"] = torch.sigmoid(1.5 * z["hair_length"])
    p["bangs"] = torch.sigmoid(4 * (z["bangs"] - 0.7))
    p["parting"] = 0.25 * torch.tanh(z["parting"])
    p["glasses"] = torch.sigmoid(5 * (z["glasses"] - 0.8))


def _fine_params(p: dict[str, Tensor], z: dict[str, Tensor]) -> None:
    """Tones (identity), hue-only variation, lighting, glasses and clothing colours and the
    camera (nuisance)."""
    p["skin_light"] = torch.sigmoid(1.2 * z["skin_light"])
    p["tan"] = 0.06 * torch.tanh(z["tan"])
    p["hair_dark"] = torch.sigmoid(1.5 * z["hair_dark"])
    p["hair_tint"] = 0.08 * torch.tanh(z["hair_tint"])
    p["eye_dark"] = _rng(z["iris_dark"], 0.0, 1.0)
    p["iris_tint"] = 0.1 * torch.tanh(z["iris_tint"])
    p["lip_red"] = _rng(z["lip_colour"], 0.0, 1.0)
    p["beard"] = torch.sigmoid(1.6 * (z["beard"] - 0.4))
    p["brow_dark"] = _rng(z["brow_dark"], 0.0, 1.0)
    p["light_az"] = 35 * DEG * torch.tanh(0.9 * z["light_azimuth"])
    p["light_el"] = _rng(z["light_elevation"], 0 * DEG, 30 * DEG)
    p["light_int"] = _rng(z["light_intensity"], 0.5, 0.8)
    p["ambient"] = _rng(z["ambient"], 0.5, 0.62)
    p["warmth"] = 0.08 * torch.tanh(z["light_warmth"])
    p["lens_tint"] = _rng(z["glasses_tint"], 0.05, 0.35)
    p["frame_dark"] = _rng(z["frame_dark"], 0.0, 1.0)
    p["cloth"] = torch.stack([_rng(z[c], 0.05, 0.9) for c in ("cloth_r", "cloth_g",
                                                               "cloth_b")], 1)
    p["specular"] = _rng(z["specular"], 0.0, 0.25)
    p["blush"] = _rng(z["blush"], 0.0, 0.25)
    p["saturation"] = _rng(z["saturation"], 0.75, 1.15)
    p["gamma"] = _rng(z["gamma"], 0.93, 1.07)
    p["lip_gloss"] = _rng(z["lip_gloss"], 0.0, 1.0)


def _texture_params(p: dict[str, Tensor], z: dict[str, Tensor]) -> None:
    """Background colours, gradient, blob and waves; skin and hair textures; vignette and
    contrast."""
    p["bg1"] = torch.stack([_rng(z[c], 0.05, 0.5) for c in ("bg_r1", "bg_g1", "bg_b1")], 1)
    p["bg2"] = torch.stack([_rng(z[c], 0.05, 0.5) for c in ("bg_r2", "bg_g2", "bg_b2")], 1)
    p["bg_angle"] = math.pi * torch.tanh(z["bg_angle"])
    p["bg_blob_xy"] = torch.stack([torch.tanh(z["bg_blob_x"]), torch.tanh(z["bg_blob_y"])], 1)
    p["bg_blob"] = 0.3 * torch.tanh(z["bg_blob"])
    p["bg_waves"] = 0.08 * torch.tanh(
        torch.stack([z[f"bg_wave{k}"] for k in range(1, 9)], 1)
    )
    p["skin_tex"] = 0.05 * torch.tanh(torch.stack([z["skin_tex"], z["skin_tex2"]], 1))
    p["hair_tex"] = 0.08 * torch.tanh(torch.stack([z["hair_tex"], z["hair_tex2"]], 1))
    p["vignette"] = _rng(z["vignette"], 0.0, 0.2)
    p["contrast"] = _rng(z["contrast"], 0.93, 1.05)


def _align(p: dict[str, Tensor], z: dict[str, Tensor], aligned: bool) -> None:
    """Translation: the midpoint of the (projected) eyes lands on ``EYE_TARGET``, as in the
    eye-based alignment of FFHQ / CelebA-HQ; ``free`` pose adds v1's translations."""
    mid_x = 0.5 * (project(p, -p["eye_x"], p["eye_y"])[0]
                   + project(p, p["eye_x"], p["eye_y"])[0])
    cr, sr, s = torch.cos(p["roll"]), torch.sin(p["roll"]), p["scale"]
    jx = (0.008 if aligned else 0.12) * torch.tanh(z["tx"])
    jy = (0.008 if aligned else 0.06) * torch.tanh(z["ty"])
    p["tx"] = EYE_TARGET[0] - s * (cr * mid_x - sr * p["eye_y"]) + jx
    p["ty"] = EYE_TARGET[1] - s * (sr * mid_x + cr * p["eye_y"]) + jy
