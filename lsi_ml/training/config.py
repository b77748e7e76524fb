"""The training run's configuration: every setting of a run, one frozen config per part of
the run (data, masks, decoder, schedule, bank, bench, loss), checked when it is made, read
from and written to TOML (the flat keys of earlier versions are read too), and a memory
estimate checked before anything is allocated."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from lsi_hw.benches import BENCH_NAMES
from lsi_hw.errors import ConfigError
from lsi_hw.limits import check_allocation, format_bytes
from lsi_hw.sim.detector import NOISE_PRESETS as _SIM_NOISE_PRESETS
from lsi_hw.sim.forward import SimConfig
from lsi_ml.checkpoint import load_checkpoint
from lsi_ml.config_check import Rule, check_fields, show_value
from lsi_ml.devices import check_device
from lsi_ml.latent.losses import LossWeights
from lsi_ml.latent.optical import MASK_INITS, check_mask_init

__all__ = ["BACKENDS", "FLAT_KEYS", "NOISE_PRESETS", "SECTIONS", "TOP_LEVEL", "BankConfig",
           "BenchConfig", "DataConfig", "DecoderConfig", "MaskConfig", "ScheduleConfig",
           "TrainConfig", "warmup_cosine"]

NOISE_PRESETS: tuple[str, ...] = tuple(_SIM_NOISE_PRESETS)
"""Noise presets of the simulated bench (:data:`lsi_hw.sim.detector.NOISE_PRESETS`)."""
BACKENDS: tuple[str, ...] = BENCH_NAMES
"""Where a run's measurements come from (:data:`lsi_hw.benches.BENCH_NAMES`)."""

CACHE_LIMIT = 4096  # SyntheticFaces keeps splits of at most this many faces rendered

_DATA_RULES: dict[str, Rule] = {
    "size": Rule(ge=32, why="SynthFace renders 32 px or more"),
    "n_train": Rule(ge=1),
    "n_val": Rule(ge=1),
}
_MASK_RULES: dict[str, Rule] = {
    "n_masks": Rule(ge=1),
    "init": Rule(choices=MASK_INITS),
    "lr": Rule(ge=0),
    "energy": Rule(ge=0),
}
_DECODER_RULES: dict[str, Rule] = {
    "hidden": Rule(ge=1),
    "depth": Rule(ge=1),
    "block_hidden": Rule(ge=1),
    "lr": Rule(ge=0),
    "weight_decay": Rule(ge=0),
}
_SCHEDULE_RULES: dict[str, Rule] = {
    "steps": Rule(ge=0),
    "batch": Rule(ge=2, why="the normaliser is fitted on one batch"),
    "lr_schedule": Rule(choices=("cosine", "constant")),
    "warmup": Rule(ge=0),
    "eval_every": Rule(ge=0),
    "eval_batch": Rule(ge=1),
    "checkpoint_every": Rule(ge=0),
}
_BANK_RULES: dict[str, Rule] = {
    "steps": Rule(ge=0),
    "size": Rule(ge=1),
    "batch": Rule(ge=1),
    "lr": Rule(ge=0),
}
_BENCH_RULES: dict[str, Rule] = {
    "noise": Rule(choices=NOISE_PRESETS),
    "backend": Rule(choices=BACKENDS),
    "n_recorded": Rule(ge=2),
}
_TRAIN_RULES: dict[str, Rule] = {
    "seed": Rule(ge=0, le=2**63 - 1),
}
"""Allowed values of the fields of each section and of :class:`TrainConfig`'s own fields,
beyond their types."""


def _check_section(section: Any, rules: dict[str, Rule]) -> None:
    """:func:`check_fields` of one section, its fields named by their dotted keys."""
    check_fields(section, rules, where="config", prefix=f"{section.SECTION}.")


