"""The sims/ studies: one tiny run of each (default suite) and the --quick run (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lsi_hw.errors import ConfigError
from sims.common import Context, load_study_config, measurements_for_ratio

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "train": {"size": 32, "steps": 12, "batch": 8, "eval_every": 6, "encoder_hidden": 32,
              "encoder_depth": 1, "encoder_block_hidden": 16},
    "probes": {"steps": 8, "n_train": 64, "batch": 8},
    "latent_probes": {"steps": 8, "n_train": 64, "batch": 8},
    "eval": {"n_test": 16, "n_pairs": 8, "seed": 0},
    "recognizer": {"input_size": 32, "widths": (8, 16, 32), "embedding_dim": 16, "steps": 6,
                   "identities": 8, "views": 2, "val_pairs": 32, "batch": 64, "warmup": 2},
    "figure_faces": 2,
    "finetune_steps": 4,
}


def _ctx(out: Path, **overrides: object) -> Context:
    return Context(out, quick=True, jobs=1, progress=False, overrides={**TINY, **overrides})


def test_configs_parse_and_ratios() -> None:
    for study in ("compression_sweep", "baselines", "noise_sweep", "misalignment_sweep",
                  "sim_vs_fakehw"):
        for quick in (False, True):
            cfg = load_study_config(study, quick)
            assert cfg["train"]["size"] >= 32
    full = load_study_config("compression_sweep", False)
    assert full["ratios"] == [16, 64, 128, 256]
    assert measurements_for_ratio(64, 16) == 256
    assert measurements_for_ratio(64, 4096) == 1
    assert measurements_for_ratio(64, 8192) == 0
    # the ratios 64 px cannot reach have their own config at a larger size
    for quick in (False, True):
        extra = load_study_config("compression_sweep", quick,
                                  ROOT / "sims/configs/compression_sweep_128px.toml")
        size = extra["train"]["size"]
        assert {8192, 16384} <= set(extra["ratios"])
        assert all(measurements_for_ratio(size, r) >= 1 for r in extra["ratios"])
    with pytest.raises(ConfigError, match="cannot read"):
        load_study_config("no_such_study", True)


def test_compression_sweep_tiny_run_and_resume(tmp_path: Path) -> None:
    from sims import compression_sweep

    ctx = _ctx(tmp_path, ratios=[16, 1024, 4096])
    out = compression_sweep.run(ctx)
    assert [r["m"] for r in out["rows"]] == [64, 1]
    assert [r["device"] for r in out["rows"]] == ["cpu", "cpu"]
    for row in out["rows"]:  # exact readout, recognizer scores and their intervals
        assert 0 <= row["exact_attribute_accuracy"] <= 1
        assert row["recognizer_accuracy_ci_lo"] <= row["recognizer_accuracy"] \
            <= row["recognizer_accuracy_ci_hi"]
    assert out["skipped"] == [4096]
    md = (tmp_path / "compression_sweep.md").read_text()
    assert "1:16 " in md and "Skipped" in md and "1:4096" in md
    assert "true latent (probe ceiling)" in md
    for name in ("compression_sweep.csv", "compression_curves.png",
                 "compression_reconstructions.png"):
        assert (tmp_path / name).stat().st_size > 0
    from sims.report import write_summary

    summary = write_summary(tmp_path).read_text()
    assert "| 1:16 | 64 |" in summary and "| 1:1024 | 1 |" in summary
    assert "| 1:1024 | 1 | " in summary and "/ 88.74 |" in summary  # paper's attr at 1:1024
    assert "Table 2" not in summary  # no baselines run here
    # a sweep at a larger size in a subfolder (compression_sweep_128px.toml) gets its table
    (tmp_path / "128px").mkdir()
    (tmp_path / "128px" / "compression_sweep.csv").write_text(
        (tmp_path / "compression_sweep.csv").read_text())
    summary = write_summary(tmp_path).read_text()
    assert "Larger scenes (`sims/results/128px/`" in summary
    assert summary.count("| 1:16 | 64 |") == 2
    (tmp_path / "128px" / "baselines.csv").write_text(
        "method,route,ratio,m,verification_accuracy,fd,attribute_accuracy,segmentation_f1,"
        "landmark_nme,psnr,ssim\nRandom masks + DGI,grey image probes,1:8192,2,0.5,1.0,0.43,"
        "0.03,24.6,8.0,0.1\n")
    summary = write_summary(tmp_path).read_text()
    assert "| Random masks + DGI | grey image probes | 1:8192 | 2 | 50.0 | 43.0 |" in summary
    ceiling = out["ceiling"][0]
    assert ceiling["verification_accuracy"] == pytest.approx(1.0)  # true latents
    # a rerun reuses every finished cell (nothing retrained or re-evaluated)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.json")}
    again = compression_sweep.run(ctx)
    assert again["rows"] == out["rows"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_settings_sweep_tiny_run(tmp_path: Path) -> None:
    from sims import misalignment_sweep

    sweeps = [{"name": "shift", "x": [0.0, 3.0],
               "settings": [{"optics.shift_px": [0.0, 0.0]}, {"optics.shift_px": [3.0, 0.0]}]}]
    out = misalignment_sweep.run(_ctx(tmp_path, sweeps=sweeps))
    rows = out["rows"]
    assert [(r["x"], r["mode"]) for r in rows] == [
        (0.0, "as trained"), (0.0, "adapted"), (3.0, "as trained"), (3.0, "adapted")]
    assert (tmp_path / "misalignment_sweep_shift.png").exists()
    # the adapted model was fine-tuned through the shifted bench
    configs = [p.read_text() for p in (tmp_path / "cache" / "models").glob("*/config.toml")]
    assert any('"optics.shift_px" = [3.0, 0.0]' in c for c in configs)
    bad = [{"name": "x", "x": [1.0], "settings": [{"optics.nonsense": 1}]}]
    with pytest.raises(ConfigError, match="nonsense"):
        misalignment_sweep.run(_ctx(tmp_path / "bad", sweeps=bad))


def test_sim_vs_fakehw_agreement_logic(tmp_path: Path) -> None:
    from sims.sim_vs_fakehw import agreement

    base = {"verification_accuracy": 0.8, "attribute_accuracy": 0.7, "segmentation_f1": 0.4,
            "landmark_nme": 6.0, "latent_l1": 0.7}
    noisy = {**base, "verification_accuracy": 0.79}
    ok, _ = agreement([base, noisy, {**base, "verification_accuracy": 0.78}])
    assert ok
    ok, lines = agreement([base, noisy, {**base, "attribute_accuracy": 0.6}])
    assert not ok and any("DIFFER" in line for line in lines)


def test_sims_cli_refuses_bad_input_before_work(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args, message in ((["nonsense"], "unknown study"),
                          (["compression_sweep", "--jobs", "0"], "--jobs"),
                          (["all", "--config", str(ROOT / "sims/configs/baselines.toml")],
                           "one study")):
        proc = subprocess.run([sys.executable, "-m", "sims", *args, "--out",
                               str(tmp_path / "o")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode != 0
        assert message in proc.stderr + proc.stdout
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_quick_mode_runs_every_study_under_20_minutes(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sims", "all", "--quick", "--jobs", "2",
                           "--no-progress", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500, check=False)
    minutes = (time.perf_counter() - t0) / 60
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert minutes < 20, f"--quick took {minutes:.1f} min"
    for name in ("compression_sweep.md", "baselines.md", "baselines_table2.md",
                 "noise_sweep.md", "misalignment_sweep.md", "sim_vs_fakehw.md",
                 "compression_reconstructions.png", "baselines_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    prov = json.loads((tmp_path / "PROVENANCE.json").read_text())
    assert set(prov) == {"compression_sweep", "baselines", "noise_sweep",
                         "misalignment_sweep", "sim_vs_fakehw"}
    assert all(p["mode"] == "quick" for p in prov.values())


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_compression_sweep_on_cuda(tmp_path: Path) -> None:
    import math

    from sims import compression_sweep

    ctx = Context(tmp_path, quick=True, jobs=1, progress=False, device="cuda",
                  overrides={**TINY, "ratios": [16]})
    rows = compression_sweep.run(ctx)["rows"]
    assert math.isfinite(rows[0]["landmark_nme"])
    assert rows[0]["device"].startswith("cuda (")


def test_baselines_tiny_run(tmp_path: Path) -> None:
    from sims import baselines

    tiny: dict[str, object] = dict(
        ratios=[16, 1024], table2_ratio=16, image_probes={"steps": 4, "n_train": 64, "batch": 8},
        image_net={"steps": 3, "batch": 8}, tv={"iters": 5},
        generative_prior={"steps": 2, "restarts": 1, "batch": 16})
    rows = baselines.run(_ctx(tmp_path, **tiny))["rows"]
    got = {(r["method_id"], r["ratio"]) for r in rows}
    methods = ("lsi_latent", "lsi_image", "hadamard", "tv", "dgi", "generative_prior",
               "image_net")
    assert got == {("scene", "-")} | {(m, r) for m in methods for r in ("1:16", "1:1024")}
    scene = next(r for r in rows if r["method_id"] == "scene")
    assert scene["psnr"] is None and scene["ssim"] == pytest.approx(1.0)  # no camera
    for r in rows:
        if r["method_id"] != "scene":
            assert r["ssim"] < 1.0 and r["m"] in (64, 1)
    table2 = (tmp_path / "baselines_table2.md").read_text()
    assert "1:16 " in table2 and "1:1024" not in table2
    assert (tmp_path / "baselines_reconstructions.png").stat().st_size > 0
    from sims.report import write_summary

    summary = write_summary(tmp_path).read_text()
    assert "Table 2 style" in summary and "SAUNet (8-bit masks) | 39.47" in summary
    # fewer cells of a costly method: every cell read back, none recomputed
    again = _ctx(tmp_path, **tiny, only_at={"generative_prior": [1024]})
    fewer = baselines.run(again)["rows"]
    assert again.computed == 0
    assert [r["ratio"] for r in fewer if r["method_id"] == "generative_prior"] == ["1:1024"]
    assert len(fewer) == len(rows) - 1
    assert "Random masks + generative prior at 1:1024" in (tmp_path / "baselines.md").read_text()


def test_cells_are_kept_per_config(tmp_path: Path) -> None:
    """A changed config (or --quick vs full) must not read back another config's rows."""
    a = _ctx(tmp_path)
    b = _ctx(tmp_path, eval={"n_test": 24, "n_pairs": 8, "seed": 0})
    assert a.cell_path("compression_sweep", "ratio-16") != b.cell_path("compression_sweep",
                                                                      "ratio-16")
    assert a.cell_path("compression_sweep", "ratio-16") == _ctx(tmp_path).cell_path(
        "compression_sweep", "ratio-16")
    full = Context(tmp_path, quick=False)
    assert full.cell_path("compression_sweep", "k") != Context(tmp_path, quick=True).cell_path(
        "compression_sweep", "k")


