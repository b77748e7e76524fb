"""SynthFace's latent layout: levels, named dimensions, identity split, classes and attributes.

Constants only (no torch): which of the ``4 x 24`` latent dimensions drives which parameter,
which dimensions are identity, the segmentation classes, the binary attributes and the latent
thresholds at which the attributes switch. The layout is described in
:mod:`lsi_ml.generators.synthface`, which re-exports every name here.
"""

from __future__ import annotations

import math

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

PARAM_LAYOUT: tuple[tuple[tuple[str, bool], ...], ...] = (
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
"""``(name, identity?)`` per latent dimension, level by level (``LEVEL_NAMES`` order)."""
PARAM_NAMES: tuple[str, ...] = tuple(name for level in PARAM_LAYOUT for name, _ in level)
PARAM_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAM_NAMES)}
IDENTITY_INDEX: tuple[int, ...] = tuple(
    i for i, (_, ident) in enumerate(p for level in PARAM_LAYOUT for p in level) if ident
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
DRIVER_THRESHOLDS: tuple[tuple[int, float], ...] = tuple(
    (PARAM_INDEX[ATTRIBUTE_DRIVERS[name]], ATTRIBUTE_LATENT_THRESHOLDS[name])
    for name in ATTRIBUTE_NAMES
)
"""``(flat latent index of the driver, latent threshold)`` per attribute, in
``ATTRIBUTE_NAMES`` order."""
