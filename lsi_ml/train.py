"""End-to-end training of the optical and digital encoders on synthetic faces.

:class:`Trainer` renders SynthFace batches (:class:`~lsi_ml.data.synthetic.SyntheticFaces`),
measures them through the learnable masks and the differentiable bench physics
(:class:`~lsi_ml.optical.OpticalEncoder`, built from ``SimConfig().with_noise(preset)``)
and decodes the readings into the latent (:class:`~lsi_ml.encoder.LatentEncoder`).  The
mask weights are trained with Adam and clamped to [0, 1] after each step (as the paper);
the decoder with AdamW.  ``freeze_masks=True`` trains only the decoder (the paper's
fine-tuning mode, masks fixed as they are on the DMD).

Two phases (``bank_steps > 0``): after the ``steps`` end-to-end steps the masks are frozen
and the decoder trains ``bank_steps`` more steps on a
:class:`~lsi_ml.measurement_bank.MeasurementBank` (``bank_size`` train scenes rendered once;
their optical powers re-measured with fresh seeded noise every step). On a CPU, where the
render dominates an end-to-end step, this gives the decoder ~10x more updates per second.

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
from torch import Tensor, nn
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError, require_known_keys
from lsi_hw.limits import check_allocation, format_bytes
from lsi_hw.sim.forward import SimConfig
from lsi_ml.checkpoint import load_checkpoint, save_checkpoint
from lsi_ml.config_check import Rule, check_fields, show_value
from lsi_ml.data.recorded import RecordedMeasurements
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.devices import check_device
from lsi_ml.encoder import EncoderConfig, LatentEncoder
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.losses import LossWeights, encoder_losses
from lsi_ml.measurement_bank import MeasurementBank
from lsi_ml.optical import MASK_INITS, OpticalEncoder, check_mask_init

__all__ = ["TrainConfig", "Trainer", "init_distributed"]

NOISE_PRESETS: tuple[str, ...] = ("none", "shot", "read", "full")
BACKENDS: tuple[str, ...] = ("sim", "fake-hw", "hw")

# Stream ids that key the per-step random generators (see ``_step_seed``).
_NOISE_STREAM = 101
_FIT_STREAM = 102
_EVAL_STREAM = 103
_BANK_NOISE_STREAM = 104
_BANK_DRAW_STREAM = 105

_CACHE_LIMIT = 4096  # SyntheticFaces keeps splits of at most this many faces rendered

_TRAIN_RULES: dict[str, Rule] = {
    "size": Rule(ge=32, why="SynthFace renders 32 px or more"),
    "n_masks": Rule(ge=1),
    "noise": Rule(choices=NOISE_PRESETS),
    "steps": Rule(ge=0),
    "batch": Rule(ge=2, why="the normaliser is fitted on one batch"),
    "lr_masks": Rule(ge=0),
    "lr_decoder": Rule(ge=0),
    "weight_decay": Rule(ge=0),
    "mask_energy": Rule(ge=0),
    "n_train": Rule(ge=1),
    "n_val": Rule(ge=1),
    "eval_every": Rule(ge=0),
    "eval_batch": Rule(ge=1),
    "checkpoint_every": Rule(ge=0),
    "seed": Rule(ge=0, le=2**63 - 1),
    "encoder_hidden": Rule(ge=1),
    "encoder_depth": Rule(ge=1),
    "encoder_block_hidden": Rule(ge=1),
    "lr_schedule": Rule(choices=("cosine", "constant")),
    "warmup": Rule(ge=0),
    "backend": Rule(choices=BACKENDS),
    "n_recorded": Rule(ge=2),
    "mask_init": Rule(choices=MASK_INITS),
    "bank_steps": Rule(ge=0),
    "bank_size": Rule(ge=1),
    "bank_batch": Rule(ge=1),
    "lr_bank": Rule(ge=0),
}
"""Allowed values of the :class:`TrainConfig` fields beyond their types."""


def _step_seed(seed: int, stream: int, step: int, row: int | None = None) -> int:
    """A 63-bit torch seed for one (seed, stream, step[, row])."""
    key = [int(seed), int(stream), int(step)] + ([] if row is None else [int(row)])
    state = np.random.SeedSequence(key)
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _row_generators(seed: int, stream: int, step: int, rows: Tensor) -> list[torch.Generator]:
    """One generator per batch row, keyed by the row's position in the GLOBAL batch.

    A row's noise then depends on (seed, stream, step, row) only, so any split of the
    batch over processes draws exactly the noise a single process draws.
    """
    return [torch.Generator().manual_seed(_step_seed(seed, stream, step, int(r)))
            for r in rows.tolist()]


def _dist_info() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment.

    Does nothing in a plain single-process run (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``).
    The default backend is ``gloo`` (CPU; ``nccl`` when CUDA is available).

    Returns
    -------
    (rank, world_size)
    """
    import os

    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(chosen)
    return _dist_info()


