"""A SynthFace face recognizer: the toolkit's stand-in for VGGFace / ArcFace.

The paper scores identity by asking a face-recognition network whether a decoded image shows
the same person as its own original ("verif. VGGFace %"). VGGFace, ArcFace and FaceNet
weights cannot be downloaded here, so the toolkit makes its own recognizer for the generator
it evaluates: a small CNN trained by metric learning on identities drawn on the fly. It is
made by a command (``lsi-ml recognizer``) and cached on disk, never downloaded.

This module holds the network, its training and its decision threshold; the cache and file
format are :mod:`lsi_ml.evaluation.recognizer_cache`, the paper's verification protocol with
a trained recognizer is :mod:`lsi_ml.evaluation.recognizer_verification`.

Model
-----
Input: images ``(n, 3, H, W)`` (or ``(n, 1, H, W)``) in ``[0, 1]``, turned grey by the channel
mean (the single-pixel camera is monochrome), resized (bilinear, antialiased) to
``input_size`` pixels and standardised per image (zero mean, unit variance). A strided 5x5
stem and one residual stage per entry of ``widths`` (each halving the resolution), then the
flattened map (the faces are aligned, so where a feature is matters) -> linear ->
batch-norm -> L2 normalisation: a unit-norm ``embedding_dim`` vector. Two faces are "the
same person" when the cosine similarity of their embeddings exceeds a threshold.

Training
--------
Each step draws ``identities`` new identities from the generator's prior and, for each,
``views`` latents with that identity and every nuisance redrawn
(``generator.sample_latent_same_identity``: pose, expression, lighting, glasses, hair,
background), renders them and minimises the supervised contrastive loss (Khosla et al.
2020; temperature ``temperature``) over the ``identities * views`` embeddings. AdamW with a
linear warm-up and a cosine decay. No identity is ever seen twice, so every later identity
is a held-out one. Everything is deterministic for a given config on a given machine and
thread count (seeded init, seeded ``torch.Generator`` streams).

After training, the decision threshold is fitted on ``val_pairs`` held-out validation pairs
of real renders (``generator.verification_pairs(..., return_hard=True)``: half the same
identity across nuisance redraws, a quarter random other identities, a quarter hard
negatives, i.e. the nearest other identity of a pool) from a stream of its own, and saved
with the weights (:attr:`Recognizer.threshold`). A threshold is never fitted on a test set.

Thresholds
----------
:func:`fit_threshold` / :func:`calibrate_threshold` fix thresholds on validation pairs.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError, require_known_keys
from lsi_ml.config_check import Rule, check_fields
from lsi_ml.data.synthetic import split_seed
from lsi_ml.devices import check_device
from lsi_ml.evaluation.metrics import choose_threshold
from lsi_ml.generators.base import FaceGenerator, generator_signature

__all__ = [
    "STREAM_BLOCK",
    "Recognizer",
    "RecognizerConfig",
    "calibrate_threshold",
    "cosine_similarity",
    "fit_threshold",
    "pair_labels",
    "supcon_loss",
    "to_grey",
    "train_recognizer",
]

STREAM_BLOCK = 2_000_003
"""Block index of ``split_seed`` of the recognizer's streams (training identities: split
``train``; threshold pairs: split ``val``; the cache file's reference renders: split
``test``), far from any data block of the evaluation."""

_RULES: dict[str, Rule] = {
    "input_size": Rule(ge=16, le=256, why="pixels of the recognizer's grey input"),
    "embedding_dim": Rule(ge=2, le=4096),
    "steps": Rule(ge=1, le=1_000_000, why="optimizer steps"),
    "identities": Rule(ge=2, le=1024, why="identities per batch; negatives need 2 or more"),
    "views": Rule(ge=2, le=64, why="nuisance redraws per identity; positives need 2 or more"),
    "lr": Rule(gt=0, le=1),
    "weight_decay": Rule(ge=0, le=1),
    "warmup": Rule(ge=0),
    "temperature": Rule(gt=0, le=10),
    "seed": Rule(ge=0, le=2**63 - 1),
    "val_pairs": Rule(ge=4, le=1_000_000),
    "batch": Rule(ge=1),
}

_NOT_IN_KEY = ("device", "progress", "batch")
"""Config fields that do not change the trained weights' identity (not in the cache key)."""


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class RecognizerConfig:
    """How the recognizer is built and trained.

    Attributes
    ----------
    input_size : int
        Side of the grey network input, pixels (images are resized to it); a multiple of
        ``2 ** len(widths)``.
    widths : tuple of int
        Channels of the strided stem and of each following residual stage (each halves the
        resolution: ``(16, 32, 64, 96)`` at 64 px works on 32, 16, 8 and 4 px maps).
    embedding_dim : int
        Length of the (unit-norm) embedding.
    steps : int
        Optimizer steps.
    identities, views : int
        Identities per batch and renders (nuisance redraws) per identity: a batch holds
        ``identities * views`` faces.
    lr : float
        Peak AdamW learning rate (linear warm-up over ``warmup`` steps, cosine decay to 2 %).
    weight_decay : float
        AdamW decoupled weight decay.
    warmup : int
        Warm-up steps.
    temperature : float
        Temperature of the supervised contrastive loss (cosine similarities divided by it).
    seed : int
        Seed of the initial weights, the training identities and the threshold pairs.
    val_pairs : int
        Validation pairs on which the saved threshold is fitted (held-out identities).
    batch : int
        Faces per forward pass when embedding or rendering validation pairs (memory only;
        not part of the cache key).
    device : str
        Torch device of the training; the generator renders there too. Not part of the
        cache key.
    progress : bool
        Show a tqdm progress bar. Not part of the cache key.

    Notes
    -----
    Measured with these defaults on SynthFace (version 2) 64 px, generator seed 0, one
    torch thread: about 0.5 s a step on an idle core (rendering 128 faces 0.23 s, network
    forward + backward 0.30 s), so ~5 min for the 600 steps (880 s measured on the shared,
    heavily loaded 2-core dev machine, load average 5-8). On 1000 held-out test pairs of
    ``verification_pairs(return_hard=True)`` (500 same identity across nuisance redraws,
    250 random, 250 hard negatives) with the threshold fitted on 1000 other held-out
    pairs (0.700; validation accuracy 0.983): accuracy 0.987; same pairs accepted 0.990,
    random negatives rejected 1.000, hard negatives rejected 0.968. Decoded-vs-original
    (:func:`~lsi_ml.evaluation.recognizer_verification.verification_decoded_vs_original`,
    500 faces, "decoded" = the original latent with every nuisance redrawn, a pessimistic
    stand-in for a decoder): genuine-accept rate
    0.988; accuracy 0.994 with derangement impostors, 0.853 with the hardest impostors
    (nearest of 499 other identities for the recognizer: 72 % rejected). The same faces
    re-rendered exactly: genuine-accept rate 1.000. Batches of 32 identities x 4 views
    instead of 64 x 2: 0.974 (hard negatives 0.944); 300 steps of those: 0.958.
    """

    input_size: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 96)
    embedding_dim: int = 64
    steps: int = 600
    identities: int = 64
    views: int = 2
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 30
    temperature: float = 0.1
    seed: int = 0
    val_pairs: int = 1000
    batch: int = 256
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, _RULES, where="recognizer config")
        check_device(self.device)
        if not self.widths or not 1 <= len(self.widths) <= 6 or min(self.widths) < 1 \
                or max(self.widths) > 1024:
            raise ConfigError(f"recognizer config: widths = {list(self.widths)} must hold 1 "
                              "to 6 channel counts in 1..1024")
        step = 2 ** len(self.widths)
        if self.input_size % step:
            raise ConfigError(f"recognizer config: input_size = {self.input_size} must be a "
                              f"multiple of {step} (2 ** len(widths): each stage halves it)")
        if self.identities * self.views > 8192:
            raise ConfigError(f"recognizer config: identities * views = "
                              f"{self.identities * self.views} faces a step; at most 8192")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the saved file)."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> RecognizerConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused (ConfigError)."""
        values = {**data, **overrides}
        require_known_keys(values, [f.name for f in fields(cls)], "recognizer config keys")
        return cls(**values)

    def key_dict(self) -> dict[str, Any]:
        """The fields that define the trained weights (the cache key's part)."""
        out = self.to_dict()
        for name in _NOT_IN_KEY:
            out.pop(name)
        return out


