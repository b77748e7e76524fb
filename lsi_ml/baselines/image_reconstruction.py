"""Learned image-space reconstruction from learned binary masks (the SAUNet / FSI-DL role).

The image-first baseline of the paper's Table 2: the same optical encoder as latent-space
imaging (:class:`~lsi_ml.latent.optical.OpticalEncoder`: learnable binary DMD masks, straight-
through binarization, the differentiable bench physics and its noise preset) trained end to
end with a decoder that reconstructs the IMAGE instead of a latent:

readings (B, m), volts
  -> per-measurement standardisation (:class:`~lsi_ml.latent.encoder.MeasurementNormalizer`,
     fitted once on the first training batch, as :mod:`lsi_ml.training.trainer`)
  -> linear layer to a coarse image (3 x size/2 x size/2 logits), bilinearly upsampled
  -> small U-Net (three scales, ``width``, 2 x width, 4 x width channels) adding a residual
     to the logits (its last layer starts at zero: training starts from the linear solution)
  -> sigmoid: image (B, 3, size, size) in [0, 1].

Loss: mean squared pixel error (+ ``l1_weight`` x mean absolute error) to the scene.
Training faces come from ``SyntheticFaces(SynthFace(size, seed), n_train, seed=seed,
split="train")``, rendered per batch; the batch of step ``t`` is a fixed slice of that split
and the detector noise of step ``t`` comes from generators seeded by ``(seed, t, row)``, so a
run is a pure function of its config.  Scenes are shown as 8-bit frames, as in training of
the latent decoder.  Works for any m >= 1 (the linear layer has m x 3 x (size/2)^2 weights:
12.6 M at m = 4096, 64 px).

Cost and quality measured on 1 CPU thread (64 px, batch 32, width 16, lr 2e-3, shot noise):
1.3 s per step; after only 400 steps (9 min) 18.8 dB PSNR at m = 256 and 18.0 dB at m = 16 on
16 SynthFace test faces (the best constant image: 16.0 dB), still rising; the default 2000
steps need about 45 min on a CPU (use ``device="cuda"`` where there is one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError, require_known_keys
from lsi_hw.patterns import PatternSet
from lsi_hw.sim.detector import NOISE_PRESETS
from lsi_hw.sim.forward import SimConfig
from lsi_ml.checkpoint import load_checkpoint, save_checkpoint
from lsi_ml.config_check import Rule, check_fields
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.devices import check_device
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.encoder import MeasurementNormalizer
from lsi_ml.latent.optical import OpticalEncoder
from lsi_ml.training.config import warmup_cosine
from lsi_ml.training.streams import as_8bit, row_generators

__all__ = ["ImageDecoder", "ImageReconConfig", "ImageReconTrainer", "psnr"]


_NOISE_STREAM = 201
_FIT_STREAM = 202
_EVAL_STREAM = 203
_INIT_STREAM = 204

_RECON_RULES: dict[str, Rule] = {
    "size": Rule(ge=32, multiple_of=4),
    "n_masks": Rule(ge=1),
    "noise": Rule(choices=tuple(NOISE_PRESETS)),
    "steps": Rule(ge=0),
    "batch": Rule(ge=2, why="the normaliser is fitted on one batch"),
    "lr": Rule(ge=0),
    "lr_masks": Rule(ge=0),
    "l1_weight": Rule(ge=0),
    "width": Rule(ge=1),
    "mask_bits": Rule(ge=1, le=8),
    "n_train": Rule(ge=1),
    "n_val": Rule(ge=1),
    "eval_every": Rule(ge=0),
    "eval_batch": Rule(ge=1),
    "seed": Rule(ge=0, le=2**63 - 1),
}
"""Allowed values of the :class:`ImageReconConfig` fields beyond their types."""


def _seed(*key: int) -> int:
    state = np.random.SeedSequence([int(k) for k in key])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image, dB, of images in [0, 1] (peak 1).

    Parameters
    ----------
    pred, target : Tensor
        (B, ...) images of the same shape.

    Returns
    -------
    Tensor
        (B,) ``10 log10(1 / mse)``.
    """
    if pred.shape != target.shape:
        raise ConfigError(f"psnr of shapes {tuple(pred.shape)} and {tuple(target.shape)}")
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


