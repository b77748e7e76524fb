"""Train-step throughput: ``Trainer.train_step`` vs a plain hand-written PyTorch loop.

Both do the same work per step: render a SynthFace batch (``SynthFace.render``, as the
trainer's on-the-fly ``SyntheticFaces`` split does), measure it through the same
:class:`~lsi_ml.latent.optical.OpticalEncoder` (learned binary masks + differentiable bench
physics, noise preset ``shot``), decode with the same :class:`~lsi_ml.latent.encoder.LatentEncoder`
(default size), latent L1 + L2 loss, backward, Adam on the mask weights + clamp to [0, 1],
AdamW on the decoder.  The plain loop leaves out the trainer's machinery: per-row seeded
noise generators (one ``torch.Generator`` per scene, seeded through ``SeedSequence``),
8-bit display quantization of the images, the DDP wrapper module, config checks and the
loss dict.

Cases: 64 px / 256 masks / batch 64 and 32 px / 64 masks / batch 32.  Steps of the two
loops are timed in interleaved blocks (other jobs on the shared machine slow both alike);
the ratio is Trainer time / plain time per step (> 1: the trainer is slower).  Then one
step is broken down (render, physics, decoder, backward, optimizer) and the trainer-only
pieces are timed alone, so the source of any difference is visible.

    python benchmarks/bench_train_step.py              # full run (~1.5-3 minutes)
    python benchmarks/bench_train_step.py --quick      # fewer, shorter blocks (smoke test)
    python benchmarks/bench_train_step.py --threads 2  # torch threads (default 1)

Default 1 torch thread: on the shared 2-core VM, with other jobs running, 2 OpenMP
threads can be many times slower than 1 (a descheduled thread stalls every parallel
region; see bench_decode.py, which reports both).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lsi_hw.sim.forward import SimConfig
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.encoder import EncoderConfig, LatentEncoder
from lsi_ml.latent.losses import encoder_losses
from lsi_ml.latent.optical import OpticalEncoder
from lsi_ml.training.config import (
    BenchConfig,
    DataConfig,
    MaskConfig,
    ScheduleConfig,
    TrainConfig,
)
from lsi_ml.training.streams import NOISE_STREAM, as_8bit, row_generators
from lsi_ml.training.trainer import Trainer

#: (size, n_masks, batch)
CASES: tuple[tuple[int, int, int], ...] = ((64, 256, 64), (32, 64, 32))
SLOWER = 1.10  # report the trainer as measurably slower above this time ratio


class PlainLoop:
    """The same training step written as a plain PyTorch loop (no Trainer machinery).

    Starts from the trainer's initial state (mask weights, decoder weights and fitted
    normaliser are copied), so both optimise the same model from the same point.
    ``row_generators`` and ``quantize`` add one piece of the trainer's machinery each (per-row
    seeded noise generators, 8-bit display quantization), to attribute a difference.
    """

    def __init__(self, trainer: Trainer, *, row_generators: bool = False,
                 quantize: bool = False) -> None:
        cfg = trainer.config
        self.seed = cfg.seed
        self.row_generators = row_generators
        self.quantize = quantize
        self.n_steps = 0
        self.batch = cfg.schedule.batch
        size, n_masks = cfg.data.size, cfg.masks.n_masks
        self.generator = SynthFace(size, seed=cfg.seed)
        self.optical = OpticalEncoder(n_masks, (size, size), trainer.sim_config, seed=cfg.seed)
        levels, dim = self.generator.latent_shape
        self.decoder = LatentEncoder(EncoderConfig(
            n_measurements=n_masks, n_levels=levels, level_dim=dim,
            hidden=cfg.decoder.hidden, depth=cfg.decoder.depth,
            block_hidden=cfg.decoder.block_hidden))
        self.optical.load_state_dict(trainer.optical.state_dict())
        self.decoder.load_state_dict(trainer.decoder.state_dict())
        self.opt_masks = torch.optim.Adam([self.optical.weights], lr=cfg.masks.lr)
        self.opt_decoder = torch.optim.AdamW(self.decoder.parameters(), lr=cfg.decoder.lr,
                                             weight_decay=cfg.decoder.weight_decay)
        self.data_rng = torch.Generator().manual_seed(cfg.seed)
        self.noise_rng = torch.Generator().manual_seed(cfg.seed + 1)

    # the pieces of one step (used by step() and timed separately by the breakdown)
    def latents(self) -> Tensor:
        return self.generator.sample_latent(self.batch, generator=self.data_rng)

    def render(self, z: Tensor) -> Tensor:
        with torch.no_grad():
            return self.generator.render(z).image

    def physics(self, images: Tensor) -> Tensor:
        if self.quantize:
            images = as_8bit(images)
        if self.row_generators:
            rows = torch.arange(self.batch)
            gens = row_generators(self.seed, NOISE_STREAM, self.n_steps, rows)
            return self.optical(images, generator=gens)
        return self.optical(images, generator=self.noise_rng)

    def decode_loss(self, readings: Tensor, z: Tensor) -> Tensor:
        pred = self.decoder(readings)
        return F.l1_loss(pred, z) + F.mse_loss(pred, z)

    def optimize(self) -> None:
        self.opt_decoder.step()
        self.opt_masks.step()
        self.optical.clamp_()

    def step(self, timings: dict[str, list[float]] | None = None) -> float:
        """One step; with ``timings``, appends the seconds of each piece to it."""
        marks = [time.perf_counter()]

        def mark() -> None:
            if timings is not None:
                marks.append(time.perf_counter())

        z = self.latents()
        images = self.render(z)
        mark()
        readings = self.physics(images)
        mark()
        loss = self.decode_loss(readings, z)
        mark()
        self.opt_decoder.zero_grad(set_to_none=True)
        self.opt_masks.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        self.optimize()
        self.n_steps += 1
        value = float(loss.detach())
        mark()
        if timings is not None:
            for name, t0, t1 in zip(PIECES, marks[:-1], marks[1:], strict=True):
                timings.setdefault(name, []).append(t1 - t0)
        return value


PIECES = (
    "render: latents + SynthFace.render(z).image",
    "physics forward (masks + bench, 1 rng)",
    "decoder forward + loss",
    "backward (decoder + physics -> masks)",
    "optimizer steps + clamp",
)


def settle() -> None:
    """Let the previous thread pool go idle before a timed block (see benchmarks/README)."""
    time.sleep(0.1)


def block_time(fn: Callable[[], Any], steps: int) -> float:
    """Seconds per call over ``steps`` back-to-back calls."""
    settle()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def median_split(setup: Callable[[], Any], fn: Callable[[Any], Any], repeats: int) -> float:
    """Median seconds of ``fn(setup())`` with ``setup`` untimed, after one warm-up."""
    fn(setup())
    times = []
    for _ in range(repeats):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_call(fn: Callable[[], Any], repeats: int) -> float:
    return median_split(lambda: None, lambda _: fn(), repeats)


def compare(loops: list[Callable[[], Any]], blocks: int, steps: int) -> list[float]:
    """Median seconds per step of each loop over interleaved blocks of ``steps`` steps
    (the order is reversed every other block)."""
    for loop in loops:  # warm-up (allocator, oneDNN primitives, the face box)
        loop()
    times: list[list[float]] = [[] for _ in loops]
    for b in range(blocks):
        order = list(range(len(loops)))
        for i in order if b % 2 == 0 else reversed(order):
            times[i].append(block_time(loops[i], steps))
    return [statistics.median(t) for t in times]


def breakdown(trainer: Trainer, plain: PlainLoop, repeats: int, step_tr: float,
              step_pl: float, blocks: int, steps: int) -> None:
    """One step in pieces (plain loop), the trainer-only pieces timed alone, and an
    ablation adding them to the plain loop one at a time."""
    cfg = trainer.config
    p = plain
    z = p.latents()
    images = p.render(z)
    readings = p.physics(images)

    def backward_setup(detach: bool) -> Tensor:
        r = p.physics(images)
        loss = p.decode_loss(r.detach() if detach else r, z)
        p.opt_decoder.zero_grad(set_to_none=True)
        p.opt_masks.zero_grad(set_to_none=True)
        return loss

    ref = block_time(p.step, steps)  # the step at this moment (the load drifts)
    timings: dict[str, list[float]] = {}
    settle()
    for _ in range(repeats):  # back to back, as in the timed blocks
        p.step(timings)
    pieces = [(name, statistics.median(timings[name])) for name in PIECES]
    dec_bwd = median_split(lambda: backward_setup(True), lambda loss: loss.backward(), repeats)
    total = sum(t for _, t in pieces)
    print(f"  one plain step in pieces (median ms over {repeats} instrumented steps; "
          f"{cfg.data.size} px, m={cfg.masks.n_masks}, batch {cfg.schedule.batch}; load average "
          f"{os.getloadavg()[0]:.1f}):")
    for name, t in pieces:
        print(f"    {name:<44} {t * 1e3:9.2f} ms  {100 * t / total:5.1f} %")
    print(f"    {'  decoder backward alone (readings detached)':<44} {dec_bwd * 1e3:9.2f} ms")
    print(f"    {'sum of pieces':<44} {total * 1e3:9.2f} ms  (plain step just before: "
          f"{ref * 1e3:.2f} ms; in the table: {step_pl * 1e3:.2f} ms)")

    rows = trainer._global_rows(trainer.step)
    step = trainer.step
    one_rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        fwd_rows = median_call(lambda: trainer.optical(
            images, generator=row_generators(cfg.seed, NOISE_STREAM, step, rows)), repeats)
        fwd_one = median_call(lambda: trainer.optical(images, generator=one_rng), repeats)
    pred = p.decoder(readings).detach()
    extras = [
        ("latents: SyntheticFaces.latents(batch indices)",
         median_call(lambda: trainer.train_data.latents(trainer._batch_indices(step)),
                     repeats)),
        ("render() minus synthesize() (unused labels)",
         median_call(lambda: p.render(z), repeats)
         - median_call(lambda: p.generator.synthesize(z), repeats)),
        ("per-row generators: row_generators()",
         median_call(lambda: row_generators(cfg.seed, NOISE_STREAM, step, rows), repeats)),
        ("physics fwd with row generators minus 1 rng", fwd_rows - fwd_one),
        ("8-bit quantization: as_8bit(images)", median_call(lambda: as_8bit(images),
                                                             repeats)),
        ("loss dict: encoder_losses() minus plain loss",
         median_call(lambda: encoder_losses(pred, z, cfg.loss)["total"], repeats)
         - median_call(lambda: F.l1_loss(pred, z) + F.mse_loss(pred, z), repeats)),
    ]
    diff = step_tr - step_pl
    print(f"  trainer-only pieces (median ms, timed alone; the steps differ by "
          f"{diff * 1e3:+.2f} ms = {100 * diff / step_pl:+.1f} %):")
    for name, t in extras:
        print(f"    {name:<48} {t * 1e3:+9.2f} ms")
    print("    (render() and the latent lookup are in both loops; the first two lines are "
          "for information)")
    size = cfg.data.size
    full = OpticalEncoder(cfg.masks.n_masks, (size, size), SimConfig().with_noise("full"),
                          seed=cfg.seed)
    with torch.no_grad():
        full_rows = median_call(lambda: full(
            images, generator=row_generators(cfg.seed, NOISE_STREAM, step, rows)), repeats)
        full_one = median_call(lambda: full(images, generator=one_rng), repeats)
    print(f"    {'(noise=full: row generators minus 1 rng)':<48} "
          f"{(full_rows - full_one) * 1e3:+9.2f} ms  (4 draws + 1 FFT per row)")

    # ablation: add one piece of the trainer's machinery at a time, interleaved
    variants = [
        ("plain", plain),
        ("plain + per-row generators", PlainLoop(trainer, row_generators=True)),
        ("plain + 8-bit quantization", PlainLoop(trainer, quantize=True)),
        ("plain + both", PlainLoop(trainer, row_generators=True, quantize=True)),
    ]
    loops: list[Callable[[], Any]] = [v.step for _, v in variants] + [trainer.train_step]
    times = compare(loops, blocks, steps)
    base = times[0]
    print(f"  ablation (interleaved, median of {blocks} blocks of {steps} steps; vs plain):")
    for name, t in zip([n for n, _ in variants] + ["Trainer.train_step"], times, strict=True):
        print(f"    {name:<32} {t * 1e3:9.2f} ms/step  {100 * (t / base - 1):+6.1f} %")
    if step_tr / step_pl > SLOWER:
        own = extras[2:]
        worst = max(own, key=lambda e: e[1])
        print(f"  -> trainer slower by > {100 * (SLOWER - 1):.0f} %; largest trainer-only "
              f"piece: {worst[0]} ({worst[1] * 1e3:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter blocks")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    blocks = 2 if args.quick else 7
    repeats = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    print("Trainer.train_step vs a plain PyTorch loop doing the same work (render, masks + "
          "bench physics with shot noise, decoder, latent L1+L2, Adam/AdamW); median of "
          f"{blocks} interleaved blocks; ratio = Trainer time / plain time per step; "
          "timings on a shared machine are noisy\n")
    results = []
    for size, m, batch in CASES:
        cfg = TrainConfig(data=DataConfig(size=size), masks=MaskConfig(n_masks=m),
                          schedule=ScheduleConfig(batch=batch), bench=BenchConfig(noise="shot"),
                          progress=False)
        trainer = Trainer(cfg)
        plain = PlainLoop(trainer)
        steps = (2 if args.quick else 4) if size >= 64 else (5 if args.quick else 20)
        step_tr, step_pl = compare([trainer.train_step, plain.step], blocks, steps)
        results.append((cfg, step_tr, step_pl, trainer, plain, steps))
    print(f"{'case':<24} {'loop':<8} {'ms/step':>9} {'steps/s':>8} {'scenes/s':>9}")
    for cfg, step_tr, step_pl, *_ in results:
        batch = cfg.schedule.batch
        case = f"{cfg.data.size} px, m={cfg.masks.n_masks}, B={batch}"
        for name, t in (("Trainer", step_tr), ("plain", step_pl)):
            print(f"{case:<24} {name:<8} {t * 1e3:9.2f} {1 / t:8.2f} {batch / t:9.1f}")
        ratio = step_tr / step_pl
        verdict = "SLOWER" if ratio > SLOWER else "same within 10 %"
        print(f"{case:<24} ratio (Trainer / plain time per step) = {ratio:.3f}  {verdict}")
    for cfg, step_tr, step_pl, trainer, plain, steps in results:
        print(f"\nbreakdown, {cfg.data.size} px / {cfg.masks.n_masks} masks / batch "
              f"{cfg.schedule.batch}:")
        breakdown(trainer, plain, repeats, step_tr, step_pl, blocks, steps)
    bank_speed(results[0][0], results[0][1], blocks, quick=args.quick)


def bank_speed(cfg: TrainConfig, step_e2e: float, blocks: int, quick: bool) -> None:
    """Decoder-only steps on a measurement bank (``bank.steps``) vs end-to-end steps:
    scenes per second of each (the bank is built once; its build time is printed)."""
    bank_cfg = cfg.with_overrides({"schedule.steps": 0, "bank.steps": 10**6,
                                   "bank.size": 1024 if quick else 4096, "bank.batch": 256})
    trainer = Trainer(bank_cfg)
    start = time.perf_counter()
    bank = trainer.measurement_bank()
    build = time.perf_counter() - start
    step_bank = statistics.median(block_time(trainer.train_step, 2 if quick else 10)
                                  for _ in range(blocks))
    batch = cfg.schedule.batch
    e2e_rate, bank_rate = batch / step_e2e, bank_cfg.bank.batch / step_bank
    print(f"\nmeasurement bank ({cfg.data.size} px, m={cfg.masks.n_masks}): built {len(bank)} "
          "scenes in "
          f"{build:.1f} s ({len(bank) / build:.0f} scenes/s, {bank.nbytes / 2**20:.1f} MiB)")
    print(f"  end-to-end step  B={batch:<4} {step_e2e * 1e3:9.2f} ms  {e2e_rate:9.1f} scenes/s")
    print(f"  bank step        B={bank_cfg.bank.batch:<4} {step_bank * 1e3:9.2f} ms  "
          f"{bank_rate:9.1f} scenes/s")
    print(f"  -> a bank step passes {bank_rate / e2e_rate:.1f}x more scenes per second through "
          "the decoder (masks frozen; the bank build is paid once)")


if __name__ == "__main__":
    main()
