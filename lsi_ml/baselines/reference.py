"""The strong full-image reference: the best decoder of the FULL noiseless grey image.

A single-pixel camera's readings are a (noisy, compressed) function of the scene, so no
decoder of them can beat the best decoder of the scene itself. This module builds that
decoder, the ceiling row of every table (``docs``/DESIGN: "Every table has a ceiling
row"), from the same data an LSI model sees: generator scenes in GREY (one photodiode sees
no colour; grey = the mean of the RGB channels, no monitor gamma, no optics, no noise) at
full resolution, with a comparable CPU training budget. Two stages:

1. :func:`train_image_decoder`: a small residual CNN (:class:`ImageDecoder`) regresses the
   latent from the grey image (L1 + L2 on the latent, identity dimensions up-weighted).
2. :func:`refine_latent`: analysis by synthesis. Adam on the latent, started from the
   CNN's output, so that the GREY render ``generator.synthesize(z).mean(1)`` matches the
   grey target (per-image mean absolute + mean squared pixel error, plus the same error
   on 4x average-pooled images, which widens the basin of a 1 px soft edge, plus a weak
   standard-normal prior). The best latent seen per image is kept, so refinement never
   ends with a larger objective than its start.

:class:`FullImageReference` joins the two. ``reference.decoder()`` is a
:data:`lsi_ml.evaluation.latent.Decoder` (``decode(batch) -> (B, L, D)``, reading only
``batch["image"]``), so the reference is scored by :func:`lsi_ml.evaluation.latent.evaluate_decoder`
exactly like every other method; ``save`` / ``load`` write and read it atomically
(``torch.load(weights_only=True)``).

Measured (SynthFace v2, 64 px, seed 0; defaults: width 24, 3000 steps of 128 on 60000
scenes = 113 + 1494 CPU-s on one thread; ``evaluate_decoder(n_test=512, exact=True)``,
bootstrap 95 % intervals):

::

    decoder          exact attrs %      exact seg F1 %     exact NME          identity R^2
    CNN only         91.1 [90.3, 91.8]  77.9 [77.1, 78.7]  0.93 [0.90, 0.95]  0.690 [0.678, 0.699]
    CNN + 100 steps  96.9 [96.4, 97.4]  95.6 [95.1, 96.1]  0.13 [0.11, 0.14]  0.889 [0.881, 0.895]

Verification: 98.2 % [97.1, 99.2] (CNN only, 512 pairs), 97.7 % [94.5, 100] (refined, 128
pairs). The CNN decodes ~1 ms a face; the refinement costs ~9 ms a face a step on one
core (100 steps: ~0.9 s a face). The weakest attribute after refinement is
``strong_light`` (88.7 %): in grey, light intensity and skin lightness trade off.

Example
-------
>>> gen = SynthFace(64)                                              # doctest: +SKIP
>>> ref = FullImageReference.train(gen)  # ~27 CPU-min at the defaults  # doctest: +SKIP
>>> result = evaluate_decoder(ref.decoder(), gen, probes, exact=True)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsi_hw.atomic import atomic_write_bytes
from lsi_hw.errors import ConfigError
from lsi_ml.generators.base import FaceGenerator

__all__ = ["FullImageReference", "ImageDecoder", "RefineConfig", "TrainStats",
           "grey", "grey_loss", "refine_latent", "render_grey_set", "train_image_decoder"]

_KIND = "lsi-full-image-reference"
_FORMAT = 1


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def grey(images: Tensor) -> Tensor:
    """Grey images ``(n, H, W)`` in [0, 1]: the mean of the RGB channels of ``(n, 3, H, W)``
    (what one photodiode integrates, before monitor gamma and optics); ``(n, H, W)`` input
    is returned as float."""
    if images.dim() == 4:
        if images.shape[1] not in (1, 3):
            raise ConfigError(f"images must be (n, 3, H, W) or (n, H, W), got "
                              f"{tuple(images.shape)}")
        return images.float().mean(1)
    if images.dim() == 3:
        return images.float()
    raise ConfigError(f"images must be (n, 3, H, W) or (n, H, W), got {tuple(images.shape)}")


def grey_loss(render: Tensor, target: Tensor, pool: int = 4) -> Tensor:
    """Per-image grey reconstruction error ``(n,)`` (pixel values in [0, 1]).

    ``mean|r - t| + mean (r - t)^2`` at full resolution plus the same on ``pool x pool``
    average-pooled images (0 or 1: no pooled term). ``render`` and ``target`` are
    ``(n, H, W)``.
    """
    diff = render - target
    out = diff.abs().flatten(1).mean(1) + diff.pow(2).flatten(1).mean(1)
    if pool > 1 and diff.shape[-1] % pool == 0 and diff.shape[-2] % pool == 0:
        low = F.avg_pool2d(diff[:, None], pool)
        out = out + low.abs().flatten(1).mean(1) + low.pow(2).flatten(1).mean(1)
    return out


def _signature(generator: FaceGenerator) -> dict[str, Any]:
    """What a reference is tied to: generator class, version, size, seed, latent shape."""
    size = getattr(generator, "size", None)
    seed = getattr(generator, "seed", None)
    version = getattr(generator, "version", None)
    return {
        "class": type(generator).__name__,
        "version": None if version is None else int(version),
        "size": None if size is None else int(size),
        "seed": None if seed is None else int(seed),
        "latent_shape": [int(v) for v in generator.latent_shape],
    }


def render_grey_set(generator: FaceGenerator, n: int, *, seed: int = 0, split: str = "train",
                    chunk: int = 256, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Grey images ``(n, H, W)`` float16 in [0, 1] and latents ``(n, L, D)`` of the first
    ``n`` items of ``SyntheticFaces(generator, n, seed=seed, split=split)`` (rendered once,
    ``chunk`` faces per call; the ``train`` split never meets evaluation's ``test``)."""
    from lsi_ml.data.synthetic import SyntheticFaces

    if int(n) < 1 or int(chunk) < 1:
        raise ConfigError(f"need n >= 1 and chunk >= 1, got n={n}, chunk={chunk}")
    faces = SyntheticFaces(generator, int(n), seed=int(seed), split=split, cache=False)
    images, latents = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(n), desc=f"render {split}", unit="face")
    for lo in range(0, int(n), int(chunk)):
        item = faces.images(range(lo, min(int(n), lo + int(chunk))))
        images.append(grey(item["image"]).half())
        latents.append(item["latent"].float())
        if bar is not None:
            bar.update(len(item["latent"]))
    if bar is not None:
        bar.close()
    return torch.cat(images), torch.cat(latents)


