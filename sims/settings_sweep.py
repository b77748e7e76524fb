"""Sweeps of simulated-bench settings, shared by ``noise_sweep`` and ``misalignment_sweep``.

A *base* LSI model is trained once at the default bench (the compression sweep's model of
the same ratio and training settings is reused). Each sweep of the config changes one
physical quantity over a list of settings (``"stage.field"`` overrides of
:class:`lsi_hw.sim.forward.SimConfig`, one table per x value) and every setting is scored
two ways on the same test faces:

* ``as trained``: the base model measures through the changed bench (a user who changes the
  knob, or whose optics moved, and does not retrain);
* ``adapted``: the base model fine-tuned for ``finetune_steps`` through the changed bench
  (masks too unless ``finetune_masks = false``; the measurement normaliser re-fitted):
  noise-aware / calibration-aware training, where the setting is known from the bench's
  configuration or its calibration.

Writes ``<study>.{csv,md}`` and ``<study>_<sweep>.png`` (metrics vs x, both curves).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sims.common import (
    TABLE1_COLUMNS,
    Context,
    evaluation_row,
    measurements_for_ratio,
    plot_curves,
    probes_for,
    train_config,
    trained_model,
    write_table,
)

COLUMNS = (("sweep", "Sweep"), ("x", "Setting"), ("mode", "Model"), *TABLE1_COLUMNS,
           ("latent_l1", "Latent L1"))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _base_config(cfg: dict[str, Any]) -> Any:
    size = int(cfg["train"]["size"])
    return train_config(cfg["train"],
                        {"masks.n_masks": measurements_for_ratio(size, int(cfg["ratio"]))})


def _model_path(ctx: Context, config: Any) -> Path:
    from sims.common import config_key

    return ctx.out / "cache" / "models" / config_key(config) / "model.pt"


def _adapted_config(base_cfg: Any, settings: dict[str, Any], cfg: dict[str, Any]) -> Any:
    """The fine-tuning config of the base model through the bench changed by ``settings``."""
    lr = float(cfg.get("finetune_lr", 0.3))
    return base_cfg.with_overrides({
        "bench.sim": {**base_cfg.bench.sim, **settings},
        "schedule.steps": int(cfg["finetune_steps"]), "bench.refit_normalizer": True,
        "masks.freeze": not bool(cfg.get("finetune_masks", True)),
        "schedule.warmup": 0, "schedule.eval_every": 0,
        "masks.lr": base_cfg.masks.lr * lr, "decoder.lr": base_cfg.decoder.lr * lr})


def setting_cell(ctx: Context, study: str, sweep: str, x: Any, settings: dict[str, Any],
                 mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Score one setting with the base model as trained, or fine-tuned through it."""
    from lsi_ml.evaluation.latent import evaluate_decoder
    from lsi_ml.training.bench_data import bench_decoder

    base_cfg = _base_config(cfg)
    base = trained_model(ctx, base_cfg)
    probes = probes_for(ctx, base.generator, cfg.get("probes", {}))
    sim_config = base.sim_config.with_overrides(settings)
    if mode == "adapted":
        model = trained_model(ctx, _adapted_config(base_cfg, settings, cfg),
                              init_from=_model_path(ctx, base_cfg))
    else:
        model = base
    ev = cfg["eval"]
    decode = bench_decoder(model, "sim", ev["seed"], sim_config=sim_config)
    result = evaluate_decoder(decode, model.generator, probes, n_test=ev["n_test"],
                              n_pairs=ev["n_pairs"], seed=ev["seed"])
    return {"study": study, "sweep": sweep, "x": x, "mode": mode, "settings": settings,
            **evaluation_row(result)}


def run_settings_sweep(ctx: Context, study: str) -> dict[str, Any]:
    """Run every sweep of ``study``'s config; write the table and one figure per sweep."""
    from lsi_ml.generators.synthface import SynthFace

    cfg = ctx.study_config(study)
    probes_for(ctx, SynthFace(int(cfg["train"]["size"]), seed=cfg["train"].get("seed", 0)),
               cfg.get("probes", {}))
    trained_model(ctx, _base_config(cfg))  # once, before the workers start
    modes = ["as trained"] + (["adapted"] if int(cfg.get("finetune_steps", 0)) > 0 else [])
    cells = []
    for sweep in cfg["sweeps"]:
        if len(sweep["x"]) != len(sweep["settings"]):
            from lsi_hw.errors import ConfigError

            raise ConfigError(f"{study} sweep {sweep['name']!r}: x and settings differ in "
                              "length")
        for x, settings in zip(sweep["x"], sweep["settings"], strict=True):
            for mode in modes:
                key = f"{_slug(sweep['name'])}-{_slug(x)}-{_slug(mode)}"
                cells.append((key, {"study": study, "sweep": sweep["name"], "x": x,
                                    "settings": dict(settings), "mode": mode, "cfg": cfg}))
    rows = ctx.run_cells(study, setting_cell, cells)
    notes = [f"Base model: 1:{cfg['ratio']} at {cfg['train']['size']} px, trained "
             f"{cfg['train'].get('steps')} steps at the default bench (noise "
             f"{cfg['train'].get('noise')}). 'adapted' = fine-tuned "
             f"{cfg.get('finetune_steps', 0)} steps through the changed bench "
             f"({'masks and decoder' if cfg.get('finetune_masks', True) else 'decoder only'},"
             " normaliser re-fitted). "
             f"{cfg['eval']['n_test']} test faces, {cfg['eval']['n_pairs']} pairs.",
             "Settings per x: " + "; ".join(
                 f"{s['name']}: " + ", ".join(f"{x} = {st}" for x, st in
                                               zip(s["x"], s["settings"], strict=True))
                 for s in cfg["sweeps"])]
    write_table(rows, COLUMNS, ctx.out / study, title=cfg.get("title", study), notes=notes)
    for sweep in cfg["sweeps"]:
        series = {}
        for mode in modes:
            sel = [r for r in rows if r["sweep"] == sweep["name"] and r["mode"] == mode]
            series[mode] = {k: [r.get(k) for r in sel] for k, _ in TABLE1_COLUMNS}
            series[mode]["x"] = [float(r["x"]) for r in sel]
        plot_curves(sweep["x"], series, ctx.out / f"{study}_{_slug(sweep['name'])}.png",
                    xlabel=sweep.get("x_label", sweep["name"]), log_x=sweep.get("log_x", False),
                    title=f"{study}: {sweep['name']}")
    return {"rows": rows}