# ---------------------------------------------------------------------------------- network
def to_grey(images: Tensor, size: int) -> Tensor:
    """``(n, 3|1, H, W)`` images in [0, 1] -> ``(n, 1, size, size)`` grey (channel mean),
    resized bilinearly (antialiased when shrinking) and standardised per image."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(f"recognizer: expected images (n, 3, H, W) or (n, 1, H, W), got "
                          f"shape {tuple(images.shape)}")
    x = images.float().mean(dim=1, keepdim=True)
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-1] > size or x.shape[-2] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=shrink)
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True)
    return (x - mean) / (std + 1e-3)


class _Block(nn.Module):
    """Strided 3x3 conv + 3x3 conv with a 1x1 strided shortcut (a ResNet basic block)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                   nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class Recognizer(nn.Module):
    """Grey face images -> unit-norm identity embeddings (see the module notes).

    Parameters
    ----------
    config : RecognizerConfig or None
        Architecture (and training settings kept with the weights); default config if None.

    Attributes
    ----------
    threshold : float
        Cosine-similarity threshold fitted on held-out validation pairs after training
        (``same person`` iff similarity > threshold); NaN before it is fitted.
    signature : dict
        The generator it was trained for (class, version, size, seed); empty before.
    train_stats : dict of str to float
        Training time (s), final loss, validation accuracies.
    """

    def __init__(self, config: RecognizerConfig | None = None):
        super().__init__()
        cfg = config or RecognizerConfig()
        self.config = cfg
        w = cfg.widths
        self.stem = nn.Sequential(nn.Conv2d(1, w[0], 5, stride=2, padding=2, bias=False),
                                  nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(*[_Block(a, b) for a, b in itertools.pairwise(w)])
        side = cfg.input_size // 2 ** len(w)
        self.head = nn.Linear(w[-1] * side * side, cfg.embedding_dim)
        self.head_bn = nn.BatchNorm1d(cfg.embedding_dim)
        self.threshold: float = float("nan")
        self.signature: dict[str, Any] = {}
        self.train_stats: dict[str, float] = {}

    def forward(self, images: Tensor) -> Tensor:
        """Embeddings ``(n, embedding_dim)`` (unit L2 norm) of images ``(n, 3|1, H, W)``
        in [0, 1], with gradients (training); see :meth:`embed` for scoring."""
        x = to_grey(images, self.config.input_size)
        x = self.stages(self.stem(x))
        z = self.head_bn(self.head(x.flatten(1)))
        return F.normalize(z, dim=1)

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.parameters()).device

    @torch.no_grad()
    def embed(self, images: Tensor, batch: int | None = None) -> Tensor:
        """Unit-norm embeddings ``(n, embedding_dim)`` of images ``(n, 3, H, W)`` (or
        ``(n, 1, H, W)``) in [0, 1], in eval mode, ``batch`` images at a time; returned on
        the images' device as float32.

        Raises
        ------
        ConfigError
            Wrong shape, no images, or non-finite pixels.
        """
        if not isinstance(images, Tensor):
            images = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
            raise ConfigError(f"recognizer: expected images (n, 3, H, W) with n >= 1, got "
                              f"shape {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ConfigError("recognizer: images hold NaN or infinite pixels")
        was_training = self.training
        self.eval()
        step = batch or self.config.batch
        dev = self.device
        try:
            out = [self(images[lo:lo + step].to(dev)).float()
                   for lo in range(0, images.shape[0], step)]
        finally:
            self.train(was_training)
        return torch.cat(out).to(images.device)


# ---------------------------------------------------------------------------------- loss
def supcon_loss(emb: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "L_out") of unit-norm embeddings.

    Parameters
    ----------
    emb : Tensor
        ``(n, d)`` unit-norm embeddings.
    labels : Tensor
        ``(n,)`` identity labels; every label should occur at least twice.
    temperature : float
        Similarities are divided by it.

    Returns
    -------
    Tensor
        Scalar: the mean over anchors of ``-mean_{p in P(i)} log softmax_{j != i}(s_ij)[p]``.
    """
    n = emb.shape[0]
    logits = emb @ emb.t() / temperature
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(dim=1)
    valid = n_pos > 0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(dim=1)[valid] / n_pos[valid]
    return per_anchor.mean()


# ---------------------------------------------------------------------------------- threshold
def cosine_similarity(emb_a: Tensor, emb_b: Tensor) -> Tensor:
    """Row-wise cosine similarity ``(n,)`` of two embedding sets ``(n, d)`` (in [-1, 1])."""
    a = torch.as_tensor(emb_a, dtype=torch.float32)
    b = torch.as_tensor(emb_b, dtype=torch.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ConfigError(f"embeddings must be two (n, d) arrays of one shape, got "
                          f"{tuple(a.shape)} and {tuple(b.shape)}")
    return F.cosine_similarity(a, b, dim=1).clamp(-1.0, 1.0)


def pair_labels(same: Any, n: int) -> np.ndarray:
    """``same`` (one "same identity" label per pair) as an ``(n,)`` bool array; ConfigError
    unless it holds ``n`` labels."""
    y = torch.as_tensor(same).detach().cpu().numpy().ravel()
    if y.size != n:
        raise ConfigError(f"`same` has {y.size} labels for {n} pairs")
    return y.astype(bool)


def _threshold_from_sims(sim: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Max-accuracy threshold on similarities (``same iff sim > t``) and its accuracy."""
    if sim.size == 0:
        raise ConfigError("need at least one validation pair to fit a threshold")
    t, acc = choose_threshold(-sim.astype(np.float64), same)
    return -t, acc


def fit_threshold(emb_a: Tensor, emb_b: Tensor, same: Any) -> float:
    """The cosine-similarity threshold of maximum accuracy on VALIDATION pairs.

    Parameters
    ----------
    emb_a, emb_b : Tensor
        ``(n, d)`` embeddings of the two faces of each pair.
    same : array_like of bool
        ``(n,)``: the pair shows one identity.

    Returns
    -------
    float
        ``t`` such that "same person iff cosine similarity > t" is right on the most pairs
        (the middle of the best range on ties; see
        :func:`lsi_ml.evaluation.metrics.verification_accuracy`).
    """
    sim = cosine_similarity(emb_a, emb_b).cpu().numpy()
    return _threshold_from_sims(sim, pair_labels(same, sim.size))[0]


def calibrate_threshold(recognizer: Recognizer, generator: FaceGenerator, n_pairs: int = 1000,
                        seed: int = 0) -> tuple[float, float]:
    """Fit the threshold on ``n_pairs`` held-out validation pairs of real renders.

    The pairs come from ``generator.verification_pairs(n_pairs, return_hard=True)`` on the
    recognizer's own ``val`` stream (``split_seed(seed, "val", 2_000_003)``): half the same
    identity with every nuisance redrawn, a quarter random other identities, a quarter
    hard negatives (nearest other identity of a pool).

    Returns
    -------
    threshold, accuracy : float
        Cosine-similarity threshold and its accuracy (fraction) on these pairs.
    """
    gen = torch.Generator().manual_seed(split_seed(seed, "val", STREAM_BLOCK))
    lat_a, lat_b, same, _hard = generator.verification_pairs(n_pairs, gen, return_hard=True)
    emb_a = _embed_latents(recognizer, generator, lat_a)
    emb_b = _embed_latents(recognizer, generator, lat_b)
    sim = cosine_similarity(emb_a, emb_b).cpu().numpy()
    return _threshold_from_sims(sim, pair_labels(same, sim.size))


@torch.no_grad()
def _embed_latents(recognizer: Recognizer, generator: FaceGenerator, latent: Tensor,
                   batch: int | None = None) -> Tensor:
    """Render ``latent`` in batches on the recognizer's device and embed the images."""
    step = batch or recognizer.config.batch
    dev = recognizer.device
    out = []
    for lo in range(0, latent.shape[0], step):
        images = generator.synthesize(latent[lo:lo + step].to(dev))
        out.append(recognizer.embed(images).cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------- training
def _lr_factor(step: int, cfg: RecognizerConfig) -> float:
    if cfg.warmup and step < cfg.warmup:
        return (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _sample_batch(generator: FaceGenerator, cfg: RecognizerConfig, gen: torch.Generator
                  ) -> tuple[Tensor, Tensor]:
    """``identities * views`` latents (``views`` nuisance redraws of each new identity)
    and their labels."""
    base = generator.sample_latent(cfg.identities, gen)
    latent = torch.cat([generator.sample_latent_same_identity(base[k], cfg.views, gen)
                        for k in range(cfg.identities)])
    labels = torch.arange(cfg.identities).repeat_interleave(cfg.views)
    return latent, labels


def train_recognizer(generator: FaceGenerator,
                     config: RecognizerConfig | None = None) -> Recognizer:
    """Train a :class:`Recognizer` for ``generator`` and fit its threshold.

    Parameters
    ----------
    generator
        A face generator with ``sample_latent``, ``sample_latent_same_identity``,
        ``synthesize`` and ``verification_pairs`` (SynthFace).
    config : RecognizerConfig or None
        Default: :class:`RecognizerConfig()`.

    Returns
    -------
    Recognizer
        In eval mode, with ``threshold`` fitted on ``config.val_pairs`` held-out pairs and
        ``train_stats``: ``seconds_train``, ``loss_first`` / ``loss_final`` (running mean of
        the SupCon loss over the first / last 10 % of the steps), ``val_accuracy``.

    Notes
    -----
    Time and accuracy of the defaults: see :class:`RecognizerConfig`.
    """
    cfg = config or RecognizerConfig()
    device = check_device(cfg.device, available=True)
    with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
        torch.manual_seed(cfg.seed)
        model = Recognizer(cfg)
    model.to(device)
    model.signature = generator_signature(generator)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    gen = torch.Generator().manual_seed(split_seed(cfg.seed, "train", STREAM_BLOCK))
    window = max(1, cfg.steps // 10)
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    with tqdm(total=cfg.steps, desc="recognizer", unit="step", disable=not cfg.progress,
              leave=False) as bar:
        for step in range(cfg.steps):
            latent, labels = _sample_batch(generator, cfg, gen)
            with torch.no_grad():
                images = generator.synthesize(latent.to(device))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * _lr_factor(step, cfg)
            loss = supcon_loss(model(images), labels.to(device), cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0 or step == cfg.steps - 1:
                bar.set_postfix(loss=f"{np.mean(losses[-window:]):.3f}")
            bar.update(1)
    seconds = time.perf_counter() - t0
    model.eval()
    threshold, val_acc = calibrate_threshold(model, generator, cfg.val_pairs, cfg.seed)
    model.threshold = threshold
    model.train_stats = {
        "seconds_train": seconds,
        "loss_first": float(np.mean(losses[:window])),
        "loss_final": float(np.mean(losses[-window:])),
        "val_accuracy": val_acc,
        "seconds_threshold": time.perf_counter() - t0 - seconds,
    }
    return model
