"""LSI against image-space single-pixel imaging at the same ratios, noise and faces.

Methods (all measure the same colour test faces shown on the same simulated bench, with the
same noise seeds, ``m`` readings each):

* ``hadamard``: the first ``m`` sequency-ordered Walsh-Hadamard masks, least squares
  (:func:`lsi_hw.reconstruction.hadamard_least_squares`);
* ``tv``: ``m`` random binary masks, total-variation compressive sensing by FISTA
  (:func:`lsi_hw.reconstruction.tv_reconstruction`);
* ``dgi``: ``m`` random binary masks, differential ghost imaging;
* ``generative_prior``: ``m`` random binary masks, find ``z`` with the bench model of
  ``G(z)`` closest to the readings
  (:func:`lsi_ml.baselines.generative_prior.generative_prior_reconstruct`);
* ``image_net``: learned binary masks + a learned image-space reconstruction network
  (:class:`lsi_ml.baselines.image_reconstruction.ImageReconTrainer`, the SAUNet / FSI-DL role);
* ``LSI (image route)``: the LSI model's decoded latent rendered, scored like the others;
* ``LSI (latent route)``: the LSI model scored by its latent probes (the compression sweep's
  numbers).

Scoring. One photodiode sees luminance only, so every image route is scored in grey: the
reconstructions (linear irradiance, normalised, display gamma re-applied; or generated
images turned to luma) go through image-space probes trained on grey renders of the same
generator (:class:`lsi_ml.generators.luminance.LuminanceView`): an attribute + identity-
embedding probe (:class:`lsi_ml.baselines.image_probes.ImageProbeSet`) and the segmentation /
landmark heads of a :class:`~lsi_ml.latent.probe_training.ProbeSet`, via
:func:`lsi_ml.evaluation.images.evaluate_images`. A ``scene (grey, no camera)`` row scores
the original grey images: the ceiling of the image route.

Writes ``baselines.{csv,md}`` (all ratios), ``baselines_table2.md`` (the ``table2_ratio``
rows, Table-2 style), ``baselines_curves.png`` and ``baselines_reconstructions.png``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from sims.common import (
    TABLE1_COLUMNS,
    Context,
    evaluation_row,
    held,
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

STUDY = "baselines"
COLUMNS = (("method", "Method"), ("route", "Scored"), ("ratio", "Ratio"), ("m", "m"),
           *TABLE1_COLUMNS)
IMAGE_METHODS = ("hadamard", "tv", "dgi", "generative_prior", "image_net", "lsi_image")
LABELS = {
    "hadamard": "Hadamard + least squares",
    "tv": "Random masks + TV (FISTA)",
    "dgi": "Random masks + DGI",
    "generative_prior": "Random masks + generative prior",
    "image_net": "Learned masks + image net",
    "lsi_image": "LSI (image route)",
    "lsi_latent": "LSI (latent route)",
    "scene": "scene (grey, no camera)",
}


IMAGE_NET_CHECKPOINT_STEPS = 200
"""The image network's training is saved this often (an interrupted run resumes there)."""


# --------------------------------------------------------------------------- shared pieces
def _generator(cfg: dict[str, Any]) -> Any:
    from lsi_ml.generators.synthface import SynthFace

    return SynthFace(int(cfg["train"]["size"]), seed=int(cfg["train"].get("seed", 0)))


