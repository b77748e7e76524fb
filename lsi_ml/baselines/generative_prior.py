"""Generative-prior reconstruction: find the latent whose measurement matches the readings.

The "generative-prior optimisation" baseline of compressive imaging (Bora et al. 2017, "CS
with generative models"): for readings ``y`` (B, m) of scenes measured through masks ``A``,
find ``z`` with ``A G(z) ~ y`` by gradient descent on ``z`` through the generator ``G`` and the
noise-free differentiable model of the bench
(:meth:`lsi_hw.sim.torch_model.TorchForwardModel.expected`: monitor gamma, relay optics,
DMD, photodiode, gain, settling, offset).  It needs no training, only the masks and the
generator, so it is the natural image-space baseline for latent-space imaging.

Objective of face ``i`` (one Adam step per iteration, on all faces of a chunk at once)::

    obj_i = rel_i(z_i) + prior_weight * mean(((z_i - mu) / sigma) ** 2)

* ``calibration="affine"`` (default): the bench's gain and offset are treated as unknown.
  Each iteration the per-face scale ``a_i`` and offset ``b_i`` that best map the model's
  readings ``p_i = A G(z_i)`` onto ``y_i`` are solved in closed form (least squares over
  the ``m`` readings: ``a = <p - p_mean, y - y_mean> / |p - p_mean|^2``,
  ``b = y_mean - a p_mean``) and the residual is taken after that fit; gradients flow
  through the closed-form solution (variable projection).  ``rel_i`` is the fraction of
  the readings' variance about their mean left unexplained,
  ``|y - a p - b|^2 / |y - y_mean|^2`` (0: perfect fit, 1: nothing explained), so the
  result does not change when the readings undergo any affine map ``y -> s y + t``
  with ``s > 0`` (other gains, offsets, units).  Needs ``m >= 3`` (with two parameters
  fitted, fewer readings are always matched exactly).
* ``calibration="known"``: the readings are volts of the bench described by ``sim_config``
  (``a = 1, b = 0``); ``rel_i = |y - p|^2 / |y - y_mean|^2``, the same scale as above (the
  denominator is kept above ``1e-6 |y - y_black|^2``, ``y_black`` the reading of a black
  scene, and is ``|y - y_black|^2`` for m = 1).  Works for any ``m >= 1``.  The absolute
  level dominates that residual and stalls the optimiser in poor fits when used from the
  start (measured 16.2 dB at m = 256 against 19.7 dB), so for ``m >= 3`` the first half of
  each restart uses the affine residual and the second half the known-gain one.

The prior term is the standard normal prior of the latent (``mu = 0, sigma = 1``;
``prior="empirical"`` uses per-element statistics of 1024 prior samples instead, e.g. for
a StyleGAN W+ space).  ``prior_weight`` is in units of ``rel``.  Its default,
``0.32 / sqrt(m)`` (0.02 at m = 256, 0.08 at m = 16), was tuned on SynthFace at 64 px with
random binary masks, shot noise and the default 16-bit digitizer (whose quantization alone
leaves ``rel`` of a few percent): best of {0.005, 0.02, 0.08} at m = 256 and of
{0.02, 0.1, 0.3} at m = 16 (mean PSNR of 8 faces; the differences are 0.2-0.8 dB).

Restarts: restart 0 starts from the prior mean, restart ``r > 0`` from a prior sample seeded
by ``(seed, r)`` (the same whatever ``restarts`` is).  Within a restart the learning rate
follows a cosine from ``lr`` to 10 % of it; at the end of each restart the final latent of
each face is kept if its residual (``rel`` with the scale constrained to ``a >= 0``: a
negative gain is unphysical) is the lowest so far.

Cost (1 CPU thread, SynthFace 64 px, m = 256, defaults ``steps=150, restarts=3,
batch=16``): about 5 ms per face per step, i.e. 2-3 s per face (2.4 s measured over 16
faces; slower on a busy machine).  Measured quality on 16 SynthFace test faces at 64 px,
shot noise, random binary masks: 18.6 dB PSNR at m = 256 (19.5 dB with
``calibration="known"``), 16.9 dB at m = 16; the prior-mean image gives 15.6 dB.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lsi_hw.errors import ConfigError
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.forward import SimConfig
from lsi_hw.sim.torch_model import TorchForwardModel
from lsi_ml.baselines.inversion import prior_statistics
from lsi_ml.generators.base import FaceGenerator

__all__ = ["CALIBRATIONS", "generative_prior_reconstruct"]

CALIBRATIONS: tuple[str, ...] = ("affine", "known")
"""How the bench's gain and offset are handled (see the module docstring)."""