@dataclass(frozen=True)
class DataConfig:
    """The synthetic faces of a run (TOML table ``[data]``).

    Attributes
    ----------
    size : int
        SynthFace image size and mask size (H = W), pixels; >= 32 (SynthFace's minimum).
    n_train, n_val : int
        Sizes of the synthetic train and val splits (the train split is cycled). Splits of
        at most 4096 items are rendered once and cached; larger ones render each batch on
        the fly (fresh faces every step: far less overfitting, measured on size 32).
    """

    SECTION: ClassVar[str] = "data"

    size: int = 64
    n_train: int = 1_000_000
    n_val: int = 256

    def __post_init__(self) -> None:
        _check_section(self, _DATA_RULES)


@dataclass(frozen=True)
class MaskConfig:
    """The optical encoder's masks (TOML table ``[masks]``).

    Attributes
    ----------
    n_masks : int
        Number of masks m (measurements per scene).
    init : str
        Initial masks: ``random`` (uniform weights, the paper) or ``hadamard`` (the first
        ``n_masks`` sequency-ordered Walsh-Hadamard masks; ``data.size`` a power of two);
        see :class:`~lsi_ml.latent.optical.OpticalEncoder`.
    lr : float
        Adam learning rate of the mask weights.
    energy : float
        Weight of the optical encoder's fill-fraction energy term (0: off).
    freeze : bool
        Train the decoder only (fine-tuning mode); the mask weights are never changed.
    """

    SECTION: ClassVar[str] = "masks"

    n_masks: int = 256
    init: str = "random"
    lr: float = 1e-2
    energy: float = 0.0
    freeze: bool = False

    def __post_init__(self) -> None:
        _check_section(self, _MASK_RULES)


@dataclass(frozen=True)
class DecoderConfig:
    """The digital encoder that decodes the readings into the latent (TOML ``[decoder]``).

    Attributes
    ----------
    hidden, depth, block_hidden : int
        Its size (see :class:`~lsi_ml.latent.encoder.EncoderConfig`).
    lr : float
        AdamW learning rate of the decoder (end-to-end phase).
    weight_decay : float
        AdamW weight decay of the decoder.
    """

    SECTION: ClassVar[str] = "decoder"

    hidden: int = 512
    depth: int = 2
    block_hidden: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        _check_section(self, _DECODER_RULES)


@dataclass(frozen=True)
class ScheduleConfig:
    """Steps, batches, learning-rate schedule, evaluations and checkpoints of the
    end-to-end phase (TOML table ``[schedule]``).

    Attributes
    ----------
    steps : int
        Optimizer steps of the end-to-end phase (the run has ``steps + bank.steps``).
    batch : int
        Scenes per step.
    lr_schedule : str
        ``cosine`` (the learning rates follow a half cosine from their value to 2 % of it
        over ``steps``, after a linear warm-up of ``warmup`` steps) or ``constant``.
    warmup : int
        Linear warm-up steps of the learning rates (at most a tenth of ``steps``).
    eval_every : int
        Evaluate the latent L1 on the val split every this many steps (0: only at the end).
    eval_batch : int
        Val items used by each evaluation (at most ``data.n_val``).
    checkpoint_every : int
        Write a checkpoint every this many steps (0: only at the end of
        :meth:`~lsi_ml.training.trainer.Trainer.train`).
    """

    SECTION: ClassVar[str] = "schedule"

    steps: int = 2000
    batch: int = 64
    lr_schedule: str = "cosine"
    warmup: int = 100
    eval_every: int = 100
    eval_batch: int = 128
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        _check_section(self, _SCHEDULE_RULES)