def grey_probes(ctx: Context, cfg: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(grey view, segmentation/landmark ProbeSet on grey, ImageProbeSet on grey), cached."""
    from lsi_ml.baselines.image_probes import ImageProbeConfig, ImageProbeSet
    from lsi_ml.generators.luminance import LuminanceView

    view = LuminanceView(_generator(cfg))
    probes = probes_for(ctx, view, cfg.get("probes", {}))
    settings = dict(cfg.get("image_probes", {}))
    config = ImageProbeConfig(**{**settings, "progress": ctx.progress, "device": ctx.device})
    text = json.dumps({**settings}, sort_keys=True, default=str)
    path = ctx.out / "cache" / "probes" / (f"image-{view.size}px-grey-"
                                           f"{hashlib.sha1(text.encode()).hexdigest()[:10]}.pt")
    with held(path.with_suffix(".lock")):
        if path.exists():
            image_probes = ImageProbeSet.load(path, view)
        else:
            image_probes = ImageProbeSet.fit(view, config)
            image_probes.save(path)
    return view, probes, image_probes


class _Meter:
    """Measure colour scenes through the bench model with per-face seeded noise."""

    def __init__(self, sim_config: Any, size: int, seed: int) -> None:
        from lsi_hw.sim.torch_model import TorchForwardModel

        self.physics = TorchForwardModel(sim_config, (size, size))
        self.seed = seed
        self.count = 0

    def __call__(self, scenes: Any, masks: Any) -> Any:
        import torch

        from lsi_ml.training.streams import EVAL_STREAM, as_8bit, row_generators

        rows = torch.arange(self.count, self.count + len(scenes))
        self.count += len(scenes)
        gens = row_generators(self.seed, EVAL_STREAM + 1, 0, rows)
        with torch.no_grad():
            if isinstance(masks, np.ndarray):
                masks = torch.from_numpy(masks.astype(np.float32))
            return self.physics(as_8bit(scenes).permute(0, 2, 3, 1),
                                masks.detach().to("cpu", torch.float32), generator=gens)


def _lsi_config(cfg: dict[str, Any], m: int) -> Any:
    return train_config(cfg["train"], {"masks.n_masks": m})


def _image_net(ctx: Context, cfg: dict[str, Any], m: int) -> Any:
    """The learned-masks image-space network of ``m`` masks (trained once, cached)."""
    from lsi_ml.baselines.image_reconstruction import ImageReconConfig, ImageReconTrainer

    train = cfg["train"]
    settings = {"size": int(train["size"]), "n_masks": m, "noise": train.get("noise", "shot"),
                "seed": int(train.get("seed", 0)), **cfg.get("image_net", {})}
    text = json.dumps(settings, sort_keys=True, default=str)
    path = ctx.out / "cache" / "models" / (
        f"image-net-{hashlib.sha1(text.encode()).hexdigest()[:12]}") / "model.pt"
    progress = ctx.progress and ctx.jobs == 1
    with held(path.with_name(".lock")):
        if path.exists():  # finished, or interrupted: resume from the last checkpoint
            trainer = ImageReconTrainer.load(path, progress=progress, device=ctx.device)
        else:
            trainer = ImageReconTrainer(ImageReconConfig(**settings, progress=progress,
                                                         device=ctx.device))
        total = trainer.config.steps
        while trainer.step < total:  # checkpointed every IMAGE_NET_CHECKPOINT_STEPS
            trainer.train(steps=min(trainer.step + IMAGE_NET_CHECKPOINT_STEPS, total))
            trainer.save(path)
        return trainer


def reconstructor(ctx: Context, method: str, m: int, cfg: dict[str, Any]) -> Any:
    """``reconstruct(batch) -> grey images`` of one image-space method with ``m`` readings."""
    import torch

    from lsi_hw import reconstruction as classic
    from lsi_hw.patterns import PatternSet
    from lsi_ml.generators.luminance import linear_to_display, to_luminance

    face = _generator(cfg)
    size = face.size
    seed = int(cfg["eval"]["seed"])
    from lsi_hw.sim.forward import SimConfig

    bench = train_config(cfg["train"]).bench  # the LSI models' bench
    sim_config = SimConfig().with_noise(bench.noise).with_overrides(bench.sim)
    gamma = sim_config.monitor.gamma
    meter = _Meter(sim_config, size, seed)

    def scenes_of(batch: dict[str, Any]) -> Any:  # the bench shows the COLOUR face
        with torch.no_grad():
            return face.synthesize(batch["latent"])

    if method in ("hadamard", "tv", "dgi"):
        if method == "hadamard":
            patterns = PatternSet.hadamard(size, m, order="sequency")
        else:
            patterns = PatternSet.random(m, size, seed=int(cfg.get("mask_seed", 1)))
        masks = patterns.masks
        tv = cfg.get("tv", {})

        def reconstruct_classic(batch: dict[str, Any]) -> Any:
            volts = meter(scenes_of(batch), masks).double().numpy()
            if method == "hadamard":
                lin = classic.hadamard_least_squares(patterns, volts)
            elif method == "tv":
                lin = classic.tv_reconstruction(patterns, volts, **tv)
            else:
                lin = classic.differential_ghost_imaging(patterns, volts)
            return linear_to_display(lin, gamma)

        return reconstruct_classic
    if method == "generative_prior":
        from lsi_ml.baselines.generative_prior import generative_prior_reconstruct

        patterns = PatternSet.random(m, size, seed=int(cfg.get("mask_seed", 1)))
        masks = torch.from_numpy(patterns.masks.astype(np.float32))
        settings = dict(cfg.get("generative_prior", {}))
        if m < 3:  # a per-face gain + offset fit needs >= 3 readings: use the bench model
            settings.setdefault("calibration", "known")
        settings.setdefault("device", ctx.device)

        def reconstruct_prior(batch: dict[str, Any]) -> Any:
            volts = meter(scenes_of(batch), masks)
            out = generative_prior_reconstruct(volts, masks, face, sim_config, seed=seed,
                                               **settings)
            return to_luminance(out["image"].detach().cpu())

        return reconstruct_prior
    if method == "image_net":
        net = _image_net(ctx, cfg, m)

        def reconstruct_net(batch: dict[str, Any]) -> Any:
            masks = net.optical.masks().detach()
            with torch.no_grad():
                return to_luminance(net.reconstruct(meter(scenes_of(batch), masks)).cpu())

        return reconstruct_net
    if method == "lsi_image":
        trainer = trained_model(ctx, _lsi_config(cfg, m))

        def reconstruct_lsi(batch: dict[str, Any]) -> Any:
            masks = trainer.optical.masks().detach()
            with torch.no_grad():
                latent = trainer.decode(meter(scenes_of(batch), masks))
                return to_luminance(face.synthesize(latent))

        return reconstruct_lsi
    if method == "scene":
        return lambda batch: to_luminance(scenes_of(batch))
    raise ValueError(method)


# --------------------------------------------------------------------------- cells
def method_cell(ctx: Context, method: str, ratio: int | None, m: int | None,
                cfg: dict[str, Any]) -> dict[str, Any]:
    """Score one method at one ratio (``scene``: no ratio)."""
    import torch

    from lsi_ml.data.synthetic import SyntheticFaces
    from lsi_ml.evaluation.images import evaluate_images

    ev = cfg["eval"]
    if method == "lsi_latent":
        from lsi_ml.evaluation.latent import evaluate_decoder
        from lsi_ml.training.bench_data import bench_decoder

        trainer = trained_model(ctx, _lsi_config(cfg, int(m)))
        probes = probes_for(ctx, trainer.generator, cfg.get("latent_probes", {}))
        result = evaluate_decoder(bench_decoder(trainer, "sim", ev["seed"]),
                                  trainer.generator, probes, n_test=ev["n_test"],
                                  n_pairs=ev["n_pairs"], seed=ev["seed"],
                                  recognizer=recognizer_for(ctx, trainer.generator,
                                                            cfg.get("recognizer")))
        route = "latent probes (colour)"
    else:
        view, probes, image_probes = grey_probes(ctx, cfg)
        reconstruct = reconstructor(ctx, method, int(m or 0), cfg)
        result = evaluate_images(reconstruct, view, probes, image_probes, n_test=ev["n_test"],
                                 n_pairs=ev["n_pairs"], seed=ev["seed"],
                                 recognizer=recognizer_for(ctx, _generator(cfg),
                                                           cfg.get("recognizer")))
        route = "grey image probes"
        n_fig = int(cfg.get("figure_faces", 6))
        faces = SyntheticFaces(view, ev["n_test"], seed=ev["seed"], split="test")
        batch = faces.batch(range(n_fig))
        with torch.no_grad():
            recon = reconstructor(ctx, method, int(m or 0), cfg)(batch)
        key = f"{method}-{ratio}" if ratio else method
        path = ctx.cell_path(STUDY, key).with_suffix(".npz")
        save_npz_atomic(path, recon=np.asarray(recon, dtype=np.float16))
    return {"method": LABELS[method], "method_id": method, "route": route,
            "ratio": f"1:{ratio}" if ratio else "-", "ratio_value": ratio, "m": m,
            **evaluation_row(result)}


def run(ctx: Context) -> dict[str, Any]:
    """Score every method at every ratio; Table-2 rows at ``table2_ratio``; figures."""
    from lsi_ml.data.synthetic import SyntheticFaces

    cfg = ctx.study_config(STUDY)
    size = int(cfg["train"]["size"])
    face = _generator(cfg)
    # once, before the workers start; the grey probes first, since the colour ones may be
    # in training by a compression sweep that writes to the same folder
    grey_probes(ctx, cfg)
    probes_for(ctx, face, cfg.get("latent_probes", {}))
    methods = list(cfg["methods"])
    unknown = sorted(set(methods) - set(LABELS) - {"lsi"})
    if unknown:
        from lsi_hw.errors import ConfigError

        raise ConfigError(f"baselines: unknown methods {unknown}; allowed "
                          f"{sorted(set(LABELS) - {'scene'} | {'lsi'})}")
    only = {k: set(v) for k, v in cfg.get("only_at", {}).items()}
    cells: list[tuple[str, dict[str, Any]]] = [
        ("scene", {"method": "scene", "ratio": None, "m": None, "cfg": cfg})]
    skipped: list[str] = []
    for ratio in cfg["ratios"]:
        m = measurements_for_ratio(size, ratio)
        if m < 1:
            skipped.append(f"1:{ratio}")
            continue
        if "lsi" in methods:  # the LSI model first: other cells reuse it
            trained_model(ctx, _lsi_config(cfg, m))
        for method in methods:
            ids = ["lsi_latent", "lsi_image"] if method == "lsi" else [method]
            for mid in ids:
                if method in only and int(ratio) not in only[method]:
                    continue
                cells.append((f"{mid}-{ratio}", {"method": mid, "ratio": int(ratio), "m": m,
                                                 "cfg": cfg}))
    rows = ctx.run_cells(STUDY, method_cell, cells)
    notes = [
        f"SynthFace {size} px, noise {cfg['train'].get('noise', 'shot')}, "
        f"{cfg['eval']['n_test']} test faces, {cfg['eval']['n_pairs']} verification pairs; "
        "every method measures the same colour faces with the same noise seeds.",
        "Image routes are scored in grey (one photodiode sees luminance only) by image-space "
        "probes trained on grey renders: verification = identity-embedding distance, "
        "attributes from the image, seg/landmarks from the fixed random-conv features. "
        "'LSI (latent route)' uses the latent probes (colour). FD: substitute feature space "
        "(random conv net), not Inception FID; PSNR/SSIM against the grey scene (classic "
        "reconstructions are min-max normalised first).",
    ]
    if only:
        notes.append("Methods run at fewer ratios (cost): " + "; ".join(
            f"{LABELS.get(k, k)} at " + ", ".join(f"1:{r}" for r in sorted(v))
            for k, v in sorted(only.items())) + ".")
    if skipped:
        notes.append(f"Skipped (fewer than one reading of a {size} x {size} px scene): "
                     f"{', '.join(skipped)}; a larger `size` reaches them.")
    write_table(rows, COLUMNS, ctx.out / STUDY, title="LSI vs image-space baselines",
                notes=notes)
    t2 = int(cfg.get("table2_ratio", 256))
    rows2 = [r for r in rows if r["ratio_value"] in (t2, None)]
    write_table(rows2, COLUMNS, ctx.out / f"{STUDY}_table2",
                title=f"Table-2 style comparison at 1:{t2}", notes=notes)
    series: dict[str, dict[str, list[Any]]] = {}
    for r in rows:
        if r["ratio_value"] is None:
            continue
        s = series.setdefault(r["method"], {"x": []})
        s["x"].append(r["ratio_value"])
        for k, _ in TABLE1_COLUMNS:
            s.setdefault(k, []).append(r.get(k))
    plot_curves([], series, ctx.out / f"{STUDY}_curves.png", xlabel="compression 1:R",
                log_x=True, title="LSI vs image-space baselines")
    view = grey_probes(ctx, cfg)[0]
    n_fig = int(cfg.get("figure_faces", 6))
    scene = SyntheticFaces(view, cfg["eval"]["n_test"], seed=cfg["eval"]["seed"],
                           split="test").batch(range(n_fig))["image"].numpy()
    grid = [("scene (grey)", scene)]
    for r in rows2:
        npz = ctx.cell_path(STUDY, r["cell"]).with_suffix(".npz")
        if r["method_id"] != "scene" and npz.exists():
            grid.append((r["method"], np.load(npz)["recon"].astype(np.float32)))
    image_grid(grid, ctx.out / f"{STUDY}_reconstructions.png")
    return {"rows": rows}
