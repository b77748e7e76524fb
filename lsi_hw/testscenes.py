"""Built-in test scenes (no downloads): procedural targets, scikit-image's astronaut and
eight SynthFace test faces.

Every function returns uint8 monitor drive values, (size, size) grey or (size, size, 3)
RGB, ready for :meth:`lsi_hw.interfaces.Bench.measure`.  :func:`named_scenes` picks a set
by the name commands take (``--images faces``):

- ``builtin``: Siemens star, grey ramp, grey staircase, astronaut (the default);
- ``faces``: the eight SynthFace faces and the astronaut (what a trained decoder reads);
- ``synthface``: the eight SynthFace faces (test split, seed 0; their true latents are in
  :func:`face_latents`, for scoring a decoder);
- ``astronaut``, ``targets``: the portrait alone, the three targets alone.

The SynthFace faces ship as ``lsi_hw/data/synthface_scenes.npz`` (64 and 128 px; other
sides are resized from the nearer one), rendered by :mod:`lsi_ml.data.face_scenes`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsi_hw.errors import ConfigError

__all__ = [
    "IMAGE_SUFFIXES",
    "SCENE_SETS",
    "builtin_scenes",
    "count_images",
    "count_scenes",
    "face_latents",
    "face_scenes",
    "gray_ramp",
    "load_image_dir",
    "load_scenes",
    "named_scenes",
    "resize_to",
    "siemens_star",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

SCENE_SETS = {"builtin": 4, "faces": 9, "synthface": 8, "astronaut": 1, "targets": 3}
"""The built-in scene sets by name, with their number of scenes."""

_FACE_FILE = Path(__file__).parent / "data" / "synthface_scenes.npz"


def siemens_star(size: int, spokes: int = 16) -> np.ndarray:
    """Siemens star resolution target, antialiased (4x supersampled), uint8 (size, size)."""
    sup = 4
    coords = (np.arange(size * sup) + 0.5) / sup - size / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    angle = np.arctan2(yy, xx)
    radius = np.hypot(yy, xx)
    star = (np.cos(spokes * angle) > 0) & (radius < 0.48 * size)
    star = star.reshape(size, sup, size, sup).mean(axis=(1, 3))
    return np.round(255 * (0.1 + 0.8 * star)).astype(np.uint8)


def gray_ramp(size: int, steps: int = 0, vertical: bool = False) -> np.ndarray:
    """Linear grey ramp 0..255 across the image (``steps`` > 0: a staircase), uint8."""
    ramp = np.linspace(0.0, 1.0, size)
    if steps > 0:
        ramp = np.floor(ramp * steps).clip(0, steps - 1) / max(steps - 1, 1)
    img = np.tile(ramp, (size, 1))
    if vertical:
        img = img.T
    return np.round(255 * img).astype(np.uint8)


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """Area-antialiased resize of a (H, W[, 3]) image to (size, size[, 3]) uint8."""
    from skimage.transform import resize

    arr = np.asarray(image)
    scale = 255.0 if arr.dtype.kind in "ui" else 1.0
    out_shape = (size, size, *arr.shape[2:])
    out = resize(arr.astype(np.float64) / scale, out_shape, anti_aliasing=True, order=1)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _check_size(size: int) -> None:
    if not (8 <= size <= 2048):
        raise ConfigError(f"scene size={size} outside the allowed range [8, 2048] pixels")


def _targets(size: int) -> tuple[list[np.ndarray], list[str]]:
    grey = [siemens_star(size), gray_ramp(size), gray_ramp(size, steps=8, vertical=True)]
    return ([np.repeat(g[..., None], 3, axis=2) for g in grey],
            ["siemens_star", "gray_ramp", "gray_staircase"])


def _astronaut(size: int) -> np.ndarray:
    from skimage import data

    return resize_to(data.astronaut(), size)


def builtin_scenes(size: int = 256) -> tuple[np.ndarray, list[str]]:
    """The default scene batch: (B, size, size, 3) uint8 and their names.

    Siemens star, horizontal grey ramp, 8-step vertical grey staircase, and
    scikit-image's astronaut portrait (a real face, bundled with scikit-image).
    """
    _check_size(size)
    scenes, names = _targets(size)
    return np.stack([*scenes, _astronaut(size)]), [*names, "astronaut"]


def _face_file() -> dict[str, np.ndarray]:
    try:
        with np.load(_FACE_FILE, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"built-in faces {_FACE_FILE} unreadable ({exc}); reinstall the "
                          "package") from None


def face_scenes(size: int = 64) -> tuple[np.ndarray, list[str]]:
    """The eight shipped SynthFace test faces, (8, size, size, 3) uint8, and their names
    (``synthface-0`` ...): exact renders at 64 and 128 px, resized from the nearer one
    otherwise."""
    _check_size(size)
    data = _face_file()
    shipped = sorted(int(k.split("_")[1]) for k in data if k.startswith("faces_"))
    if size in shipped:
        faces = data[f"faces_{size}"]
    else:
        source = min(shipped, key=lambda s: (abs(np.log2(size / s)), -s))
        faces = np.stack([resize_to(f, size) for f in data[f"faces_{source}"]])
    return faces.copy(), [str(n) for n in data["names"]]


def face_latents() -> np.ndarray:
    """The SynthFace latents of :func:`face_scenes`, (8, L, D) float32 (SynthFace version
    ``int(np.load(...)["synthface_version"])``, test split, seed 0)."""
    return _face_file()["latents"].copy()


def named_scenes(name: str, size: int) -> tuple[np.ndarray, list[str]]:
    """The built-in scene set ``name`` (one of :data:`SCENE_SETS`) at ``size`` pixels."""
    _check_size(size)
    if name == "builtin":
        return builtin_scenes(size)
    if name == "targets":
        scenes, names = _targets(size)
        return np.stack(scenes), names
    if name == "astronaut":
        return _astronaut(size)[None], ["astronaut"]
    if name == "synthface":
        return face_scenes(size)
    if name == "faces":
        faces, names = face_scenes(size)
        return np.concatenate([faces, _astronaut(size)[None]]), [*names, "astronaut"]
    raise ConfigError(f"no built-in scene set {name!r}; allowed: {', '.join(SCENE_SETS)}, "
                      "or a folder of images")


def count_scenes(images: str | Path) -> int:
    """Scenes of ``images`` (a built-in set's name or a folder), without loading them."""
    return SCENE_SETS[str(images)] if str(images) in SCENE_SETS else count_images(images)


def load_scenes(images: str | Path, size: int) -> tuple[np.ndarray, list[str]]:
    """A built-in set by name (:data:`SCENE_SETS`) or every image of a folder."""
    if str(images) in SCENE_SETS:
        return named_scenes(str(images), size)
    return load_image_dir(images, size)


def _image_files(directory: str | Path) -> list[Path]:
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a directory nor a built-in set "
                          f"({', '.join(SCENE_SETS)})")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found"
        )
    return files