@dataclass(frozen=True)
class ImageReconConfig:
    """Everything that defines an image-reconstruction training run.

    Attributes
    ----------
    size : int
        Image and mask size (H = W), pixels; even, >= 32 (SynthFace's minimum).
    n_masks : int
        Number of masks m (measurements per scene), >= 1.
    noise : str
        Noise preset of the simulated bench: ``none``, ``shot``, ``read`` or ``full``.
    steps : int
        Total optimizer steps.
    batch : int
        Scenes per step (>= 2: the normaliser is fitted on the first batch).
    lr : float
        Adam learning rate of the decoder (cosine to 2 % after a linear warm-up of
        ``min(100, steps // 10)`` steps).
    lr_masks : float
        Adam learning rate of the mask weights (same schedule; weights clamped to [0, 1]).
    l1_weight : float
        Weight of the mean-absolute-error term added to the MSE (0: MSE only).
    width : int
        Channels of the U-Net's first scale (doubled at each of the two lower scales).
    mask_bits : int
        1: binary DMD masks; k > 1: k-bit masks (the "8-bit masks" comparison row).
    freeze_masks : bool
        Keep the random initial masks (decoder only).
    n_train, n_val : int
        Sizes of the synthetic train (cycled) and val splits.
    eval_every : int
        Evaluate on ``eval_batch`` val faces every this many steps (0: only at the end).
    eval_batch : int
        Val faces per evaluation (at most ``n_val``).
    seed : int
        Base seed of masks, decoder, data and noise.
    progress : bool
        Show a tqdm progress bar.
    device : str
        Torch device of the models (``cpu``, ``cuda``, ...); data are rendered on the CPU.
    """

    size: int = 64
    n_masks: int = 256
    noise: str = "shot"
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    lr_masks: float = 1e-2
    l1_weight: float = 0.0
    width: int = 16
    mask_bits: int = 1
    freeze_masks: bool = False
    n_train: int = 1_000_000
    n_val: int = 256
    eval_every: int = 200
    eval_batch: int = 64
    seed: int = 0
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_fields(self, _RECON_RULES, where="image reconstruction config")
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageReconConfig:
        """Config from a dict of its fields (unknown keys, bad values: ConfigError)."""
        if not isinstance(data, dict):
            raise ConfigError("image reconstruction config must be a table, not "
                              f"{type(data).__name__}")
        require_known_keys(data, (f.name for f in fields(cls)), "image reconstruction keys")
        return cls(**data)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageDecoder(nn.Module):
    """Readings (B, m), volts -> images (B, 3, size, size) in [0, 1].

    Parameters
    ----------
    n_masks : int
        m, readings per scene.
    size : int
        Output size, pixels (multiple of 4).
    width : int
        U-Net channels at full resolution.
    """

    def __init__(self, n_masks: int, size: int, width: int = 16) -> None:
        super().__init__()
        if int(n_masks) < 1 or int(size) < 4 or int(size) % 4 or int(width) < 1:
            raise ConfigError(f"ImageDecoder(n_masks={n_masks}, size={size}, width={width}): "
                              "need n_masks >= 1, size a multiple of 4, width >= 1")
        self.n_masks, self.size, self.coarse = int(n_masks), int(size), int(size) // 2
        w = int(width)
        self.normalizer = MeasurementNormalizer(self.n_masks)
        self.linear = nn.Linear(self.n_masks, 3 * self.coarse * self.coarse)
        self.enc1 = _Block(3, w)
        self.enc2 = _Block(w, 2 * w)
        self.enc3 = _Block(2 * w, 4 * w)
        self.dec2 = _Block(6 * w, 2 * w)
        self.dec1 = _Block(3 * w, w)
        self.out = nn.Conv2d(w, 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def coarse_logits(self, readings: Tensor) -> Tensor:
        """Linear reconstruction, (B, 3, size, size) logits (before the U-Net)."""
        if readings.ndim != 2 or readings.shape[1] != self.n_masks:
            raise ConfigError(f"readings of shape {tuple(readings.shape)}: expected "
                              f"(B, {self.n_masks})")
        c = self.coarse
        x = self.linear(self.normalizer(readings)).view(-1, 3, c, c)
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                             align_corners=False)

    def forward(self, readings: Tensor) -> Tensor:
        x0 = self.coarse_logits(readings)
        e1 = self.enc1(x0)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        e3 = self.enc3(F.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1))
        return torch.sigmoid(x0 + self.out(d1))


