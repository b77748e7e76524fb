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

Modules: this one holds the generator (:class:`SynthFace`) and re-exports the latent layout
of :mod:`~lsi_ml.generators.synthface_layout` (levels, parameter names, identity split,
classes, attributes and their latent thresholds). The latent-to-parameter squashing is in
:mod:`~lsi_ml.generators.synthface_params`, the 2.5-D geometry and landmarks in
:mod:`~lsi_ml.generators.synthface_geometry`, the drawing steps in
:mod:`~lsi_ml.generators.synthface_render` and the fixed random textures in
:mod:`~lsi_ml.generators.synthface_textures`.
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
from lsi_ml.generators.synthface_geometry import (
    feature_positions,
    landmarks_face_units,
    to_pixels,
)
from lsi_ml.generators.synthface_layout import (
    ATTRIBUTE_DRIVERS,
    ATTRIBUTE_LATENT_THRESHOLDS,
    ATTRIBUTE_NAMES,
    CLASS_NAMES,
    DRIVER_THRESHOLDS,
    EYE_TARGET,
    FACE_SCALE,
    HEAD_DEPTH,
    IDENTITY_INDEX,
    LEVEL_DIM,
    LEVEL_NAMES,
    NUISANCE_INDEX,
    PARAM_INDEX,
    PARAM_LAYOUT,
    PARAM_NAMES,
    POSES,
)
from lsi_ml.generators.synthface_params import face_params
from lsi_ml.generators.synthface_render import draw_faces
from lsi_ml.generators.synthface_textures import FixedTextures

__all__ = [
    "ATTRIBUTE_DRIVERS",
    "ATTRIBUTE_LATENT_THRESHOLDS",
    "ATTRIBUTE_NAMES",
    "CLASS_NAMES",
    "DRIVER_THRESHOLDS",
    "EYE_TARGET",
    "FACE_SCALE",
    "HEAD_DEPTH",
    "IDENTITY_INDEX",
    "LEVEL_DIM",
    "LEVEL_NAMES",
    "NUISANCE_INDEX",
    "PARAM_INDEX",
    "PARAM_LAYOUT",
    "PARAM_NAMES",
    "POSES",
    "SynthFace",
    "save_identity_grid",
    "save_sample_grid",
]


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
        # background waves on the grid; skin and hair textures live on the face (face
        # units), so they move with the head
        self._textures = FixedTextures.draw(gen, self._gx, self._gy)
        self._encoder = self._make_encoder(gen)
        self._face_box: tuple[int, int, int, int] | None = None

    # ------------------------------------------------------------------ layout
    @property
    def levels(self) -> tuple[LatentLevel, ...]:
        """The four levels ``coarse``, ``middle``, ``fine``, ``texture`` (24 dims each)."""
        d = self.level_dim
        return tuple(
            LatentLevel(name, i, d, slice(i * d, (i + 1) * d), tuple(n for n, _ in PARAM_LAYOUT[i]))
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
        return face_params(latent, aligned=self.pose == "aligned")

    def attribute_flips(self, latent: Tensor, margin: float = 0.5) -> Tensor:
        """Each latent with one attribute switched: ``(n, 10, L, D)``.

        Attribute ``k``'s driving latent value is reflected about its threshold
        (:data:`ATTRIBUTE_LATENT_THRESHOLDS`) and pushed at least ``margin`` past it; every
        other value is kept. Discrete moves for a local fit that cannot cross a threshold
        on its own (:mod:`lsi_ml.latent.reading_fit`).
        """
        flat = latent.reshape(latent.shape[0], -1)
        out = flat.unsqueeze(1).repeat(1, len(ATTRIBUTE_NAMES), 1)
        for k, (i, t) in enumerate(DRIVER_THRESHOLDS):
            side = torch.where(flat[:, i] > t, -1.0, 1.0)
            out[:, k, i] = t + side * (flat[:, i] - t).abs().clamp(min=margin)
        return out.reshape(latent.shape[0], len(ATTRIBUTE_NAMES), *latent.shape[1:])

    def attribute_margins(self, latent: Tensor) -> Tensor:
        """Signed latent distance ``(n, 10)`` of each attribute's driver from its threshold
        (> 0: the attribute is on)."""
        flat = latent.reshape(latent.shape[0], -1)
        return torch.stack([flat[:, i] - t for i, t in DRIVER_THRESHOLDS], 1)

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

    # ------------------------------------------------------------------ landmarks
    def landmarks(self, latent: Tensor) -> Tensor:
        """iBUG-68 landmarks ``(n, 68, 2)`` in output pixel coordinates ``(x, y)``."""
        p = self.params(latent)
        return self._landmarks(p, feature_positions(p))

    def _landmarks(self, p: dict[str, Tensor], f: dict[str, Tensor]) -> Tensor:
        """Landmarks ``(n, 68, 2)`` in output pixels of parameters ``p``, features ``f``."""
        return to_pixels(p, landmarks_face_units(p, f), self.size)

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
        f = feature_positions(p)
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
        """Images (and class maps if ``with_seg``) of one chunk, at the output size."""
        p = self.params(latent)
        f = feature_positions(p)
        n, r, dev = latent.shape[0], self.internal_size, latent.device
        seg = torch.zeros(n, r, r, dtype=torch.long, device=dev) if with_seg else None
        return draw_faces(p, f, self._gx.to(dev), self._gy.to(dev), seg, self._crop(p, f),
                          self._textures, self.size)

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
            self._face_box = self._box(zp, feature_positions(zp))
        x0, y0, x1, y1 = self._face_box
        bx0, by0, bx1, by1 = self._box(p, f)
        if bx0 < x0 or by0 < y0 or bx1 > x1 or by1 > y1:
            x0, y0, x1, y1 = min(x0, bx0), min(y0, by0), max(x1, bx1), max(y1, by1)
        return slice(y0, y1), slice(x0, x1)

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
