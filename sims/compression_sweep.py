"""LSI at every compression ratio: a Table-1-style table and reconstructions per ratio.

For each ratio ``1:R`` of ``sims/configs/compression_sweep.toml`` one model (masks + decoder)
is trained end to end through the simulated bench with ``m = size^2 / R`` masks and scored
by :func:`lsi_ml.evaluation.latent.evaluate_decoder` on the same seeded test faces and pairs
(latent probes trained once on generator samples). A last row scores the true latents (the
probe ceiling: what a perfect decoder would get).

Writes ``compression_sweep.{csv,md}``, ``compression_curves.png`` and
``compression_reconstructions.png`` (test faces, then ``synthesize(decoded)`` per ratio).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sims.common import (
    TABLE1_COLUMNS,
    Context,
    evaluation_row,
    image_grid,
    measurements_for_ratio,
    plot_curves,
    probes_for,
    recognizer_for,
    save_npz_atomic,
    train_config,
    trained_model,
    write_table,
)

STUDY = "compression_sweep"
COLUMNS = (("method", "Method"), ("ratio", "Ratio"), ("m", "m"), *TABLE1_COLUMNS,
           ("latent_l1", "Latent L1"))


def lsi_cell(ctx: Context, ratio: int, m: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Train (or reuse) the LSI model of one ratio and score it."""
    import torch

    from lsi_ml.data.synthetic import SyntheticFaces
    from lsi_ml.evaluation.latent import evaluate_decoder
    from lsi_ml.training.bench_data import bench_decoder

    trainer = trained_model(ctx, train_config(cfg["train"], {"masks.n_masks": m}))
    probes = probes_for(ctx, trainer.generator, cfg.get("probes", {}))
    ev = cfg["eval"]
    recognizer = recognizer_for(ctx, trainer.generator, cfg.get("recognizer"))
    result = evaluate_decoder(bench_decoder(trainer, "sim", ev["seed"]), trainer.generator,
                              probes, n_test=ev["n_test"], n_pairs=ev["n_pairs"],
                              seed=ev["seed"], recognizer=recognizer)
    # reconstructions of the first test faces for the figure (same noise seeds as above)
    faces = SyntheticFaces(trainer.generator, ev["n_test"], seed=ev["seed"], split="test")
    images = faces.batch(range(int(cfg.get("figure_faces", 6))))["image"]
    decoded = bench_decoder(trainer, "sim", ev["seed"])({"image": images})
    with torch.no_grad():
        recon = trainer.generator.synthesize(decoded)
    path = ctx.cell_path(STUDY, f"ratio-{ratio}").with_suffix(".npz")
    save_npz_atomic(path, recon=recon.numpy().astype(np.float16))
    last = trainer.history[-1] if trainer.history else {}
    return {"method": "LSI", "ratio": f"1:{ratio}", "ratio_value": ratio, "m": m,
            **evaluation_row(result), "steps": trainer.step,
            "val_latent_l1": last.get("val_latent_l1")}


def ceiling_cell(ctx: Context, cfg: dict[str, Any]) -> dict[str, Any]:
    """The probes on the true latents (no camera at all)."""
    from lsi_ml.evaluation.latent import evaluate_decoder, oracle_decoder
    from lsi_ml.generators.synthface import SynthFace

    generator = SynthFace(cfg["train"]["size"], seed=cfg["train"].get("seed", 0))
    probes = probes_for(ctx, generator, cfg.get("probes", {}))
    ev = cfg["eval"]
    result = evaluate_decoder(oracle_decoder, generator, probes, n_test=ev["n_test"],
                              n_pairs=ev["n_pairs"], seed=ev["seed"],
                              recognizer=recognizer_for(ctx, generator, cfg.get("recognizer")))
    return {"method": "true latent (probe ceiling)", "ratio": "-", "m": None,
            **evaluation_row(result)}


def run(ctx: Context) -> dict[str, Any]:
    """Run the sweep; returns the rows and the skipped ratios."""
    from lsi_ml.data.synthetic import SyntheticFaces
    from lsi_ml.generators.synthface import SynthFace

    cfg = ctx.study_config(STUDY)
    size = int(cfg["train"]["size"])
    generator = SynthFace(size, seed=cfg["train"].get("seed", 0))
    probes_for(ctx, generator, cfg.get("probes", {}))  # once, before the workers start
    cells: list[tuple[str, dict[str, Any]]] = []
    skipped = []
    for ratio in cfg["ratios"]:
        m = measurements_for_ratio(size, ratio)
        if m < 1:
            skipped.append(int(ratio))
            continue
        cells.append((f"ratio-{ratio}", {"ratio": int(ratio), "m": m, "cfg": cfg}))
    rows = ctx.run_cells(STUDY, lsi_cell, cells)
    ceiling = ctx.run_cells(STUDY, ceiling_cell, [("ceiling", {"cfg": cfg})])
    out = ctx.out
    notes = [f"SynthFace {size} px, noise {cfg['train'].get('noise', 'shot')}, "
             f"{cfg['train'].get('steps')} training steps per ratio (batch "
             f"{cfg['train'].get('batch')}), {cfg['eval']['n_test']} test faces, "
             f"{cfg['eval']['n_pairs']} verification pairs (half same, a quarter hard "
             "negatives). FD in a substitute feature space (random conv net), not Inception "
             "FID."]
    if skipped:
        notes.append("Skipped (fewer than one mask at this size): "
                     + ", ".join(f"1:{r}" for r in skipped) + ".")
    write_table(rows + ceiling, COLUMNS, out / "compression_sweep",
                title="LSI compression sweep (Table-1 style)", notes=notes)
    ratios = [r["ratio_value"] for r in rows]
    plot_curves(ratios, {"LSI": {k: [r.get(k) for r in rows] for k, _ in TABLE1_COLUMNS}},
                out / "compression_curves.png", xlabel="compression 1:R", log_x=True,
                title="LSI metrics vs compression")
    n_faces = int(cfg.get("figure_faces", 6))
    faces = SyntheticFaces(generator, cfg["eval"]["n_test"], seed=cfg["eval"]["seed"],
                           split="test").batch(range(n_faces))["image"].numpy()
    grid = [("scene", faces)]
    for row in rows:
        npz = ctx.cell_path(STUDY, row["cell"]).with_suffix(".npz")
        if npz.exists():
            grid.append((f"{row['ratio']} (m={row['m']})",
                         np.load(npz)["recon"].astype(np.float32)))
    image_grid(grid, out / "compression_reconstructions.png")
    return {"rows": rows, "ceiling": ceiling, "skipped": skipped}