# --------------------------------------------------------------------------------------------
# the CNN
# --------------------------------------------------------------------------------------------
class _ResBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (same shape)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.GELU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def _down(cin: int, cout: int) -> nn.Sequential:
    """A stride-2 3x3 convolution (halves the side), batch norm, GELU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.GELU())


class ImageDecoder(nn.Module):
    """Grey image ``(n, H, W)`` in [0, 1] -> latent ``(n, L, D)``.

    A small ResNet: two coordinate channels are appended to the standardised image (aligned
    faces: position matters), a 4x4 stride-4 "patchify" stem, then per scale one residual
    block and a stride-2 convolution (widths ``width x (2, 4, 6)``) down to a ``side / 16``
    map, one more residual block, flattened (no global pooling: where an edge is IS the
    answer) into a two-layer MLP head of ``hidden`` units.

    Parameters
    ----------
    size : int
        Image side, px (a multiple of 16).
    latent_shape : (int, int)
        ``(L, D)`` of the generator.
    width : int
        Channels of the first stage (>= 4).
    hidden : int
        Width of the MLP head (>= 8).
    """

    def __init__(self, size: int, latent_shape: tuple[int, int], width: int = 24,
                 hidden: int = 512) -> None:
        super().__init__()
        if int(size) < 16 or int(size) % 16:
            raise ConfigError(f"size={size} must be a multiple of 16 (>= 16)")
        if int(width) < 4 or int(hidden) < 8:
            raise ConfigError(f"need width >= 4 and hidden >= 8, got {width}, {hidden}")
        self.size, self.width, self.hidden = int(size), int(width), int(hidden)
        self.latent_shape = (int(latent_shape[0]), int(latent_shape[1]))
        w = self.width
        chans = (w, 2 * w, 4 * w, 6 * w)
        self.features = nn.Sequential(
            nn.Conv2d(3, chans[1], 4, 4, 0, bias=False), nn.BatchNorm2d(chans[1]), nn.GELU(),
            _ResBlock(chans[1]), _down(chans[1], chans[2]),
            _ResBlock(chans[2]), _down(chans[2], chans[3]),
            _ResBlock(chans[3]),
        )
        out_dim = self.latent_shape[0] * self.latent_shape[1]
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(chans[3] * (self.size // 16) ** 2, self.hidden), nn.GELU(),
            nn.Linear(self.hidden, out_dim))
        coords = (torch.arange(self.size, dtype=torch.float32) * 2 + 1) / self.size - 1
        gy, gx = torch.meshgrid(coords, coords, indexing="ij")
        self.register_buffer("coords", torch.stack([gx, gy])[None], persistent=False)
        self.register_buffer("pixel_mean", torch.full((self.size, self.size), 0.5))
        self.register_buffer("pixel_std", torch.full((self.size, self.size), 0.25))
        self.register_buffer("latent_mean", torch.zeros(out_dim))
        self.register_buffer("latent_std", torch.ones(out_dim))

    def set_statistics(self, images: Tensor, latents: Tensor) -> None:
        """Per-pixel mean / std of grey training images ``(n, H, W)`` and per-dimension
        mean / std of their latents, used to standardise the input and the output."""
        x = images.float()
        z = latents.reshape(len(latents), -1).float()
        self.pixel_mean.copy_(x.mean(0))
        self.pixel_std.copy_(x.std(0).clamp_min(1e-3))
        self.latent_mean.copy_(z.mean(0))
        self.latent_std.copy_(z.std(0).clamp_min(1e-3))

    def standardised(self, images: Tensor) -> Tensor:
        """The latent in standard units ``(n, L * D)`` (what the training loss sees)."""
        x = grey(images)
        if tuple(x.shape[1:]) != (self.size, self.size):
            raise ConfigError(f"images must be {self.size}x{self.size} px, got "
                              f"{tuple(x.shape[1:])}")
        x = ((x - self.pixel_mean) / self.pixel_std)[:, None]
        x = torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], 1)
        return self.head(self.features(x))

    def forward(self, images: Tensor) -> Tensor:
        """Latent ``(n, L, D)`` of grey images ``(n, H, W)`` (or RGB ``(n, 3, H, W)``,
        converted to grey) in [0, 1]."""
        out = self.standardised(images) * self.latent_std + self.latent_mean
        return out.reshape(-1, *self.latent_shape)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainStats:
    """What :func:`train_image_decoder` did (times in s, losses in standardised latent units).

    Attributes
    ----------
    seconds_render, seconds_train : float
        Wall-clock time rendering the training set and training the CNN.
    cpu_seconds_render, cpu_seconds_train : float
        The same in CPU time of this process (equal to the wall time on an idle machine
        with one torch thread; less on a busy one).
    loss_first, loss_last : float
        Mean training loss over the first and the last 10 % of the steps.
    val_l1 : float
        Mean absolute latent error (latent units) on 512 ``val`` faces after training.
    losses : list of float
        Training loss of every step.
    """

    seconds_render: float = 0.0
    seconds_train: float = 0.0
    cpu_seconds_render: float = 0.0
    cpu_seconds_train: float = 0.0
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    val_l1: float = float("nan")
    losses: list[float] = field(default_factory=list, repr=False)


def _weights(generator: FaceGenerator, identity_weight: float) -> Tensor:
    """Per-dimension loss weights ``(L * D,)``: ``identity_weight`` on identity dims."""
    dim = int(generator.latent_shape[0]) * int(generator.latent_shape[1])
    w = torch.ones(dim)
    index = getattr(generator, "identity_index", None)
    if index is not None:
        w[torch.as_tensor(index, dtype=torch.long)] = float(identity_weight)
    return w * dim / w.sum()


def train_image_decoder(
    generator: FaceGenerator,
    *,
    steps: int = 3000,
    batch: int = 128,
    n_scenes: int = 60000,
    seed: int = 0,
    lr: float = 2e-3,
    width: int = 24,
    hidden: int = 512,
    identity_weight: float = 2.0,
    progress: bool = False,
    stats: TrainStats | None = None,
    data: tuple[Tensor, Tensor] | None = None,
) -> ImageDecoder:
    """Train an :class:`ImageDecoder` on ``n_scenes`` noiseless grey scenes.

    Parameters
    ----------
    generator
        Generator with ``size``, ``latent_shape``, ``sample_latent`` and ``render`` (e.g.
        SynthFace); the scenes are the ``train`` split of
        :class:`~lsi_ml.data.synthetic.SyntheticFaces` with ``seed`` (disjoint from the
        ``test`` split every evaluation reads).
    steps : int
        AdamW steps (>= 1), one-cycle learning rate peaking at ``lr``.
    batch : int
        Scenes per step (>= 2), drawn with replacement from the rendered set.
    n_scenes : int
        Scenes rendered once (float16 grey; about 6 ms a face at 64 px on one core) (>= batch).
    seed : int
        Seed of the scenes, the weights and the batch order.
    lr : float
        Peak learning rate (> 0).
    width, hidden : int
        CNN width and MLP width (see :class:`ImageDecoder`).
    identity_weight : float
        Loss weight of the identity dimensions relative to the others (> 0).
    progress : bool
        Show tqdm bars (rendering, steps with the running loss).
    stats : TrainStats, optional
        Filled in place with timings and losses.
    data : (Tensor, Tensor), optional
        Already rendered ``render_grey_set(generator, n_scenes, seed=seed)`` (grey images,
        latents); ``n_scenes`` is then ignored.

    Returns
    -------
    ImageDecoder
        In eval mode. The loss is ``L1 + L2`` of the standardised latent, per-dimension
        weighted.

    Raises
    ------
    ConfigError
        A setting out of range.
    """
    if data is not None:
        n_scenes = len(data[0])
    if int(steps) < 1 or int(batch) < 2 or int(n_scenes) < int(batch):
        raise ConfigError(f"need steps >= 1, batch >= 2 and n_scenes >= batch, got "
                          f"steps={steps}, batch={batch}, n_scenes={n_scenes}")
    if not lr > 0 or not identity_weight > 0:
        raise ConfigError(f"need lr > 0 and identity_weight > 0, got {lr}, {identity_weight}")
    stats = stats if stats is not None else TrainStats()
    t0, c0 = time.perf_counter(), time.process_time()
    x, z = data if data is not None else render_grey_set(
        generator, int(n_scenes), seed=seed, split="train", progress=progress)
    if tuple(z.shape[1:]) != tuple(generator.latent_shape) or len(x) != len(z):
        raise ConfigError(f"data must be (n, H, W) grey images and (n, L, D) latents, got "
                          f"{tuple(x.shape)} and {tuple(z.shape)}")
    stats.seconds_render = time.perf_counter() - t0
    stats.cpu_seconds_render = time.process_time() - c0
    torch.manual_seed(int(seed))
    net = ImageDecoder(int(generator.size), tuple(generator.latent_shape), width, hidden)
    net.set_statistics(x, z)
    weights = _weights(generator, identity_weight)
    opt = torch.optim.AdamW(net.parameters(), lr=float(lr), weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, float(lr), total_steps=int(steps),
                                                pct_start=0.15)
    order = torch.Generator().manual_seed(int(seed))
    zs = ((z.reshape(len(z), -1) - net.latent_mean) / net.latent_std)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(steps), desc="train CNN", unit="step")
    t0, c0 = time.perf_counter(), time.process_time()
    net.train()
    losses: list[float] = []
    for _ in range(int(steps)):
        idx = torch.randint(0, len(x), (int(batch),), generator=order)
        diff = net.standardised(x[idx].float()) - zs[idx]
        loss = ((diff.abs() + 0.5 * diff.pow(2)) * weights).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / 20:.4f}")
    if bar is not None:
        bar.close()
    net.eval()
    stats.seconds_train = time.perf_counter() - t0
    stats.cpu_seconds_train = time.process_time() - c0
    k = max(1, len(losses) // 10)
    stats.losses = losses
    stats.loss_first = sum(losses[:k]) / k
    stats.loss_last = sum(losses[-k:]) / k
    xv, zv = render_grey_set(generator, min(512, int(n_scenes)), seed=seed, split="val")
    with torch.no_grad():
        stats.val_l1 = float((net(xv.float()) - zv).abs().mean())
    return net


# --------------------------------------------------------------------------------------------
# refinement
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_latent` (see there)."""

    steps: int = 100
    lr: float = 0.05
    prior_weight: float = 1e-4
    pool: int = 4
    chunk: int = 64

    def check(self) -> None:
        """ConfigError unless every setting is in range."""
        if int(self.steps) < 0 or int(self.chunk) < 1 or int(self.pool) < 0:
            raise ConfigError(f"need steps >= 0, chunk >= 1 and pool >= 0, got {self}")
        if not self.lr > 0 or self.prior_weight < 0:
            raise ConfigError(f"need lr > 0 and prior_weight >= 0, got lr={self.lr}, "
                              f"prior_weight={self.prior_weight}")