def test_cells_survive_adding_ratios_or_methods(tmp_path: Path) -> None:
    """Keys that only choose which cells run leave the digest alone (a finished cell is
    reused when a ratio or a method is added); a key a cell depends on does not."""
    base = _ctx(tmp_path)
    for study in ("compression_sweep", "baselines"):
        key = base.cell_path(study, "x")
        more = _ctx(tmp_path, ratios=[16, 64, 128, 256, 512], methods=["lsi", "tv"],
                    only_at={"tv": [16]}, table2_ratio=512)
        assert more.cell_path(study, "x") == key
        assert _ctx(tmp_path, mask_seed=7).cell_path(study, "x") != key


def test_sim_vs_fakehw_tiny_run(tmp_path: Path) -> None:
    from sims import sim_vs_fakehw

    out = sim_vs_fakehw.run(_ctx(tmp_path, ratio=64))
    assert [r["backend"] for r in out["rows"]] == ["sim", "sim", "fake-hw"]
    assert out["agree"] is True
    md = (tmp_path / "sim_vs_fakehw.md").read_text()
    assert "AGREE" in md and "Face by face (16 test faces" in md


def test_model_cache_key_ignores_unused_bank_settings() -> None:
    """Models cached before the bank phase existed keep their keys; a bank run gets its own."""
    from lsi_ml.training.config import TrainConfig
    from sims.common import config_key

    base = TrainConfig.from_dict({"data": {"size": 32}, "masks": {"n_masks": 8},
                                  "schedule": {"steps": 10}})
    assert config_key(base) == config_key(base.with_overrides({"bank.size": 128,
                                                               "bank.lr": 0.5}))
    banked = base.with_overrides({"bank.steps": 5})
    assert config_key(banked) != config_key(base)
    assert config_key(banked) != config_key(banked.with_overrides({"bank.size": 512}))
    assert config_key(base) == config_key(base.with_overrides({"progress": False,
                                                               "device": "cuda"}))


