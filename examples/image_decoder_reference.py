"""Reference without compression: a small CNN decodes the latent from the FULL grey image.

A single-pixel camera's readings are a (noisy) function of the scene, so no decoder of
them can do better than the best decoder of the scene itself. This script trains such a
decoder on the same kind of data (SynthFace scenes in grey -- one photodiode sees no
colour -- at full resolution, no noise) and scores it with the same
:func:`lsi_ml.evaluation.evaluate_decoder` and probes as an LSI model, so the two rows
can be read side by side: what the camera's compression costs at a given training budget.
Grey here is the mean of the RGB channels (no monitor gamma, no optics).

    python examples/image_decoder_reference.py --probes RUN/probes.pt
    python examples/image_decoder_reference.py --scenes 100000 --steps 5000 \\
        --probes sims/results/cache/probes/latent-SynthFace-64px-976d02703e.pt

Prints the ridge-regression R^2 of the latent from the raw pixels, then the CNN's
``lsi-ml eval``-style summary (latent R^2, verification, attributes, seg F1, NME).
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch
from torch import Tensor, nn

from lsi_hw.cli_util import one_line_errors
from lsi_ml.data.synthetic import SyntheticFaces
from lsi_ml.evaluation import evaluate_decoder
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.metrics import latent_r2
from lsi_ml.probe_training import ProbeSet


def grey_set(faces: SyntheticFaces, n: int, chunk: int = 512) -> tuple[Tensor, Tensor]:
    """Grey images (n, H, W) float16 in [0, 1] and flat latents (n, L*D) of n faces."""
    images, latents = [], []
    for lo in range(0, n, chunk):
        batch = faces.batch(range(lo, min(n, lo + chunk)))
        images.append(batch["image"].mean(1).half())
        latents.append(batch["latent"].reshape(len(batch["latent"]), -1))
    return torch.cat(images), torch.cat(latents)


def ridge_r2(x: Tensor, z: Tensor, xv: Tensor, zv: Tensor, lam: float) -> np.ndarray:
    """Per-dimension R^2 on (xv, zv) of ridge regression z ~ x (pixels standardised)."""
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


def cnn(out_dim: int, size: int) -> nn.Sequential:
    """Four stride-2 convolutions (32-64-128-128 channels), then a 512-wide MLP head."""
    act = nn.GELU
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, 2, 2), act(), nn.Conv2d(32, 64, 3, 2, 1), act(),
        nn.Conv2d(64, 128, 3, 2, 1), act(), nn.Conv2d(128, 128, 3, 2, 1), act(),
        nn.Flatten(), nn.Linear(128 * (size // 16) ** 2, 512), act(), nn.Linear(512, out_dim))


@click.command()
@click.option("--size", type=int, default=64, show_default=True, help="Scene side, px.")
@click.option("--scenes", type=int, default=100000, show_default=True,
              help="Training scenes (rendered once, kept as float16).")
@click.option("--steps", type=int, default=5000, show_default=True, help="CNN steps.")
@click.option("--batch", type=int, default=128, show_default=True)
@click.option("--probes", "probes_path", type=click.Path(exists=True, dir_okay=False),
              required=True, help="ProbeSet file of SynthFace at --size (e.g. RUN/probes.pt).")
@click.option("--n-test", type=int, default=512, show_default=True,
              help="Test faces and verification pairs (as lsi-ml eval).")
@click.option("--seed", type=int, default=0, show_default=True)
@one_line_errors
def main(size: int, scenes: int, steps: int, batch: int, probes_path: str, n_test: int,
         seed: int) -> None:
    """Train the full-image CNN decoder and score it like an LSI model."""
    if size % 16 or scenes < 2 * batch or steps < 1 or n_test < 4:
        raise click.UsageError("need --size a multiple of 16, --scenes >= 2 x --batch, "
                               "--steps >= 1, --n-test >= 4")
    generator = SynthFace(size, seed=seed)
    probes = ProbeSet.load(probes_path, generator)
    t0 = time.perf_counter()
    x, z = grey_set(SyntheticFaces(generator, scenes, seed=seed, split="train"), scenes)
    xv, zv = grey_set(SyntheticFaces(generator, 4096, seed=seed, split="val"), 4096)
    click.echo(f"rendered {scenes} + 4096 scenes in {time.perf_counter() - t0:.0f} s")
    identity = generator.identity_index.numpy()
    for lam in (1e1, 1e3):
        r2 = ridge_r2(x, z, xv, zv, lam)
        click.echo(f"ridge on the {size * size} pixels (lambda {lam:g}): latent R^2 "
                   f"{r2.mean():.3f}, identity dims {r2[identity].mean():.3f}")
    mu, sd = x.float().mean(0), x.float().std(0) + 1e-6
    torch.manual_seed(seed)
    net = cnn(z.shape[1], size)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps)
    order = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(steps):  # latent L1, as the LSI decoder's default loss
        idx = torch.randint(0, scenes, (batch,), generator=order)
        loss = (net(((x[idx].float() - mu) / sd)[:, None]) - z[idx]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 1000 == 0:
            click.echo(f"step {step + 1}: train L1 {loss.item():.4f} "
                       f"({time.perf_counter() - t0:.0f} s)")
    net.eval()
    levels, dim = generator.latent_shape

    def decode(faces: dict[str, Tensor]) -> Tensor:
        with torch.no_grad():
            grey = faces["image"].mean(1).half().float()
            return net(((grey - mu) / sd)[:, None]).reshape(-1, levels, dim)

    result = evaluate_decoder(decode, generator, probes, n_test=n_test, n_pairs=n_test,
                              seed=seed)
    click.echo(f"full-image CNN ({size}x{size} grey, no noise, {steps} steps of batch {batch} "
               f"on {scenes} scenes, {time.perf_counter() - t0:.0f} s):")
    click.echo(result.summary())


if __name__ == "__main__":
    main()