def count_images(directory: str | Path) -> int:
    """How many image files :func:`load_image_dir` would read (for a memory estimate)."""
    return len(_image_files(directory))


def load_image_dir(directory: str | Path, size: int) -> tuple[np.ndarray, list[str]]:
    """Read every image in ``directory`` as (B, size, size, 3) uint8, resized down.

    Raises ConfigError (naming the file) for an empty folder, an unreadable file, a
    non-square image (aspect differing by more than 2 %) or one smaller than ``size``.
    """
    from skimage import io

    files = _image_files(directory)
    images = []
    for path in files:
        try:
            img = np.asarray(io.imread(path))
        except Exception as exc:  # any decoder failure is the user's file
            raise ConfigError(f"image {path} is unreadable: {exc}") from None
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ConfigError(f"image {path} has shape {img.shape}; allowed: (H, W), (H, W, 3|4)")
        h, w = img.shape[:2]
        if abs(h - w) > 0.02 * max(h, w) or min(h, w) < size:
            raise ConfigError(
                f"image {path} is {h}x{w} pixels; allowed: square (within 2 %) and at least "
                f"{size}x{size} (it is resized to --size {size})"
            )
        if img.dtype != np.uint8:
            top = 65535.0 if img.dtype == np.uint16 else 1.0
            img = np.round(np.clip(img / top, 0, 1) * 255).astype(np.uint8)
        images.append(resize_to(img, size))
    return np.stack(images), [p.name for p in files]
