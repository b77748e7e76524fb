"""A picture of what a trained model decodes: scenes, decoded faces, and the reading fit.

Measures a few SynthFace test faces through the model's simulated bench, decodes the
readings, optionally fits each decoded latent to its readings through the bench twin
(``lsi_ml.latent.reading_fit``), and draws one column per face:

- the scene as the monitor shows it (with its exact landmarks),
- the decoded face (render of the decoded latent, with ITS exact landmarks),
- the fitted face (with ``--fit-iters N > 0``),
- the exact segmentation of the last row's latent over the scene, coloured per class.

Each decoded panel is titled with its per-face exact readout: attributes right out of 10
and segmentation F1 against the scene's own.

    python examples/decode_figure.py RUN --out decode_example.png            # ~1 min
    python examples/decode_figure.py RUN --out fig.png --faces 6 --fit-iters 0
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from lsi_hw.cli_util import check_new_file, one_line_errors
from lsi_hw.errors import ConfigError


def _panel(ax, image: torch.Tensor, landmarks: torch.Tensor | None, title: str) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    if landmarks is not None:
        ax.scatter(landmarks[:, 0].numpy(), landmarks[:, 1].numpy(), s=3, c="lime",
                   linewidths=0)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("run", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="PNG to write (refused if it exists, unless --force).")
@click.option("--faces", default=8, type=click.IntRange(1, 16), help="Test faces shown.")
@click.option("--fit-iters", default=15, type=click.IntRange(0, 1000),
              help="Levenberg-Marquardt iterations of the reading fit (0: decoder only).")
@click.option("--seed", default=0, type=int, help="Test-set seed (as lsi-ml eval).")
@click.option("--force", is_flag=True, help="Replace an existing OUT.")
@one_line_errors
def main(run: str, out: str, faces: int, fit_iters: int, seed: int, force: bool) -> None:
    """Draw scenes, decoded faces and fitted faces of the model in RUN."""
    if not out.lower().endswith(".png"):
        raise ConfigError(f"--out {out}: give a .png file")
    check_new_file(Path(out), force, "--out")
    import matplotlib.pyplot as plt

    from lsi_hw.plotting import save_figure
    from lsi_ml.data.synthetic import SyntheticFaces
    from lsi_ml.evaluation import metrics
    from lsi_ml.latent.reading_fit import ReadingFitConfig
    from lsi_ml.training.bench_data import bench_decoder
    from lsi_ml.training.run import load_trainer, ratio_label

    trainer = load_trainer(run, "cpu")
    gen = trainer.generator
    batch = SyntheticFaces(gen, faces, seed=seed, split="test", cache=False).batch(range(faces))
    rows = [("decoded", bench_decoder(trainer, "sim", seed)(batch))]
    if fit_iters:
        fit = ReadingFitConfig(iters=fit_iters, progress=True)
        rows.append((f"fitted ({fit_iters} LM iters)",
                     bench_decoder(trainer, "sim", seed, fit=fit)(batch)))
    with torch.no_grad():
        truth = gen.render(batch["latent"])
        renders = [(name, gen.render(z)) for name, z in rows]
    n_classes = len(getattr(gen, "class_names", range(14)))
    fig, axes = plt.subplots(len(rows) + 2, faces, figsize=(1.6 * faces, 1.75 * (len(rows) + 2)),
                             squeeze=False)
    for j in range(faces):
        _panel(axes[0, j], truth.image[j], truth.landmarks[j], "scene" if j == 0 else "")
        for i, (name, r) in enumerate(renders, start=1):
            hits = int(((r.attributes[j] > 0.5) == (truth.attributes[j] > 0.5)).sum())
            f1 = float(np.asarray(metrics.segmentation_f1_per_image(
                r.segmentation[j:j + 1], truth.segmentation[j:j + 1], n_classes))[0])
            label = f"{name}\n" if j == 0 else "\n"
            _panel(axes[i, j], r.image[j], r.landmarks[j],
                   f"{label}attr {hits}/10, F1 {100 * f1:.0f}%")
        seg = renders[-1][1].segmentation[j].numpy()
        axes[-1, j].imshow(truth.image[j].permute(1, 2, 0).numpy())
        axes[-1, j].imshow(seg, cmap="tab20", vmin=0, vmax=19, alpha=0.55,
                           interpolation="nearest")
        axes[-1, j].set_xticks([])
        axes[-1, j].set_yticks([])
        if j == 0:
            axes[-1, j].set_title(f"{renders[-1][0].split(' (')[0]} segmentation", fontsize=8)
    ratio = ratio_label(trainer)
    fig.suptitle(f"{trainer.optical.n_masks} readings ({ratio}, {gen.size} px, noise "
                 f"{trainer.config.bench.noise}) -> latent -> exact render, landmarks, "
                 "segmentation",
                 fontsize=10)
    fig.tight_layout()
    path = save_figure(fig, out)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