def refine_latent(
    generator: FaceGenerator,
    grey_images: Tensor,
    init_latent: Tensor,
    *,
    steps: int = 100,
    lr: float = 0.05,
    prior_weight: float = 1e-4,
    pool: int = 4,
    chunk: int = 64,
    progress: bool = False,
    return_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Fit latents so that their GREY renders match grey targets, from a starting latent.

    For each image the objective is ``grey_loss(grey(G(z)), target, pool) + prior_weight *
    mean(z^2)`` (:func:`grey_loss`: mean absolute + mean squared grey error, pixels in
    [0, 1], at full and at ``pool``-pooled resolution; the prior is the standard normal of
    SynthFace's latent). Adam, learning rate ``lr`` (latent units per step) held for the
    first half, cosine-decayed to 10 % over the second; the best latent seen (lowest
    objective, the start included) is kept per image.

    Parameters
    ----------
    generator
        Differentiable generator: ``synthesize(latent) -> (n, 3, H, W)`` in [0, 1].
    grey_images : Tensor
        ``(n, H, W)`` grey targets in [0, 1] (RGB ``(n, 3, H, W)`` is converted).
    init_latent : Tensor
        ``(n, L, D)`` starting latents (e.g. :class:`ImageDecoder`'s output).
    steps : int
        Adam steps (>= 0; 0 returns the start). Cost at 64 px on one core: ~10 ms a face
        a step (forward + backward render; measured 9-23 ms on a busy 2-core machine).
    lr : float
        Adam learning rate (> 0).
    prior_weight : float
        Weight (>= 0) of ``mean(z^2)``.
    pool : int
        Side of the average pooling of the coarse term (0 or 1: none).
    chunk : int
        Faces optimised together (memory and speed only: each face has its own objective,
        and SynthFace draws a face the same whatever its batch mates).
    progress : bool
        Show a tqdm bar over chunks x steps.
    return_loss : bool
        Also return the per-image grey reconstruction error ``grey_loss`` ``(n,)`` of the
        returned latents.

    Returns
    -------
    Tensor or (Tensor, Tensor)
        Refined latents ``(n, L, D)`` (detached), and their reconstruction errors if
        ``return_loss``.
    """
    config = RefineConfig(int(steps), float(lr), float(prior_weight), int(pool), int(chunk))
    config.check()
    target_all = grey(grey_images).detach()
    start = init_latent.detach().float()
    if start.shape[0] != target_all.shape[0]:
        raise ConfigError(f"{start.shape[0]} initial latents for {target_all.shape[0]} images")
    out, recon_out = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=math.ceil(len(start) / config.chunk) * config.steps, desc="refine",
                   unit="step", leave=False)
    half = config.steps // 2
    with torch.enable_grad():
        for lo in range(0, len(start), config.chunk):
            target = target_all[lo:lo + config.chunk]
            z = start[lo:lo + config.chunk].clone().requires_grad_(True)
            best = z.detach().clone()
            best_obj = torch.full((len(z),), math.inf)
            best_rec = torch.full((len(z),), math.inf)
            opt = torch.optim.Adam([z], lr=config.lr)
            for t in range(config.steps + 1):
                rec = grey_loss(generator.synthesize(z).mean(1), target, config.pool)
                obj = rec + config.prior_weight * z.pow(2).flatten(1).mean(1)
                with torch.no_grad():
                    better = obj.detach() < best_obj
                    best_obj = torch.where(better, obj.detach(), best_obj)
                    best_rec = torch.where(better, rec.detach(), best_rec)
                    best[better] = z.detach()[better]
                if t == config.steps:
                    break
                if t >= half:
                    frac = (t - half) / max(1, config.steps - half)
                    for group in opt.param_groups:
                        group["lr"] = config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
                opt.zero_grad(set_to_none=True)
                obj.sum().backward()
                opt.step()
                if bar is not None:
                    bar.update(1)
            out.append(best)
            recon_out.append(best_rec)
    if bar is not None:
        bar.close()
    latent = torch.cat(out)
    return (latent, torch.cat(recon_out)) if return_loss else latent


# --------------------------------------------------------------------------------------------
# the reference
# --------------------------------------------------------------------------------------------
class FullImageReference:
    """CNN start + grey analysis-by-synthesis refinement: the full-image ceiling decoder.

    Parameters
    ----------
    generator
        The generator the CNN was trained for (also used by the refinement).
    net : ImageDecoder
        The trained CNN.
    refine : RefineConfig
        Refinement settings (``steps=0``: CNN only).
    """

    def __init__(self, generator: FaceGenerator, net: ImageDecoder,
                 refine: RefineConfig | None = None) -> None:
        self.generator = generator
        self.net = net.eval()
        self.refine = refine if refine is not None else RefineConfig()
        self.refine.check()
        self.signature = _signature(generator)

    @classmethod
    def train(cls, generator: FaceGenerator, *, refine: RefineConfig | None = None,
              stats: TrainStats | None = None, **train_kwargs: Any) -> FullImageReference:
        """Train the CNN (:func:`train_image_decoder` with ``train_kwargs``) and wrap it."""
        return cls(generator, train_image_decoder(generator, stats=stats, **train_kwargs),
                   refine)

    def cnn(self, images: Tensor) -> Tensor:
        """The CNN's latents ``(n, L, D)`` of images ``(n, 3, H, W)`` or grey ``(n, H, W)``."""
        with torch.no_grad():
            return self.net(grey(images))

    def __call__(self, images: Tensor, *, refine: bool = True,
                 progress: bool = False) -> Tensor:
        """Latents ``(n, L, D)`` of images in [0, 1] (RGB is turned grey first): the CNN's,
        then refined (unless ``refine`` is False or ``self.refine.steps == 0``)."""
        target = grey(images)
        start = self.cnn(target)
        if not refine or self.refine.steps == 0:
            return start
        cfg = self.refine
        out = refine_latent(self.generator, target, start, steps=cfg.steps, lr=cfg.lr,
                            prior_weight=cfg.prior_weight, pool=cfg.pool, chunk=cfg.chunk,
                            progress=progress)
        assert isinstance(out, Tensor)
        return out

    def decoder(self, *, refine: bool = True) -> Callable[[dict[str, Tensor]], Tensor]:
        """A :data:`lsi_ml.evaluation.latent.Decoder`: ``decode(batch) -> (B, L, D)`` reading only
        ``batch["image"]`` (B, 3, H, W) in [0, 1] (its grey mean)."""

        def decode(batch: dict[str, Tensor]) -> Tensor:
            return self(batch["image"], refine=refine)

        return decode

    def save(self, path: str | Path) -> Path:
        """Write the reference atomically (weights, architecture, refinement settings,
        generator signature); read it back with :meth:`load`."""
        payload = {
            "kind": _KIND,
            "format": _FORMAT,
            "generator": self.signature,
            "net": {"size": self.net.size, "latent_shape": list(self.net.latent_shape),
                    "width": self.net.width, "hidden": self.net.hidden},
            "refine": asdict(self.refine),
            "state_dict": self.net.state_dict(),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(target, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, generator: FaceGenerator,
             refine: RefineConfig | None = None) -> FullImageReference:
        """Read a reference written by :meth:`save` for ``generator`` (``refine`` overrides
        the saved refinement settings).

        Raises
        ------
        ConfigError
            Not a reference file, or written for another generator configuration.
        """
        try:
            payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"no reference file at {path}") from None
        except Exception as exc:  # torch raises many types for a foreign or damaged file
            raise ConfigError(f"{path} is not a readable reference file: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None
        if not isinstance(payload, dict) or payload.get("kind") != _KIND:
            raise ConfigError(f"{path} is not a full-image reference file")
        if payload.get("generator") != _signature(generator):
            raise ConfigError(f"{path} was trained for {payload.get('generator')}, not for "
                              f"{_signature(generator)}")
        arch = payload["net"]
        net = ImageDecoder(int(arch["size"]), tuple(arch["latent_shape"]), int(arch["width"]),
                           int(arch["hidden"]))
        net.load_state_dict(payload["state_dict"])
        if refine is None:
            refine = RefineConfig(**payload["refine"])
        return cls(generator, net, refine)