@dataclass(frozen=True)
class BankConfig:
    """The decoder-only phase on a measurement bank (TOML table ``[bank]``).

    Attributes
    ----------
    steps : int
        Decoder-only steps AFTER the ``schedule.steps`` end-to-end steps (0: none). The
        masks are then frozen; ``size`` training scenes are rendered once into a
        :class:`~lsi_ml.training.bank.MeasurementBank` of optical powers, and each step
        draws ``batch`` of them and measures them with fresh seeded detector noise. On a
        CPU a bank step costs a few percent of an end-to-end step (no render), so the
        decoder gets many more updates in the same time (see the README's training recipe).
    size : int
        Scenes in the bank (items ``0..size-1`` of the train split, cycled); memory
        ``size * (masks.n_masks + latent size) * 4`` bytes, held on ``device``.
    batch : int
        Scenes per bank step (at most ``size``).
    lr : float
        Peak AdamW learning rate of the decoder in the bank phase (its own warm-up of
        ``min(schedule.warmup, steps // 10)`` steps and its own ``schedule.lr_schedule``
        over ``steps``).
    """

    SECTION: ClassVar[str] = "bank"

    steps: int = 0
    size: int = 65536
    batch: int = 256
    lr: float = 1e-3

    def __post_init__(self) -> None:
        _check_section(self, _BANK_RULES)
        if self.steps and self.batch > self.size:
            raise ConfigError(f"config: bank.batch = {self.batch} exceeds bank.size = "
                              f"{self.size}")


@dataclass(frozen=True)
class BenchConfig:
    """Where the training measurements come from (TOML table ``[bench]``).

    Attributes
    ----------
    noise : str
        Noise preset of the simulated bench: ``none``, ``shot``, ``read`` or ``full``.
    backend : str
        ``sim`` measures every batch through the differentiable torch model of the bench
        (masks and decoder train end to end); ``fake-hw`` or ``hw`` first record
        ``n_recorded`` training faces on that bench (shown on its scene display, measured
        with the model's masks; resumable) and then fine-tune the decoder on those
        readings. Masks are physical DMD patterns there, so ``masks.freeze`` must be true
        (as in the paper's real-capture fine-tuning).
    recording : str or None
        Folder of the bench recording (created or resumed) for ``fake-hw``/``hw``.
    n_recorded : int
        Training faces recorded on a ``fake-hw``/``hw`` bench.
    sim : dict
        Single settings of the simulated bench changed from the defaults, as
        ``{"stage.field": value}`` (see :meth:`lsi_hw.sim.forward.SimConfig.with_overrides`),
        applied after the ``noise`` preset; e.g. ``{"digitizer.bits": 12,
        "optics.shift_px": [1.0, 0.0]}`` to train calibration-aware for a measured
        misalignment. In TOML: a ``[bench.sim]`` table with quoted keys
        (``"digitizer.bits" = 12``) or nested tables (``[bench.sim.digitizer]``).
    refit_normalizer : bool
        With ``init_from``: fit the measurement normaliser again on this run's bench
        (``backend = "sim"``), e.g. after changing the detector gain or the photon budget,
        instead of keeping the starting model's statistics.
    """

    SECTION: ClassVar[str] = "bench"

    noise: str = "shot"
    backend: str = "sim"
    recording: str | None = None
    n_recorded: int = 1024
    sim: dict[str, Any] = field(default_factory=dict)
    refit_normalizer: bool = False

    def __post_init__(self) -> None:
        _check_section(self, _BENCH_RULES)
        object.__setattr__(self, "sim", _flatten_settings(self.sim))
        try:  # refuse bad simulator settings now
            SimConfig().with_noise(self.noise).with_overrides(self.sim)
        except ConfigError as exc:
            raise ConfigError(f"config: bench.sim: {exc}") from None
        if self.backend != "sim" and not self.recording:
            raise ConfigError(f"config: bench.backend = {show_value(self.backend)} needs "
                              "bench.recording = a folder for the bench's training "
                              "measurements")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "masks": MaskConfig,
    "decoder": DecoderConfig,
    "schedule": ScheduleConfig,
    "bank": BankConfig,
    "bench": BenchConfig,
    "loss": LossWeights,
}
"""The sections of :class:`TrainConfig` (each a frozen dataclass and a TOML table), by name."""
TOP_LEVEL: tuple[str, ...] = ("seed", "init_from", "checkpoint", "progress", "device")
"""The settings of :class:`TrainConfig` that belong to no section."""

