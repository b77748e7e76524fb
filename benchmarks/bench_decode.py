"""Decoder + probes throughput on the CPU: measurement vectors per second (target >= 1000/s).

One measurement vector = the m = 256 detector readings of one scene.  Batches of 64
vectors (readings of SynthFace val faces through the simulated bench, noise preset
``shot``) go through, under ``torch.inference_mode``:

* (a) decoder only: :class:`~lsi_ml.encoder.LatentEncoder` (readings -> latent), the
  trainer's default size (hidden 512, depth 2, blocks 256) for SynthFace at 64 and 128 px;
* (b) decoder + attribute probe (one linear layer on the latent);
* (c) decoder + all probes: :meth:`~lsi_ml.probe_training.ProbeSet.predict`, i.e.
  attributes, segmentation and landmarks; the last two read ``generator.features(latent)``
  = a SynthFace render of the latent + the fixed random conv encoder.

The probes are UNTRAINED (``ProbeSet(generator, ProbeConfig())``, default architecture):
weights do not change the cost, so the timings hold for trained probes.  Each variant runs
with torch threads = 1 and = 2; repeats of all variants and both thread counts are
interleaved (other jobs on the shared machine then slow all of them alike).  If (c) misses
the target, a breakdown (render vs conv features vs probe heads) follows, with what-if
timings of cheaper settings (not the library's defaults) that the breakdown points to.

    python benchmarks/bench_decode.py            # full run (~3-6 minutes on 2 cores)
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

from lsi_ml.probe_training import ProbeConfig, ProbeSet
from lsi_ml.train import TrainConfig, Trainer

TARGET = 1000.0  # measurement vectors per second
BATCH = 64
N_MASKS = 256
THREADS = (1, 2)
#: calls per timed run: the fast variants are timed over several calls (timer resolution)
CALLS = {"a": 50, "b": 50, "c": 1}
VARIANTS = {
    "a": "decoder only",
    "b": "decoder + attribute probe",
    "c": "decoder + all probes",
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
        cfg = TrainConfig(size=size, n_masks=N_MASKS, batch=BATCH, n_val=BATCH,
                          eval_batch=BATCH, progress=False)
        self.size = size
        self.trainer = Trainer(cfg)  # encoder defaults; normaliser fitted on a train batch
        self.generator = self.trainer.generator
        self.decoder = self.trainer.decoder.eval()
        self.probes = ProbeSet(self.generator, ProbeConfig(progress=False)).eval()
        with torch.no_grad():
            images = self.trainer.val_data.batch(range(BATCH))["image"]
            gen = torch.Generator().manual_seed(1)
            self.readings = self.trainer.measure(images, generator=gen).contiguous()

    def variant(self, key: str) -> Callable[[], Any]:
        dec, probes, y = self.decoder, self.probes, self.readings
        if key == "a":
            return lambda: dec(y)
        if key == "b":
            return lambda: probes.attributes(dec(y)) > 0
        return lambda: probes.predict(dec(y))


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


def conv_features(generator: Any, images: torch.Tensor) -> list[torch.Tensor]:
    """The fixed conv encoder of ``SynthFace.features`` applied to rendered images."""
    return generator.features_from_image(images)


def breakdown(case: Case, threads: int, repeats: int, total_c: float) -> None:
    """Where the time of (c) goes, and what cheaper settings would cost."""
    from lsi_ml.generators.synthface import SynthFace

    torch.set_num_threads(threads)
    g, probes, size = case.generator, case.probes, case.size
    with torch.inference_mode():
        z = case.decoder(case.readings)
        images = g.synthesize(z)
        feats = conv_features(g, images)
        parts = [
            ("decoder (readings -> latent)", lambda: case.decoder(case.readings)),
            ("render: generator.synthesize(latent)", lambda: g.synthesize(z)),
            ("conv features (fixed encoder, 4 convs)", lambda: conv_features(g, images)),
            ("attribute head", lambda: probes.attributes(z) > 0),
            ("segmentation head (FPN, argmax)",
             lambda: probes.segmentation(feats, (size, size)).argmax(1)),
            ("landmark head (heatmaps, soft-argmax)",
             lambda: probes.to_pixels(probes._landmark_norm(feats))),
        ]
        times = [(name, median_time(fn, repeats)) for name, fn in parts]
        total = sum(t for _, t in times)
        print(f"\n(c) breakdown, {size} px, {threads} thread(s), batch {BATCH}; median ms per "
              f"batch (each piece timed alone); load average {os.getloadavg()[0]:.1f}")
        for name, t in times:
            print(f"  {name:<42} {t * 1e3:9.1f} ms  {100 * t / total:5.1f} %  "
                  f"alone: {BATCH / t:9.0f} vectors/s")
        print(f"  {'sum of pieces':<42} {total * 1e3:9.1f} ms  (measured (c): "
              f"{total_c * 1e3:.1f} ms)")
        fmap = ", ".join(f"{c}x{h}x{w}" for c, h, w in probes.feature_shapes)
        print(f"  feature maps (C x H x W): {fmap}; landmark head reads maps "
              f"{probes.config.landmark_maps} at the finest one's resolution, width "
              f"{probes.config.landmark_width}, {probes.config.landmark_depth} 3x3 convs; "
              f"segmentation FPN width {probes.config.seg_width}")

        # what-if timings (informational: settings other than the defaults; the probes
        # would need retraining for them)
        half = SynthFace(size, seed=g.seed, internal_size=size // 2)
        lm_coarse = ProbeSet(g, ProbeConfig(progress=False, landmark_maps=(1, 2))).eval()
        seg_narrow = ProbeSet(g, ProbeConfig(progress=False, seg_width=32)).eval()
        cl = ProbeSet(g, ProbeConfig(progress=False)).eval()  # same seed: same weights
        cl.to(memory_format=torch.channels_last)
        feats_cl = [f.contiguous(memory_format=torch.channels_last) for f in feats]
        small = SynthFace(size // 2, seed=g.seed)
        small_probes = ProbeSet(small, ProbeConfig(progress=False)).eval()

        def all_small() -> None:
            zz = case.decoder(case.readings)
            ff = conv_features(small, small.synthesize(zz))
            small_probes.attributes(zz)
            small_probes.segmentation(ff, (size, size)).argmax(1)
            small_probes._landmark_norm(ff)
        whatif = [
            ("seg head channels_last + max(1).indices",
             lambda: cl.segmentation(feats_cl, (size, size)).max(1).indices),
            ("landmark head channels_last",
             lambda: cl.to_pixels(cl._landmark_norm(feats_cl))),
            (f"render at internal_size={size // 2}", lambda: half.synthesize(z)),
            ("landmark head on maps (1, 2) (1/4 res)",
             lambda: lm_coarse.to_pixels(lm_coarse._landmark_norm(feats))),
            ("segmentation FPN width 32",
             lambda: seg_narrow.segmentation(feats, (size, size)).argmax(1)),
            (f"all of (c) with features of a {size // 2} px render",
             all_small),
        ]
        print("  what-if (not the defaults; the channels_last lines keep the weights and the "
              "outputs (to ~1e-7), the others need retrained probes):")
        for name, fn in whatif:
            t = median_time(fn, repeats)
            print(f"  {name:<42} {t * 1e3:9.1f} ms  -> {BATCH / t:7.0f} vectors/s alone")


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
    print(f"{'size':>4} {'variant':<28} {'threads':>7} {'ms/batch':>10} {'vectors/s':>11} "
          f"{'target':>7}  result  runs")
    for case in cases:
        for key, name in VARIANTS.items():
            for threads in THREADS:
                t = med[(case.size, key, threads)]
                vps = BATCH / t
                verdict = "PASS" if vps >= TARGET else "MISS"
                print(f"{case.size:4d} ({key}) {name:<24} {threads:7d} {t * 1e3:10.2f} "
                      f"{vps:11.0f} {TARGET:7.0f}  {verdict:6}  {runs[(case.size, key, threads)]}")
    for case in cases:
        best = min(THREADS, key=lambda th: med[(case.size, "c", th)])
        if BATCH / med[(case.size, "c", best)] < TARGET:
            breakdown(case, 1, repeats if args.quick else 3, med[(case.size, "c", 1)])


if __name__ == "__main__":
    main()
