"""End-to-end training of the optical and digital encoders on synthetic faces.

:class:`Trainer` renders SynthFace batches (:class:`~lsi_ml.data.synthetic.SyntheticFaces`),
measures them through the learnable masks and the differentiable bench physics
(:class:`~lsi_ml.optical.OpticalEncoder`, built from ``SimConfig().with_noise(preset)``)
and decodes the readings into the latent (:class:`~lsi_ml.encoder.LatentEncoder`).  The
mask weights are trained with Adam and clamped to [0, 1] after each step (as the paper);
the decoder with AdamW.  ``freeze_masks=True`` trains only the decoder (the paper's
fine-tuning mode, masks fixed as they are on the DMD).

Determinism and resuming: the batch of step ``t`` is a fixed slice of the training split
and the detector noise of step ``t`` comes from a generator seeded by ``(seed, t)``, so
a run is a pure function of its config.  A checkpoint holds the config, the step, both
models (including the fitted measurement normaliser), both optimizer states, the binary
masks and the git revision; :meth:`Trainer.resume` continues from it and ends with the
same parameters, bit for bit, as an uninterrupted run of the same total steps.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError
from lsi_hw.sim.forward import SimConfig
from lsi_ml.checkpoint import load_checkpoint, save_checkpoint
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.encoder import EncoderConfig, LatentEncoder
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.losses import LossWeights, encoder_losses
from lsi_ml.optical import OpticalEncoder

__all__ = ["TrainConfig", "Trainer"]

NOISE_PRESETS: tuple[str, ...] = ("none", "shot", "read", "full")

# Stream ids that key the per-step random generators (see ``_step_seed``).
_NOISE_STREAM = 101
_FIT_STREAM = 102
_EVAL_STREAM = 103


def _step_seed(seed: int, stream: int, step: int) -> int:
    """A 63-bit torch seed for one (seed, stream, step)."""
    state = np.random.SeedSequence([int(seed), int(stream), int(step)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (a run is a pure function of it).

    Attributes
    ----------
    size : int
        SynthFace image size and mask size (H = W), pixels; >= 32 (SynthFace's minimum).
    n_masks : int
        Number of masks m (measurements per scene).
    noise : str
        Noise preset of the simulated bench: ``none``, ``shot``, ``read`` or ``full``.
    steps : int
        Total optimizer steps of the run.
    batch : int
        Scenes per step.
    lr_masks, lr_decoder : float
        Adam learning rate of the mask weights; AdamW learning rate of the decoder.
    weight_decay : float
        AdamW weight decay of the decoder.
    loss : LossWeights
        Weights of the decoder loss terms (latent L1/L2, image, identity).
    mask_energy : float
        Weight of the optical encoder's fill-fraction energy term (0: off).
    n_train, n_val : int
        Sizes of the synthetic train and val splits (the train split is cycled). Splits of
        at most 4096 items are rendered once and cached; larger ones render each batch on
        the fly (fresh faces every step: far less overfitting, measured on size 32).
    eval_every : int
        Evaluate the latent L1 on the val split every this many steps (0: only at the end).
    eval_batch : int
        Val items used by each evaluation (at most ``n_val``).
    checkpoint : str or None
        Where checkpoints are written (None: never).
    checkpoint_every : int
        Write a checkpoint every this many steps (0: only at the end of :meth:`Trainer.train`).
    seed : int
        Base seed of the masks, the decoder, the data splits and the noise.
    freeze_masks : bool
        Train the decoder only (fine-tuning mode); the mask weights are never changed.
    init_from : str or None
        Checkpoint whose model weights (masks, decoder, normaliser) start this run, e.g. to
        fine-tune a trained model with frozen masks; its optimizer state is not used.
    encoder_hidden, encoder_depth, encoder_block_hidden : int
        Size of the digital encoder (see :class:`~lsi_ml.encoder.EncoderConfig`).
    progress : bool
        Show a tqdm progress bar.
    """

    size: int = 32
    n_masks: int = 64
    noise: str = "shot"
    steps: int = 1000
    batch: int = 32
    lr_masks: float = 1e-2
    lr_decoder: float = 1e-3
    weight_decay: float = 1e-4
    loss: LossWeights = field(default_factory=LossWeights)
    mask_energy: float = 0.0
    n_train: int = 1_000_000
    n_val: int = 256
    eval_every: int = 100
    eval_batch: int = 128
    checkpoint: str | None = None
    checkpoint_every: int = 0
    seed: int = 0
    freeze_masks: bool = False
    init_from: str | None = None
    encoder_hidden: int = 512
    encoder_depth: int = 2
    encoder_block_hidden: int = 256
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            object.__setattr__(self, "loss", LossWeights(**self.loss))
        if self.size < 32:
            raise ConfigError(f"size={self.size}: SynthFace renders 32 px or more")
        for name in ("n_masks", "batch", "n_train", "n_val", "eval_batch"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("steps", "eval_every", "checkpoint_every", "seed"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        if self.batch < 2:
            raise ConfigError("batch must be >= 2 (the normaliser is fitted on one batch)")
        if self.noise not in NOISE_PRESETS:
            raise ConfigError(f"noise={self.noise!r} is not one of {NOISE_PRESETS}")
        for name in ("lr_masks", "lr_decoder", "weight_decay", "mask_energy"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name}={value} must be finite and >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (nested ``loss`` dict); ``TrainConfig.from_dict`` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Config from a dict as written by :meth:`to_dict` (unknown keys: ConfigError)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "loss" in values:
            loss = values["loss"]
            if isinstance(loss, LossWeights):
                pass
            elif isinstance(loss, dict):
                loss_known = {f.name for f in fields(LossWeights)}
                bad = sorted(set(loss) - loss_known)
                if bad:
                    raise ConfigError(f"unknown loss weights {bad}; known: {sorted(loss_known)}")
                values["loss"] = LossWeights(**{k: float(v) for k, v in loss.items()})
            else:
                raise ConfigError("loss must be a table of weights")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a TOML file: keys at the top level or in a ``[train]`` table, weights in
        a ``[loss]`` (or ``[train.loss]``) table.

        Parameters
        ----------
        path : str or Path
            The TOML file.

        Returns
        -------
        TrainConfig
        """
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError as exc:
                raise ConfigError("reading TOML on Python 3.10 needs the tomli package") from exc
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read training config {source}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"training config {source} is not valid TOML: {exc}") from exc
        if "train" in data:
            extra = sorted(set(data) - {"train", "loss"})
            if extra:
                raise ConfigError(f"{source}: unexpected tables/keys {extra} beside [train]")
            train = dict(data["train"])
            if "loss" in data:
                train["loss"] = data["loss"]
            data = train
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back to an equal config (None omitted)."""
        lines: list[str] = []
        loss: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if key == "loss":
                loss = value
            elif value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        lines.append("[loss]")
        lines += [f"{k} = {_toml_value(float(v))}" for k, v in loss.items()]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value} cannot be written to a training config")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a valid TOML basic string
    raise ConfigError(f"cannot write {type(value).__name__} to TOML")


class Trainer:
    """Trains masks and decoder end to end on SynthFace through the simulated bench.

    Parameters
    ----------
    config : TrainConfig
        The run.

    Attributes
    ----------
    generator : SynthFace
    optical : OpticalEncoder
    decoder : LatentEncoder
    step : int
        Optimizer steps done so far.
    history : list of dict
        One record per evaluation: ``step``, ``loss`` (last training loss), ``val_latent_l1``.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.generator = SynthFace(config.size, seed=config.seed)
        self.train_data = SyntheticFaces(self.generator, config.n_train, seed=config.seed,
                                         split="train")
        self.val_data = SyntheticFaces(self.generator, config.n_val, seed=config.seed,
                                       split="val")
        self.sim_config = SimConfig().with_noise(config.noise)
        self.optical = OpticalEncoder(config.n_masks, (config.size, config.size),
                                      self.sim_config, seed=config.seed)
        levels, dim = self.generator.latent_shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_step_seed(config.seed, 0, 0))
            self.decoder = LatentEncoder(EncoderConfig(
                n_measurements=config.n_masks, n_levels=levels, level_dim=dim,
                hidden=config.encoder_hidden, depth=config.encoder_depth,
                block_hidden=config.encoder_block_hidden,
            ))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.last_loss = float("nan")
        if config.init_from:
            state = load_checkpoint(config.init_from)
            self._load_models(state["model"])
        else:
            self._fit_normalizer()
        if config.freeze_masks:
            self.optical.weights.requires_grad_(False)
            self.opt_masks: torch.optim.Optimizer | None = None
        else:
            self.opt_masks = torch.optim.Adam([self.optical.weights], lr=config.lr_masks)
        self.opt_decoder = torch.optim.AdamW(self.decoder.parameters(), lr=config.lr_decoder,
                                             weight_decay=config.weight_decay)

    # ------------------------------------------------------------------ pieces
    def _batch_indices(self, step: int) -> Tensor:
        """Items of the train split used at ``step`` (the split is cycled)."""
        start = step * self.config.batch
        return (torch.arange(self.config.batch) + start) % self.config.n_train

    def measure(self, images: Tensor, *, generator: torch.Generator | None = None,
                noise: bool | None = None) -> Tensor:
        """Readings (B, m), volts, of images through the masks and the simulated bench."""
        return self.optical(images, noise=noise, generator=generator)

    @torch.no_grad()
    def _fit_normalizer(self) -> None:
        images = self.train_data.batch(self._batch_indices(0))["image"]
        gen = torch.Generator().manual_seed(_step_seed(self.config.seed, _FIT_STREAM, 0))
        self.decoder.normalizer.fit(self.measure(images, generator=gen))

    def _loss(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        weights = self.config.loss
        return encoder_losses(
            pred, target, weights,
            synthesize=self.generator.synthesize if weights.image else None,
            identity=self.generator.identity if weights.identity else None,
        )

    def train_step(self) -> float:
        """One optimizer step on the batch of the current step; returns the total loss."""
        cfg = self.config
        data = self.train_data.batch(self._batch_indices(self.step))
        gen = torch.Generator().manual_seed(_step_seed(cfg.seed, _NOISE_STREAM, self.step))
        self.optical.train()
        self.decoder.train()
        readings = self.measure(data["image"], generator=gen)
        pred = self.decoder(readings)
        total = self._loss(pred, data["latent"])["total"]
        if cfg.mask_energy and not cfg.freeze_masks:
            total = total + cfg.mask_energy * self.optical.energy_loss()
        self.opt_decoder.zero_grad(set_to_none=True)
        if self.opt_masks is not None:
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
    def evaluate(self) -> dict[str, float]:
        """Latent L1 (mean absolute error) on the first ``eval_batch`` val items.

        The val noise is drawn from a fixed seed, so evaluations are comparable across steps.
        """
        self.decoder.eval()
        n = min(self.config.eval_batch, self.config.n_val)
        data = self.val_data.batch(range(n))
        gen = torch.Generator().manual_seed(_step_seed(self.config.seed, _EVAL_STREAM, 0))
        pred = self.decoder(self.measure(data["image"], generator=gen))
        record = {"step": float(self.step), "loss": self.last_loss,
                  "val_latent_l1": float(torch.mean(torch.abs(pred - data["latent"])))}
        self.history.append(record)
        return record

    @torch.no_grad()
    def decode(self, readings: Tensor) -> Tensor:
        """Latents (B, L, D) of detector readings (B, m), volts, from any bench."""
        self.decoder.eval()
        return self.decoder(torch.as_tensor(readings, dtype=torch.float32))

    # ------------------------------------------------------------------ loop
    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` total steps are done (default ``config.steps``).

        Evaluates every ``eval_every`` steps and after the last step (``config.steps``;
        not when stopping early, so a split run records the same history as a whole one);
        writes a checkpoint every ``checkpoint_every`` steps and on return when
        ``config.checkpoint`` is set.

        Returns
        -------
        list of dict
            :attr:`history`.
        """
        cfg = self.config
        until = cfg.steps if steps is None else int(steps)
        if until < self.step:
            raise ConfigError(f"asked to train until step {until}, already at {self.step}")
        with tqdm(total=until, initial=self.step, disable=not cfg.progress,
                  desc="train", unit="step", dynamic_ncols=True) as bar:
            while self.step < until:
                loss = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    record = self.evaluate()
                    bar.set_postfix(loss=f"{loss:.4f}",
                                    val_l1=f"{record['val_latent_l1']:.4f}", refresh=False)
                if (cfg.checkpoint and cfg.checkpoint_every
                        and self.step % cfg.checkpoint_every == 0):
                    self.save()
        at_end = self.step == cfg.steps
        if at_end and (not self.history or self.history[-1]["step"] != self.step):
            self.evaluate()
        if cfg.checkpoint:
            self.save()
        return self.history

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Checkpoint payload pieces: ``model``, ``optimizer`` and ``extra``."""
        with torch.no_grad():
            masks = self.optical.masks().to(torch.uint8)
        return {
            "model": {"optical": self.optical.state_dict(),
                      "decoder": self.decoder.state_dict()},
            "optimizer": {
                "masks": self.opt_masks.state_dict() if self.opt_masks is not None else None,
                "decoder": self.opt_decoder.state_dict(),
            },
            "extra": {"masks": masks, "history": [dict(h) for h in self.history],
                      "last_loss": self.last_loss},
        }

    def save(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically to ``path`` (default ``config.checkpoint``)."""
        target = path or self.config.checkpoint
        if not target:
            raise ConfigError("no checkpoint path: pass one or set config.checkpoint")
        state = self.state()
        return save_checkpoint(target, config=self.config.to_dict(), step=self.step,
                               model=state["model"], optimizer=state["optimizer"],
                               extra=state["extra"])

    def _load_models(self, model: dict[str, Any]) -> None:
        try:
            self.optical.load_state_dict(model["optical"])
            self.decoder.load_state_dict(model["decoder"])
        except (KeyError, RuntimeError) as exc:
            raise ConfigError(f"checkpoint models do not fit this config: {exc}") from exc

    @classmethod
    def resume(cls, path: str | Path, **overrides: Any) -> Trainer:
        """A trainer at the saved step of a checkpoint, ready to :meth:`train` on.

        Parameters
        ----------
        path : str or Path
            Checkpoint written by :meth:`save`.
        **overrides
            Config fields to change (e.g. ``steps`` to train longer, ``progress``,
            ``checkpoint``); changing anything that shapes the run breaks the equality
            with an uninterrupted run.

        Returns
        -------
        Trainer
        """
        payload = load_checkpoint(path)
        config = TrainConfig.from_dict(payload["config"])
        # the weights come from the checkpoint itself; don't re-read an init file
        try:
            config = replace(config, **{**overrides, "init_from": None})
        except TypeError as exc:
            raise ConfigError(f"bad resume override: {exc}") from exc
        trainer = cls(config)
        trainer._load_models(payload["model"])
        optim = payload.get("optimizer") or {}
        if trainer.opt_masks is not None:
            if optim.get("masks") is None:
                raise ConfigError(f"checkpoint {path} has no mask optimizer state "
                                  "(written with frozen masks); resume with freeze_masks=True")
            trainer.opt_masks.load_state_dict(optim["masks"])
        trainer.opt_decoder.load_state_dict(optim["decoder"])
        trainer.step = int(payload["step"])
        extra = payload.get("extra") or {}
        trainer.history = [dict(h) for h in extra.get("history", [])]
        trainer.last_loss = float(extra.get("last_loss", float("nan")))
        return trainer
