"""`lsi-ml` command line: train (sim, resume, fake-hw fine-tune), export-patterns, decode,
eval, and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lsi_hw.cli import main as hw_main
from lsi_hw.patterns import PatternSet
from lsi_ml.checkpoint import load_checkpoint
from lsi_ml.cli import main
from lsi_ml.training.config import TrainConfig

TINY_TOML = """
# the flat keys of earlier versions (the CLI reads them; config.toml is written nested)
size = 32
n_masks = 16
steps = 3
batch = 8
n_val = 8
eval_every = 0
eval_batch = 8
encoder_hidden = 32
encoder_block_hidden = 16
bank_size = 16
bank_batch = 8
seed = 2
"""


def _png_folder(folder: Path, scenes: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir()
    for i, scene in enumerate(scenes):
        Image.fromarray(scene).save(folder / f"{i}.png")
    return folder


def _example(name: str):
    """The module of ``examples/<name>.py``."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_probes(path: Path, seed: int) -> Path:
    """Barely trained probes of SynthFace 32 px (enough to run an evaluation)."""
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.latent.probe_training import ProbeConfig, ProbeSet

    ProbeSet.fit(SynthFace(32, seed=seed), ProbeConfig(
        steps=2, n_train=32, batch=16, render_batch=32, seg_width=8, seg_depth=1,
        landmark_maps=(1, 2), landmark_width=8, landmark_depth=1, progress=False,
    )).save(path)
    return path


def _invoke(args: list[str], cli=main) -> object:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.toml"
    config.write_text(TINY_TOML)
    out = root / "run"
    result = _invoke(["train", "--config", str(config), "--out", str(out), "--no-probes",
                      "--no-progress"])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_the_run_folder(run: Path) -> None:
    for name in ("model.pt", "config.toml", "history.json", "training_curve.png",
                 "patterns.npz"):
        assert (run / name).is_file(), name
    payload = load_checkpoint(run / "model.pt")
    assert payload["step"] == 3 and payload["config"]["data"]["size"] == 32
    written = (run / "config.toml").read_text()
    assert "[data]" in written and "\nsize = 32" in written.split("[data]")[1]
    history = json.loads((run / "history.json").read_text())
    assert history[-1]["step"] == 3.0


