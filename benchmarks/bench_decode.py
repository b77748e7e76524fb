"""Decoder + probes throughput on the CPU: measurement vectors per second (target >= 1000/s).

One measurement vector = the m = 256 detector readings of one scene.  Batches of 64
vectors (readings of SynthFace val faces through the simulated bench, noise preset
``shot``) go through, under ``torch.inference_mode``:

* (a) decoder only: :class:`~lsi_ml.latent.encoder.LatentEncoder` (readings -> latent), the
  trainer's default size (hidden 512, depth 2, blocks 256) for SynthFace at 64 and 128 px;
* (b) decoder + attribute probe (one linear layer on the latent);
* (c) decoder + all probes: :meth:`~lsi_ml.latent.probe_training.ProbeSet.predict`, i.e.
  attributes, segmentation and landmarks; the last two read ``generator.features(latent)``
  = a SynthFace render of the latent + the fixed random conv encoder.  Timed for two probe
  presets: ``ProbeConfig.cpu()`` (what ``lsi-ml`` trains by default) and
  ``ProbeConfig.fast()`` (3x cheaper dense heads, lower segmentation F1; see the
  ProbeConfig notes for both presets' ceilings).

The probes are UNTRAINED (same architecture as trained ones; weights do not change the
cost).  Each variant runs with torch threads = 1 and = 2; repeats of all variants and both
thread counts are interleaved (other jobs on the shared machine then slow all of them
alike).  The headline lines give (c) against the target for each preset and thread count
(PASS/MISS); a breakdown (decoder, render, conv features, heads) of (c) follows.

    python benchmarks/bench_decode.py            # full run (~5-10 minutes on 2 cores)
    python benchmarks/bench_decode.py --quick    # 64 px only, one repeat (smoke test)

Every number is a median of several timed runs after a warm-up, measured in this run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet
from lsi_ml.training.config import DataConfig, MaskConfig, ScheduleConfig, TrainConfig
from lsi_ml.training.trainer import Trainer

TARGET = 1000.0  # measurement vectors per second
BATCH = 64
N_MASKS = 256
THREADS = (1, 2)
#: probe presets timed in (c): name -> ProbeConfig factory
PRESETS: dict[str, Callable[..., ProbeConfig]] = {"cpu": ProbeConfig.cpu,
                                                   "fast": ProbeConfig.fast}
#: calls per timed run: the fast variants are timed over several calls (timer resolution)
CALLS = {"a": 50, "b": 50, "c-cpu": 1, "c-fast": 1}
VARIANTS = {
    "a": "decoder only",
    "b": "decoder + attribute probe",
    "c-cpu": "decoder + all probes, cpu",
    "c-fast": "decoder + all probes, fast",
}


def settle() -> None:
    """Let the previous thread pool go idle before a timed run (see benchmarks/README)."""
    time.sleep(0.1)


def run_time(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def median_time(fn: Callable[[], Any], repeats: int, calls: int = 1) -> float:
    """Median seconds per call over ``repeats`` runs after one warm-up call."""
    settle()
    fn()
    return statistics.median(run_time(fn, calls) for _ in range(repeats))


class Case:
    """Decoder, probes and a batch of readings for one SynthFace size."""

    def __init__(self, size: int) -> None:
        cfg = TrainConfig(data=DataConfig(size=size, n_val=BATCH),
                          masks=MaskConfig(n_masks=N_MASKS),
                          schedule=ScheduleConfig(batch=BATCH, eval_batch=BATCH), progress=False)
        self.size = size
        self.trainer = Trainer(cfg)  # encoder defaults; normaliser fitted on a train batch
        self.generator = self.trainer.generator
        self.decoder = self.trainer.decoder.eval()
        self.probes = {name: ProbeSet(self.generator, make(progress=False)).eval()
                       for name, make in PRESETS.items()}
        with torch.no_grad():
            images = self.trainer.val_data.batch(range(BATCH))["image"]
            gen = torch.Generator().manual_seed(1)
            self.readings = self.trainer.measure(images, generator=gen).contiguous()

    def variant(self, key: str) -> Callable[[], Any]:
        dec, y = self.decoder, self.readings
        if key == "a":
            return lambda: dec(y)
        if key == "b":
            attributes = self.probes["fast"].attributes  # the same linear layer in both
            return lambda: attributes(dec(y)) > 0
        probes = self.probes[key.removeprefix("c-")]
        return lambda: probes.predict(dec(y), batch=BATCH)


def throughput_table(cases: list[Case], repeats: int, budget_s: float
                     ) -> tuple[dict[tuple, float], dict[tuple, int]]:
    """Median seconds per batch and number of runs for every (size, variant, threads)."""
    samples: dict[tuple, list[float]] = {}
    spent: dict[tuple, float] = {}
    fns = {(c.size, k): c.variant(k) for c in cases for k in VARIANTS}
    with torch.inference_mode():
        for threads in THREADS:  # warm-up (allocator, oneDNN primitives) per thread count
            torch.set_num_threads(threads)
            for fn in fns.values():
                fn()
        for rep in range(repeats):
            order = THREADS if rep % 2 == 0 else tuple(reversed(THREADS))
            for threads in order:
                torch.set_num_threads(threads)
                settle()
                for (size, key), fn in fns.items():
                    cell = (size, key, threads)
                    if rep and spent.get(cell, 0.0) > budget_s:
                        continue  # a slow cell (e.g. 2 threads on a loaded machine)
                    t = run_time(fn, CALLS[key])
                    samples.setdefault(cell, []).append(t)
                    spent[cell] = spent.get(cell, 0.0) + t * CALLS[key]
    return ({cell: statistics.median(ts) for cell, ts in samples.items()},
            {cell: len(ts) for cell, ts in samples.items()})


def describe(config: ProbeConfig) -> str:
    """One line: the architecture settings of a probe preset."""
    return (f"seg FPN width {config.seg_width}, depth {config.seg_depth}, trunk level "
            f"{config.seg_trunk_level}, fine width {config.seg_fine_width}, upscale "
            f"{config.seg_upscale}; landmarks {config.landmark_head} on maps "
            f"{config.landmark_maps}, width {config.landmark_width}, depth "
            f"{config.landmark_depth}, trunk level {config.landmark_trunk_level}")


def breakdown(case: Case, threads: int, repeats: int, measured: dict[str, float]) -> None:
    """Where the time of (c) goes, per preset (each piece timed alone)."""
    torch.set_num_threads(threads)
    g, size = case.generator, case.size
    with torch.inference_mode():
        z = case.decoder(case.readings)
        images = g.synthesize(z)
        feats = [f.contiguous(memory_format=torch.channels_last)
                 for f in g.features_from_image(images)]
        shared = [
            ("decoder (readings -> latent)", lambda: case.decoder(case.readings)),
            ("render: generator.synthesize(latent)", lambda: g.synthesize(z)),
            ("conv features (fixed encoder, 4 convs)", lambda: g.features_from_image(images)),
            ("attribute head", lambda: case.probes["fast"].attributes(z) > 0),
        ]
        base = [(name, median_time(fn, repeats)) for name, fn in shared]
        print(f"\n(c) breakdown, {size} px, {threads} thread(s), batch {BATCH}; median ms per "
              f"batch (each piece timed alone); load average {os.getloadavg()[0]:.1f}")
        for name, t in base:
            print(f"  {name:<42} {t * 1e3:9.1f} ms  alone: {BATCH / t:9.0f} vectors/s")
        for preset, probes in case.probes.items():
            heads = [
                ("segmentation head (class ids)",
                 lambda p=probes: p.segmentation.predict_classes(feats, (size, size))),
                ("landmark head (heatmaps, soft-argmax)",
                 lambda p=probes: p.to_pixels(p._landmark_norm(feats))),
            ]
            times = [(name, median_time(fn, repeats)) for name, fn in heads]
            total = sum(t for _, t in base) + sum(t for _, t in times)
            print(f"  preset {preset}: {describe(probes.config)}")
            for name, t in times:
                print(f"    {name:<40} {t * 1e3:9.1f} ms")
            print(f"    {'sum of pieces':<40} {total * 1e3:9.1f} ms -> {BATCH / total:6.0f} "
                  f"vectors/s (measured (c): {measured[preset] * 1e3:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 px only, one repeat")
    args = parser.parse_args()
    sizes = (64,) if args.quick else (64, 128)
    repeats = 1 if args.quick else 5
    budget_s = 2.0 if args.quick else 20.0
    print(f"torch {torch.__version__}, default threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); timed with "
          f"threads = {', '.join(map(str, THREADS))}; inference_mode")
    print(f"decoder + probes, batch {BATCH} measurement vectors of m = {N_MASKS} readings; "
          f"target >= {TARGET:.0f} vectors/s; median of <= {repeats} interleaved runs "
          f"(a slow cell stops repeating after {budget_s:.0f} s); probes untrained "
          "(same cost as trained); timings on a shared machine are noisy\n")
    cases = [Case(size) for size in sizes]
    med, runs = throughput_table(cases, repeats, budget_s)
    print(f"{'size':>4} {'variant':<33} {'threads':>7} {'ms/batch':>10} {'vectors/s':>11} "
          f"{'target':>7}  result  runs")
    for case in cases:
        for key, name in VARIANTS.items():
            for threads in THREADS:
                t = med[(case.size, key, threads)]
                vps = BATCH / t
                verdict = "PASS" if vps >= TARGET else "MISS"
                print(f"{case.size:4d} ({key:<6}) {name:<24} {threads:7d} {t * 1e3:10.2f} "
                      f"{vps:11.0f} {TARGET:7.0f}  {verdict:6}  {runs[(case.size, key, threads)]}")
    print(f"\nheadline: decoder + ALL probes (ProbeSet.predict), batch {BATCH}, target "
          f">= {TARGET:.0f} vectors/s")
    for case in cases:
        for preset, probes in case.probes.items():
            for threads in THREADS:
                vps = BATCH / med[(case.size, f"c-{preset}", threads)]
                verdict = "PASS" if vps >= TARGET else "MISS"
                print(f"  {case.size:3d} px  probes ProbeConfig.{preset}()  torch threads "
                      f"{threads}: {vps:6.0f} vectors/s  {verdict}")
            print(f"          {preset}: {describe(probes.config)}")
        best = max(((p, th) for p in PRESETS for th in THREADS),
                   key=lambda pt: BATCH / med[(case.size, f"c-{pt[0]}", pt[1])])
        vps = BATCH / med[(case.size, f"c-{best[0]}", best[1])]
        print(f"  {case.size:3d} px  best: ProbeConfig.{best[0]}(), torch threads {best[1]}: "
              f"{vps:.0f} vectors/s -> {'PASS' if vps >= TARGET else 'MISS'} "
              f"(target {TARGET:.0f})")
    for case in cases:
        breakdown(case, 1, repeats if args.quick else 3,
                  {p: med[(case.size, f"c-{p}", 1)] for p in PRESETS})


if __name__ == "__main__":
    main()
