"""Is identity visible to the camera? Ridge regression from the full 64 px grey image.

A linear read-out is the weakest decoder there is: if ridge regression from the full,
noiseless grey image (what one photodiode integrates, before any compression) recovers a
good share of SynthFace's identity vector under the default prior, identity is in the
light, and a camera-side decoder has something to find. Prints the mean identity R^2 over
the identity dimensions (held-out faces; the ridge strength is chosen on a validation split)
against the target 0.4, the per-dimension R^2, and the same with every nuisance fixed at
the prior's centre (how much the nuisances hide).

    python benchmarks/bench_identity_visibility.py           # 16000 training faces, ~2-4 min
    python benchmarks/bench_identity_visibility.py --quick   # 3000 faces, under a minute
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from lsi_ml.generators.synthface import IDENTITY_INDEX, NUISANCE_INDEX, PARAM_NAMES, SynthFace

TARGET = 0.4
LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0)


def grey_images(model: SynthFace, latent: torch.Tensor, chunk: int = 512) -> np.ndarray:
    """Grey images ``(n, H*W)`` float64 in [0, 1] (channel mean) of ``latent``."""
    with torch.no_grad():
        parts = [model.synthesize(z).mean(1).flatten(1) for z in latent.split(chunk)]
    return torch.cat(parts).double().numpy()


def ridge_identity_r2(x: np.ndarray, y: np.ndarray, n_train: int, n_val: int
                      ) -> tuple[np.ndarray, float]:
    """Per-dimension R^2 on the held-out rows after ``n_train + n_val`` (lambda on val)."""
    xt, yt = x[:n_train], y[:n_train]
    mu, my = xt.mean(0), yt.mean(0)
    a = xt - mu
    gram, cross = a.T @ a, a.T @ (yt - my)

    def r2(lam: float, rows: slice) -> np.ndarray:
        w = np.linalg.solve(gram + lam * np.eye(len(gram)), cross)
        pred = (x[rows] - mu) @ w + my
        truth = y[rows]
        return 1 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)

    val = slice(n_train, n_train + n_val)
    best = max(LAMBDAS, key=lambda lam: float(r2(lam, val).mean()))
    return r2(best, slice(n_train + n_val, None)), best


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--quick", is_flag=True, help="3000 training faces instead of 16000.")
@click.option("--size", default=64, type=click.IntRange(32, 128), help="Image side, pixels.")
@click.option("--seed", default=0, type=int)
def main(quick: bool, size: int, seed: int) -> None:
    """Print the identity R^2 of ridge regression from the full grey image."""
    n_train, n_val, n_test = (3000, 500, 1000) if quick else (16000, 1000, 1000)
    n = n_train + n_val + n_test
    model = SynthFace(size=size)
    print(f"SynthFace v{model.version} {size} px, {model.identity_dim} identity dims, "
          f"{n_train} training / {n_val} validation / {n_test} test faces, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    for label, fix_nuisance in (("default prior", False), ("nuisances fixed", True)):
        latent = model.sample_latent(n, torch.Generator().manual_seed(seed))
        if fix_nuisance:
            flat = latent.reshape(n, -1)
            flat[:, list(NUISANCE_INDEX)] = 0.0
        t0 = time.perf_counter()
        x = grey_images(model, latent)
        y = model.identity(latent).double().numpy()
        per_dim, lam = ridge_identity_r2(x, y, n_train, n_val)
        mean = float(per_dim.mean())
        verdict = f"-> {'PASS' if mean >= TARGET else 'MISS'} (target >= {TARGET})" \
            if not fix_nuisance else "(reference: what the nuisances hide)"
        print(f"\n{label}: identity R^2 = {mean:.3f} (ridge lambda {lam:g}, "
              f"{time.perf_counter() - t0:.0f} s) {verdict}")
        names = [PARAM_NAMES[i] for i in IDENTITY_INDEX]
        order = np.argsort(-per_dim)
        print("  " + ", ".join(f"{names[i]} {per_dim[i]:.2f}" for i in order))


if __name__ == "__main__":
    main()