FLAT_KEYS: dict[str, str] = {
    "size": "data.size",
    "n_masks": "masks.n_masks",
    "noise": "bench.noise",
    "steps": "schedule.steps",
    "batch": "schedule.batch",
    "lr_masks": "masks.lr",
    "lr_decoder": "decoder.lr",
    "weight_decay": "decoder.weight_decay",
    "loss": "loss",
    "mask_energy": "masks.energy",
    "n_train": "data.n_train",
    "n_val": "data.n_val",
    "eval_every": "schedule.eval_every",
    "eval_batch": "schedule.eval_batch",
    "checkpoint": "checkpoint",
    "checkpoint_every": "schedule.checkpoint_every",
    "seed": "seed",
    "freeze_masks": "masks.freeze",
    "init_from": "init_from",
    "encoder_hidden": "decoder.hidden",
    "encoder_depth": "decoder.depth",
    "encoder_block_hidden": "decoder.block_hidden",
    "progress": "progress",
    "lr_schedule": "schedule.lr_schedule",
    "warmup": "schedule.warmup",
    "backend": "bench.backend",
    "recording": "bench.recording",
    "n_recorded": "bench.n_recorded",
    "sim": "bench.sim",
    "refit_normalizer": "bench.refit_normalizer",
    "mask_init": "masks.init",
    "bank_steps": "bank.steps",
    "bank_size": "bank.size",
    "bank_batch": "bank.batch",
    "lr_bank": "bank.lr",
    "device": "device",
}
"""Each key of the flat config of earlier versions (in its field order) -> its dotted key in
the nested :class:`TrainConfig` (``loss`` is the whole ``[loss]`` table in both). Files
(TOML, checkpoints) written with the flat keys are read through this map;
:meth:`TrainConfig.flat_dict` writes them."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (a run is a pure function of it).

    One frozen config per part of the run, as :class:`lsi_hw.sim.forward.SimConfig` has one
    per stage of the bench: :class:`DataConfig` ``data``, :class:`MaskConfig` ``masks``,
    :class:`DecoderConfig` ``decoder``, :class:`ScheduleConfig` ``schedule``,
    :class:`BankConfig` ``bank``, :class:`BenchConfig` ``bench`` and
    :class:`~lsi_ml.latent.losses.LossWeights` ``loss``; settings are addressed by their
    dotted keys (``schedule.steps``, ``masks.n_masks``), e.g. in :meth:`with_overrides`.
    Every field is checked against its annotation and range when its section is made
    (:func:`lsi_ml.config_check.check_fields`: ``masks.freeze = "no"`` or
    ``schedule.steps = 4.7`` are refused, not coerced, the error naming the dotted key);
    the checks across sections run in ``__post_init__``. :meth:`check_memory` refuses a run
    whose :meth:`memory_estimate` exceeds the memory limit before :class:`Trainer`
    allocates it.

    Files: :meth:`to_dict` / :meth:`to_toml` write the nested form (a table per section);
    :meth:`from_dict`, :meth:`from_toml` and :meth:`from_checkpoint` read it and also the
    flat keys of earlier versions (``steps``, ``lr_masks``, ...; see :data:`FLAT_KEYS`);
    :meth:`flat_dict` writes those.

    Attributes
    ----------
    data, masks, decoder, schedule, bank, bench : section configs
        See each class. A dict of a section's fields is accepted too (checked the same).
    loss : LossWeights
        Weights of the decoder loss terms (latent L1/L2, image, identity).
    seed : int
        Base seed of the masks, the decoder, the data splits and the noise.
    init_from : str or None
        Checkpoint whose model weights (masks, decoder, normaliser) start this run, e.g. to
        fine-tune a trained model with frozen masks; its optimizer state is not used.
    checkpoint : str or None
        Where checkpoints are written (None: never).
    progress : bool
        Show a tqdm progress bar.
    device : str
        Torch device of the models and of the rendering (``cpu``, ``cuda``, ``cuda:1``);
        noise is drawn from the same CPU generators on any device. Not part of what a run
        is: a run may be resumed on another device (numbers then agree to float rounding).
    """

    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    init_from: str | None = None
    checkpoint: str | None = None
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():  # a dict of a section's fields -> the section
            value = getattr(self, name)
            if not isinstance(value, cls):
                object.__setattr__(self, name, _section(name, value))
        check_fields(self, _TRAIN_RULES, where="config")
        check_device(self.device)
        try:
            check_mask_init(self.masks.n_masks, (self.data.size, self.data.size),
                            self.masks.init)
        except ConfigError as exc:
            raise ConfigError(f"config: masks.init = {show_value(self.masks.init)} with "
                              f"masks.n_masks = {self.masks.n_masks} at data.size = "
                              f"{self.data.size}: {exc}") from None
        backend = self.bench.backend
        if self.bank.steps and backend != "sim":
            raise ConfigError(f"config: bank.steps = {self.bank.steps}: the measurement bank "
                              "is rendered through the simulated bench (bench.backend "
                              f"\"sim\"); a {backend!r} run already trains on recorded "
                              "readings")
        if backend != "sim" and not self.masks.freeze:
            raise ConfigError(
                f"config: bench.backend = {show_value(backend)} trains on recorded readings, "
                "which carry no gradient to the masks: set masks.freeze = true (fine-tune "
                "the decoder of a model trained on the simulator, init_from = its "
                "checkpoint)")

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> TrainConfig:
        """Copy with single settings changed, addressed as ``"section.field"``.

        Parameters
        ----------
        overrides : mapping of str to value, or None
            E.g. ``{"schedule.steps": 500, "masks.n_masks": 64, "seed": 3,
            "bench.sim": {"digitizer.bits": 12}}``: a dotted key of a section
            (:data:`SECTIONS`: ``data``, ``masks``, ``decoder``, ``schedule``, ``bank``,
            ``bench``, ``loss``), a top-level setting (:data:`TOP_LEVEL`) or ``loss`` (the
            whole table, a dict or a :class:`LossWeights`). ``bench.sim`` replaces the
            whole dict of simulator settings (merge yourself: ``{**config.bench.sim, ...}``).
            The flat keys of earlier versions are refused, naming their dotted key.

        Returns
        -------
        TrainConfig
            A new config, checked again like a new one (every changed section by its own
            checks, then the checks across sections).

        Raises
        ------
        ConfigError
            Unknown section or field (the allowed names are listed; a flat key of an
            earlier version is named with its dotted key), or a value that is refused.
        """
        if not overrides:
            return self
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        changes: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            key = str(key)
            section, sep, name = key.partition(".")
            if sep and section in SECTIONS:
                allowed = [f.name for f in fields(SECTIONS[section])]
                if name not in allowed:
                    raise ConfigError(f"training setting {key!r}: {section} has no field "
                                      f"{name!r}; allowed: {', '.join(allowed)}")
                changes.setdefault(section, {})[name] = value
            elif key in TOP_LEVEL or key == "loss":
                values[key] = _section(key, value) if key == "loss" else value
            else:
                raise ConfigError(f"training setting {key!r}{_now_called(key)}: write "
                                  f"SECTION.FIELD with SECTION one of {', '.join(SECTIONS)}, "
                                  f"or one of {', '.join((*TOP_LEVEL, 'loss'))}")
        for section, new in changes.items():
            values[section] = replace(values[section], **new)
        return type(self)(**values)

    def memory_estimate(self) -> dict[str, int]:
        """Rough peak memory of a run of this config, bytes, by part (and ``total``).

        * ``masks``: the ``n_masks x size^2`` mask weights as 8 float32 copies (weights,
          gradient, Adam's two moments, the binarised masks and the backward temporaries);
        * ``render``: one SynthFace render of the largest batch rendered at once
          (``schedule.batch``, the evaluation batch, the bank's build chunk), at 256 bytes
          per pixel and scene (measured peaks: 80-230);
        * ``cache``: train and val splits of at most 4096 faces, rendered once and kept
          (image float32 x 3 + segmentation int64: 20 bytes per pixel, plus labels);
        * ``bank``: the measurement bank (``bank.size x (n_masks + latent)`` float32, twice
          while it is assembled);
        * ``decoder``: its weights as 4 float32 copies (weights, gradient, AdamW moments).
        """
        from lsi_ml.generators.synthface import LEVEL_DIM, LEVEL_NAMES
        from lsi_ml.training.bank import BUILD_CHUNK

        data, masks, schedule, bank = self.data, self.masks, self.schedule, self.bank
        px = data.size * data.size
        latent = len(LEVEL_NAMES) * LEVEL_DIM
        cached = sum(n for n in (data.n_train, data.n_val) if n <= CACHE_LIMIT)
        rendered = [schedule.batch, min(schedule.eval_batch, data.n_val)]
        if bank.steps:
            rendered.append(min(BUILD_CHUNK, bank.size))
        hidden = self.decoder.hidden
        params = (masks.n_masks * hidden + self.decoder.depth * hidden * hidden
                  + len(LEVEL_NAMES) * (hidden + LEVEL_DIM) * self.decoder.block_hidden)
        parts = {
            "masks": 8 * 4 * masks.n_masks * px,
            "render": 256 * max(rendered) * px,
            "cache": (20 * px + 4 * 1024) * cached,
            "bank": 2 * 4 * bank.size * (masks.n_masks + latent) if bank.steps else 0,
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
        check_allocation(parts["total"], f"config: training at size {self.data.size} with "
                                         f"{self.masks.n_masks} masks, batch "
                                         f"{self.schedule.batch} ({detail})")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, a dict per section (``{"schedule": {"steps": ...}, ...,
        "seed": ...}``); :meth:`from_dict` inverts it."""
        return asdict(self)

    def flat_dict(self) -> dict[str, Any]:
        """The flat dict of earlier versions: the keys of :data:`FLAT_KEYS` in their order
        (``loss`` a nested dict), exactly what their ``to_dict()`` returned. The studies'
        cache keys hash it (:func:`sims.common.config_key`), so they do not change."""
        nested = self.to_dict()
        out: dict[str, Any] = {}
        for flat, dotted in FLAT_KEYS.items():
            section, sep, name = dotted.partition(".")
            out[flat] = nested[section][name] if sep else nested[dotted]
        return out

    def dotted_dict(self) -> dict[str, Any]:
        """Every setting by its dotted key (``{"data.size": 64, ..., "loss.image": 0.0,
        ..., "seed": 0, ...}``; ``bench.sim`` is one dict): the keys
        :meth:`with_overrides` takes, ``config.with_overrides(config.dotted_dict())``
        equals ``config``."""
        nested = self.to_dict()
        out = {f"{section}.{name}": value
               for section in SECTIONS for name, value in nested[section].items()}
        out.update((name, nested[name]) for name in TOP_LEVEL)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Config from a dict as written by :meth:`to_dict` (a dict per section) or by the
        ``to_dict`` of earlier versions (flat keys, :data:`FLAT_KEYS`), or a mix of both.
        Unknown keys, and one setting given twice (``steps`` and ``schedule.steps``):
        ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a table of settings, not {type(data).__name__}")
        values: dict[str, Any] = {}
        given: dict[str, str] = {}  # dotted key -> how the dict named it

        def put(dotted: str, value: Any, written: str) -> None:
            if dotted in given:
                raise ConfigError(f"config: {written} and {given[dotted]} both set {dotted}")
            given[dotted] = written
            section, sep, name = dotted.partition(".")
            if sep:
                values.setdefault(section, {})[name] = value
            else:
                values[dotted] = value

        unknown = []
        for key, value in data.items():
            if key in SECTIONS and key != "loss":
                if isinstance(value, SECTIONS[key]):
                    value = asdict(value)
                if not isinstance(value, Mapping):
                    raise ConfigError(f"config: {key} = {show_value(value)} must be a table "
                                      f"of settings ([{key}] ...)")
                allowed = [f.name for f in fields(SECTIONS[key])]
                bad = sorted(set(value) - set(allowed))
                if bad:
                    raise ConfigError(f"unknown training config keys "
                                      f"{[f'{key}.{b}' for b in bad]}; [{key}] has: "
                                      f"{', '.join(allowed)}")
                for name, item in value.items():
                    put(f"{key}.{name}", item, f"{key}.{name}")
            elif key in FLAT_KEYS:
                put(FLAT_KEYS[key], value, key)
            else:
                unknown.append(key)
        if unknown:
            raise ConfigError(
                f"unknown training config keys {sorted(map(str, unknown))}; known: the "
                f"tables {', '.join(SECTIONS)} and the settings {', '.join(TOP_LEVEL)}, or "
                f"the flat keys of earlier versions ({', '.join(FLAT_KEYS)})")
        return cls(**values)

    @classmethod
    def from_checkpoint(cls, path: str | Path, payload: dict[str, Any] | None = None
                        ) -> TrainConfig:
        """The config stored in the checkpoint ``path``, checked again like a new one
        (nested, or flat as written by earlier versions).

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
        """Read a TOML file: a table per section (``[schedule]``, ``[masks]``, ...,
        ``[loss]``, ``[bench.sim]``) and the top-level settings, at the top level or in a
        ``[train]`` table (``[train.schedule]``, ...). The flat keys of earlier versions
        (``steps = 500`` at the top level or in ``[train]``, with ``[loss]`` and ``[sim]``
        tables) are read too (:data:`FLAT_KEYS`).

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
            for table in ("loss", "sim"):  # beside [train] in flat files
                if table in data:
                    if table in train:
                        raise ConfigError(f"{source}: [{table}] is given twice")
                    train[table] = data[table]
            data = train
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """TOML text that :meth:`from_toml` reads back to an equal config: the top-level
        settings, then a table per section (None omitted)."""
        data = self.to_dict()
        lines = [f"{k} = {_toml_value(data[k])}" for k in TOP_LEVEL if data[k] is not None]
        for section in SECTIONS:
            table = dict(data[section])
            sim = table.pop("sim", {}) if section == "bench" else {}
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {_toml_value(float(v) if section == 'loss' else v)}"
                      for k, v in table.items() if v is not None]
            if sim:
                lines += ["", "[bench.sim]"]
                lines += [f"{_toml_value(k)} = {_toml_value(v)}" for k, v in sim.items()]
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


def _section(name: str, value: Any) -> Any:
    """The section ``name`` from its config object or a dict of its fields (unknown
    fields and bad values: ConfigError naming the dotted keys)."""
    cls = SECTIONS[name]
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        what = "weights" if name == "loss" else "settings"
        raise ConfigError(f"config: {name} = {show_value(value)} must be a table of {what} "
                          f"([{name}] {fields(cls)[0].name} = ..., ...)")
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"config: unknown settings {[f'{name}.{k}' for k in unknown]}; "
                          f"[{name}] has: {', '.join(allowed)}")
    return cls(**value)


def _now_called(key: str) -> str:
    """`` (now 'schedule.steps')`` for a flat key of earlier versions, else ``""``."""
    dotted = FLAT_KEYS.get(key)
    return f" (now {dotted!r})" if dotted and dotted != key else ""


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