_PRIORS: tuple[str, ...] = ("normal", "empirical")
_EPS = 1e-30


def _restart_seed(seed: int, restart: int) -> int:
    state = np.random.SeedSequence([int(seed), 7919, int(restart)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _as_masks(masks: Any) -> Tensor:
    """Masks as a float32 (m, H, W) tensor with values in [0, 1]."""
    if isinstance(masks, PatternSet):
        masks = np.asarray(masks.masks)
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(np.array(masks))
    if not isinstance(masks, Tensor):
        raise ConfigError(f"masks must be a Tensor, numpy array or PatternSet; "
                          f"got {type(masks).__name__}")
    if masks.ndim != 3 or masks.shape[0] < 1 or masks.shape[1] < 1 or masks.shape[2] < 1:
        raise ConfigError(f"masks of shape {tuple(masks.shape)}: expected (m >= 1, H, W)")
    out = masks.detach().to(torch.float32)
    if not bool(torch.isfinite(out).all()) or float(out.min()) < 0 or float(out.max()) > 1:
        raise ConfigError("masks must hold finite values in [0, 1]")
    return out


def _as_readings(readings: Any, m: int) -> Tensor:
    """Readings as a float64 (B, m) tensor."""
    if isinstance(readings, np.ndarray):
        readings = torch.from_numpy(np.array(readings))
    if not isinstance(readings, Tensor):
        raise ConfigError(f"readings must be a Tensor or numpy array; "
                          f"got {type(readings).__name__}")
    y = readings.detach().to(torch.float64).cpu()
    if y.ndim == 1:
        y = y[None]
    if y.ndim != 2 or y.shape[1] != m or y.shape[0] < 1:
        raise ConfigError(f"readings of shape {tuple(readings.shape)}: expected (B >= 1, {m}) "
                          f"for {m} masks")
    if not bool(torch.isfinite(y).all()):
        raise ConfigError("readings contain non-finite values")
    return y


def _fit(p: Tensor, y: Tensor, ref: Tensor | None, positive: bool = False
         ) -> tuple[Tensor, Tensor, Tensor]:
    """(rel, scale, offset) per row of model readings ``p`` against readings ``y`` (float64).

    ``ref`` None: affine fit; else known calibration with the black reading ``ref`` (m,).
    """
    if ref is None:
        pc = p - p.mean(dim=1, keepdim=True)
        yc = y - y.mean(dim=1, keepdim=True)
        cov = (pc * yc).sum(dim=1)
        if positive:
            cov = cov.clamp_min(0.0)
        scale = cov / (pc.pow(2).sum(dim=1) + _EPS)
        resid = yc - scale[:, None] * pc
        denom = yc.pow(2).sum(dim=1)
        offset = y.mean(dim=1) - scale * p.mean(dim=1)
    else:
        scale = torch.ones(p.shape[0], dtype=p.dtype, device=p.device)
        offset = torch.zeros_like(scale)
        resid = y - p
        light = (y - ref).pow(2).sum(dim=1)
        if y.shape[1] > 1:  # the same scale as the affine fit (its prior weight carries over)
            denom = torch.maximum((y - y.mean(dim=1, keepdim=True)).pow(2).sum(dim=1),
                                  1e-6 * light)
        else:
            denom = light
    rel = resid.pow(2).sum(dim=1) / denom.clamp_min(_EPS)
    return rel, scale, offset


def _sanitize_(z: Tensor) -> None:
    """Zero the gradient of faces whose gradient is not finite (a rare generator kink)."""
    grad = z.grad
    if grad is None:
        return
    bad = ~torch.isfinite(grad).flatten(1).all(dim=1)
    if bool(bad.any()):
        grad[bad] = 0.0


def generative_prior_reconstruct(
    readings: Tensor | np.ndarray,
    masks: Tensor | np.ndarray | PatternSet,
    generator: FaceGenerator,
    sim_config: SimConfig | None = None,
    *,
    steps: int = 150,
    restarts: int = 3,
    lr: float = 0.05,
    prior_weight: float | None = None,
    calibration: str = "affine",
    prior: str = "normal",
    seed: int = 0,
    batch: int = 16,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Reconstruct scenes from single-pixel readings by optimising a generator's latent.

    Parameters
    ----------
    readings : Tensor or numpy.ndarray
        ``(B, m)`` detector readings, volts (or any affine image of them with
        ``calibration="affine"``); one ``(m,)`` vector is taken as ``B = 1``.
    masks : Tensor, numpy.ndarray or PatternSet
        ``(m, H, W)`` masks in [0, 1] in display order (the order matters: the detector's
        settling couples consecutive readings).
    generator
        Object with ``sample_latent(n, generator=)``, ``synthesize(latent)`` returning
        ``(n, 3, Hs, Ws)`` in [0, 1] (differentiable) and ``latent_shape`` ``(L, D)``.
        Its images are shown on the simulated monitor (resampled onto the mask grid).
    sim_config : SimConfig or None
        The bench model (default ``SimConfig()``); only its noise-free part is used.
    steps : int
        Adam steps per restart (>= 1).
    restarts : int
        Random restarts (>= 1); restart 0 starts from the prior mean.
    lr : float
        Adam learning rate, latent units per step (> 0).
    prior_weight : float or None
        Weight (>= 0) of the Gaussian prior term ``mean(((z - mu) / sigma) ** 2)``, in units
        of the relative residual; None: ``0.32 / sqrt(m)``.
    calibration : {"affine", "known"}
        ``"affine"``: unknown gain/offset, solved per face in closed form at every
        iteration (needs m >= 3); ``"known"``: readings in the volts of ``sim_config``.
    prior : {"normal", "empirical"}
        Standard normal prior, or per-element mean/std of 1024 prior samples.
    seed : int
        Seed of the restarts' initial latents (>= 0).
    batch : int
        Faces optimised together (>= 1); memory and speed only, the result per face does
        not depend on it beyond floating-point rounding.
    device : str, torch.device or None
        Where to run (default: the device of the generator's output).
    progress : bool
        Show a tqdm bar over chunks x restarts x steps.

    Returns
    -------
    dict of Tensor
        ``latent`` (B, L, D) best latent per face; ``image`` (B, 3, Hs, Ws) its rendering in
        [0, 1]; ``residual`` (B,) its relative residual ``rel`` (dimensionless, see the
        module docstring); ``scale`` and ``offset`` (B,) the fitted gain and offset that map
        model volts to the readings (1 and 0 with ``calibration="known"``).  All detached,
        on the CPU.

    Raises
    ------
    ConfigError
        Bad shapes or values of readings or masks, a setting out of range, or
        ``calibration="affine"`` with fewer than 3 masks.
    """
    _check_options(calibration, prior, steps, restarts, batch, seed, lr, prior_weight,
                   sim_config, generator)
    mk = _as_masks(masks)
    m = int(mk.shape[0])
    if calibration == "affine" and m < 3:
        raise ConfigError(f"calibration='affine' fits a gain and an offset per face, which "
                          f"match any {m} reading(s) exactly: use calibration='known' for m < 3")
    y_all = _as_readings(readings, m)
    weight = 0.32 / math.sqrt(m) if prior_weight is None else float(prior_weight)
    n = int(y_all.shape[0])
    shape = tuple(int(s) for s in generator.latent_shape)

    mean, mu, sigma, probe = _prior_and_probe(generator, prior, seed)
    dev = torch.device(device) if device is not None else probe.device
    physics = TorchForwardModel(sim_config or SimConfig(),
                                (int(mk.shape[1]), int(mk.shape[2])),
                                scene_shape=(int(probe.shape[2]), int(probe.shape[3]))).to(dev)
    mk = mk.to(dev)
    mu, sigma, mean = mu.to(dev), sigma.to(dev), mean.to(dev)
    ref = None
    if calibration == "known":
        with torch.no_grad():
            black = torch.zeros(1, int(probe.shape[2]), int(probe.shape[3]), 3, device=dev)
            ref = physics.expected(black, mk).to(torch.float64)[0]

    def model(z: Tensor) -> Tensor:
        image = generator.synthesize(z)
        return physics.expected(image.permute(0, 2, 3, 1), mk).to(torch.float64)

    objective = _Objective(model, ref, mu, sigma, weight, m)
    best_latent = mean.expand(n, *shape).clone()
    best_rel = torch.full((n,), math.inf, dtype=torch.float64)
    bar = _progress_bar(progress, n, batch, restarts, steps)
    starts = _restart_latents(generator, mean, n, shape, seed, restarts, dev)
    for lo in range(0, n, int(batch)):
        hi = min(n, lo + int(batch))
        y = y_all[lo:hi].to(dev)
        for r in range(int(restarts)):
            z = _descend(objective, starts[r][lo:hi], y, lr, steps, bar)
            _keep_better(objective, z, y, best_rel[lo:hi], best_latent[lo:hi], dev)
    if bar is not None:
        bar.close()
    return _final_outputs(objective, generator, best_latent, best_rel, y_all, batch, dev)


def _check_options(calibration: str, prior: str, steps: int, restarts: int, batch: int,
                   seed: int, lr: float, prior_weight: float | None,
                   sim_config: SimConfig | None, generator: Any) -> None:
    """ConfigError for a setting of :func:`generative_prior_reconstruct` out of range."""
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"calibration={calibration!r} is not one of {CALIBRATIONS}")
    if prior not in _PRIORS:
        raise ConfigError(f"prior={prior!r} is not one of {_PRIORS}")
    for name, value in (("steps", steps), ("restarts", restarts), ("batch", batch)):
        if int(value) < 1:
            raise ConfigError(f"{name}={value} must be >= 1")
    if int(seed) < 0:
        raise ConfigError(f"seed={seed} must be >= 0")
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr={lr} must be finite and > 0")
    if prior_weight is not None and not (math.isfinite(prior_weight) and prior_weight >= 0):
        raise ConfigError(f"prior_weight={prior_weight} must be finite and >= 0")
    if sim_config is not None and not isinstance(sim_config, SimConfig):
        raise ConfigError(f"sim_config must be a SimConfig; got {type(sim_config).__name__}")
    for attr in ("sample_latent", "synthesize", "latent_shape"):
        if not hasattr(generator, attr):
            raise ConfigError(f"generator lacks {attr!r} (needs sample_latent, synthesize "
                              "and latent_shape)")


def _prior_and_probe(generator: FaceGenerator, prior: str, seed: int
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(start of restart 0, prior mean, prior std, the generator's image of that start).

    Raises
    ------
    ConfigError
        The generator's images are not (n, 3, H, W).
    """
    stats_gen = torch.Generator().manual_seed(_restart_seed(seed, 0))
    mean, mu, sigma = prior_statistics(generator, prior, stats_gen)
    if prior != "empirical":
        mean = torch.zeros_like(mean)  # restart 0 starts at the prior's mode
    with torch.no_grad():
        probe = generator.synthesize(mean)
    if probe.ndim != 4 or probe.shape[1] != 3:
        raise ConfigError(f"generator.synthesize gave shape {tuple(probe.shape)}; "
                          "expected (n, 3, H, W)")
    return mean, mu, sigma, probe


def _progress_bar(progress: bool, n: int, batch: int, restarts: int, steps: int) -> Any:
    """A tqdm bar over chunks x restarts x steps (None without ``progress``)."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=math.ceil(n / int(batch)) * int(restarts) * int(steps),
                desc="generative prior", unit="step", dynamic_ncols=True)


def _restart_latents(generator: FaceGenerator, mean: Tensor, n: int, shape: tuple[int, ...],
                     seed: int, restarts: int, dev: torch.device) -> list[Tensor]:
    """Initial latents of every restart for all ``n`` faces: the prior mean, then prior
    samples seeded by ``(seed, r)``."""
    init = [None] + [torch.Generator().manual_seed(_restart_seed(seed, r))
                     for r in range(1, int(restarts))]
    return [mean.expand(n, *shape).clone()] + [
        generator.sample_latent(n, generator=g).detach().to(dev) for g in init[1:]]


@dataclass(frozen=True)
class _Objective:
    """What one face's objective needs: the differentiable model readings of a latent, the
    black reading (None: affine calibration), the prior and its weight, the mask count."""

    model: Callable[[Tensor], Tensor]
    ref: Tensor | None
    mu: Tensor
    sigma: Tensor
    weight: float
    m: int


def _descend(objective: _Objective, start: Tensor, y: Tensor, lr: float, steps: int,
             bar: Any) -> Tensor:
    """One restart of a chunk: ``steps`` Adam steps from ``start`` with a cosine learning
    rate; returns the final latents (still requiring grad)."""
    ref, m = objective.ref, objective.m
    z = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=float(lr))
    for t in range(int(steps)):
        for group in opt.param_groups:  # cosine from lr to 10 % of it
            group["lr"] = float(lr) * (0.1 + 0.45 * (1 + math.cos(math.pi * t / steps)))
        # known gain: fit the pattern first (affine), the absolute level after
        warm = ref is not None and m >= 3 and t < int(steps) // 2
        with torch.enable_grad():  # also when called under no_grad (evaluators)
            rel, _, _ = _fit(objective.model(z), y, None if warm else ref)
            pri = ((z - objective.mu) / objective.sigma).pow(2).flatten(1).mean(1)
            obj = rel.to(pri.dtype) + objective.weight * pri
            opt.zero_grad(set_to_none=True)
            obj.sum().backward()
        _sanitize_(z)
        opt.step()
        if bar is not None:
            bar.update(1)
    return z


def _keep_better(objective: _Objective, z: Tensor, y: Tensor, best_rel: Tensor,
                 best_latent: Tensor, dev: torch.device) -> None:
    """Where the residual of ``z`` (scale constrained to >= 0) is below ``best_rel``, store
    it there and ``z`` in ``best_latent`` (views of one chunk, updated in place)."""
    with torch.no_grad():
        rel, _, _ = _fit(objective.model(z), y, objective.ref, positive=True)
        rel = rel.cpu()
        better = rel < best_rel
        best_rel[:] = torch.where(better, rel, best_rel)
        best_latent[better.to(dev)] = z.detach()[better.to(dev)]


def _final_outputs(objective: _Objective, generator: FaceGenerator, best_latent: Tensor,
                   best_rel: Tensor, y_all: Tensor, batch: int, dev: torch.device
                   ) -> dict[str, Tensor]:
    """The result dict of :func:`generative_prior_reconstruct` for the best latents: their
    images and the scale and offset fitted to their readings."""
    n = int(y_all.shape[0])
    images, scales, offsets = [], [], []
    with torch.no_grad():
        for lo in range(0, n, int(batch)):
            hi = min(n, lo + int(batch))
            zb = best_latent[lo:hi]
            images.append(generator.synthesize(zb).detach().cpu())
            _, scale, offset = _fit(objective.model(zb), y_all[lo:hi].to(dev), objective.ref,
                                    positive=True)
            scales.append(scale.cpu())
            offsets.append(offset.cpu())
    return {"latent": best_latent.detach().cpu(), "image": torch.cat(images),
            "residual": best_rel.to(torch.float32),
            "scale": torch.cat(scales).to(torch.float32),
            "offset": torch.cat(offsets).to(torch.float32)}