class ImageReconTrainer:
    """Trains masks and an image decoder end to end on SynthFace through the simulated bench.

    Parameters
    ----------
    config : ImageReconConfig
        The run.

    Attributes
    ----------
    generator : SynthFace
    optical : OpticalEncoder
    decoder : ImageDecoder
    step : int
        Optimizer steps done.
    history : list of dict
        One record per evaluation: ``step``, ``loss`` (last training loss), ``val_mse``,
        ``val_psnr`` (dB).
    """

    def __init__(self, config: ImageReconConfig) -> None:
        if not isinstance(config, ImageReconConfig):
            raise ConfigError(f"config must be an ImageReconConfig; got {type(config).__name__}")
        self.config = config
        self.device = torch.device(config.device)
        self.generator = SynthFace(config.size, seed=config.seed)
        self.train_data = SyntheticFaces(self.generator, config.n_train, seed=config.seed,
                                         split="train")
        self.val_data = SyntheticFaces(self.generator, config.n_val, seed=config.seed,
                                       split="val")
        self.sim_config = SimConfig().with_noise(config.noise)
        self.optical = OpticalEncoder(config.n_masks, (config.size, config.size),
                                      self.sim_config, mask_bits=config.mask_bits,
                                      seed=config.seed).to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(config.seed, _INIT_STREAM))
            self.decoder = ImageDecoder(config.n_masks, config.size, config.width)
        self.decoder.to(self.device)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.last_loss = float("nan")
        self._fit_normalizer()
        if config.freeze_masks:
            self.optical.weights.requires_grad_(False)
            self.opt_masks: torch.optim.Optimizer | None = None
        else:
            self.opt_masks = torch.optim.Adam([self.optical.weights], lr=config.lr_masks)
        self.opt_decoder = torch.optim.Adam(self.decoder.parameters(), lr=config.lr)

    # ------------------------------------------------------------------ pieces
    def measure(self, images: Tensor, *, generator: Any = None,
                noise: bool | None = None) -> Tensor:
        """Readings (B, m), volts, of images (B, 3, H, W) in [0, 1] through the masks.

        Images are shown as 8-bit frames; ``generator`` is one torch.Generator or one per
        image (seeded noise); ``noise=None`` follows the config's preset.
        """
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"images must be a (B, 3, H, W) tensor; got "
                              f"{getattr(images, 'shape', type(images).__name__)}")
        return self.optical(as_8bit(images.to(self.device)), noise=noise, generator=generator)

    @torch.no_grad()
    def _fit_normalizer(self) -> None:
        cfg = self.config
        images = self.train_data.images(torch.arange(cfg.batch) % cfg.n_train)["image"]
        gens = row_generators(cfg.seed, _FIT_STREAM, 0, torch.arange(cfg.batch))
        self.decoder.normalizer.fit(self.measure(images, generator=gens))

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step``: linear warm-up, then cosine to 2 %."""
        return warmup_cosine(step, self.config.steps, 100)

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """MSE (+ ``l1_weight`` x L1) between images (B, 3, H, W)."""
        total = F.mse_loss(pred, target)
        if self.config.l1_weight:
            total = total + self.config.l1_weight * F.l1_loss(pred, target)
        return total

    def train_step(self) -> float:
        """One optimizer step on the batch of the current step; returns its loss."""
        cfg = self.config
        self.decoder.train()
        idx = (torch.arange(cfg.batch) + self.step * cfg.batch) % cfg.n_train
        images = self.train_data.images(idx)["image"].to(self.device)
        gens = row_generators(cfg.seed, _NOISE_STREAM, self.step, torch.arange(cfg.batch))
        pred = self.decoder(self.measure(images, generator=gens).float())
        total = self.loss(pred, images)
        factor = self.lr_factor(self.step)
        for group in self.opt_decoder.param_groups:
            group["lr"] = cfg.lr * factor
        self.opt_decoder.zero_grad(set_to_none=True)
        if self.opt_masks is not None:
            for group in self.opt_masks.param_groups:
                group["lr"] = cfg.lr_masks * factor
            self.opt_masks.zero_grad(set_to_none=True)
        total.backward()
        self.opt_decoder.step()
        if self.opt_masks is not None:
            self.opt_masks.step()
            self.optical.clamp_()
        self.step += 1
        self.last_loss = float(total.detach())
        return self.last_loss

    @torch.no_grad()
    def evaluate(self, n: int | None = None) -> dict[str, float]:
        """MSE and PSNR (dB) on the first ``n`` val faces (default ``eval_batch``), measured
        with fixed-seed noise (comparable across steps); appended to :attr:`history`."""
        count = min(int(n or self.config.eval_batch), self.config.n_val)
        images = self.val_data.images(range(count))["image"]
        gens = row_generators(self.config.seed, _EVAL_STREAM, 0, torch.arange(count))
        pred = self.reconstruct(self.measure(images, generator=gens))
        record = {"step": float(self.step), "loss": self.last_loss,
                  "val_mse": float(F.mse_loss(pred, images)),
                  "val_psnr": float(psnr(pred, images).mean())}
        self.history.append(record)
        return record

    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` total steps (default ``config.steps``); returns the history.

        Evaluates every ``eval_every`` steps and after step ``config.steps``.
        """
        cfg = self.config
        until = cfg.steps if steps is None else int(steps)
        if until < self.step:
            raise ConfigError(f"asked to train until step {until}, already at {self.step}")
        with tqdm(total=until, initial=self.step, disable=not cfg.progress, desc="image recon",
                  unit="step", dynamic_ncols=True) as bar:
            while self.step < until:
                loss = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    rec = self.evaluate()
                    bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{rec['val_psnr']:.2f}",
                                    refresh=False)
        if self.step == cfg.steps and (not self.history or self.history[-1]["step"] != self.step):
            self.evaluate()
        return self.history

    @torch.no_grad()
    def reconstruct(self, readings: Tensor | np.ndarray, *, batch: int = 256) -> Tensor:
        """Images (B, 3, size, size) in [0, 1], on the CPU, of readings (B, m) in volts
        (one (m,) vector: B = 1), from any bench with these masks."""
        if isinstance(readings, np.ndarray):
            readings = torch.from_numpy(np.array(readings))
        if not isinstance(readings, Tensor):
            raise ConfigError(f"readings must be a Tensor or numpy array; "
                              f"got {type(readings).__name__}")
        y = readings.detach().to(torch.float32)
        if y.ndim == 1:
            y = y[None]
        m = self.config.n_masks
        if y.ndim != 2 or y.shape[1] != m:
            raise ConfigError(f"readings of shape {tuple(readings.shape)}: expected (B, {m})")
        if not bool(torch.isfinite(y).all()):
            raise ConfigError("readings contain non-finite values")
        self.decoder.eval()
        parts = [self.decoder(chunk.to(self.device)).cpu() for chunk in y.split(int(batch))]
        return torch.cat(parts) if parts else y.new_zeros(0, 3, self.config.size,
                                                          self.config.size)

    def export_patterns(self, name: str | None = None) -> PatternSet:
        """The learned binary masks as a PatternSet any bench can load."""
        return self.optical.export_patterns(name or f"image-recon-m{self.config.n_masks}")

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path) -> Path:
        """Write config, step, models, optimizer states and history atomically to ``path``."""
        with torch.no_grad():
            masks = self.optical.masks().detach().cpu()
        model = {"optical": {k: v.cpu() for k, v in self.optical.state_dict().items()},
                 "decoder": {k: v.cpu() for k, v in self.decoder.state_dict().items()}}
        optim = {"masks": self.opt_masks.state_dict() if self.opt_masks is not None else None,
                 "decoder": self.opt_decoder.state_dict()}
        return save_checkpoint(path, config=self.config.to_dict(), step=self.step,
                               model=model, optimizer=optim,
                               extra={"kind": "image_reconstruction", "masks": masks,
                                      "history": [dict(h) for h in self.history],
                                      "last_loss": self.last_loss})

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> ImageReconTrainer:
        """A trainer in the state saved by :meth:`save` (read with ``weights_only=True``).

        ``overrides`` change config fields (e.g. ``steps``, ``progress``, ``device``).
        """
        payload = load_checkpoint(path)
        extra = payload.get("extra") or {}
        if extra.get("kind") != "image_reconstruction":
            raise ConfigError(f"checkpoint {path} was not written by ImageReconTrainer")
        try:
            stored = ImageReconConfig.from_dict(payload["config"])
        except ConfigError as exc:
            raise ConfigError(f"checkpoint {path}: its image reconstruction config is "
                              f"invalid: {exc}") from None
        try:
            config = replace(stored, **overrides)
        except TypeError as exc:
            raise ConfigError(f"bad load override: {exc}") from exc
        trainer = cls(config)
        try:
            trainer.optical.load_state_dict(payload["model"]["optical"])
            trainer.decoder.load_state_dict(payload["model"]["decoder"])
            optim = payload.get("optimizer") or {}
            if trainer.opt_masks is not None and optim.get("masks") is not None:
                trainer.opt_masks.load_state_dict(optim["masks"])
            trainer.opt_decoder.load_state_dict(optim["decoder"])
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"checkpoint {path}: its models do not fit its config "
                              f"({first})") from None
        trainer.step = int(payload["step"])
        trainer.history = [dict(h) for h in extra.get("history", [])]
        trainer.last_loss = float(extra.get("last_loss", float("nan")))
        return trainer
