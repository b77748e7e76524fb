"""The same trained model on SimBench-twin and fake-hw measurements of the same scenes.

Rows: ``sim`` (noise seed A), ``sim`` (noise seed B) and ``fake-hw`` (the emulated bench:
patterns go through the DLPC350 USB emulator and the video port, readings through the
PDA100A2 + digitizer fakes, noise seed A of its own generator). "Agree within noise" is
tested number by number: ``|sim_A - fake_hw|`` must not exceed the noise-only spread
``|sim_A - sim_B|`` by more than a small margin (a tolerance of two noise spreads plus
0.5 percentage points / 0.05 NME, written in the table notes).

Writes ``sim_vs_fakehw.{csv,md}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sims.common import (
    PERCENT_KEYS,
    TABLE1_COLUMNS,
    Context,
    evaluation_row,
    measurements_for_ratio,
    probes_for,
    save_npz_atomic,
    train_config,
    trained_model,
    write_table,
)

STUDY = "sim_vs_fakehw"
COLUMNS = (("backend", "Backend"), ("noise_seed", "Noise seed"), *TABLE1_COLUMNS,
           ("latent_l1", "Latent L1"))
COMPARED = ("verification_accuracy", "attribute_accuracy", "segmentation_f1", "landmark_nme",
            "latent_l1")


def backend_cell(ctx: Context, backend: str, noise_seed: int, cfg: dict[str, Any]
                 ) -> dict[str, Any]:
    """Score the model on one backend with one noise seed."""
    from lsi_hw.benches import make_bench
    from lsi_ml.data.synthetic import SyntheticFaces
    from lsi_ml.evaluation.latent import evaluate_decoder
    from lsi_ml.training.bench_data import bench_decoder

    size = int(cfg["train"]["size"])
    trainer = trained_model(ctx, train_config(
        cfg["train"], {"masks.n_masks": measurements_for_ratio(size, int(cfg["ratio"]))}))
    probes = probes_for(ctx, trainer.generator, cfg.get("probes", {}))
    bench = None
    if backend != "sim":
        bench = make_bench(backend, config=trainer.sim_config, noise=trainer.sim_config.noise,
                           seed=noise_seed)
    decode = bench_decoder(trainer, backend, noise_seed, bench=bench)
    ev = cfg["eval"]
    result = evaluate_decoder(decode, trainer.generator, probes, n_test=ev["n_test"],
                              n_pairs=ev["n_pairs"], seed=ev["seed"])
    # the decoded latents of the first test faces, for a face-by-face comparison
    faces = SyntheticFaces(trainer.generator, ev["n_test"], seed=ev["seed"], split="test")
    batch = faces.batch(range(min(64, ev["n_test"])))
    decoded = bench_decoder(trainer, backend, noise_seed, bench=bench)(batch)
    path = ctx.cell_path(STUDY, f"{backend}-{noise_seed}").with_suffix(".npz")
    save_npz_atomic(path, decoded=decoded.numpy(), truth=batch["latent"].numpy())
    return {"backend": backend, "noise_seed": noise_seed, **evaluation_row(result)}


def face_by_face(ctx: Context) -> list[str]:
    """Mean |decoded latent| differences between backends on the same faces, against the
    noise-only difference (sim seed A vs B) and the spread between faces."""
    files = {k: ctx.cell_path(STUDY, k).with_suffix(".npz")
             for k in ("sim-0", "sim-1", "fake-hw-0")}
    if not all(f.exists() for f in files.values()):
        return []
    lat = {k: np.load(f)["decoded"] for k, f in files.items()}
    between = float(np.mean(np.abs(lat["sim-0"] - lat["sim-0"].mean(0, keepdims=True))))
    d_backend = float(np.mean(np.abs(lat["sim-0"] - lat["fake-hw-0"])))
    d_noise = float(np.mean(np.abs(lat["sim-0"] - lat["sim-1"])))
    n = lat["sim-0"].shape[0]
    return [f"Face by face ({n} test faces, mean |difference| of the decoded latents): "
            f"sim vs fake-hw {d_backend:.4f}, sim noise seed A vs B {d_noise:.4f}, spread "
            f"between faces {between:.4f} (ratio sim-vs-fake-hw / between-face spread "
            f"{d_backend / max(between, 1e-12):.3f})."]


def agreement(rows: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """Is ``|sim_A - fake_hw|`` within the noise tolerance for every compared number?"""
    sim_a, sim_b, fake = rows
    ok = True
    lines = []
    for key in COMPARED:
        a, b, f = (float(r[key]) for r in (sim_a, sim_b, fake))
        spread = abs(a - b)
        slack = 0.005 if key in PERCENT_KEYS else 0.05
        tol = 2 * spread + slack
        passed = abs(a - f) <= tol
        ok &= passed
        scale = 100 if key in PERCENT_KEYS else 1
        lines.append(f"- {key}: |sim - fake-hw| = {scale * abs(a - f):.2f}, noise spread "
                     f"|sim A - sim B| = {scale * spread:.2f}, tolerance {scale * tol:.2f}: "
                     f"{'agree' if passed else 'DIFFER'}")
    return ok, lines


def run(ctx: Context) -> dict[str, Any]:
    """Score the model on sim (two seeds) and fake-hw; write the table and the verdict."""
    from lsi_ml.generators.synthface import SynthFace

    cfg = ctx.study_config(STUDY)
    probes_for(ctx, SynthFace(int(cfg["train"]["size"]), seed=cfg["train"].get("seed", 0)),
               cfg.get("probes", {}))
    size = int(cfg["train"]["size"])
    trained_model(ctx, train_config(  # once, before the workers load it
        cfg["train"], {"masks.n_masks": measurements_for_ratio(size, int(cfg["ratio"]))}))
    cells = [("sim-0", {"backend": "sim", "noise_seed": 0, "cfg": cfg}),
             ("sim-1", {"backend": "sim", "noise_seed": 1, "cfg": cfg}),
             ("fake-hw-0", {"backend": "fake-hw", "noise_seed": 0, "cfg": cfg})]
    rows = ctx.run_cells(STUDY, backend_cell, cells)
    ok, lines = agreement(rows)
    lines += face_by_face(ctx)
    notes = [f"Model: 1:{cfg['ratio']} at {size} px, noise {cfg['train'].get('noise')}; "
             f"{cfg['eval']['n_test']} test faces, {cfg['eval']['n_pairs']} pairs, the same "
             "for every row.",
             "Verdict: " + ("sim and fake-hw AGREE within noise" if ok
                            else "sim and fake-hw DIFFER beyond noise")
             + " (tolerance = 2 x noise spread + 0.5 points, 0.05 for NME and latent L1):", "",
             *lines]
    write_table(rows, COLUMNS, ctx.out / "sim_vs_fakehw",
                title="Same model, same scenes: simulator vs emulated hardware", notes=notes)
    print("\n".join(lines))
    return {"rows": rows, "agree": ok}
