"""The training entry point `lsi_ml.training.run.run` (what the CLI, sims and examples call):
a run folder from a TrainConfig, resuming with more steps, refusing mixed settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.checkpoint import load_checkpoint
from lsi_ml.training.config import TrainConfig
from lsi_ml.training.run import LOCK_FILE, MODEL_FILE, load_trainer, ratio_label, run

TINY = TrainConfig.from_dict({
    "data": {"size": 32, "n_train": 16, "n_val": 8}, "masks": {"n_masks": 16},
    "decoder": {"hidden": 32, "block_hidden": 16},
    "schedule": {"steps": 2, "batch": 8, "eval_every": 0, "eval_batch": 8},
    "progress": False, "seed": 2})


def test_run_writes_a_run_folder_and_resumes_with_more_steps(tmp_path: Path) -> None:
    out = tmp_path / "run"
    lines: list[str] = []
    trainer = run(TINY, out, train_probes=False, progress=False, echo=lines.append)
    assert trainer.step == 2 and ratio_label(trainer) == "1:64"
    for name in (MODEL_FILE, "config.toml", "history.json", "patterns.npz"):
        assert (out / name).is_file(), name
    assert not (out / LOCK_FILE).exists()
    written = TrainConfig.from_toml(out / "config.toml")
    assert written.schedule.steps == 2 and "[schedule]" in (out / "config.toml").read_text()
    assert any(line.startswith("training 1:64") for line in lines)
    before = load_trainer(out).decoder.state_dict()

    more = run(TINY.with_overrides({"schedule.steps": 4}), out, train_probes=False,
               progress=False, echo=lines.append)
    assert more.step == 4 and load_checkpoint(out / MODEL_FILE)["step"] == 4
    assert any(line.startswith("resuming") for line in lines)
    after = load_trainer(out).decoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "resume did not train"
    assert json.loads((out / "history.json").read_text()) is not None


def test_resume_refuses_mixed_settings_naming_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(TINY, out, train_probes=False, progress=False, echo=lambda _line: None)
    with pytest.raises(ConfigError, match=r"masks\.n_masks"):
        run(TINY.with_overrides({"masks.n_masks": 8}), out, train_probes=False,
            progress=False)
    with pytest.raises(ConfigError, match="seed"):
        run(TINY, out, overrides={"seed": 3}, train_probes=False, progress=False)
    with pytest.raises(ConfigError, match=r"schedule\.batch"):  # the flat key, read as dotted
        run(None, out, overrides={"batch": 4}, train_probes=False, progress=False)
    assert load_checkpoint(out / MODEL_FILE)["step"] == 2  # the refused runs changed nothing


def test_a_refused_new_run_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="init-from"):
        run(TINY, out, backend="fake-hw", train_probes=False, progress=False)
    assert not out.exists()


def test_run_overrides_take_dotted_or_flat_keys(tmp_path: Path) -> None:
    """`run`'s overrides: dotted keys, or the flat keys of earlier versions (FLAT_KEYS)."""
    dotted = run(TINY, tmp_path / "dotted", overrides={"schedule.steps": 1, "masks.n_masks": 8},
                 train_probes=False, progress=False, echo=lambda _line: None)
    flat = run(TINY, tmp_path / "flat", overrides={"steps": 1, "n_masks": 8},
               train_probes=False, progress=False, echo=lambda _line: None)
    same = {"checkpoint": None}  # the run folders differ
    assert dotted.config.with_overrides(same) == flat.config.with_overrides(same)
    assert (dotted.config.schedule.steps, dotted.config.masks.n_masks) == (1, 8)
    assert dotted.config.schedule.checkpoint_every == 200  # the run folder's default
    with pytest.raises(ConfigError, match="stepz"):
        run(TINY, tmp_path / "bad", overrides={"schedule.stepz": 1}, train_probes=False,
            progress=False)
