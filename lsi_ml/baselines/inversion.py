"""Optimisation-based GAN inversion: find the latent whose rendering matches an image.

:func:`invert` runs Adam on the latent of any generator that has ``sample_latent(n,
generator=)``, ``synthesize(latent) -> (n, 3, H, W) in [0, 1]`` and ``latent_shape``
(:class:`~lsi_ml.generators.synthface.SynthFace`, the StyleGAN adapter, ...). The objective
of image ``i`` is

``loss_i = recon(G(z_i), x_i) + prior_weight * mean(((z_i - mu) / sigma)^2)
+ feature_weight * mean((f(G(z_i)) - f(x_i))^2)``

with ``recon`` the per-image mean absolute (``"l1"``), mean squared (``"l2"``) error or their
sum (``"l1+l2"``), ``mu = 0, sigma = 1`` for the standard-normal prior (``prior="normal"``, so
the prior term is ``||z||^2 / (L D)``) or per-element statistics of prior samples
(``prior="empirical"``, e.g. the W+ space of a StyleGAN), and ``f`` an optional user feature
function. Several random restarts are run one after the other, each over the whole batch; for
every image the best latent seen at any step of any restart is kept, so adding restarts never
makes a result worse (restart ``r`` starts from the same latents whatever ``restarts`` is).

:func:`invert_dataset` inverts an image folder batch by batch into ``latents.npy`` (the latent
targets that :class:`~lsi_ml.data.images.ImageFolderFaces` reads), written atomically and
resumable after an interruption.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lsi_hw.atomic import atomic_write
from lsi_hw.errors import ConfigError
from lsi_ml.generators.base import FaceGenerator

__all__ = ["LOSSES", "InversionResult", "invert", "invert_dataset"]

LOSSES: tuple[str, ...] = ("l1", "l2", "l1+l2")
"""Reconstruction losses accepted by :func:`invert`."""

_PRIORS: tuple[str, ...] = ("normal", "empirical")


@dataclass
class InversionResult:
    """Outcome of :func:`invert`.

    Attributes
    ----------
    latent : Tensor
        ``(n, L, D)`` best latent per image (detached, on the generator's device).
    image : Tensor
        ``(n, 3, H, W)`` its rendering in ``[0, 1]`` at the generator's resolution.
    loss : Tensor
        ``(n,)`` objective of the best latent (reconstruction + prior + feature terms).
    recon : Tensor
        ``(n,)`` reconstruction term alone (in the units of ``loss="..."``, images in [0, 1]).
    restart : Tensor
        ``(n,)`` int64, the restart that produced each best latent.
    """

    latent: Tensor
    image: Tensor
    loss: Tensor
    recon: Tensor
    restart: Tensor


def _check_images(images: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] < 1:
        raise ConfigError(
            f"images must have shape (n, 3, H, W) (or (3, H, W)) with values in [0, 1], "
            f"got {tuple(x.shape)}; convert HxWx3 arrays with .permute(2, 0, 1)"
        )
    if not x.is_floating_point():
        raise ConfigError(f"images must be float in [0, 1], got dtype {x.dtype}; divide by 255")
    if not torch.isfinite(x).all():
        raise ConfigError("images contain NaN or inf values")
    return x.float()


def _recon(out: Tensor, target: Tensor, loss: str) -> Tensor:
    diff = (out - target).flatten(1)
    if loss == "l1":
        return diff.abs().mean(1)
    if loss == "l2":
        return diff.pow(2).mean(1)
    return diff.abs().mean(1) + diff.pow(2).mean(1)


@torch.no_grad()
def prior_statistics(generator: FaceGenerator, prior: str, stats_gen: torch.Generator
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, mu, sigma)`` of the latent prior, each ``(1, L, D)``.

    ``mean`` is the mean of prior samples drawn with ``stats_gen`` (1024 for
    ``prior="empirical"``, 256 otherwise); the prior term penalises ``((z - mu) / sigma)^2``
    with ``mu, sigma`` = the samples' mean and std (``empirical``) or 0 and 1 (``normal``).
    """
    samples = generator.sample_latent(1024 if prior == "empirical" else 256,
                                      generator=stats_gen).detach()
    mean = samples.mean(0, keepdim=True)
    if prior == "empirical":
        return mean, mean, samples.std(0, keepdim=True).clamp_min(1e-8)
    return mean, torch.zeros_like(mean), torch.ones_like(mean)


def _restart_seed(seed: int, restart: int) -> int:
    state = np.random.SeedSequence([int(seed), int(restart)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def invert(
    generator: FaceGenerator,
    images: Tensor | np.ndarray,
    *,
    steps: int = 300,
    lr: float = 0.05,
    restarts: int = 4,
    prior_weight: float = 1e-3,
    loss: str = "l1+l2",
    feature_fn: Callable[[Tensor], Tensor] | None = None,
    feature_weight: float = 1.0,
    prior: str = "normal",
    seed: int = 0,
    progress: bool = False,
) -> InversionResult:
    """Invert images into the latent space of ``generator`` by optimisation.

    Parameters
    ----------
    generator
        Object with ``sample_latent(n, generator=)``, ``synthesize(latent)`` returning
        ``(n, 3, H, W)`` in ``[0, 1]`` and ``latent_shape`` ``(L, D)``.
    images : Tensor or numpy.ndarray
        ``(n, 3, H, W)`` (or one ``(3, H, W)``) float RGB in ``[0, 1]``. Resized (bilinear,
        antialiased) to the generator's resolution when it differs.
    steps : int
        Adam steps per restart (>= 1).
    lr : float
        Adam learning rate, in latent units per step (> 0); cosine-decayed to 10 % over the
        second half of each restart.
    restarts : int
        Number of random restarts (>= 1). Restart 0 starts from the prior mean (the mean of
        256 prior samples), the others from prior samples seeded by ``(seed, restart)``.
    prior_weight : float
        Weight (>= 0) of the prior term ``mean(((z - mu) / sigma)^2)`` over the ``L * D``
        latent elements.
    loss : {"l1", "l2", "l1+l2"}
        Per-image reconstruction loss: mean absolute and/or mean squared pixel error.
    feature_fn : callable, optional
        ``feature_fn(images (n, 3, H, W)) -> (n, ...)`` differentiable features (e.g. a face
        descriptor network); adds ``feature_weight * mean((f(G(z)) - f(x))^2)``.
    feature_weight : float
        Weight (>= 0) of the feature term.
    prior : {"normal", "empirical"}
        ``"normal"``: standard normal prior, ``mu = 0, sigma = 1`` (SynthFace). ``"empirical"``:
        per-element mean and std of 1024 prior samples (for a mapped space like W+).
    seed : int
        Seed of the restarts' initial latents.
    progress : bool
        Show a tqdm progress bar over restarts x steps.

    Returns
    -------
    InversionResult
        Best latent, its image, objective, reconstruction term and restart, per image.

    Raises
    ------
    ConfigError
        Wrong image shape/dtype, or a setting out of range.
    """
    if loss not in LOSSES:
        raise ConfigError(f"loss={loss!r} is not one of {LOSSES}")
    if prior not in _PRIORS:
        raise ConfigError(f"prior={prior!r} is not one of {_PRIORS}")
    if int(steps) < 1 or int(restarts) < 1:
        raise ConfigError(f"steps={steps} and restarts={restarts} must both be >= 1")
    if not lr > 0 or prior_weight < 0 or feature_weight < 0:
        raise ConfigError(
            f"need lr > 0, prior_weight >= 0 and feature_weight >= 0, got lr={lr}, "
            f"prior_weight={prior_weight}, feature_weight={feature_weight}"
        )
    target = _check_images(images)
    n = target.shape[0]
    shape = tuple(int(s) for s in generator.latent_shape)
    # restart 0 starts from the prior mean, so its seed draws the prior statistics instead
    stats_gen = torch.Generator().manual_seed(_restart_seed(seed, 0))
    mean, mu, sigma = prior_statistics(generator, prior, stats_gen)
    with torch.no_grad():
        probe = generator.synthesize(mean)
    device = probe.device
    target = target.to(device)
    if tuple(probe.shape[2:]) != tuple(target.shape[2:]):
        target = F.interpolate(target, size=tuple(probe.shape[2:]), mode="bilinear",
                               align_corners=False, antialias=True).clamp(0.0, 1.0)
    target_feat = None
    if feature_fn is not None:
        with torch.no_grad():
            target_feat = feature_fn(target).detach()

    best_loss = torch.full((n,), math.inf, device=device)
    best_recon = torch.full((n,), math.inf, device=device)
    best_latent = mean.expand(n, *shape).clone()
    best_restart = torch.zeros(n, dtype=torch.long)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(restarts) * int(steps), desc="invert", unit="step")
    half = int(steps) // 2
    for r in range(int(restarts)):
        if r == 0:
            z0 = mean.expand(n, *shape).clone()
        else:
            gen = torch.Generator().manual_seed(_restart_seed(seed, r))
            z0 = generator.sample_latent(n, generator=gen).detach().to(device)
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=float(lr))
        for t in range(int(steps) + 1):
            out = generator.synthesize(z)
            rec = _recon(out, target, loss)
            obj = rec + prior_weight * ((z - mu) / sigma).pow(2).flatten(1).mean(1)
            if feature_fn is not None:
                diff = feature_fn(out) - target_feat
                obj = obj + feature_weight * diff.pow(2).flatten(1).mean(1)
            with torch.no_grad():  # keep the best latent seen (loss is that of this z)
                better = obj.detach() < best_loss
                if better.any():
                    best_loss = torch.where(better, obj.detach(), best_loss)
                    best_recon = torch.where(better, rec.detach(), best_recon)
                    best_latent[better] = z.detach()[better]
                    best_restart[better.cpu()] = r
            if t == int(steps):
                break
            if t >= half:  # cosine decay to 10 % over the second half
                frac = (t - half) / max(1, int(steps) - half)
                for group in opt.param_groups:
                    group["lr"] = float(lr) * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
            opt.zero_grad(set_to_none=True)
            obj.sum().backward()
            opt.step()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    with torch.no_grad():
        image = generator.synthesize(best_latent)
    return InversionResult(latent=best_latent, image=image.detach(), loss=best_loss,
                           recon=best_recon, restart=best_restart)


# --------------------------------------------------------------------------------------------
# whole datasets, resumable
# --------------------------------------------------------------------------------------------
def invert_dataset(
    generator: FaceGenerator,
    dataset: Any,
    out_path: str | Path | None = None,
    *,
    batch: int = 16,
    save_every: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    **invert_kwargs: Any,
) -> Path:
    """Invert every image of ``dataset`` into ``latents.npy``, resumably.

    Parameters
    ----------
    generator
        See :func:`invert`.
    dataset
        A dataset with ``batch(indices)`` returning ``image`` ``(B, 3, H, W)`` and ``index``
        (row of each item in the output; defaults to the position), e.g.
        :class:`~lsi_ml.data.images.ImageFolderFaces` (any split: rows are the folder's
        global indices, so the array always has one row per image of the folder).
    out_path : str or Path, optional
        Output ``.npy`` file; default ``<dataset.root>/latents.npy`` (next to the images).
    batch : int
        Images inverted together (>= 1).
    save_every : int
        Write the array (temp file + ``os.replace``) every this many batches and at the end.
    overwrite : bool
        Start afresh even if a progress file of an earlier, different run exists.
    progress : bool
        Show a tqdm bar over batches.
    **invert_kwargs
        Passed to :func:`invert` (``steps``, ``restarts``, ``seed``, ...).

    Returns
    -------
    Path
        ``out_path``. Beside it, ``<out_path>.progress.json`` lists the rows done; rows not
        yet inverted hold NaN. Running again skips the rows done.

    Raises
    ------
    ConfigError
        Bad ``batch``/``save_every``, no output folder, or a progress file from a run with
        another image count, image list or latent shape (pass ``overwrite=True``).
    """
    if int(batch) < 1 or int(save_every) < 1:
        raise ConfigError(f"batch={batch} and save_every={save_every} must be >= 1")
    if out_path is None:
        root = getattr(dataset, "root", None)
        if root is None:
            raise ConfigError("dataset has no 'root' folder: pass out_path explicitly")
        out_path = Path(root) / "latents.npy"
    out = Path(out_path)
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist")
    prog_path = out.with_name(out.name + ".progress.json")
    n_local = len(dataset)
    n_rows = int(getattr(dataset, "num_images", n_local))
    names: Sequence[str] = getattr(dataset, "all_names", [])
    key = {
        "rows": n_rows,
        "latent_shape": [int(s) for s in generator.latent_shape],
        "names_sha1": hashlib.sha1("\n".join(names).encode()).hexdigest(),
    }
    done: set[int] = set()
    array: np.ndarray | None = None
    if prog_path.exists() and out.exists() and not overwrite:
        state = json.loads(prog_path.read_text())
        if {k: state.get(k) for k in key} != key:
            raise ConfigError(
                f"{prog_path} belongs to another run ({ {k: state.get(k) for k in key} } vs "
                f"{key}); delete it or pass overwrite=True"
            )
        array = np.load(out)
        done = {int(i) for i in state.get("done", [])}
    if array is None or array.shape != (n_rows, *key["latent_shape"]):
        array = np.full((n_rows, *key["latent_shape"]), np.nan, dtype=np.float32)
        done = set()

    def save() -> None:
        atomic_write(out, lambda fh: np.save(fh, array))
        text = json.dumps({**key, "done": sorted(done)})
        atomic_write(prog_path, lambda fh: fh.write(text), mode="w")

    rows_all = _rows(dataset, range(n_local))
    if rows_all and (min(rows_all) < 0 or max(rows_all) >= n_rows):
        raise ConfigError(f"dataset rows must lie in 0..{n_rows - 1}")
    todo = [i for i, row in enumerate(rows_all) if row not in done]  # resume: skip rows done
    chunks = [todo[k:k + int(batch)] for k in range(0, len(todo), int(batch))]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chunks), desc="invert_dataset", unit="batch")
    pending = 0
    for chunk in chunks:
        items = dataset.batch(chunk)
        res = invert(generator, items["image"], **invert_kwargs)
        rows = [rows_all[i] for i in chunk]
        array[rows] = res.latent.detach().cpu().numpy().astype(np.float32)
        done.update(rows)
        pending += 1
        if pending >= int(save_every):
            save()
            pending = 0
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    save()
    return out


def _rows(dataset: Any, local: Sequence[int]) -> list[int]:
    """Output rows of local items: ``dataset.global_index`` if it has one, else positions."""
    to_global = getattr(dataset, "global_index", None)
    return [int(to_global(i)) for i in local] if to_global is not None else [int(i) for i in local]