def test_train_resumes_and_refuses_changed_settings(run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    result = _invoke(["train", "--out", str(copy), "--steps", "5", "--no-probes",
                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert load_checkpoint(copy / "model.pt")["step"] == 5
    result = _invoke(["train", "--out", str(copy), "--size", "64", "--no-progress"])
    assert result.exit_code == 2 and "exists" in result.output


def test_export_patterns_equal_the_model_masks(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.npz"
    result = _invoke(["export-patterns", str(run), str(out)])
    assert result.exit_code == 0, result.output
    patterns = PatternSet.load(out)
    masks = load_checkpoint(run / "model.pt")["extra"]["masks"].numpy()
    np.testing.assert_array_equal(patterns.masks, masks)
    assert patterns.name.startswith("lsi-learned-")


def test_decode_measurements_from_lsi_hw(run: Path, tmp_path: Path) -> None:
    """Scenes measured by `lsi-hw simulate` with the exported masks decode end to end."""
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.training.bench_data import faces_as_scenes

    patterns = tmp_path / "p.npz"
    _invoke(["export-patterns", str(run), str(patterns)])
    face = SynthFace(32, seed=2)
    latent = face.sample_latent(3, torch.Generator().manual_seed(9))
    scenes = faces_as_scenes(face.synthesize(latent))
    folder = _png_folder(tmp_path / "faces", scenes)
    sim_out = tmp_path / "sim"
    result = _invoke(["simulate", "--images", str(folder), "--patterns", str(patterns),
                      "--noise", "shot", "--out", str(sim_out), "--no-plot"], cli=hw_main)
    assert result.exit_code == 0, result.output
    out = tmp_path / "dec"
    result = _invoke(["decode", str(run), str(sim_out / "measurement.npz"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    latents = np.load(out / "latents.npy")
    assert latents.shape == (3, 4, 24) and np.isfinite(latents).all()
    assert np.load(out / "images.npy").shape == (3, 32, 32, 3)
    assert (out / "overlay.png").stat().st_size > 1000
    report = json.loads((out / "decoded.json").read_text())
    assert report["scenes"] == ["0.png", "1.png", "2.png"]  # named as the scenes shown
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, scenes=scenes[:2], names=np.array(["a", "b"]))
    result = _invoke(["decode", str(run), str(sim_out / "measurement.npz"), "--out",
                      str(tmp_path / "dec2"), "--scenes", str(wrong)])
    assert result.exit_code == 2 and "expected 3 scenes" in result.output
    assert not (tmp_path / "dec2").exists()


def test_decode_refuses_other_patterns(run: Path, tmp_path: Path) -> None:
    other = PatternSet.random(16, (32, 32), seed=1)
    other.save(tmp_path / "other.npz")
    folder = _png_folder(tmp_path / "faces", np.full((2, 32, 32, 3), 90, np.uint8))
    result = _invoke(["simulate", "--images", str(folder), "--patterns",
                      str(tmp_path / "other.npz"), "--out", str(tmp_path / "sim"),
                      "--no-plot"], cli=hw_main)
    assert result.exit_code == 0, result.output
    result = _invoke(["decode", str(run), str(tmp_path / "sim" / "measurement.npz"),
                      "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "patterns" in result.output and "export-patterns" in result.output
    assert not (tmp_path / "d").exists()


def test_missing_model_is_a_one_line_error(tmp_path: Path) -> None:
    result = _invoke(["export-patterns", str(tmp_path), str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "no model checkpoint" in result.output


def test_fake_hw_finetune_needs_init_from(tmp_path: Path) -> None:
    result = _invoke(["train", "--backend", "fake-hw", "--out", str(tmp_path / "r"),
                      "--no-progress"])
    assert result.exit_code == 2 and "--init-from" in result.output


def test_fake_hw_finetune_through_the_cli(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    result = _invoke(["train", "--backend", "fake-hw", "--init-from", str(run), "--out",
                      str(out), "--n-recorded", "8", "--steps", "2", "--no-probes",
                      "--no-progress"])
    assert result.exit_code == 0, result.output
    fine = load_checkpoint(out / "model.pt")
    base = load_checkpoint(run / "model.pt")
    assert torch.equal(fine["extra"]["masks"], base["extra"]["masks"])
    assert fine["config"]["bench"]["backend"] == "fake-hw" and fine["config"]["masks"]["freeze"]
    assert (out / "recording" / "manifest.json").is_file()


def test_bench_options_reach_the_bench_or_fail_clearly(run: Path) -> None:
    ok = _invoke(["eval", str(run), "--backend", "fake-hw", "--bench-option", "seed=5",
                  "--n-test", "4", "--pairs", "4", "--no-progress", "--probes",
                  str(run / "missing.pt")])
    # the bench opened with the option; then the missing probe file is the (clear) error
    assert ok.exit_code == 2 and "missing.pt" in ok.output
    bad = _invoke(["eval", str(run), "--backend", "fake-hw", "--bench-option", "colour=red",
                   "--no-progress"])
    assert bad.exit_code == 2 and "colour" in bad.output and "allowed" in bad.output
    bad = _invoke(["eval", str(run), "--bench-option", "nonsense", "--backend", "fake-hw"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
    bad = _invoke(["eval", str(run), "--bench-option", "seed=1"])
    assert bad.exit_code == 2 and "fake-hw or hw" in bad.output


def test_train_bank_phase_and_mask_init_from_the_cli(run: Path, tmp_path: Path) -> None:
    """--bank-steps extends a finished run with decoder-only bank steps (masks frozen);
    --mask-init starts from Hadamard masks; bad settings fail before any training."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    masks = load_checkpoint(copy / "model.pt")["extra"]["masks"]
    result = _invoke(["train", "--out", str(copy), "--bank-steps", "2", "--no-probes",
                      "--no-progress"])
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(copy / "model.pt")
    assert payload["step"] == 5 and payload["config"]["bank"]["steps"] == 2
    assert torch.equal(payload["extra"]["masks"], masks)
    out = tmp_path / "had"
    result = _invoke(["train", "--config", str(run / "config.toml"), "--out", str(out),
                      "--mask-init", "hadamard", "--steps", "1", "--no-probes",
                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "model.pt")["config"]["masks"]["init"] == "hadamard"
    result = _invoke(["train", "--out", str(tmp_path / "bad"), "--bank-steps", "-1",
                      "--no-progress"])
    assert result.exit_code == 2 and "bank.steps = -1" in result.output
    assert not (tmp_path / "bad" / "model.pt").exists()


def test_eval_lists_decoded_dimensions_by_name(run: Path, tmp_path: Path) -> None:
    """eval --per-dim N: the N best and N worst latent dimensions by R^2, named."""
    probes = _tiny_probes(tmp_path / "probes.pt",
                          TrainConfig.from_checkpoint(run / "model.pt").seed)
    result = _invoke(["eval", str(run), "--n-test", "8", "--pairs", "4", "--probes",
                      str(probes), "--per-dim", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("per-dimension R^2"))
    rows = lines[start + 1:start + 6]
    assert rows[2] == "  ..."
    assert all(r.split()[0].split(".")[0] in {"coarse", "middle", "fine", "texture"}
               for r in rows[:2] + rows[3:])
    assert "latent R^2 per level: coarse" in result.output
    bad = _invoke(["eval", str(run), "--per-dim", "-1", "--no-progress"])
    assert bad.exit_code == 2 and "--per-dim" in bad.output


def test_eval_device_is_checked_before_any_loading(run: Path) -> None:
    """--device: an unknown device, or CUDA on a torch without it, is a one-line error."""
    bad = _invoke(["eval", str(run), "--device", "cpux", "--no-progress"])
    assert bad.exit_code == 2 and "'cpux' is not a torch device" in bad.output
    if not torch.cuda.is_available():
        missing = _invoke(["eval", str(run), "--device", "cuda", "--no-progress"])
        assert missing.exit_code == 2 and "sees no CUDA device" in missing.output


def test_default_probes_are_the_cpu_preset_on_a_cpu_only() -> None:
    from lsi_ml.latent.probe_training import ProbeConfig
    from lsi_ml.training.run import default_probe_config

    assert default_probe_config("cpu", False) == ProbeConfig.cpu(progress=False)
    assert default_probe_config("cuda:0", False) == ProbeConfig(progress=False,
                                                                device="cuda:0")


def test_train_for_budget_example_fits_the_schedule_to_the_clock(tmp_path: Path) -> None:
    """examples/train_for_budget.py: steps chosen by the clock, finished schedule, a
    loadable run; refusals before any work."""
    from lsi_ml.training.trainer import Trainer

    module = _example("train_for_budget")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML.replace("steps = 3", "steps = 100000"))
    out = tmp_path / "budget"
    result = CliRunner().invoke(module.main, ["--config", str(config), "--minutes", "0.08",
                                              "-o", str(out), "--no-progress",
                                              "--no-probes"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "plan (times measured" in result.output
    report = json.loads((out / "budget.json").read_text())
    assert report["steps_done"] == report["steps_planned"] >= 10
    assert not report["stopped_early"]
    assert report["steps_planned"] != 100000  # set by the clock, not by the config
    assert report["wall_s"] < 1.25 * report["budget_s"] + 5
    trainer = Trainer.resume(out / "model.pt", progress=False)
    assert trainer.step == report["steps_planned"] == trainer.config.schedule.steps
    again = CliRunner().invoke(module.main, ["--config", str(config), "--minutes", "0.05",
                                             "--out", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    zero = CliRunner().invoke(module.main, ["--minutes", "0", "--out", str(tmp_path / "z")])
    assert zero.exit_code == 2 and "--minutes" in zero.output
    (tmp_path / "bad.toml").write_text("[data]\nsize = 8\n")
    bad = CliRunner().invoke(module.main, ["--config", str(tmp_path / "bad.toml"),
                                           "--minutes", "1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "Error: config: data.size = 8 must be >= 32" in bad.output
    assert not (tmp_path / "b").exists()


def test_image_decoder_reference_example_scores_like_an_lsi_model(tmp_path: Path) -> None:
    """examples/image_decoder_reference.py: ridge R^2 lines, then an eval summary."""
    module = _example("image_decoder_reference")
    probes = _tiny_probes(tmp_path / "probes.pt", 0)
    args = ["--size", "32", "--scenes", "64", "--steps", "3", "--batch", "16", "--n-test",
            "8", "--n-pairs", "8", "--refine-steps", "2", "--probes", str(probes)]
    result = CliRunner().invoke(module.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("ridge on the 1024 pixels") == 2
    assert result.output.count("full-image reference, ") == 2  # CNN only, CNN + refinement
    assert "32x32 grey, no noise" in result.output
    assert "verification accuracy" in result.output and "identity dims R^2" in result.output
    bad = CliRunner().invoke(module.main, [*args[:-2], "--size", "40", "--probes", str(probes)])
    assert bad.exit_code == 2 and "multiple of 16" in bad.output


def test_eval_fit_iters_fits_the_latents_to_their_readings(run: Path, tmp_path: Path) -> None:
    """eval --fit-iters N: each decoded latent is fitted through the twin; the fit's reading
    residual (reduced chi^2) is reported and can only fall.  (The attribute switches,
    --fit-flip-iters, are exercised in test_reading_fit; here they are off for speed.)"""
    probes = _tiny_probes(tmp_path / "probes.pt",
                          TrainConfig.from_checkpoint(run / "model.pt").seed)
    out = tmp_path / "fit.json"
    result = _invoke(["eval", str(run), "--n-test", "6", "--pairs", "4", "--probes",
                      str(probes), "--fit-iters", "2", "--fit-flip-iters", "0",
                      "--no-recognizer", "--json", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("reading fit over"))
    import re

    found = re.search(r"squared\) (\S+) from the decoder -> (\S+) fitted", line)
    assert found, line
    assert float(found[2]) <= float(found[1])
    assert json.loads(out.read_text())["fit_iters"] == 2
    bad = _invoke(["eval", str(run), "--fit-iters", "-1", "--no-progress"])
    assert bad.exit_code == 2 and "--fit-iters" in bad.output
    bad = _invoke(["eval", str(run), "--fit-flip-iters", "-1", "--no-progress"])
    assert bad.exit_code == 2 and "--fit-flip-iters" in bad.output


def test_decode_figure_example_draws_scenes_decoded_and_fitted(run: Path, tmp_path: Path) -> None:
    """examples/decode_figure.py: a PNG of scenes, decoded and fitted faces; refuses to
    replace a file without --force."""
    module = _example("decode_figure")
    out = tmp_path / "fig.png"
    args = [str(run), "--out", str(out), "--faces", "2", "--fit-iters", "1"]
    result = CliRunner().invoke(module.main, args)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = CliRunner().invoke(module.main, args)
    assert again.exit_code != 0 and "exists" in again.output
    bad = CliRunner().invoke(module.main, [str(run), "--out", str(tmp_path / "fig.txt")])
    assert bad.exit_code != 0 and ".png" in bad.output