class _EndToEnd(nn.Module):
    """Masks + physics + decoder as one module (what DDP wraps)."""

    def __init__(self, optical: OpticalEncoder, decoder: LatentEncoder) -> None:
        super().__init__()
        self.optical = optical
        self.decoder = decoder

    def forward(self, images: Tensor | None = None,
                generators: list[torch.Generator] | None = None,
                readings: Tensor | None = None) -> Tensor:
        if readings is None:
            if images is None:
                raise ConfigError("pass images (simulated bench) or recorded readings")
            readings = self.optical(_as_8bit(images), generator=generators)
        return self.decoder(readings)


def _as_8bit(images: Tensor) -> Tensor:
    """Images as the 8-bit monitor shows them (drive fractions on 256 levels)."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (a run is a pure function of it).

    Every field is checked against its annotation and range when the config is made
    (:func:`lsi_ml.config_check.check_fields`: ``freeze_masks = "no"`` or ``steps = 4.7``
    are refused, not coerced), and :meth:`check_memory` refuses a run whose
    :meth:`memory_estimate` exceeds the memory limit before :class:`Trainer` allocates it.

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
    lr_schedule : str
        ``cosine`` (the learning rates follow a half cosine from their value to 2 % of it
        over ``steps``, after a linear warm-up of ``warmup`` steps) or ``constant``.
    warmup : int
        Linear warm-up steps of the learning rates (at most a tenth of ``steps``).
    backend : str
        Where the training measurements come from: ``sim`` measures every batch through
        the differentiable torch model of the bench (masks and decoder train end to end);
        ``fake-hw`` or ``hw`` first record ``n_recorded`` training faces on that bench
        (shown on its scene display, measured with the model's masks; resumable) and then
        fine-tune the decoder on those readings. Masks are physical DMD patterns there, so
        ``freeze_masks`` must be true (as in the paper's real-capture fine-tuning).
    recording : str or None
        Folder of the bench recording (created or resumed) for ``fake-hw``/``hw``.
    n_recorded : int
        Training faces recorded on a ``fake-hw``/``hw`` bench.
    sim : dict
        Single settings of the simulated bench changed from the defaults, as
        ``{"stage.field": value}`` (see :meth:`lsi_hw.sim.forward.SimConfig.with_overrides`),
        applied after the ``noise`` preset; e.g. ``{"digitizer.bits": 12,
        "optics.shift_px": [1.0, 0.0]}`` to train calibration-aware for a measured
        misalignment. In TOML: a ``[sim]`` table with quoted keys (``"digitizer.bits" = 12``)
        or nested tables (``[sim.digitizer]``).
    refit_normalizer : bool
        With ``init_from``: fit the measurement normaliser again on this run's bench
        (``backend = "sim"``), e.g. after changing the detector gain or the photon budget,
        instead of keeping the starting model's statistics.
    mask_init : str
        Initial masks: ``random`` (uniform weights, the paper) or ``hadamard`` (the first
        ``n_masks`` sequency-ordered Walsh-Hadamard masks; ``size`` a power of two); see
        :class:`~lsi_ml.optical.OpticalEncoder`.
    bank_steps : int
        Decoder-only steps AFTER the ``steps`` end-to-end steps (0: none). The masks are
        then frozen; ``bank_size`` training scenes are rendered once into a
        :class:`~lsi_ml.measurement_bank.MeasurementBank` of optical powers, and each step
        draws ``bank_batch`` of them and measures them with fresh seeded detector noise.
        On a CPU a bank step costs a few percent of an end-to-end step (no render), so the
        decoder gets many more updates in the same time (see the README's training recipe).
        The run has ``steps + bank_steps`` steps in all.
    bank_size : int
        Scenes in the bank (items ``0..bank_size-1`` of the train split, cycled); memory
        ``bank_size * (n_masks + latent size) * 4`` bytes, held on ``device``.
    bank_batch : int
        Scenes per bank step.
    lr_bank : float
        Peak AdamW learning rate of the decoder in the bank phase (its own warm-up of
        ``min(warmup, bank_steps // 10)`` steps and its own ``lr_schedule`` over
        ``bank_steps``).
    device : str
        Torch device of the models and of the rendering (``cpu``, ``cuda``, ``cuda:1``);
        noise is drawn from the same CPU generators on any device. Not part of what a run
        is: a run may be resumed on another device (numbers then agree to float rounding).
    """

    size: int = 64
    n_masks: int = 256
    noise: str = "shot"
    steps: int = 2000
    batch: int = 64
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
    lr_schedule: str = "cosine"
    warmup: int = 100
    backend: str = "sim"
    recording: str | None = None
    n_recorded: int = 1024
    sim: dict[str, Any] = field(default_factory=dict)
    refit_normalizer: bool = False
    mask_init: str = "random"
    bank_steps: int = 0
    bank_size: int = 65536
    bank_batch: int = 256
    lr_bank: float = 1e-3
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            object.__setattr__(self, "loss", _loss_weights(self.loss))
        check_fields(self, _TRAIN_RULES, where="config")
        object.__setattr__(self, "sim", _flatten_settings(self.sim))
        SimConfig().with_noise(self.noise).with_overrides(self.sim)  # refuse bad settings now
        check_device(self.device)
        check_mask_init(self.n_masks, (self.size, self.size), self.mask_init)
        if self.bank_steps and self.backend != "sim":
            raise ConfigError(f"bank_steps={self.bank_steps}: the measurement bank is "
                              "rendered through the simulated bench (backend 'sim'); a "
                              f"{self.backend!r} run already trains on recorded readings")
        if self.bank_steps and self.bank_batch > self.bank_size:
            raise ConfigError(f"bank_batch={self.bank_batch} exceeds bank_size="
                              f"{self.bank_size}")
        if self.backend != "sim":
            if not self.freeze_masks:
                raise ConfigError(
                    f"backend={self.backend!r} trains on recorded readings, which carry no "
                    "gradient to the masks: set freeze_masks = true (fine-tune the decoder "
                    "of a model trained on the simulator, init_from = its checkpoint)")
            if not self.recording:
                raise ConfigError(f"backend={self.backend!r} needs recording = a folder for "
                                  "the bench's training measurements")

    def memory_estimate(self) -> dict[str, int]:
        """Rough peak memory of a run of this config, bytes, by part (and ``total``).

        * ``masks``: the ``n_masks x size^2`` mask weights as 8 float32 copies (weights,
          gradient, Adam's two moments, the binarised masks and the backward temporaries);
        * ``render``: one SynthFace render of the largest batch rendered at once (``batch``,
          the evaluation batch, the bank's build chunk), at 256 bytes per pixel and scene
          (measured peaks: 80-230);
        * ``cache``: train and val splits of at most 4096 faces, rendered once and kept
          (image float32 x 3 + segmentation int64: 20 bytes per pixel, plus labels);
        * ``bank``: the measurement bank (``bank_size x (n_masks + latent)`` float32, twice
          while it is assembled);
        * ``decoder``: its weights as 4 float32 copies (weights, gradient, AdamW moments).
        """
        from lsi_ml.generators.synthface import LEVEL_DIM, LEVEL_NAMES
        from lsi_ml.measurement_bank import BUILD_CHUNK

        px = self.size * self.size
        latent = len(LEVEL_NAMES) * LEVEL_DIM
        cached = sum(n for n in (self.n_train, self.n_val) if n <= _CACHE_LIMIT)
        rendered = [self.batch, min(self.eval_batch, self.n_val)]
        if self.bank_steps:
            rendered.append(min(BUILD_CHUNK, self.bank_size))
        hidden = self.encoder_hidden
        params = (self.n_masks * hidden + self.encoder_depth * hidden * hidden
                  + len(LEVEL_NAMES) * (hidden + LEVEL_DIM) * self.encoder_block_hidden)
        parts = {
            "masks": 8 * 4 * self.n_masks * px,
            "render": 256 * max(rendered) * px,
            "cache": (20 * px + 4 * 1024) * cached,
            "bank": 2 * 4 * self.bank_size * (self.n_masks + latent) if self.bank_steps else 0,
            "decoder": 4 * 4 * params,
        }
        parts["total"] = sum(parts.values())
        return parts

    def check_memory(self) -> None:
        """Refuse (ConfigError, stating the estimate and the limit) a run whose
        :meth:`memory_estimate` exceeds :func:`lsi_hw.limits.check_allocation`'s limit."""
        parts = self.memory_estimate()
        detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items()
                           if k != "total" and v)
        check_allocation(parts["total"], f"config: training at size {self.size} with "
                                         f"{self.n_masks} masks, batch {self.batch} "
                                         f"({detail})")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (nested ``loss`` dict); ``TrainConfig.from_dict`` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Config from a dict as written by :meth:`to_dict` (unknown keys: ConfigError)."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a table of settings, not {type(data).__name__}")
        require_known_keys(data, (f.name for f in fields(cls)), "training config keys")
        values = dict(data)
        if "loss" in values:
            loss = values["loss"]
            if isinstance(loss, dict):
                values["loss"] = _loss_weights(loss)
            elif not isinstance(loss, LossWeights):
                raise ConfigError(f"config: loss = {show_value(loss)} must be a table of "
                                  "weights ([loss] latent_l1 = 1.0, ...)")
        return cls(**values)

    @classmethod
    def from_checkpoint(cls, path: str | Path, payload: dict[str, Any] | None = None
                        ) -> TrainConfig:
        """The config stored in the checkpoint ``path``, checked again like a new one.

        Parameters
        ----------
        path : str or Path
            The checkpoint (named in the error).
        payload : dict, optional
            Its contents when already read with :func:`~lsi_ml.checkpoint.load_checkpoint`.

        Raises
        ------
        ConfigError
            One line naming ``path``: the file is unreadable, or its config is not valid.
        """
        data = load_checkpoint(path) if payload is None else payload
        try:
            return cls.from_dict(data["config"])
        except (ConfigError, KeyError, TypeError) as exc:
            raise ConfigError(f"checkpoint {path}: its training config is invalid: "
                              f"{exc}") from None

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
            extra = sorted(set(data) - {"train", "loss", "sim"})
            if extra:
                raise ConfigError(f"{source}: unexpected tables/keys {extra} beside [train]")
            if not isinstance(data["train"], dict):
                raise ConfigError(f"{source}: train = {show_value(data['train'])} must be a "
                                  "[train] table")
            train = dict(data["train"])
            for table in ("loss", "sim"):
                if table in data:
                    train[table] = data[table]
            data = train
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back to an equal config (None omitted)."""
        lines: list[str] = []
        loss: dict[str, Any] = {}
        sim: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if key == "loss":
                loss = value
            elif key == "sim":
                sim = value
            elif value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        lines.append("[loss]")
        lines += [f"{k} = {_toml_value(float(v))}" for k, v in loss.items()]
        if sim:
            lines += ["", "[sim]"]
            lines += [f'"{k}" = {_toml_value(v)}' for k, v in sim.items()]
        return "\n".join(lines) + "\n"


def warmup_cosine(step: int, steps: int, warmup: int, schedule: str = "cosine") -> float:
    """Learning-rate multiplier at ``step`` of a ``steps``-step run: a linear warm-up over
    ``min(warmup, steps // 10)`` steps, then a half cosine from 1 to 0.02 (``cosine``) or
    1 (``constant``). A pure function of the step, so a resumed run follows it exactly."""
    warm = min(int(warmup), int(steps) // 10)
    if warm and step < warm:
        return (step + 1) / warm
    if schedule == "constant" or steps <= warm:
        return 1.0
    t = min(1.0, (step - warm) / max(1, steps - warm))
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))


def _loss_weights(table: dict[str, Any]) -> LossWeights:
    """``[loss]`` table -> LossWeights (unknown names and bad values: ConfigError)."""
    require_known_keys(table, (f.name for f in fields(LossWeights)), "loss weights")
    return LossWeights(**table)


def _flatten_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (nested TOML tables of simulator settings)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_settings(value, name + "."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
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

    def __init__(self, config: TrainConfig, *, bench: Any = None) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"Trainer needs a TrainConfig, not {type(config).__name__} "
                              "(use TrainConfig.from_dict for a dict)")
        config.check_memory()  # before anything is allocated
        self.config = config
        self.rank, self.world = _dist_info()
        if config.batch % self.world:
            raise ConfigError(f"batch={config.batch} must be divisible by the {self.world} "
                              "processes (the global batch is split evenly)")
        if config.bank_steps and config.bank_batch % self.world:
            raise ConfigError(f"bank_batch={config.bank_batch} must be divisible by the "
                              f"{self.world} processes (the global batch is split evenly)")
        self.generator = SynthFace(config.size, seed=config.seed)
        self.train_data = SyntheticFaces(self.generator, config.n_train, seed=config.seed,
                                         split="train")
        self.val_data = SyntheticFaces(self.generator, config.n_val, seed=config.seed,
                                       split="val")
        self.sim_config = SimConfig().with_noise(config.noise).with_overrides(config.sim)
        self.device = torch.device(config.device)
        self.optical = OpticalEncoder(config.n_masks, (config.size, config.size),
                                      self.sim_config, seed=config.seed,
                                      init=config.mask_init)
        levels, dim = self.generator.latent_shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_step_seed(config.seed, 0, 0))
            self.decoder = LatentEncoder(EncoderConfig(
                n_measurements=config.n_masks, n_levels=levels, level_dim=dim,
                hidden=config.encoder_hidden, depth=config.encoder_depth,
                block_hidden=config.encoder_block_hidden,
            ))
        self.optical.to(self.device)
        self.decoder.to(self.device)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.last_loss = float("nan")
        self._bench = bench
        self.recorded: RecordedMeasurements | None = None
        self.bank: MeasurementBank | None = None
        self._bank_net: nn.Module | None = None
        if config.init_from:
            state = load_checkpoint(config.init_from)
            self._load_models(state["model"], config.init_from)
            if config.refit_normalizer and config.backend == "sim":
                self._fit_normalizer()
        elif config.backend == "sim":
            self._fit_normalizer()
        if config.freeze_masks:
            self.optical.weights.requires_grad_(False)
            self.opt_masks: torch.optim.Optimizer | None = None
        else:
            self.opt_masks = torch.optim.Adam([self.optical.weights], lr=config.lr_masks)
        self.opt_decoder = torch.optim.AdamW(self.decoder.parameters(), lr=config.lr_decoder,
                                             weight_decay=config.weight_decay)
        self.model = _EndToEnd(self.optical, self.decoder)
        self._net: nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self._net = DistributedDataParallel(self.model)

    # ------------------------------------------------------------------ pieces
    def _global_rows(self, step: int) -> Tensor:
        """Positions 0..batch-1 of this process's share of the global batch."""
        share = self.config.batch // self.world
        return torch.arange(self.rank * share, (self.rank + 1) * share)

    def _batch_indices(self, step: int, n: int | None = None) -> Tensor:
        """Items (of a split of ``n`` items, default the train split) of this process's
        share of the batch of ``step`` (the split is cycled)."""
        start = step * self.config.batch
        return (self._global_rows(step) + start) % (n or self.config.n_train)

    def measure(self, images: Tensor, *, generator: Any = None,
                noise: bool | None = None) -> Tensor:
        """Readings (B, m), volts, of images through the masks and the simulated bench.

        ``images`` are shown as the 8-bit monitor shows them; ``generator`` is one
        torch.Generator or one per image (see :mod:`lsi_hw.sim.torch_model`). The
        readings are on the model's device.
        """
        return self.optical(_as_8bit(images.to(self.device)), noise=noise,
                            generator=generator)

    def _train_images(self, indices: Tensor) -> dict[str, Tensor]:
        """Images and latents of train items, on the model's device (rendered there when
        the split is not cached: a GPU renders far faster than the CPU)."""
        if self.device.type != "cpu" and not self.train_data.cache:
            latent = self.train_data.latents(indices).to(self.device)
            with torch.no_grad():
                return {"image": self.generator.synthesize(latent), "latent": latent}
        data = self.train_data.images(indices)
        return {k: v.to(self.device) for k, v in data.items()}

    @torch.no_grad()
    def _fit_normalizer(self) -> None:
        # the whole first global batch on every process: all fit the same statistics
        rows = torch.arange(self.config.batch)
        images = self.train_data.batch(rows % self.config.n_train)["image"]
        gens = _row_generators(self.config.seed, _FIT_STREAM, 0, rows)
        self.decoder.normalizer.fit(self.measure(images, generator=gens))

    def _loss(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        weights = self.config.loss
        return encoder_losses(
            pred, target, weights,
            synthesize=self.generator.synthesize if weights.image else None,
            identity=self.generator.identity if weights.identity else None,
        )

    @property
    def total_steps(self) -> int:
        """Steps of the whole run: ``steps`` end-to-end + ``bank_steps`` decoder-only."""
        return self.config.steps + self.config.bank_steps

    def in_bank_phase(self, step: int | None = None) -> bool:
        """Whether ``step`` (default the next one) is a decoder-only bank step."""
        step = self.step if step is None else step
        return self.config.bank_steps > 0 and step >= self.config.steps

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step`` (a pure function of the step: resumable);
        the bank phase has its own warm-up and schedule over ``bank_steps``."""
        cfg = self.config
        if self.in_bank_phase(step):
            return warmup_cosine(step - cfg.steps, cfg.bank_steps,
                                 min(cfg.warmup, cfg.bank_steps // 10), cfg.lr_schedule)
        return warmup_cosine(step, cfg.steps, cfg.warmup, cfg.lr_schedule)

    def _set_learning_rates(self) -> None:
        factor = self.lr_factor(self.step)
        peak = self.config.lr_bank if self.in_bank_phase() else self.config.lr_decoder
        for group in self.opt_decoder.param_groups:
            group["lr"] = peak * factor
        if self.opt_masks is not None:
            for group in self.opt_masks.param_groups:
                group["lr"] = self.config.lr_masks * factor

    # ------------------------------------------------------------------ bench recordings
    def recorded_data(self) -> RecordedMeasurements:
        """The bench's training readings (``backend`` fake-hw/hw), recorded on first use.

        The first ``n_recorded`` faces of the train split are shown on the bench's scene
        display and measured with this model's masks into ``config.recording`` (resumed
        if it exists: recorded faces are skipped); targets are their latents.
        """
        if self.recorded is None:
            from lsi_ml.bench_data import record_faces

            cfg = self.config
            if cfg.backend == "sim":
                raise ConfigError("backend 'sim' measures through the torch model; "
                                  "it records nothing")
            assert cfg.recording is not None
            self.recorded = record_faces(
                self.bench(), self.generator, self.optical.export_patterns(self.pattern_name),
                self.train_data, cfg.n_recorded, cfg.recording, progress=cfg.progress,
            )
            if self.config.init_from is None and self.step == 0:
                self.decoder.normalizer.fit(self.recorded.readings[: max(cfg.batch, 64)])
        return self.recorded

    @property
    def pattern_name(self) -> str:
        """Name of this model's masks (recordings are checked against it)."""
        masks = self.optical.masks().detach().to(torch.uint8).cpu().numpy()
        import hashlib

        return f"lsi-learned-{hashlib.sha1(masks.tobytes()).hexdigest()[:12]}"

    def bench(self) -> Any:
        """The bench of ``config.backend`` (made on first use, or the one passed in)."""
        if self._bench is None:
            from lsi_hw.benches import make_bench

            options: dict[str, Any] = {}
            if self.config.backend == "fake-hw":
                # the twin takes its noise from ``noise``, not from ``config``
                options = {"config": self.sim_config, "noise": self.sim_config.noise,
                           "seed": self.config.seed}
            self._bench = make_bench(self.config.backend, **options)
        return self._bench

    def measurement_bank(self) -> MeasurementBank:
        """The bank of the decoder-only phase (built on first use with the current masks,
        which that phase never changes; rebuilt identically after a resume).

        Every process builds the whole bank (the same scenes), then draws its share of
        each global batch.
        """
        if self.bank is None:
            cfg = self.config

            def render(idx: Tensor) -> dict[str, Tensor]:
                return self._train_images(idx % cfg.n_train)

            self.bank = MeasurementBank.build(  # build() runs under torch.no_grad
                render, lambda images: self.optical.power(_as_8bit(images)),
                cfg.bank_size, progress=cfg.progress and self.rank == 0)
        return self.bank

    def _bank_batch(self) -> tuple[Tensor, Tensor]:
        """Readings and targets of this process's share of the current bank step."""
        cfg = self.config
        draw = torch.Generator().manual_seed(_step_seed(cfg.seed, _BANK_DRAW_STREAM, self.step))
        share = cfg.bank_batch // self.world
        rows = torch.arange(self.rank * share, (self.rank + 1) * share)
        indices = torch.randint(0, cfg.bank_size, (cfg.bank_batch,), generator=draw)[rows]
        power, target = self.measurement_bank().draw(indices)
        gens = _row_generators(cfg.seed, _BANK_NOISE_STREAM, self.step, rows)
        with torch.no_grad():
            readings = self.optical.detect(power, generator=gens)
        return readings, target

    def _bank_network(self) -> nn.Module:
        """The decoder (wrapped in DDP when distributed: the masks get no gradient here)."""
        if self._bank_net is None:
            self._bank_net = self.decoder
            if self.world > 1:
                from torch.nn.parallel import DistributedDataParallel

                self._bank_net = DistributedDataParallel(self.decoder)
        return self._bank_net

    def train_step(self) -> float:
        """One optimizer step on the batch of the current step; returns the total loss.

        With several processes (DDP) each takes its share of the global batch; gradients
        are averaged, so the step equals the single-process step on the whole batch.
        Steps past ``steps`` (with ``bank_steps``) train the decoder on the measurement
        bank, masks frozen.
        """
        cfg = self.config
        self.model.train()
        rows = self._global_rows(self.step)
        bank_phase = self.in_bank_phase()
        if bank_phase:
            readings, target = self._bank_batch()
            pred = self._bank_network()(readings)
        elif cfg.backend == "sim":
            data = self._train_images(self._batch_indices(self.step))
            gens = _row_generators(cfg.seed, _NOISE_STREAM, self.step, rows)
            pred = self._net(data["image"], gens)
            target = data["latent"]
        else:
            recorded = self.recorded_data()
            assert recorded.targets is not None
            idx = self._batch_indices(self.step, len(recorded))
            pred = self._net(readings=recorded.readings[idx].to(self.device))
            target = recorded.targets[idx].to(self.device)
        total = self._loss(pred, target)["total"]
        self._set_learning_rates()
        train_masks = self.opt_masks is not None and not bank_phase
        if cfg.mask_energy and train_masks:
            total = total + cfg.mask_energy * self.optical.energy_loss()
        self.opt_decoder.zero_grad(set_to_none=True)
        if self.opt_masks is not None:
            self.opt_masks.zero_grad(set_to_none=True)
        total.backward()
        self.opt_decoder.step()
        if train_masks:
            assert self.opt_masks is not None
            self.opt_masks.step()
            self.optical.clamp_()
        self.step += 1
        self.last_loss = float(total.detach())
        if self.world > 1:  # report the global batch's loss
            import torch.distributed as dist

            loss = torch.tensor([self.last_loss], dtype=torch.float64)
            dist.all_reduce(loss)
            self.last_loss = float(loss) / self.world
        return self.last_loss

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Latent L1 (mean absolute error) on the first ``eval_batch`` val items, measured
        through the simulated bench (full downstream metrics: :mod:`lsi_ml.evaluation`).

        The val noise is drawn from fixed seeds, so evaluations are comparable across steps
        (and identical on every process).
        """
        self.model.eval()
        n = min(self.config.eval_batch, self.config.n_val)
        data = self.val_data.batch(range(n))
        gens = _row_generators(self.config.seed, _EVAL_STREAM, 0, torch.arange(n))
        pred = self.decoder(self.measure(data["image"], generator=gens)).cpu()
        record = {"step": float(self.step), "loss": self.last_loss,
                  "val_latent_l1": float(torch.mean(torch.abs(pred - data["latent"])))}
        self.history.append(record)
        return record

    @torch.no_grad()
    def decode(self, readings: Tensor) -> Tensor:
        """Latents (B, L, D) of detector readings (B, m), volts, from any bench (returned
        on the readings' device; CPU for numpy input)."""
        self.decoder.eval()
        values = torch.as_tensor(readings, dtype=torch.float32)
        return self.decoder(values.to(self.device)).to(values.device)

    # ------------------------------------------------------------------ loop
    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` total steps are done (default :attr:`total_steps`).

        Evaluates every ``eval_every`` steps and after the last step (:attr:`total_steps`;
        not when stopping early, so a split run records the same history as a whole one);
        writes a checkpoint every ``checkpoint_every`` steps and on return when
        ``config.checkpoint`` is set.

        Returns
        -------
        list of dict
            :attr:`history`.
        """
        cfg = self.config
        until = self.total_steps if steps is None else int(steps)
        if until < self.step:
            raise ConfigError(f"asked to train until step {until}, already at {self.step}")
        with tqdm(total=until, initial=self.step, disable=not cfg.progress or self.rank != 0,
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
        at_end = self.step == self.total_steps
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
        if self.rank != 0:  # every process holds the same model; only the first writes
            self._barrier()
            return Path(target)
        state = self.state()
        written = save_checkpoint(target, config=self.config.to_dict(), step=self.step,
                                  model=state["model"], optimizer=state["optimizer"],
                                  extra=state["extra"])
        self._barrier()
        return written

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _load_models(self, model: dict[str, Any], path: str | Path) -> None:
        try:
            self.optical.load_state_dict(model["optical"])
            self.decoder.load_state_dict(model["decoder"])
        except (KeyError, TypeError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"checkpoint {path}: its models do not fit its config "
                              f"({first})") from None

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
        config = TrainConfig.from_checkpoint(path, payload)
        # the weights come from the checkpoint itself; don't re-read an init file
        try:
            config = replace(config, **{**overrides, "init_from": None})
        except TypeError as exc:
            raise ConfigError(f"bad resume override: {exc}") from exc
        trainer = cls(config)
        trainer._load_models(payload["model"], path)
        optim = payload.get("optimizer") or {}
        if trainer.opt_masks is not None and optim.get("masks") is None:
            raise ConfigError(f"checkpoint {path} has no mask optimizer state "
                              "(written with frozen masks); resume with freeze_masks=True")
        try:
            if trainer.opt_masks is not None:
                trainer.opt_masks.load_state_dict(optim["masks"])
            trainer.opt_decoder.load_state_dict(optim["decoder"])
            extra = payload.get("extra") or {}
            history = [{str(k): float(v) for k, v in h.items()}
                       for h in extra.get("history", [])]
            last_loss = float(extra.get("last_loss", float("nan")))
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"checkpoint {path}: its optimizer state or history does not "
                              f"fit its config ({type(exc).__name__}: {first})") from None
        trainer.step = int(payload["step"])
        trainer.history = history
        trainer.last_loss = last_loss
        return trainer
