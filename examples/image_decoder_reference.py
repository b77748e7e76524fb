"""The full-image reference (ceiling row): decode the latent from the FULL noiseless grey image.

A single-pixel camera's readings are a (noisy) function of the scene, so no decoder of
them can do better than the best decoder of the scene itself. This script builds that
decoder with :mod:`lsi_ml.baselines.reference` -- a small ResNet from the grey image to the latent,
then analysis by synthesis (Adam on the latent so that the grey render matches the grey
scene) -- and scores it with the same :func:`lsi_ml.evaluation.latent.evaluate_decoder` as an LSI
model, twice: CNN only and CNN + refinement. Grey is the mean of the RGB channels (one
photodiode sees no colour; no monitor gamma, no optics, no noise).

    python examples/image_decoder_reference.py --probes RUN/probes.pt --out ref.pt
    python examples/image_decoder_reference.py --load ref.pt --probes RUN/probes.pt
    python examples/image_decoder_reference.py --steps 300 --scenes 4000 --n-test 64 \\
        --n-pairs 32 --refine-steps 30        # a quick look (probes trained cheaply)

Prints the ridge-regression R^2 of the latent from the raw pixels (how visible the
identity is to a linear read-out), then an ``lsi-ml eval``-style summary of each row
(exact readout first: attributes, seg F1, NME of ``render(decoded)``; then latent and
identity R^2, verification, probe scores), all with bootstrap 95 % intervals.
Without ``--probes``, probes are trained here with ``--probe-steps`` (the CPU preset's
other settings); their scores are then those of reduced probes, the exact readout is not
affected (it uses no probe).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import torch
from torch import Tensor

from lsi_hw.cli_util import check_new_file, one_line_errors
from lsi_ml.baselines.reference import (
    FullImageReference,
    RefineConfig,
    TrainStats,
    render_grey_set,
    train_image_decoder,
)
from lsi_ml.evaluation.latent import evaluate_decoder
from lsi_ml.evaluation.metrics import latent_r2
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet


def ridge_r2(x: Tensor, z: Tensor, xv: Tensor, zv: Tensor, lam: float) -> np.ndarray:
    """Per-dimension R^2 on (xv, zv) of ridge regression z ~ x (pixels standardised)."""
    z, zv = z.reshape(len(z), -1), zv.reshape(len(zv), -1)
    flat, flat_v = x.reshape(len(x), -1), xv.reshape(len(xv), -1)
    mu = flat.float().mean(0)
    sd = flat.float().std(0) + 1e-6
    d = flat.shape[1] + 1
    gram = torch.zeros(d, d, dtype=torch.float64)
    cross = torch.zeros(d, z.shape[1], dtype=torch.float64)
    for lo in range(0, len(flat), 4096):
        a = (flat[lo:lo + 4096].float() - mu) / sd
        a = torch.cat([a, torch.ones(len(a), 1)], 1).double()
        gram += a.T @ a
        cross += a.T @ z[lo:lo + 4096].double()
    w = torch.linalg.solve(gram + lam * torch.eye(d, dtype=torch.float64), cross)
    av = torch.cat([(flat_v.float() - mu) / sd, torch.ones(len(flat_v), 1)], 1).double()
    return latent_r2((av @ w).float(), zv)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--size", type=int, default=64, show_default=True, help="Scene side, px.")
@click.option("--scenes", type=int, default=60000, show_default=True,
              help="Training scenes (rendered once, kept as float16 grey).")
@click.option("--steps", type=int, default=3000, show_default=True, help="CNN steps.")
@click.option("--batch", type=int, default=128, show_default=True, help="CNN batch.")
@click.option("--width", type=int, default=24, show_default=True,
              help="CNN width (stages of 2x, 4x, 6x this many channels).")
@click.option("--refine-steps", type=int, default=100, show_default=True,
              help="Adam steps of the grey refinement per decoded batch (0: CNN only; "
                   "~10-20 ms a face a step at 64 px on one core).")
@click.option("--refine-lr", type=float, default=0.05, show_default=True,
              help="Refinement learning rate, latent units per step.")
@click.option("--prior-weight", type=float, default=1e-4, show_default=True,
              help="Weight of the standard-normal prior mean(z^2) in the refinement.")
@click.option("--probes", "probes_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="ProbeSet file of SynthFace at --size (e.g. RUN/probes.pt); "
                                 "default: train probes here (--probe-steps).")
@click.option("--probe-steps", type=int, default=500, show_default=True,
              help="Steps of the probes trained here when --probes is not given.")
@click.option("--n-test", type=int, default=512, show_default=True, help="Test faces.")
@click.option("--n-pairs", type=int, default=128, show_default=True,
              help="Verification pairs per split (each is decoded: 4 x this many faces).")
@click.option("--load", "load_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Use a saved reference instead of training one.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the trained reference here (atomic).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--seed", type=int, default=0, show_default=True)
@one_line_errors
def main(size: int, scenes: int, steps: int, batch: int, width: int, refine_steps: int,
         refine_lr: float, prior_weight: float, probes_path: str | None, probe_steps: int,
         n_test: int, n_pairs: int, load_path: str | None, out: Path | None, force: bool,
         seed: int) -> None:
    """Train (or load) the full-image reference and score it like an LSI model."""
    if size % 16 or scenes < 2 * batch or steps < 1 or n_test < 4 or n_pairs < 4:
        raise click.UsageError("need --size a multiple of 16, --scenes >= 2 x --batch, "
                               "--steps >= 1, --n-test >= 4 and --n-pairs >= 4")
    if out is not None:
        check_new_file(out, force, "--out")
    torch.set_num_threads(1)
    generator = SynthFace(size, seed=seed)
    refine = RefineConfig(steps=refine_steps, lr=refine_lr, prior_weight=prior_weight)
    refine.check()
    if load_path is not None:
        reference = FullImageReference.load(load_path, generator, refine)
        click.echo(f"loaded {load_path}")
    else:
        t0 = time.perf_counter()
        data = render_grey_set(generator, scenes, seed=seed, progress=True)
        xv, zv = render_grey_set(generator, 4096, seed=seed, split="val")
        click.echo(f"rendered {scenes} + 4096 scenes in {time.perf_counter() - t0:.0f} s")
        identity = generator.identity_index.numpy()
        for lam in (1e1, 1e3):
            r2 = ridge_r2(data[0], data[1], xv, zv, lam)
            click.echo(f"ridge on the {size * size} pixels (lambda {lam:g}): latent R^2 "
                       f"{r2.mean():.3f}, identity dims {r2[identity].mean():.3f}")
        stats = TrainStats()
        net = train_image_decoder(generator, steps=steps, batch=batch, seed=seed, width=width,
                                  progress=True, stats=stats, data=data)
        reference = FullImageReference(generator, net, refine)
        click.echo(f"CNN: {steps} steps of batch {batch} on {scenes} scenes in "
                   f"{stats.seconds_train:.0f} s; loss {stats.loss_first:.3f} -> "
                   f"{stats.loss_last:.3f}; val latent L1 {stats.val_l1:.3f}")
        if out is not None:
            reference.save(out)
            click.echo(f"saved {out}")
    if probes_path is not None:
        probes = ProbeSet.load(probes_path, generator)
    else:
        click.echo(f"training probes ({probe_steps} steps, CPU preset otherwise): their "
                   "scores are reduced-probe scores; the exact readout uses no probe")
        probes = ProbeSet.fit(generator, ProbeConfig.cpu(steps=probe_steps, seed=seed,
                                                         progress=True))
    rows = [("CNN only", False)] + ([("CNN + refinement", True)] if refine_steps else [])
    for name, with_refine in rows:
        t0 = time.perf_counter()
        result = evaluate_decoder(reference.decoder(refine=with_refine), generator, probes,
                                  n_test=n_test, n_pairs=n_pairs, seed=seed, exact=True,
                                  progress=True)
        extra = (f", {refine_steps} refinement steps per batch" if with_refine else "")
        click.echo(f"\nfull-image reference, {name} ({size}x{size} grey, no noise{extra}; "
                   f"evaluated in {time.perf_counter() - t0:.0f} s):")
        click.echo(result.summary())


if __name__ == "__main__":
    main()
