"""SynthFace (version 2): the embedded, procedural and differentiable default face generator.

SynthFace draws ALIGNED faces, as the paper's FFHQ / CelebA-HQ crops are, from a structured
latent ``(n, 4, 24)`` with pure torch operations, so images are differentiable with respect
to the latent. Every part of the face is a soft shape: a signed-distance-like function ``d``
(in face units) is turned into coverage by ``sigmoid(-d / pixel)``, i.e. a ~1 px antialiased
edge. Shapes are composited back to front (painter's order) and the segmentation map is taken
from the same coverages (the top-most layer with coverage > 0.5 wins).

Alignment (``pose="aligned"``, the default): the midpoint of the two eyes lands on
:data:`EYE_TARGET` at a fixed scale (:data:`FACE_SCALE`), whatever the identity, yaw or
expression; yaw stays within +-20 deg, the nod (pitch) is small, and the translation
jitter is below a quarter pixel at 64 px. ``pose="free"`` adds v1's roll (+-15 deg), scale
and translation, for robustness studies.

Identity is what a grey photodiode can see (``*`` below; 29 dims): the head and jaw outline,
ears, hairline and neck; the geometry of eyes, brows, nose and mouth; skin and hair
lightness, beard and brow darkness. Geometry dims are scaled so one standard deviation moves
an edge by at least one pixel at 64 px (``tests/test_synthface_identity.py`` checks each);
no identity dim is hue only. Hue-only variation (tan, hair / iris tint, lip colour) is
nuisance and leaves the grey value unchanged.

Latent layout (``n x 4 levels x 24 dims``, prior ``N(0, I)``):

- ``coarse``: pose (yaw, nod; roll / scale / translation only with ``pose="free"``), head and
  jaw shape*, ears*, hairline*, neck*, shoulders, light softness, hair shine.
- ``middle``: eyes*, brows*, nose*, mouth* geometry; expression (smile, mouth open, brow
  raise, eye openness, squint, lip press, gaze); hair style (volume, length, bangs,
  parting); glasses.
- ``fine``: skin* and hair* lightness, beard*, brow darkness*; tints; lighting (azimuth,
  elevation, intensity, ambient, warmth); glasses and clothing colours, camera gamma.
- ``texture``: background colours, gradient, blob and wave amplitudes, skin and hair
  texture amplitudes, vignette, contrast.

Each dimension is mapped to its parameter through a fixed squashing function (linear near
the prior's centre for identity geometry, ``tanh`` / ``sigmoid`` onto a plausible range
elsewhere). The identity is ``latent.reshape(n, -1)[:, IDENTITY_INDEX]``; everything else is
nuisance.

Shading: Lambert (with a softness wrap) on the head's surface, an ellipsoid plus a relief of
nose ridge, brow ridge, eye sockets, cheekbones, chin and lips whose slopes tilt the
normals. Skin and hair textures are plane waves in face coordinates, so they move with the
head. Yaw is a 2.5-D approximation: each facial feature sits on a shallow surface of depth
``z(x, y)`` in front of the rotation axis; its projected position is
``x cos(yaw) + z sin(yaw)`` and its width is scaled by ``d(projected x)/dx``.

Conventions: image coordinates ``x`` to the right, ``y`` down; ``left``/``right`` in class
and landmark names mean the IMAGE's left/right (iBUG points 36-41 and class 4 are the eye on
the image's left). ``yaw > 0`` turns the face towards the image's right.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lsi_ml.generators.base import LatentLevel, RenderOutput

LEVEL_NAMES = ("coarse", "middle", "fine", "texture")
POSES = ("aligned", "free")
FACE_SCALE = 0.78
"""Face units per half image (the head's half-width is ~0.68 face units): at 64 px one face
unit is ~25 px, one pixel ~0.04 face units."""
EYE_TARGET = (0.0, -0.15)
"""Where aligned faces put the midpoint of the eyes, in image coordinates ``[-1, 1]``."""
HEAD_DEPTH = 0.45
"""Depth of the face surface in front of the yaw axis (face units)."""
LEVEL_DIM = 24

# (name, identity?) per dimension, level by level.
_LAYOUT: tuple[tuple[tuple[str, bool], ...], ...] = (
    (
        ("yaw", False), ("roll", False), ("scale", False), ("tx", False), ("ty", False),
        ("nod", False), ("head_width", True), ("head_top", True), ("chin_length", True),
        ("chin_width", True), ("jaw_profile", True), ("ear_size", True), ("ear_height", True),
        ("hairline", True), ("neck_width", True), ("jaw_harm1", True), ("jaw_harm2", True),
        ("feature_height", True), ("shoulder_width", False), ("shoulder_drop", False),
        ("cheek_width", True), ("forehead_width", True), ("light_softness", False),
        ("hair_shine", False),
    ),
    (
        ("eye_spacing", True), ("eye_size", True), ("eye_height", True), ("squint", False),
        ("eye_shadow", False), ("brow_thickness", True), ("brow_height", True),
        ("brow_arch", True), ("brow_length", True), ("nose_length", True),
        ("nose_width", True), ("mouth_width", True), ("lip_press", False),
        ("mouth_height", True), ("smile", False), ("mouth_open", False), ("brow_raise", False),
        ("eye_open", False), ("gaze_x", False), ("hair_volume", False), ("hair_length", False),
        ("bangs", False), ("parting", False), ("glasses", False),
    ),
    (
        ("skin_light", True), ("tan", False), ("hair_dark", True), ("hair_tint", False),
        ("iris_dark", False), ("iris_tint", False), ("lip_colour", False), ("beard", True),
        ("brow_dark", True), ("light_azimuth", False), ("light_elevation", False),
        ("light_intensity", False), ("ambient", False), ("light_warmth", False),
        ("glasses_tint", False), ("frame_dark", False), ("cloth_r", False),
        ("cloth_g", False), ("cloth_b", False), ("specular", False), ("blush", False),
        ("saturation", False), ("gamma", False), ("lip_gloss", False),
    ),
    (
        ("bg_r1", False), ("bg_g1", False), ("bg_b1", False), ("bg_r2", False),
        ("bg_g2", False), ("bg_b2", False), ("bg_angle", False), ("bg_blob_x", False),
        ("bg_blob_y", False), ("bg_blob", False), ("bg_wave1", False), ("bg_wave2", False),
        ("bg_wave3", False), ("bg_wave4", False), ("bg_wave5", False), ("bg_wave6", False),
        ("bg_wave7", False), ("bg_wave8", False), ("skin_tex", False),
        ("skin_tex2", False), ("hair_tex", False), ("hair_tex2", False),
        ("vignette", False), ("contrast", False),
    ),
)
PARAM_NAMES: tuple[str, ...] = tuple(name for level in _LAYOUT for name, _ in level)
PARAM_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAM_NAMES)}
IDENTITY_INDEX: tuple[int, ...] = tuple(
    i for i, (_, ident) in enumerate(p for level in _LAYOUT for p in level) if ident
)
NUISANCE_INDEX: tuple[int, ...] = tuple(
    i for i in range(len(PARAM_NAMES)) if i not in set(IDENTITY_INDEX)
)

CLASS_NAMES: tuple[str, ...] = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "nose",
    "upper_lip", "lower_lip", "mouth", "hair", "glasses", "neck", "cloth",
)
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "smiling", "mouth_open", "eyeglasses", "bangs", "beard", "dark_hair", "turned_right",
    "strong_light", "long_hair", "pale_skin",
)
# Which latent parameter drives each attribute (thresholds in ``SynthFace.attributes``).
ATTRIBUTE_DRIVERS: dict[str, str] = {
    "smiling": "smile", "mouth_open": "mouth_open", "eyeglasses": "glasses",
    "bangs": "bangs", "beard": "beard", "dark_hair": "hair_dark", "turned_right": "yaw",
    "strong_light": "light_intensity", "long_hair": "hair_length", "pale_skin": "skin_light",
}
# The latent value of each driver at which its attribute switches (``SynthFace.attributes``
# thresholds mapped back through ``SynthFace.params``); a test checks them.
ATTRIBUTE_LATENT_THRESHOLDS: dict[str, float] = {
    "smiling": 0.0, "mouth_open": 0.3, "eyeglasses": 0.8, "bangs": 0.7, "beard": 0.4,
    "dark_hair": 0.0, "turned_right": 0.0, "strong_light": 0.0, "long_hair": 0.0,
    "pale_skin": math.log(0.62 / 0.38) / 1.2,
}
_DRIVER_THRESHOLDS: tuple[tuple[int, float], ...] = tuple(
    (PARAM_INDEX[ATTRIBUTE_DRIVERS[name]], ATTRIBUTE_LATENT_THRESHOLDS[name])
    for name in ATTRIBUTE_NAMES
)


def _rng(z: Tensor, lo: float, hi: float, k: float = 1.6) -> Tensor:
    """Squash ``z`` onto ``(lo, hi)`` with a sigmoid (``z = 0`` maps to the middle)."""
    return lo + (hi - lo) * torch.sigmoid(k * z)


def _lin(z: Tensor, mid: float, per_sd: float, lim: float = 2.5) -> Tensor:
    """``mid + per_sd * z`` near the prior's centre, saturating at ``mid +- per_sd * lim``."""
    return mid + per_sd * lim * torch.tanh(z / lim)


def _logn(z: Tensor, mid: float, per_sd: float, lim: float = 2.0) -> Tensor:
    """A positive size: ``mid * exp(per_sd * z)`` near the centre, saturating at ``lim`` SD."""
    return mid * torch.exp(per_sd * lim * torch.tanh(z / lim))


def _soft(d: Tensor, px: Tensor) -> Tensor:
    """Coverage of a shape with signed distance ``d``: a ~1 px sigmoid edge (10-90 %)."""
    return torch.sigmoid(-4.0 * d / px)


def _ellipse(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse centred at the origin."""
    r = torch.sqrt((x / a).square() + (y / b).square() + 1e-8)
    return (r - 1.0) * torch.minimum(a, b)


class SynthFace:
    """Procedural differentiable face generator with ground truth.

    Parameters
    ----------
    size : int
        Output image size in pixels (square), 64..256.
    seed : int
        Seed of the fixed procedural textures and of the fixed random feature encoder.
    internal_size : int or None
        Resolution at which the soft shapes are evaluated; the image is bilinearly resized
        (and the segmentation nearest-resized) to ``size``. ``None`` renders natively.

    Notes
    -----
    Latent ``(n, 4, 24)``: see the module docstring and :attr:`levels`.
    """

    chunk_pixels: int = 1 << 17
    """Faces are rendered in chunks of about this many pixels (speed only, same result to
    within float rounding: <= 2e-7 measured, same segmentation). ``1 << 17`` keeps one
    float map of a chunk at 512 KiB, inside a 1 MiB L2 cache: at 64 px it renders about
    1.5x faster on one core than ``1 << 18`` (32 instead of 64 faces per chunk). CPU only:
    on a GPU a batch renders in one piece (each chunk costs the same ~10^4 kernel launches,
    whatever its size)."""

    version: int = 2
    """Bumped whenever the same latent renders differently (cache keys and run folders
    record it)."""

    def __init__(self, size: int = 128, seed: int = 0, internal_size: int | None = None,
                 pose: str = "aligned"):
        if not 32 <= size <= 512:
            raise ValueError(f"size must be in 32..512 pixels (64..256 intended), got {size}")
        if pose not in POSES:
            raise ValueError(f"pose must be one of {', '.join(POSES)}, got {pose!r}")
        self.pose = pose
        self.size = int(size)
        self.seed = int(seed)
        self.internal_size = int(internal_size) if internal_size else self.size
        self.num_levels = len(LEVEL_NAMES)
        self.level_dim = LEVEL_DIM
        self.latent_dim = self.num_levels * self.level_dim
        self.identity_index = torch.tensor(IDENTITY_INDEX, dtype=torch.long)
        self.nuisance_index = torch.tensor(NUISANCE_INDEX, dtype=torch.long)
        self.class_names = CLASS_NAMES
        self.attribute_names = ATTRIBUTE_NAMES
        gen = torch.Generator().manual_seed(self.seed)
        r = self.internal_size
        coords = (torch.arange(r, dtype=torch.float32) * 2 + 1) / r - 1
        self._gy, self._gx = torch.meshgrid(coords, coords, indexing="ij")
        self._bg_basis = self._waves(8, (2.0, 14.0), gen)  # (8, r, r)
        # skin and hair textures live on the face (face units), so they move with the head
        self._skin_waves = self._wave_params(2, (18.0, 30.0), gen)
        self._hair_waves = self._wave_params(2, (35.0, 60.0), gen, anisotropic=True)
        self._encoder = self._make_encoder(gen)
        self._face_box: tuple[int, int, int, int] | None = None

    # ------------------------------------------------------------------ layout
    @property
    def levels(self) -> tuple[LatentLevel, ...]:
        """The four levels ``coarse``, ``middle``, ``fine``, ``texture`` (24 dims each)."""
        d = self.level_dim
        return tuple(
            LatentLevel(name, i, d, slice(i * d, (i + 1) * d), tuple(n for n, _ in _LAYOUT[i]))
            for i, name in enumerate(LEVEL_NAMES)
        )

    @property
    def latent_shape(self) -> tuple[int, int]:
        """``(L, D)`` = ``(4, 24)``."""
        return (self.num_levels, self.level_dim)

    @property
    def identity_dim(self) -> int:
        """Number of identity dimensions (29)."""
        return len(IDENTITY_INDEX)

    # ------------------------------------------------------------------ sampling
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` latents ``(n, 4, 24)`` from the standard normal prior."""
        return torch.randn(n, self.num_levels, self.level_dim, generator=generator)

    def identity(self, latent: Tensor) -> Tensor:
        """Identity sub-vector ``(n, identity_dim)`` of latents ``(n, 4, 24)``."""
        return latent.reshape(latent.shape[0], -1)[:, self.identity_index.to(latent.device)]

    def with_identity(self, latent: Tensor, identity: Tensor) -> Tensor:
        """Copy of ``latent`` whose identity dims are replaced by ``identity``
        ``(n|1, identity_dim)``."""
        flat = latent.reshape(latent.shape[0], -1).clone()
        flat[:, self.identity_index.to(latent.device)] = identity.expand(
            latent.shape[0], -1
        ).to(flat)
        return flat.reshape(latent.shape)

    def sample_latent_same_identity(
        self, base: Tensor, n: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` latents sharing the identity of ``base`` (``(L, D)`` or ``(1, L, D)``).

        Pose, expression, hair style, glasses, lighting, background and texture are redrawn.
        """
        base = base.reshape(1, self.num_levels, self.level_dim)
        return self.with_identity(self.sample_latent(n, generator).to(base), self.identity(base))

    def verification_pairs(
        self,
        n_pairs: int,
        generator: torch.Generator | None = None,
        pool: int | None = None,
        return_hard: bool = False,
    ) -> tuple[Tensor, ...]:
        """Face-verification pairs: half same identity, half different.

        Of the different-identity pairs, half are random and half are HARD negatives: the
        nearest other identity (Euclidean identity-vector distance) within a pool of
        ``pool`` sampled identities (default ``max(256, 4 * n_pairs)``).

        Returns
        -------
        latent_a, latent_b : Tensor
            ``(n_pairs, 4, 24)`` each.
        same : Tensor
            ``(n_pairs,)`` bool.
        hard : Tensor
            ``(n_pairs,)`` bool, only if ``return_hard``: the pair is a hard negative.
        """
        n_same = n_pairs // 2
        n_diff = n_pairs - n_same
        n_hard = n_diff // 2
        n_rand = n_diff - n_hard
        a_same = self.sample_latent(n_same, generator)
        b_same = self.with_identity(self.sample_latent(n_same, generator), self.identity(a_same))
        a_rand = self.sample_latent(n_rand, generator)
        b_rand = self.sample_latent(n_rand, generator)
        m = pool or max(256, 4 * n_pairs)
        m = max(m, n_hard + 1)
        ids = self.identity(self.sample_latent(m, generator))
        dist = torch.cdist(ids, ids)
        dist.fill_diagonal_(float("inf"))
        nearest = dist.argmin(dim=1)[:n_hard]
        a_hard = self.with_identity(self.sample_latent(n_hard, generator), ids[:n_hard])
        b_hard = self.with_identity(self.sample_latent(n_hard, generator), ids[nearest])
        latent_a = torch.cat([a_same, a_rand, a_hard])
        latent_b = torch.cat([b_same, b_rand, b_hard])
        same = torch.cat([torch.ones(n_same, dtype=torch.bool),
                          torch.zeros(n_diff, dtype=torch.bool)])
        hard = torch.cat([torch.zeros(n_same + n_rand, dtype=torch.bool),
                          torch.ones(n_hard, dtype=torch.bool)])
        if return_hard:
            return latent_a, latent_b, same, hard
        return latent_a, latent_b, same

    # ------------------------------------------------------------------ parameters
    def params(self, latent: Tensor) -> dict[str, Tensor]:
        """Map latents ``(n, 4, 24)`` to named physical parameters ``(n,)`` (fixed squashing).

        Lengths are in face units (head half-width ~0.7), angles in radians.
        """
        if latent.dim() != 3 or tuple(latent.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latent must have shape (n, {self.num_levels}, {self.level_dim}), "
                f"got {tuple(latent.shape)}"
            )
        z = {name: latent.reshape(latent.shape[0], -1)[:, i] for name, i in PARAM_INDEX.items()}
        p: dict[str, Tensor] = {}
        deg = math.pi / 180
        aligned = self.pose == "aligned"
        # coarse: pose (aligned: only yaw, a small nod and sub-pixel jitter vary)
        p["yaw"] = (20 if aligned else 30) * deg * torch.tanh(0.9 * z["yaw"])
        p["roll"] = (0 if aligned else 15) * deg * torch.tanh(0.9 * z["roll"])
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
        # middle: feature geometry (identity) and expression, hair style, glasses (nuisance)
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
        # fine: tones (identity), hue-only variation and lighting (nuisance)
        p["skin_light"] = torch.sigmoid(1.2 * z["skin_light"])
        p["tan"] = 0.06 * torch.tanh(z["tan"])
        p["hair_dark"] = torch.sigmoid(1.5 * z["hair_dark"])
        p["hair_tint"] = 0.08 * torch.tanh(z["hair_tint"])
        p["eye_dark"] = _rng(z["iris_dark"], 0.0, 1.0)
        p["iris_tint"] = 0.1 * torch.tanh(z["iris_tint"])
        p["lip_red"] = _rng(z["lip_colour"], 0.0, 1.0)
        p["beard"] = torch.sigmoid(1.6 * (z["beard"] - 0.4))
        p["brow_dark"] = _rng(z["brow_dark"], 0.0, 1.0)
        p["light_az"] = 35 * deg * torch.tanh(0.9 * z["light_azimuth"])
        p["light_el"] = _rng(z["light_elevation"], 0 * deg, 30 * deg)
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
        # texture
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
        # alignment: the midpoint of the (projected) eyes lands on EYE_TARGET, as in the
        # eye-based alignment of FFHQ / CelebA-HQ; ``free`` pose adds v1's translations
        mid_x = 0.5 * (self._project(p, -p["eye_x"], p["eye_y"])[0]
                       + self._project(p, p["eye_x"], p["eye_y"])[0])
        cr, sr, s = torch.cos(p["roll"]), torch.sin(p["roll"]), p["scale"]
        jx = (0.008 if aligned else 0.12) * torch.tanh(z["tx"])
        jy = (0.008 if aligned else 0.06) * torch.tanh(z["ty"])
        p["tx"] = EYE_TARGET[0] - s * (cr * mid_x - sr * p["eye_y"]) + jx
        p["ty"] = EYE_TARGET[1] - s * (sr * mid_x + cr * p["eye_y"]) + jy
        return p

    def attribute_flips(self, latent: Tensor, margin: float = 0.5) -> Tensor:
        """Each latent with one attribute switched: ``(n, 10, L, D)``.

        Attribute ``k``'s driving latent value is reflected about its threshold
        (:data:`ATTRIBUTE_LATENT_THRESHOLDS`) and pushed at least ``margin`` past it; every
        other value is kept. Discrete moves for a local fit that cannot cross a threshold
        on its own (:mod:`lsi_ml.reading_fit`).
        """
        flat = latent.reshape(latent.shape[0], -1)
        out = flat.unsqueeze(1).repeat(1, len(ATTRIBUTE_NAMES), 1)
        for k, (i, t) in enumerate(_DRIVER_THRESHOLDS):
            side = torch.where(flat[:, i] > t, -1.0, 1.0)
            out[:, k, i] = t + side * (flat[:, i] - t).abs().clamp(min=margin)
        return out.reshape(latent.shape[0], len(ATTRIBUTE_NAMES), *latent.shape[1:])

    def attribute_margins(self, latent: Tensor) -> Tensor:
        """Signed latent distance ``(n, 10)`` of each attribute's driver from its threshold
        (> 0: the attribute is on)."""
        flat = latent.reshape(latent.shape[0], -1)
        return torch.stack([flat[:, i] - t for i, t in _DRIVER_THRESHOLDS], 1)

    def attributes(self, latent: Tensor) -> Tensor:
        """Binary attributes ``(n, 10)`` (see ``ATTRIBUTE_NAMES``), thresholds on parameters."""
        p = self.params(latent)
        cols = [
            p["smile"] > 0.5,
            p["open"] > 0.5,
            p["glasses"] > 0.5,
            p["bangs"] > 0.5,
            p["beard"] > 0.5,
            p["hair_dark"] > 0.5,
            p["yaw"] > 0.0,
            p["light_int"] > 0.65,
            p["hair_len"] > 0.5,
            p["skin_light"] > 0.62,
        ]
        return torch.stack(cols, 1)

    # ------------------------------------------------------------------ geometry
    def _project(self, p: dict[str, Tensor], x0: Tensor, y0: Tensor, dz: float | Tensor = 0.0
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

    def _width(self, p: dict[str, Tensor], v: Tensor) -> Tensor:
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

    def _chin_shift(self, p: dict[str, Tensor], v: Tensor) -> Tensor:
        def c(t: Tensor) -> Tensor:
            return t.view(-1, *([1] * (v.dim() - 1)))

        t = (v / c(p["Hb"])).clamp(0, 1)
        return t.square() * c(p["depth"]) * torch.sin(c(p["yaw"]))

    def _features(self, p: dict[str, Tensor]) -> dict[str, Tensor]:
        """Positions and sizes of the facial features (face units, per face ``(n,)``)."""
        f: dict[str, Tensor] = {}
        for side, s in (("l", -1.0), ("r", 1.0)):
            x0 = s * p["eye_x"]
            y0 = p["eye_y"] + s * p["asym"]
            x, k = self._project(p, x0, y0)
            f[f"eye_{side}_x"], f[f"eye_{side}_y"], f[f"eye_{side}_k"] = x, y0, k
            f[f"eye_{side}_tilt"] = -s * p["eye_tilt"]
            bx0 = s * (p["eye_x"] + 0.01)
            by0 = y0 - p["brow_dy"] - p["brow_raise"]
            bx, bk = self._project(p, bx0, by0)
            f[f"brow_{side}_x"], f[f"brow_{side}_y"], f[f"brow_{side}_k"] = bx, by0, bk
        f["eye_b"] = p["eye_a"] * p["eye_aspect"] * p["eye_open"]
        f["eye_b_full"] = p["eye_a"] * p["eye_aspect"]
        top = p["eye_y"] + 0.02
        tip = p["eye_y"] + p["nose_len"]
        f["nose_top"], f["nose_tip"] = top, tip
        f["nose_top_x"], _ = self._project(p, torch.zeros_like(top), top, 0.05)
        f["nose_tip_x"], f["nose_k"] = self._project(p, torch.zeros_like(tip), tip, 0.18)
        my = tip + p["mouth_dy"]
        f["mouth_y"] = my
        f["mouth_x"], f["mouth_k"] = self._project(p, torch.zeros_like(my), my, 0.04)
        f["mouth_w"] = p["mouth_w"] * (1 + 0.18 * p["smile"]) * f["mouth_k"]
        f["mouth_ho"] = 0.07 * p["open"]
        f["smile_c"] = 0.08 * (p["smile"] - 0.3)
        return f

    def _lip_curves(self, f: dict[str, Tensor], p: dict[str, Tensor], x: Tensor
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

    # ------------------------------------------------------------------ landmarks
    def landmarks(self, latent: Tensor) -> Tensor:
        """iBUG-68 landmarks ``(n, 68, 2)`` in output pixel coordinates ``(x, y)``."""
        p = self.params(latent)
        return self._landmarks(p, self._features(p))

    def _landmarks(self, p: dict[str, Tensor], f: dict[str, Tensor]) -> Tensor:
        n = p["W"].shape[0]
        dev = p["W"].device
        pts: list[Tensor] = []  # each (n, k, 2) in face units
        # jaw 0-16
        v_start = p["eye_y"] - 0.02
        ks = torch.arange(7, device=dev, dtype=torch.float32) / 6.6
        vj = v_start[:, None] + (p["Hb"] - 0.006 - v_start)[:, None] * ks ** 0.85
        wj = self._width(p, vj)
        cj = self._chin_shift(p, vj)
        hb = p["Hb"][:, None]
        chin_c = self._chin_shift(p, hb)
        left = torch.stack([cj - wj + 0.01, vj], -1)
        right = torch.stack([cj + wj - 0.01, vj], -1).flip(1)
        bottom = torch.stack([
            torch.cat([chin_c - 0.55 * p["Wc"][:, None], chin_c,
                       chin_c + 0.55 * p["Wc"][:, None]], 1),
            (hb - 0.006).expand(n, 3)], -1)
        pts += [left, bottom, right]
        # brows 17-26
        bx = torch.tensor([-0.9, -0.45, 0.0, 0.45, 0.9], device=dev)
        for side in ("l", "r"):
            ln = p["brow_len"][:, None] * bx
            curve = -p["brow_arch"][:, None] * (1 - bx.square())
            xx = f[f"brow_{side}_x"][:, None] + ln * f[f"brow_{side}_k"][:, None]
            yy = f[f"brow_{side}_y"][:, None] + curve
            pts.append(torch.stack([xx, yy], -1))
        # nose 27-35
        tt = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], device=dev)
        ny = f["nose_top"][:, None] + (f["nose_tip"] - f["nose_top"] - 0.03)[:, None] * tt
        nx = f["nose_top_x"][:, None] + (f["nose_tip_x"] - f["nose_top_x"])[:, None] * tt
        pts.append(torch.stack([nx, ny], -1))
        nb = torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8], device=dev)
        nw = p["nose_w"][:, None] * f["nose_k"][:, None]
        nbx = f["nose_tip_x"][:, None] + nb * nw
        nby = f["nose_tip"][:, None] - 0.012 + 0.012 * nb.abs()
        pts.append(torch.stack([nbx, nby.expand_as(nbx)], -1))
        # eyes 36-47
        ang = torch.tensor([180.0, 120.0, 60.0, 0.0, -60.0, -120.0], device=dev) * math.pi / 180
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
        # mouth 48-67 (outer 48-59, inner 60-67), mouth-local x (already foreshortened)
        mw = f["mouth_w"][:, None]
        outer_x = torch.tensor([-0.97, -0.6, -0.25, 0.0, 0.25, 0.6, 0.97, 0.6, 0.25, 0.0,
                                -0.25, -0.6], device=dev)
        outer_up = torch.tensor([0, 1, 1, 1, 1, 1, 0, -1, -1, -1, -1, -1.0], device=dev)
        inner_x = torch.tensor([-0.85, -0.4, 0.0, 0.4, 0.85, 0.4, 0.0, -0.4], device=dev)
        inner_up = torch.tensor([0, 1, 1, 1, 0, -1, -1, -1.0], device=dev)
        for xs, ups, outer in ((outer_x, outer_up, True), (inner_x, inner_up, False)):
            x = mw * xs
            line, ho, tu, tl, _ = self._lip_curves(f, p, x)
            if outer:
                off = torch.where(ups > 0, -(ho + tu * 0.92), ho + tl * 0.92)
            else:
                off = torch.where(ups > 0, -ho, ho)
            off = torch.where(ups == 0, torch.zeros_like(off), off)
            yy = f["mouth_y"][:, None] + line + off
            pts.append(torch.stack([f["mouth_x"][:, None] + x, yy], -1))
        local = torch.cat(pts, 1)  # (n, 68, 2)
        return self._to_pixels(p, local)

    def _to_pixels(self, p: dict[str, Tensor], local: Tensor) -> Tensor:
        u, v = local[..., 0], local[..., 1]
        cr, sr = torch.cos(p["roll"])[:, None], torch.sin(p["roll"])[:, None]
        s = p["scale"][:, None]
        x = p["tx"][:, None] + s * (cr * u - sr * v)
        y = p["ty"][:, None] + s * (sr * u + cr * v)
        return torch.stack([(x + 1) * self.size / 2 - 0.5, (y + 1) * self.size / 2 - 0.5], -1)

    # ------------------------------------------------------------------ rendering
    def synthesize(self, latent: Tensor) -> Tensor:
        """Images ``(n, 3, size, size)`` in ``[0, 1]``, differentiable w.r.t. ``latent``."""
        return self._render(latent, with_seg=False)[0]

    def render(self, latent: Tensor) -> RenderOutput:
        """Image, landmarks, segmentation, attributes and identity for ``latent``."""
        image, seg, p, f = self._render(latent, with_seg=True)
        return RenderOutput(
            image=image,
            landmarks=self._landmarks(p, f).detach(),
            segmentation=seg,
            attributes=self.attributes(latent.detach()),
            identity=self.identity(latent.detach()),
        )

    def _render(self, latent: Tensor, with_seg: bool
                ) -> tuple[Tensor, Tensor | None, dict[str, Tensor], dict[str, Tensor]]:
        """Render in chunks of ``chunk_pixels`` (cache friendly, vectorised within a chunk)."""
        p = self.params(latent)
        f = self._features(p)
        step = max(1, self.chunk_pixels // (self.internal_size ** 2))
        if latent.device.type != "cpu":  # a GPU is launch-bound: one batch, fewest kernels
            step = latent.shape[0]
        if latent.shape[0] <= step:
            img, seg = self._render_chunk(latent, with_seg)
            return img, seg, p, f
        parts = [self._render_chunk(z, with_seg) for z in latent.split(step)]
        img = torch.cat([q[0] for q in parts])
        seg = torch.cat([q[1] for q in parts]) if with_seg else None  # type: ignore[misc]
        return img, seg, p, f

    def _render_chunk(self, latent: Tensor, with_seg: bool) -> tuple[Tensor, Tensor | None]:
        p = self.params(latent)
        f = self._features(p)
        n = latent.shape[0]
        r = self.internal_size
        dev = latent.device
        gx, gy = self._gx.to(dev), self._gy.to(dev)

        def c(t: Tensor) -> Tensor:
            return t.view(-1, 1, 1)

        def col(t: Tensor) -> Tensor:
            return t.view(-1, 3, 1, 1)

        seg = torch.zeros(n, r, r, dtype=torch.long, device=dev) if with_seg else None
        target = [seg]  # where ``paint`` writes class ids: the full map or a view of a crop

        def paint(img: Tensor, alpha: Tensor, color: Tensor, cls: int | None) -> Tensor:
            if target[0] is not None and cls is not None:
                target[0].masked_fill_(alpha.detach() > 0.5, cls)
            # expanding both operands keeps torch on its fast (non-broadcast) lerp kernel
            return torch.lerp(img, color.expand_as(img), alpha.unsqueeze(1).expand_as(img))

        # face-local coordinates (roll, scale, translation)
        cr, sr, s = c(torch.cos(p["roll"])), c(torch.sin(p["roll"])), c(p["scale"])
        dx, dy = gx - c(p["tx"]), gy - c(p["ty"])
        u = (cr * dx + sr * dy) / s
        v = (cr * dy - sr * dx) / s
        px = 2.0 / (r * s)  # one pixel in face units, (n,1,1)

        # background: two-colour gradient + blob + fixed random waves, vignette
        ang = c(p["bg_angle"])
        g = (gx * torch.cos(ang) + gy * torch.sin(ang)) * 0.35 + 0.5
        bxy = p["bg_blob_xy"]
        blob = torch.exp((-((gx - c(bxy[:, 0])).square() + (gy - c(bxy[:, 1])).square()) * 3.0)
                         .clamp(min=-30))
        waves = (p["bg_waves"] @ self._bg_basis.to(dev).view(8, -1)).view(n, r, r)
        shade_bg = (g.unsqueeze(1) * (col(p["bg2"]) - col(p["bg1"])) + col(p["bg1"])
                    + (c(p["bg_blob"]) * blob + waves).unsqueeze(1))
        img = shade_bg * (1 - c(p["vignette"]).unsqueeze(1) * (gx.square() + gy.square()))

        # colours: identity sets lightness; hue-only variation (tan, tints) is nuisance and
        # leaves the grey value (the channel mean) unchanged
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
        one = torch.ones(n, 3, device=dev)

        # clothing / shoulders and neck
        cloth_d = _ellipse(u, v - c(p["Hb"] + p["shoulder_y"] + 0.9), c(p["shoulder_w"]),
                           torch.full_like(c(p["W"]), 0.95))
        img = paint(img, _soft(cloth_d, px), col(p["cloth"]), 13)
        neck_d = torch.maximum(u.abs() - c(p["neck_w"]), 0.2 - v)
        img = paint(img, _soft(neck_d, px), col(skin * 0.6), 12)

        # hair behind the head
        hv = c(p["hair_vol"])
        hl = c(p["hair_len"])
        back_top = _ellipse(u, v + 0.05, c(p["W"]) * 1.08 + hv, c(p["Ht"]) * 1.02 + hv)
        back_len = torch.maximum((u.abs() - c(p["W"]) - hv * 0.9),
                                 torch.maximum(-v, v - (0.15 + 1.1 * hl)))
        hair_back = _soft(torch.minimum(back_top, back_len), px)
        u_surf = u - c(torch.sin(p["yaw"]) * HEAD_DEPTH)  # a point's place on the face
        hair_tex = self._face_texture(p["hair_tex"], self._hair_waves, u_surf, v)
        hair_col = col(hair) * (1 + hair_tex)
        img = paint(img, hair_back, hair_col, 10)

        # ears (far ear tucks behind the head when turned)
        for sgn in (-1.0, 1.0):
            far = (torch.sin(p["yaw"]) * sgn).clamp(min=0)
            ex = sgn * (p["W"] * (1.0 - 0.25 * far) + 0.02)
            ear_d = _ellipse(u - c(ex), v - c(p["ear_y"]), torch.full_like(c(ex), 0.07),
                             c(p["ear_size"]))
            img = paint(img, _soft(ear_d, px), col(skin * 0.8), 1)

        # face skin
        w = self._width(p, v)
        face_d = torch.where(v < 0, u.abs() - w, (u - self._chin_shift(p, v)).abs() - w)
        face_d = torch.maximum(torch.maximum(face_d, v - c(p["Hb"])), -v - c(p["Ht"]))
        face = _soft(face_d, px)
        skin_tex = self._face_texture(p["skin_tex"], self._skin_waves, u_surf, v)
        cheek = torch.exp((-((u.abs() - c(p["eye_x"])).square()
                             + (v - c(f["nose_tip"])).square()) * 30).clamp(min=-30))
        skin_col = col(skin) * (1 + skin_tex) + (c(p["blush"]) * cheek).unsqueeze(1) * col(
            torch.tensor([0.25, -0.1, -0.08], device=dev).expand(n, 3))
        img = paint(img, face, skin_col, 1)

        # the facial features only touch a box around the landmarks: paint them on that crop
        ys, xs = self._crop(p, f)
        full, u_full, v_full = img, u, v
        img, u, v, face_d = full[:, :, ys, xs], u[:, ys, xs], v[:, ys, xs], face_d[:, ys, xs]
        target[0] = None if seg is None else seg[:, ys, xs]

        # beard: darkens the lower face around the mouth
        bd = torch.maximum(face_d, c(f["mouth_y"]) - 0.06 - v)
        beard = _soft(bd, px * 8) * c(p["beard"]) * 0.9
        img = paint(img, beard, hair_col[:, :, ys, xs] * 0.6, None)

        # nose: shaded wedge, nostrils
        nt, nb_ = c(f["nose_top"]), c(f["nose_tip"])
        tt = ((v - nt) / (nb_ - nt)).clamp(0, 1)
        nxc = c(f["nose_top_x"]) + (c(f["nose_tip_x"]) - c(f["nose_top_x"])) * tt
        nhw = 0.03 + (c(p["nose_w"]) * c(f["nose_k"]) - 0.03) * tt.square()
        nose_d = torch.maximum((u - nxc).abs() - nhw, torch.maximum(nt - v, v - nb_))
        nose = _soft(nose_d, px)
        side = torch.sigmoid((u - nxc) / (nhw + 1e-3) * 4 * c(torch.sin(p["light_az"]).sign()))
        img = paint(img, nose, col(skin) * (0.97 - 0.12 * side.unsqueeze(1)), 6)
        for sgn in (-1.0, 1.0):
            nd = _ellipse(u - c(f["nose_tip_x"] + sgn * 0.45 * p["nose_w"] * f["nose_k"]),
                          v - nb_ + 0.012, c(p["nose_w"] * 0.3 * f["nose_k"]),
                          torch.full_like(nb_, 0.014))
            img = paint(img, _soft(nd, px) * 0.8, col(skin * 0.35), None)

        # eyes: white, iris, pupil, lid outline
        for side, cls in (("l", 4), ("r", 5)):
            t = c(f[f"eye_{side}_tilt"])
            ex = (u - c(f[f"eye_{side}_x"])) / c(f[f"eye_{side}_k"])
            ey = v - c(f[f"eye_{side}_y"])
            rx = ex * torch.cos(t) + ey * torch.sin(t)
            ry = -ex * torch.sin(t) + ey * torch.cos(t)
            eye_d = _ellipse(rx, ry, c(p["eye_a"]), c(f["eye_b"]))
            eye = _soft(eye_d, px)
            img = paint(img, eye, col(one * 0.93), cls)
            ir = c(f["eye_b_full"]) * 1.05
            iris_d = torch.sqrt((rx - c(p["gaze"] * p["eye_a"])).square() + ry.square() + 1e-8) - ir
            img = paint(img, _soft(iris_d, px) * eye, col(iris), None)
            img = paint(img, _soft(iris_d + ir * 0.55, px) * eye, col(one * 0.03), None)
            lid = _soft(eye_d.abs() - 0.008, px) * torch.sigmoid(-ry / px)
            img = paint(img, lid, col(brow * 0.5), None)

        # brows
        for side, cls in (("l", 2), ("r", 3)):
            bx = (u - c(f[f"brow_{side}_x"])) / c(f[f"brow_{side}_k"])
            xr = bx / c(p["brow_len"])
            curve = -c(p["brow_arch"]) * (1 - xr.square())
            th = c(p["brow_th"]) * (1 - 0.4 * (xr.square()).clamp(max=1))
            bd = torch.maximum((v - c(f[f"brow_{side}_y"]) - curve).abs() - th,
                               bx.abs() - c(p["brow_len"]))
            img = paint(img, _soft(bd, px), col(brow), cls)

        # mouth: interior, upper and lower lip
        mx = u - c(f["mouth_x"])
        line, ho, tu, tl, xr = self._lip_curves(f, p, mx)
        my = v - c(f["mouth_y"]) - line
        inside = xr.abs() - 1.0
        mouth_d = torch.maximum(my.abs() - ho, inside * c(f["mouth_w"]))
        img = paint(img, _soft(mouth_d, px), col(torch.tensor([0.3, 0.08, 0.1], device=dev)
                                                  .expand(n, 3)), 9)
        teeth = _soft(torch.maximum(mouth_d, -(my + ho * 0.35)), px) * c(p["open"])
        img = paint(img, teeth * 0.9, col(one * 0.92), None)
        up_d = torch.maximum((my + ho + tu / 2).abs() - tu / 2, inside * c(f["mouth_w"]))
        img = paint(img, _soft(up_d, px), col(lip * 0.9), 7)
        lo_d = torch.maximum((my - ho - tl / 2).abs() - tl / 2, inside * c(f["mouth_w"]))
        gloss = (1 + 0.2 * c(p["lip_gloss"]) * torch.exp(
            (-((my - ho - tl * 0.4) / 0.01).square()).clamp(min=-30))
                 ).unsqueeze(1)
        img = paint(img, _soft(lo_d, px), col(lip) * gloss, 8)

        img, u, v, target[0] = _paste(full, img, ys, xs), u_full, v_full, seg

        # hair in front: top cap down to the hairline, bangs lower it over the forehead
        hxc = c(f["nose_top_x"])
        hline = c(p["hairline"]) + 0.25 * (u - hxc - c(p["parting"])).square()
        bang_line = c(f["brow_l_y"] + f["brow_r_y"]) * 0.5 - 0.07 + 0.04 * (
            1 - torch.cos(18 * (u - hxc)))
        hline = hline + c(p["bangs"]) * (bang_line - hline).clamp(min=0)
        cap_d = torch.maximum(_ellipse(u, v + 0.02, c(p["W"]) * 1.0 + hv * 0.4,
                                       c(p["Ht"]) * 1.02 + hv), v - hline)
        hair_front = _soft(cap_d, px)
        img = paint(img, hair_front, hair_col, 10)

        # lighting: Lambert on the head's surface, an ellipsoid plus a relief (nose ridge,
        # brow ridge, eye sockets, cheekbones, chin, lips) whose slopes tilt the normals;
        # applied to head, hair and neck
        nx = u / c(p["W"] * 1.1)
        ny = v / c(p["Ht"] * 1.15)
        nz = torch.sqrt((1 - nx.square() - ny.square()).clamp(min=0.02))
        gu, gv = self._relief_slopes(p, f, u[:, ys, xs], v[:, ys, xs], px)
        slope_u, slope_v = torch.zeros_like(nx), torch.zeros_like(ny)
        slope_u[:, ys, xs] = gu * face[:, ys, xs]
        slope_v[:, ys, xs] = gv * face[:, ys, xs]
        nx, ny = nx - slope_u * nz, ny - slope_v * nz
        norm = torch.sqrt(nx.square() + ny.square() + nz.square())
        az, el = c(p["light_az"]), c(p["light_el"])
        cos_in = (nx * torch.sin(az) * torch.cos(el) - ny * torch.sin(el)
                  + nz * torch.cos(az) * torch.cos(el)) / norm
        soft = c(p["light_soft"])
        lam = ((cos_in + soft) / (1 + soft)).clamp(min=0)
        shade = c(p["ambient"]) + c(p["light_int"]) * lam
        spec = (c(p["specular"]) * face + c(p["hair_shine"]) * torch.maximum(
            hair_front, hair_back) * (1 - face)) * lam ** 8
        head = torch.maximum(torch.maximum(face, hair_front), hair_back).unsqueeze(1)
        warm = col(torch.stack([1 + p["warmth"], torch.ones_like(p["warmth"]),
                                1 - p["warmth"]], 1))
        lit = img * shade.unsqueeze(1) * warm + spec.unsqueeze(1)
        img = torch.lerp(img * (0.5 + 0.5 * c(p["light_int"]).unsqueeze(1)), lit,
                         head.expand_as(lit))

        # glasses: rims and bridge, tinted lenses (on the crop again)
        full = img
        img, u, v = full[:, :, ys, xs], u[:, ys, xs], v[:, ys, xs]
        target[0] = None if seg is None else seg[:, ys, xs]
        rims = []
        for side in ("l", "r"):
            ex = (u - c(f[f"eye_{side}_x"])) / c(f[f"eye_{side}_k"])
            ey = v - c(f[f"eye_{side}_y"]) + 0.01
            rims.append(_ellipse(ex, ey, c(p["eye_a"]) * 1.6, c(p["eye_a"]) * 1.15))
        lens = torch.minimum(rims[0], rims[1])
        rim_d = lens.abs() - torch.clamp(0.6 * px, min=0.012)
        yb = c(f["eye_l_y"] + f["eye_r_y"]) * 0.5 - 0.02
        xl = c(f["eye_l_x"] + p["eye_a"] * 1.4 * f["eye_l_k"])
        xrr = c(f["eye_r_x"] - p["eye_a"] * 1.4 * f["eye_r_k"])
        bridge = torch.maximum((v - yb).abs() - torch.clamp(0.6 * px, min=0.01),
                               torch.maximum(xl - u, u - xrr))
        gl = c(p["glasses"])
        img = paint(img, _soft(lens, px) * gl * c(p["lens_tint"]),
                    col(torch.tensor([0.2, 0.3, 0.4], device=dev).expand(n, 3)), None)
        frame = col(one * (0.6 - 0.55 * p["frame_dark"][:, None]))
        img = paint(img, _soft(torch.minimum(rim_d, bridge), px) * gl, frame, 11)
        img = _paste(full, img, ys, xs)

        # camera: saturation, contrast, gamma
        grey = img.mean(1, keepdim=True)
        img = grey + (img - grey) * c(p["saturation"]).unsqueeze(1)
        img = (img - 0.5) * c(p["contrast"]).unsqueeze(1) + 0.5
        img = img.clamp(1e-4, 1.0) ** c(p["gamma"]).unsqueeze(1)

        if r != self.size:
            img = F.interpolate(img, size=(self.size, self.size), mode="bilinear",
                                align_corners=False, antialias=r > self.size)
            if seg is not None:
                seg = F.interpolate(seg[:, None].float(), size=(self.size, self.size),
                                    mode="nearest")[:, 0].long()
        return img.clamp(0, 1), seg

    @staticmethod
    def _relief_slopes(p: dict[str, Tensor], f: dict[str, Tensor], u: Tensor, v: Tensor,
                       px: Tensor) -> tuple[Tensor, Tensor]:
        """Slopes ``(dh/du, dh/dv)`` of the face relief ``h`` (face units) on a grid crop."""
        def c(t: Tensor) -> Tensor:
            return t.view(-1, 1, 1)

        def bump(du: Tensor, dv: Tensor, su: float | Tensor, sv: float | Tensor) -> Tensor:
            return torch.exp((-(du / su).square() - (dv / sv).square()).clamp(min=-30))

        nt, nb = c(f["nose_top"]), c(f["nose_tip"])
        tt = ((v - nt) / (nb - nt)).clamp(0, 1)
        nxc = c(f["nose_top_x"]) + (c(f["nose_tip_x"]) - c(f["nose_top_x"])) * tt
        along = torch.sigmoid((v - nt) / 0.02) * torch.sigmoid((nb + 0.02 - v) / 0.02)
        h = 0.07 * (0.3 + 0.7 * tt) * along * torch.exp(
            (-((u - nxc) / (c(p["nose_w"]) * 0.8 + 0.02)).square()).clamp(min=-30))
        mid = c(0.5 * (f["eye_l_x"] + f["eye_r_x"]))
        h = h + 0.03 * bump(u - mid, v - c(0.5 * (f["brow_l_y"] + f["brow_r_y"])),
                            c(p["eye_x"]) + 0.15, 0.05)
        for side in ("l", "r"):
            h = h - 0.035 * bump(u - c(f[f"eye_{side}_x"]), v - c(f[f"eye_{side}_y"]),
                                 c(p["eye_a"]) + 0.02, 0.07)
        for sgn in (-1.0, 1.0):
            h = h + 0.03 * bump(u - c(f["nose_tip_x"] + sgn * 1.05 * p["eye_x"]),
                                v - c(f["nose_tip"]) + 0.03, 0.1, 0.08)
        h = h + 0.02 * bump(u - c(f["mouth_x"]), v - c(p["Hb"]) + 0.12, 0.12, 0.07)
        h = h + 0.015 * bump(u - c(f["mouth_x"]), v - c(f["mouth_y"]), c(f["mouth_w"]), 0.05)
        # central differences (one-sided at the crop's border); a grid step is ``px``
        gu = torch.cat([h[:, :, 1:2] - h[:, :, :1], h[:, :, 2:] - h[:, :, :-2],
                        h[:, :, -1:] - h[:, :, -2:-1]], 2) / (2 * px)
        gv = torch.cat([h[:, 1:2] - h[:, :1], h[:, 2:] - h[:, :-2],
                        h[:, -1:] - h[:, -2:-1]], 1) / (2 * px)
        return gu, gv

    def _box(self, p: dict[str, Tensor], f: dict[str, Tensor]) -> tuple[int, int, int, int]:
        """Internal-grid box (x0, y0, x1, y1) holding the faces' landmarks plus margin."""
        with torch.no_grad():
            k = self.internal_size / self.size
            lm = (self._landmarks(p, f) + 0.5) * k - 0.5
            margin = float((0.2 * p["scale"] * self.internal_size / 2).max()) + 2.0
            lo = (lm.amin(dim=(0, 1)) - margin).floor().clamp(min=0)
            hi = (lm.amax(dim=(0, 1)) + margin).ceil().clamp(max=self.internal_size - 1)
        x0, y0 = int(lo[0]), int(lo[1])
        return x0, y0, max(int(hi[0]), x0) + 1, max(int(hi[1]), y0) + 1

    def _crop(self, p: dict[str, Tensor], f: dict[str, Tensor]) -> tuple[slice, slice]:
        """The region where faces are drawn (the rest is background only).

        A FIXED box, the union over extreme latents (every parameter near its limits),
        so a face's pixels never depend on its batch mates; a batch holding a face
        outside it (not seen in practice) widens the box for that batch only.
        """
        if self._face_box is None:
            gen = torch.Generator().manual_seed(12345)
            z = self.sample_latent(4096, gen) * 3.0  # tanh/sigmoid squashing saturates
            zp = self.params(z)
            self._face_box = self._box(zp, self._features(zp))
        x0, y0, x1, y1 = self._face_box
        bx0, by0, bx1, by1 = self._box(p, f)
        if bx0 < x0 or by0 < y0 or bx1 > x1 or by1 > y1:
            x0, y0, x1, y1 = min(x0, bx0), min(y0, by0), max(x1, bx1), max(y1, by1)
        return slice(y0, y1), slice(x0, x1)

    # ------------------------------------------------------------------ textures
    def _waves(self, k: int, freq: tuple[float, float], gen: torch.Generator,
               anisotropic: bool = False) -> Tensor:
        """``k`` fixed random cosine waves on the internal grid, ``(k, r, r)``."""
        f = freq[0] + (freq[1] - freq[0]) * torch.rand(k, generator=gen)
        th = torch.rand(k, generator=gen) * 2 * math.pi
        if anisotropic:
            th = math.pi / 2 + 0.3 * (torch.rand(k, generator=gen) - 0.5)
        ph = torch.rand(k, generator=gen) * 2 * math.pi
        gx, gy = self._gx, self._gy
        return torch.cos(f[:, None, None] * (torch.cos(th)[:, None, None] * gx + torch.sin(th)[
            :, None, None] * gy) + ph[:, None, None])

    @staticmethod
    def _wave_params(k: int, freq: tuple[float, float], gen: torch.Generator,
                     anisotropic: bool = False) -> Tensor:
        """``k`` fixed random plane waves ``(k, 3)``: ``(f_u, f_v, phase)`` per face unit."""
        f = freq[0] + (freq[1] - freq[0]) * torch.rand(k, generator=gen)
        th = torch.rand(k, generator=gen) * 2 * math.pi
        if anisotropic:  # strands: waves running across the hair, mostly horizontally
            th = 0.3 * (torch.rand(k, generator=gen) - 0.5)
        ph = torch.rand(k, generator=gen) * 2 * math.pi
        return torch.stack([f * torch.cos(th), f * torch.sin(th), ph], 1)

    @staticmethod
    def _face_texture(amp: Tensor, waves: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Texture ``(n, 1, h, w)``: ``sum_k amp_k cos(f_k . (u, v) + phase_k)`` in face units."""
        w = waves.to(u)
        out = amp[:, 0, None, None] * torch.cos(w[0, 0] * u + w[0, 1] * v + w[0, 2])
        for k in range(1, w.shape[0]):
            out = out + amp[:, k, None, None] * torch.cos(w[k, 0] * u + w[k, 1] * v + w[k, 2])
        return out.unsqueeze(1)

    def _noise(self, k: int, cells: int, gen: torch.Generator) -> Tensor:
        """``k`` fixed smooth value-noise maps in ``[-1, 1]``, ``(k, r, r)``."""
        base = torch.rand(k, 1, cells, cells, generator=gen) * 2 - 1
        r = self.internal_size
        return F.interpolate(base, size=(r, r), mode="bicubic", align_corners=False)[:, 0]

    # ------------------------------------------------------------------ features
    def _make_encoder(self, gen: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        chans = (3, 16, 32, 64, 64)
        layers = []
        for cin, cout in itertools.pairwise(chans):
            wgt = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(2.0 / (cin * 9))
            bias = torch.randn(cout, generator=gen) * 0.05
            layers.append((wgt, bias))
        return layers

    def features(self, latent: Tensor) -> list[Tensor]:
        """Multi-scale maps of the rendered image from a fixed seeded random conv encoder.

        Four 3x3 stride-2 convolutions with leaky ReLU (16, 32, 64, 64 channels) at 1/2,
        1/4, 1/8 and 1/16 of the image size. The encoder is never trained (its weights are a
        function of ``seed`` only), so probes must learn how to read it.
        """
        return self.features_from_image(self.synthesize(latent))

    def features_from_image(self, images: Tensor) -> list[Tensor]:
        """:meth:`features` of already rendered images ``(n, 3, H, W)`` in [0, 1] (saves
        the render when the image is at hand)."""
        x = images * 2 - 1
        out = []
        for wgt, bias in self._encoder:
            x = F.leaky_relu(F.conv2d(x, wgt.to(x), bias.to(x), stride=2, padding=1), 0.2)
            out.append(x)
        return out


def _paste(full: Tensor, crop: Tensor, ys: slice, xs: slice) -> Tensor:
    """Copy of ``full`` with ``crop`` written into ``[..., ys, xs]`` (autograd-safe)."""
    out = full.clone()
    out[:, :, ys, xs] = crop
    return out


def save_sample_grid(path: str | Path, n: int = 16, size: int = 128, seed: int = 0) -> Path:
    """Save a PNG grid of ``n`` SynthFace samples with landmark and segmentation overlays.

    Each sample is shown twice: the image with its 68 landmarks, and the image with its
    segmentation map blended on top.

    Parameters
    ----------
    path : str or Path
        Output PNG file.
    n : int
        Number of faces.
    size : int
        Image size in pixels.
    seed : int
        Seed of the latents.

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = SynthFace(size=size, seed=seed)
    latent = model.sample_latent(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model.render(latent)
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.6, rows * 1.6), squeeze=False)
    cmap = plt.get_cmap("tab20", len(CLASS_NAMES))
    for i in range(rows * cols):
        a1, a2 = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        a1.axis("off")
        a2.axis("off")
        if i >= n:
            continue
        im = out.image[i].permute(1, 2, 0).numpy()
        a1.imshow(im)
        lm = out.landmarks[i].numpy()
        a1.scatter(lm[:, 0], lm[:, 1], s=2, c="lime", linewidths=0)
        a2.imshow(im)
        segm = np.ma.masked_equal(out.segmentation[i].numpy(), 0)
        a2.imshow(segm, cmap=cmap, vmin=0, vmax=len(CLASS_NAMES) - 1, alpha=0.6,
                  interpolation="nearest")
    fig.tight_layout(pad=0.1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from lsi_hw.plotting import save_figure

    return save_figure(fig, path, dpi=100)


def save_identity_grid(path: str | Path, n_identities: int = 8, n_draws: int = 4,
                       size: int = 64, grey: bool = True, seed: int = 0) -> Path:
    """Save a PNG grid: one row per identity, one column per nuisance redraw.

    Each row keeps the identity sub-vector and redraws pose, expression, lighting, glasses,
    hair style, background and texture (:meth:`SynthFace.sample_latent_same_identity`), so
    a row shows what the camera should call one person.

    Parameters
    ----------
    path : str or Path
        Output PNG file.
    n_identities, n_draws : int
        Rows and columns.
    size : int
        Image size in pixels.
    grey : bool
        Show the grey image a single photodiode integrates (the channel mean) instead of
        colour.
    seed : int
        Seed of the identities and nuisances.

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = SynthFace(size=size)
    gen = torch.Generator().manual_seed(seed)
    bases = model.sample_latent(n_identities, gen)
    latent = torch.cat([model.sample_latent_same_identity(b, n_draws, gen) for b in bases])
    with torch.no_grad():
        images = model.synthesize(latent)
    fig, axes = plt.subplots(n_identities, n_draws, figsize=(n_draws * 1.3, n_identities * 1.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        im = images[i]
        if grey:
            ax.imshow(im.mean(0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(im.permute(1, 2, 0).numpy())
    fig.tight_layout(pad=0.1)
    from lsi_hw.plotting import save_figure

    return save_figure(fig, Path(path), dpi=100)