def test_tables_name_rows_computed_off_the_cpu(tmp_path: Path) -> None:
    """Reused cells can mix devices in one table: the table says which rows ran where."""
    from sims.common import device_label, device_notes, write_table

    assert device_label("cpu") == "cpu"
    rows = [{"cell": "tv-16", "x": 1.0}, {"cell": "tv-64", "x": 2.0, "device": "cpu"},
            {"cell": "image_net-8192", "x": 3.0, "device": "cuda (NVIDIA H100)"},
            {"cell": "generative_prior-8192", "x": 4.0, "device": "cuda (NVIDIA H100)"}]
    assert device_notes(rows[:2]) == []
    _, md = write_table(rows, [("x", "x")], tmp_path / "t", title="t")
    assert md.read_text().splitlines()[-1] == (
        "Computed on cuda (NVIDIA H100), not the CPU: image_net-8192, generative_prior-8192.")
    csv_lines = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_lines[0] == "x,device" and csv_lines[1] == "1.0,cpu"
    assert csv_lines[3] == "3.0,cuda (NVIDIA H100)"
    from sims.report import _device_lines

    assert _device_lines([{"method": "image net", "ratio": "1:8192", "device": "cuda (X)"},
                          {"method": "tv", "ratio": "1:8192", "device": "cpu"}]) == [
        "", "Computed on cuda (X), not the CPU: image net at 1:8192."]


