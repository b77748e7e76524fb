"""End-to-end training of the optical and digital encoders on synthetic faces.

:class:`Trainer` renders SynthFace batches (:class:`~lsi_ml.data.synthetic.SyntheticFaces`),
measures them through the learnable masks and the differentiable bench physics
(:class:`~lsi_ml.latent.optical.OpticalEncoder`, built from ``SimConfig().with_noise(preset)``)
and decodes the readings into the latent (:class:`~lsi_ml.latent.encoder.LatentEncoder`).  The
mask weights are trained with Adam and clamped to [0, 1] after each step (as the paper);
the decoder with AdamW.  ``masks.freeze = true`` trains only the decoder (the paper's
fine-tuning mode, masks fixed as they are on the DMD).

Two phases (``bank.steps > 0``): after the ``schedule.steps`` end-to-end steps the masks are
frozen and the decoder trains ``bank.steps`` more steps on a
:class:`~lsi_ml.training.bank.MeasurementBank` (``bank.size`` train scenes rendered once;
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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lsi_hw.errors import ConfigError
from lsi_hw.interfaces import Bench
from lsi_hw.sim.forward import SimConfig
from lsi_ml.checkpoint import load_checkpoint, save_checkpoint
from lsi_ml.data.recorded import RecordedMeasurements
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.encoder import EncoderConfig, LatentEncoder
from lsi_ml.latent.losses import encoder_losses
from lsi_ml.latent.optical import OpticalEncoder
from lsi_ml.training.bank import MeasurementBank
from lsi_ml.training.config import TrainConfig, warmup_cosine
from lsi_ml.training.distributed import dist_info
from lsi_ml.training.streams import (
    BANK_DRAW_STREAM,
    BANK_NOISE_STREAM,
    EVAL_STREAM,
    FIT_STREAM,
    NOISE_STREAM,
    as_8bit,
    row_generators,
    step_seed,
)

__all__ = ["Trainer"]


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
            readings = self.optical(as_8bit(images), generator=generators)
        return self.decoder(readings)


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

    def __init__(self, config: TrainConfig, *, bench: Bench | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"Trainer needs a TrainConfig, not {type(config).__name__} "
                              "(use TrainConfig.from_dict for a dict)")
        config.check_memory()  # before anything is allocated
        self.config = config
        self.rank, self.world = dist_info()
        data, masks, decoder = config.data, config.masks, config.decoder
        if config.schedule.batch % self.world:
            raise ConfigError(f"schedule.batch={config.schedule.batch} must be divisible by "
                              f"the {self.world} processes (the global batch is split evenly)")
        if config.bank.steps and config.bank.batch % self.world:
            raise ConfigError(f"bank.batch={config.bank.batch} must be divisible by the "
                              f"{self.world} processes (the global batch is split evenly)")
        self.generator = SynthFace(data.size, seed=config.seed)
        self.train_data = SyntheticFaces(self.generator, data.n_train, seed=config.seed,
                                         split="train")
        self.val_data = SyntheticFaces(self.generator, data.n_val, seed=config.seed,
                                       split="val")
        self.sim_config = SimConfig().with_noise(config.bench.noise).with_overrides(
            config.bench.sim)
        self.device = torch.device(config.device)
        self.optical = OpticalEncoder(masks.n_masks, (data.size, data.size),
                                      self.sim_config, seed=config.seed, init=masks.init)
        levels, dim = self.generator.latent_shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(config.seed, 0, 0))
            self.decoder = LatentEncoder(EncoderConfig(
                n_measurements=masks.n_masks, n_levels=levels, level_dim=dim,
                hidden=decoder.hidden, depth=decoder.depth, block_hidden=decoder.block_hidden,
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
            if config.bench.refit_normalizer and config.bench.backend == "sim":
                self._fit_normalizer()
        elif config.bench.backend == "sim":
            self._fit_normalizer()
        if masks.freeze:
            self.optical.weights.requires_grad_(False)
            self.opt_masks: torch.optim.Optimizer | None = None
        else:
            self.opt_masks = torch.optim.Adam([self.optical.weights], lr=masks.lr)
        self.opt_decoder = torch.optim.AdamW(self.decoder.parameters(), lr=decoder.lr,
                                             weight_decay=decoder.weight_decay)
        self.model = _EndToEnd(self.optical, self.decoder)
        self._net: nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self._net = DistributedDataParallel(self.model)

    # ------------------------------------------------------------------ pieces
    def _global_rows(self, step: int) -> Tensor:
        """Positions 0..batch-1 of this process's share of the global batch."""
        share = self.config.schedule.batch // self.world
        return torch.arange(self.rank * share, (self.rank + 1) * share)

    def _batch_indices(self, step: int, n: int | None = None) -> Tensor:
        """Items (of a split of ``n`` items, default the train split) of this process's
        share of the batch of ``step`` (the split is cycled)."""
        start = step * self.config.schedule.batch
        return (self._global_rows(step) + start) % (n or self.config.data.n_train)

    def measure(self, images: Tensor, *, generator: Any = None,
                noise: bool | None = None) -> Tensor:
        """Readings (B, m), volts, of images through the masks and the simulated bench.

        ``images`` are shown as the 8-bit monitor shows them; ``generator`` is one
        torch.Generator or one per image (see :mod:`lsi_hw.sim.torch_model`). The
        readings are on the model's device.
        """
        return self.optical(as_8bit(images.to(self.device)), noise=noise,
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
        rows = torch.arange(self.config.schedule.batch)
        images = self.train_data.batch(rows % self.config.data.n_train)["image"]
        gens = row_generators(self.config.seed, FIT_STREAM, 0, rows)
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
        """Steps of the whole run: ``schedule.steps`` end-to-end + ``bank.steps``
        decoder-only."""
        return self.config.schedule.steps + self.config.bank.steps

    def in_bank_phase(self, step: int | None = None) -> bool:
        """Whether ``step`` (default the next one) is a decoder-only bank step."""
        step = self.step if step is None else step
        return self.config.bank.steps > 0 and step >= self.config.schedule.steps

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step`` (a pure function of the step: resumable);
        the bank phase has its own warm-up and schedule over ``bank.steps``."""
        schedule, bank = self.config.schedule, self.config.bank
        if self.in_bank_phase(step):
            return warmup_cosine(step - schedule.steps, bank.steps,
                                 min(schedule.warmup, bank.steps // 10), schedule.lr_schedule)
        return warmup_cosine(step, schedule.steps, schedule.warmup, schedule.lr_schedule)

    def _set_learning_rates(self) -> None:
        factor = self.lr_factor(self.step)
        peak = self.config.bank.lr if self.in_bank_phase() else self.config.decoder.lr
        for group in self.opt_decoder.param_groups:
            group["lr"] = peak * factor
        if self.opt_masks is not None:
            for group in self.opt_masks.param_groups:
                group["lr"] = self.config.masks.lr * factor

    # ------------------------------------------------------------------ bench recordings
    def recorded_data(self) -> RecordedMeasurements:
        """The bench's training readings (``bench.backend`` fake-hw/hw), recorded on first
        use.

        The first ``bench.n_recorded`` faces of the train split are shown on the bench's
        scene display and measured with this model's masks into ``bench.recording``
        (resumed if it exists: recorded faces are skipped); targets are their latents.
        """
        if self.recorded is None:
            from lsi_ml.training.bench_data import record_faces

            cfg = self.config
            if cfg.bench.backend == "sim":
                raise ConfigError("backend 'sim' measures through the torch model; "
                                  "it records nothing")
            assert cfg.bench.recording is not None
            self.recorded = record_faces(
                self.bench(), self.generator, self.optical.export_patterns(self.pattern_name),
                self.train_data, cfg.bench.n_recorded, cfg.bench.recording,
                progress=cfg.progress,
            )
            if cfg.init_from is None and self.step == 0:
                self.decoder.normalizer.fit(
                    self.recorded.readings[: max(cfg.schedule.batch, 64)])
        return self.recorded

    @property
    def pattern_name(self) -> str:
        """Name of this model's masks (recordings are checked against it)."""
        masks = self.optical.masks().detach().to(torch.uint8).cpu().numpy()
        import hashlib

        return f"lsi-learned-{hashlib.sha1(masks.tobytes()).hexdigest()[:12]}"

    def use_bench(self, bench: Bench) -> None:
        """Measure on ``bench`` from now on (e.g. a hardware bench opened with options)."""
        self._bench = bench

    def bench(self) -> Bench:
        """The bench of ``config.bench.backend`` (made on first use, or the one passed
        in)."""
        if self._bench is None:
            from lsi_hw.benches import make_bench

            options: dict[str, Any] = {}
            if self.config.bench.backend == "fake-hw":
                # the twin takes its noise from ``noise``, not from ``config``
                options = {"config": self.sim_config, "noise": self.sim_config.noise,
                           "seed": self.config.seed}
            self._bench = make_bench(self.config.bench.backend, **options)
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
                return self._train_images(idx % cfg.data.n_train)

            self.bank = MeasurementBank.build(  # build() runs under torch.no_grad
                render, lambda images: self.optical.power(as_8bit(images)),
                cfg.bank.size, progress=cfg.progress and self.rank == 0)
        return self.bank

    def _bank_batch(self) -> tuple[Tensor, Tensor]:
        """Readings and targets of this process's share of the current bank step."""
        cfg = self.config
        draw = torch.Generator().manual_seed(step_seed(cfg.seed, BANK_DRAW_STREAM, self.step))
        share = cfg.bank.batch // self.world
        rows = torch.arange(self.rank * share, (self.rank + 1) * share)
        indices = torch.randint(0, cfg.bank.size, (cfg.bank.batch,), generator=draw)[rows]
        power, target = self.measurement_bank().draw(indices)
        gens = row_generators(cfg.seed, BANK_NOISE_STREAM, self.step, rows)
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
        Steps past ``schedule.steps`` (with ``bank.steps``) train the decoder on the
        measurement bank, masks frozen.
        """
        cfg = self.config
        self.model.train()
        rows = self._global_rows(self.step)
        bank_phase = self.in_bank_phase()
        if bank_phase:
            readings, target = self._bank_batch()
            pred = self._bank_network()(readings)
        elif cfg.bench.backend == "sim":
            data = self._train_images(self._batch_indices(self.step))
            gens = row_generators(cfg.seed, NOISE_STREAM, self.step, rows)
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
        if cfg.masks.energy and train_masks:
            total = total + cfg.masks.energy * self.optical.energy_loss()
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
        """Latent L1 (mean absolute error) on the first ``schedule.eval_batch`` val items,
        measured
        through the simulated bench (full downstream metrics: :mod:`lsi_ml.evaluation.latent`).

        The val noise is drawn from fixed seeds, so evaluations are comparable across steps
        (and identical on every process).
        """
        self.model.eval()
        n = min(self.config.schedule.eval_batch, self.config.data.n_val)
        data = self.val_data.batch(range(n))
        gens = row_generators(self.config.seed, EVAL_STREAM, 0, torch.arange(n))
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

        Evaluates every ``schedule.eval_every`` steps and after the last step
        (:attr:`total_steps`; not when stopping early, so a split run records the same
        history as a whole one); writes a checkpoint every ``schedule.checkpoint_every``
        steps and on return when ``config.checkpoint`` is set.

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
                if cfg.schedule.eval_every and self.step % cfg.schedule.eval_every == 0:
                    record = self.evaluate()
                    bar.set_postfix(loss=f"{loss:.4f}",
                                    val_l1=f"{record['val_latent_l1']:.4f}", refresh=False)
                every = cfg.schedule.checkpoint_every
                if cfg.checkpoint and every and self.step % every == 0:
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
    def resume(cls, path: str | Path, overrides: Mapping[str, Any] | None = None,
               **settings: Any) -> Trainer:
        """A trainer at the saved step of a checkpoint, ready to :meth:`train` on.

        Parameters
        ----------
        path : str or Path
            Checkpoint written by :meth:`save` (a nested config, or a flat one written by
            an earlier version).
        overrides : mapping, optional
            Settings to change by their dotted keys (:meth:`TrainConfig.with_overrides`),
            e.g. ``{"schedule.steps": 8000}`` to train longer; changing anything that
            shapes the run breaks the equality with an uninterrupted run.
        **settings
            Top-level settings to change (``progress``, ``checkpoint``, ``device``).

        Returns
        -------
        Trainer
        """
        payload = load_checkpoint(path)
        config = TrainConfig.from_checkpoint(path, payload)
        # the weights come from the checkpoint itself; don't re-read an init file
        try:
            config = config.with_overrides({**(overrides or {}), **settings,
                                            "init_from": None})
        except ConfigError as exc:
            raise ConfigError(f"bad resume override: {exc}") from None
        trainer = cls(config)
        trainer._load_models(payload["model"], path)
        optim = payload.get("optimizer") or {}
        if trainer.opt_masks is not None and optim.get("masks") is None:
            raise ConfigError(f"checkpoint {path} has no mask optimizer state "
                              "(written with frozen masks); resume with masks.freeze = true")
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