def test_image_net_training_is_checkpointed_and_resumes(tmp_path: Path, monkeypatch) -> None:
    """An interrupted image-network training resumes from its checkpoint and ends where an
    uninterrupted one does (same batches, noise and optimizer state)."""
    import torch

    from lsi_ml.baselines.image_reconstruction import ImageReconConfig, ImageReconTrainer
    from sims import baselines

    monkeypatch.setattr(baselines, "IMAGE_NET_CHECKPOINT_STEPS", 2)
    settings = {"steps": 5, "batch": 4, "width": 4, "n_val": 4, "eval_every": 0}
    ctx = _ctx(tmp_path, image_net=settings)
    cfg = ctx.study_config("baselines")
    straight = ImageReconTrainer(ImageReconConfig(size=32, n_masks=3, noise="shot", seed=0,
                                                  progress=False, **settings))
    straight.train()
    saves: list[int] = []
    real_save = ImageReconTrainer.save

    def crash_after_first_save(self: ImageReconTrainer, path: Path) -> Path:
        saves.append(self.step)
        real_save(self, path)
        if len(saves) == 1:
            raise KeyboardInterrupt  # the run is stopped after its first checkpoint
        return path

    monkeypatch.setattr(ImageReconTrainer, "save", crash_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        baselines._image_net(ctx, cfg, 3)
    resumed = baselines._image_net(ctx, cfg, 3)
    assert saves == [2, 4, 5] and resumed.step == 5
    for a, b in zip(straight.decoder.state_dict().values(),
                    resumed.decoder.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(straight.optical.masks(), resumed.optical.masks())
    assert baselines._image_net(ctx, cfg, 3).step == 5 and saves == [2, 4, 5]  # loaded only


def test_summary_verdict_names_where_lsi_wins_and_where_it_loses() -> None:
    """The LSI-vs-baselines sentence is computed from the CSV rows (better route of LSI vs
    every image-space method, per metric; NME lower is better)."""
    from sims.report import _verdict_lines

    def row(method: str, ratio: str, v: float, a: float, s: float, nme: float) -> dict:
        return {"method": method, "ratio": ratio, "verification_accuracy": str(v),
                "attribute_accuracy": str(a), "segmentation_f1": str(s),
                "landmark_nme": str(nme)}

    rows = [row("scene (grey, no camera)", "-", 0.9, 0.9, 0.9, 1.0),
            row("LSI (latent route)", "1:16", 0.70, 0.60, 0.30, 8.0),
            row("LSI (image route)", "1:16", 0.60, 0.70, 0.20, 9.0),
            row("Hadamard + least squares", "1:16", 0.65, 0.65, 0.25, 8.5),
            row("Random masks + DGI", "1:16", 0.7004, 0.5, 0.1, 7.999),  # ties as printed
            row("LSI (latent route)", "1:4096", 0.55, 0.55, 0.30, 10.0),
            row("Learned masks + image net", "1:4096", 0.56, 0.50, 0.20, 9.5)]
    assert _verdict_lines(rows) == [
        "", "LSI (the better of its latent and image routes) beats or equals (as printed) "
        "every image-space method on verification, attributes, seg F1 and NME at 1:16.",
        "An image-space method does better at 1:4096 (Learned masks + image net verification "
        "56.0 % vs LSI 55.0 %; Learned masks + image net NME 9.50 vs LSI 10.00)."]
    assert _verdict_lines(rows[:1]) == []


def test_summary_verdict_uses_intervals_when_the_csv_has_them() -> None:
    """With bootstrap intervals LSI wins a metric only when the intervals do not overlap;
    an overlap is listed as undecided, with both intervals."""
    from sims.report import _verdict_lines

    def row(method: str, ratio: str, score: float, half: float) -> dict:
        out = {"method": method, "ratio": ratio}
        for key, sign in (("verification_accuracy", 1), ("attribute_accuracy", 1),
                          ("segmentation_f1", 1), ("landmark_nme", -1)):
            value = score if sign > 0 else 10 * (1 - score)
            out |= {key: str(value), f"{key}_ci_lo": str(value - half),
                    f"{key}_ci_hi": str(value + half)}
        return out

    clear = [row("LSI (latent route)", "1:16", 0.80, 0.01),
             row("Hadamard + least squares", "1:16", 0.70, 0.01)]
    assert _verdict_lines(clear)[1].startswith(
        "LSI (the better of its latent and image routes) beats every image-space method "
        "with non-overlapping 95 % intervals on verification, attributes, seg F1 and NME at "
        "1:16")
    close = [row("LSI (latent route)", "1:16", 0.80, 0.05),
             row("Hadamard + least squares", "1:16", 0.78, 0.05)]
    lines = _verdict_lines(close)
    assert len(lines) == 2 and lines[1].startswith("Intervals overlap (no clear winner) at "
                                                   "1:16 (Hadamard + least squares "
                                                   "verification 78.0 % [73.0, 83.0] vs LSI "
                                                   "80.0 % [75.0, 85.0]")
    worse = [row("LSI (latent route)", "1:16", 0.60, 0.01),
             row("Hadamard + least squares", "1:16", 0.70, 0.01)]
    assert _verdict_lines(worse)[1].startswith("An image-space method does better at 1:16")


def test_readme_results_are_the_regenerated_summary(tmp_path: Path) -> None:
    """sims/results/summary.md is what the report code makes of the committed CSVs, and
    docs/results.md is that file verbatim, its heading a page title (nothing typed by
    hand)."""
    import shutil

    from sims.report import write_summary

    results = ROOT / "sims" / "results"
    folders = [results, *(p for p in results.iterdir() if p.is_dir()
                          and (p / "PROVENANCE.json").exists())]
    for folder in folders:  # the 64 px results and any larger-scene subfolder
        target = tmp_path / folder.relative_to(results)
        target.mkdir(parents=True, exist_ok=True)
        for path in [*folder.glob("*.csv"), folder / "PROVENANCE.json"]:
            shutil.copy(path, target / path.name)
    summary = write_summary(tmp_path).read_text(encoding="utf-8")
    assert summary == (results / "summary.md").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert page == summary.replace("## Results\n", "# Results\n", 1)


def test_results_name_the_generator_version() -> None:
    """Results record the SynthFace version they were made with; older ones are flagged."""
    from lsi_ml.generators.synthface import SynthFace
    from sims.common import SYNTHFACE_VERSION

    assert SYNTHFACE_VERSION == SynthFace.version


def test_summary_flags_every_study_made_with_an_older_generator(tmp_path: Path) -> None:
    """A study whose provenance names no (or an older) SynthFace version is called stale in
    the summary; one made with the current version is not."""
    from sims.common import SYNTHFACE_VERSION
    from sims.report import write_summary

    (tmp_path / "compression_sweep.csv").write_text(
        "method,ratio,m,verification_accuracy,fd,attribute_accuracy,segmentation_f1,"
        "landmark_nme\nLSI,1:16,256,0.9,0.3,0.8,0.6,2.5\n")
    prov = {"compression_sweep": {"mode": "full", "synthface_version": SYNTHFACE_VERSION},
            "noise_sweep": {"mode": "full"}}
    (tmp_path / "PROVENANCE.json").write_text(json.dumps(prov))
    summary = write_summary(tmp_path).read_text()
    assert "**Stale: noise_sweep was made with SynthFace v1**" in summary
    prov["noise_sweep"]["synthface_version"] = SYNTHFACE_VERSION
    (tmp_path / "PROVENANCE.json").write_text(json.dumps(prov))
    assert "Stale" not in write_summary(tmp_path).read_text()
