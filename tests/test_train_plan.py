"""The plan a training run prints, its wall-clock budget, and the user's probe cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from lsi_hw.errors import ConfigError
from lsi_ml.training.config import TrainConfig
from lsi_ml.training.plan import (
    MIN_STEPS,
    Phase,
    RunPlan,
    fit_to_budget,
    format_duration,
    parse_duration,
    plan_run,
)

TINY = {"data.size": 32, "masks.n_masks": 16, "schedule.batch": 8, "data.n_val": 8,
        "schedule.eval_every": 0, "schedule.eval_batch": 8, "decoder.hidden": 32,
        "decoder.block_hidden": 16, "seed": 2, "progress": False}


def _tiny_probe_config(**overrides: object):
    from lsi_ml.latent.probe_training import ProbeConfig

    values = dict(steps=2, n_train=32, batch=16, render_batch=32, seg_width=8, seg_depth=1,
                  landmark_maps=(1, 2), landmark_width=8, landmark_depth=1, progress=False)
    values.update(overrides)
    return ProbeConfig(**values)


@pytest.mark.parametrize(("text", "seconds"), [
    ("20m", 1200.0), ("90s", 90.0), ("1.5h", 5400.0), ("1h30m", 5400.0), ("20", 1200.0),
    (" 2M ", 120.0), ("1m 30s", 90.0)])
def test_durations_are_read_in_every_common_spelling(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "0m", "-5m", "20 minutes", "5x", "m20"])
def test_bad_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ConfigError, match="budget"):
        parse_duration(text)


def test_durations_print_in_a_readable_unit() -> None:
    assert format_duration(42) == "42 s"
    assert format_duration(450) == "7.5 min"
    assert format_duration(7200) == "2.0 h"


def test_the_budget_sets_the_steps_from_the_timed_phases() -> None:
    config = TrainConfig().with_overrides(TINY)
    plan = RunPlan((Phase("end-to-end", 5, 0.5), Phase("bank", 100, 0.01, 20.0),
                    Phase("probes", 50, 0.2, 10.0)), timing_s=4.0)
    fitted = fit_to_budget(config, 300.0, plan)
    # 300 s - 4 s planning - (21 s bank + 20 s probes) = 255 s at 0.5 s a step
    assert fitted.schedule.steps == 510
    assert fitted.data.n_train >= 510 * config.schedule.batch
    with pytest.raises(ConfigError, match=r"too short.*at least"):
        fit_to_budget(config, 4.0 + 41.0 + (MIN_STEPS - 1) * 0.5, plan)
    untimed = RunPlan((Phase("end-to-end", 5, None),))
    with pytest.raises(ConfigError, match="timed end-to-end"):
        fit_to_budget(config, 300.0, untimed)


def test_a_plan_lists_each_phase_with_its_steps_and_time() -> None:
    plan = RunPlan((Phase("end-to-end", 2000, 0.3, 0.0, "masks + decoder"),
                    Phase("probes", 0, 0.0, 0.0, "from the probe cache")))
    text = "\n".join(plan.lines())
    assert "end-to-end" in text and "2000 steps x 0.300 s" in text and "10.0 min" in text
    assert "from the probe cache" in text and "total ~ 10.0 min" in text
    assert "time not estimated" in "\n".join(
        RunPlan((Phase("end-to-end", 10, None),)).lines())


def test_plan_run_times_the_phases_on_this_machine() -> None:
    config = TrainConfig().with_overrides({**TINY, "schedule.steps": 40, "bank.steps": 20,
                                           "bank.size": 32, "bank.batch": 8})
    plan = plan_run(config, probes="train", probe_config=_tiny_probe_config())
    names = [p.name for p in plan.phases]
    assert names == ["end-to-end", "bank", "probes"]
    assert all(p.seconds is not None and p.seconds > 0 for p in plan.phases)
    assert plan.phases[0].steps == 40 and plan.phases[1].steps == 20
    resumed = plan_run(config, done_steps=50, estimate=False)
    assert [(p.name, p.steps) for p in resumed.phases] == [("bank", 10)]
    with pytest.raises(ConfigError, match="probes"):
        plan_run(config, probes="maybe", estimate=False)


def test_probes_are_trained_once_then_taken_from_the_cache(tmp_path: Path) -> None:
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.latent.probe_cache import load_or_train_probes, probe_cache_path

    generator = SynthFace(32, seed=1)
    config = _tiny_probe_config()
    said: list[str] = []
    first, path, trained = load_or_train_probes(generator, config, tmp_path, said.append)
    assert trained and path.is_file() and path.parent == tmp_path
    assert path.name.startswith("synthface-v2-32px-") and "cached" in said[0]
    second, again, trained_again = load_or_train_probes(generator, config, tmp_path)
    assert not trained_again and again == path
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # what does not change the result does not change the key; what does, does
    assert probe_cache_path(generator, _tiny_probe_config(device="cpu", progress=True,
                                                          render_batch=8), tmp_path) == path
    assert probe_cache_path(generator, _tiny_probe_config(steps=3), tmp_path) != path
    assert probe_cache_path(SynthFace(32, seed=2), config, tmp_path) != path
    assert probe_cache_path(SynthFace(64, seed=1), config, tmp_path) != path


def test_a_corrupt_cached_file_is_trained_again(tmp_path: Path) -> None:
    from lsi_ml.generators.synthface import SynthFace
    from lsi_ml.latent.probe_cache import load_or_train_probes, probe_cache_path

    generator = SynthFace(32, seed=1)
    config = _tiny_probe_config()
    path = probe_cache_path(generator, config, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    _, same, trained = load_or_train_probes(generator, config, tmp_path)
    assert trained and same == path and path.stat().st_size > 1000


def test_a_run_prints_its_plan_and_fits_its_budget(tmp_path: Path) -> None:
    from lsi_ml.training.run import run

    said: list[str] = []
    config = TrainConfig().with_overrides(TINY)
    trainer = run(config, tmp_path / "run", budget_s=5.0, train_probes=False,
                  progress=False, echo=said.append)
    text = "\n".join(said)
    assert "plan (times measured" in text and "end-to-end" in text
    assert trainer.step == trainer.config.schedule.steps >= MIN_STEPS
    assert "budget" in said[-2]
    with pytest.raises(ConfigError, match="budget applies to new runs"):
        run(None, tmp_path / "run", budget_s=10.0, train_probes=False, progress=False,
            echo=said.append)
    with pytest.raises(ConfigError, match="not both"):
        run(config, tmp_path / "other", budget_s=10.0, overrides={"schedule.steps": 5},
            echo=said.append)
    assert not (tmp_path / "other").exists()


def test_train_help_shows_every_default() -> None:
    from lsi_ml.cli import main

    text = CliRunner().invoke(main, ["train", "-h"], terminal_width=200).output
    for option, default in (("--size", "64"), ("--masks", "256"), ("--steps", "2000"),
                            ("--batch", "64"), ("--noise", "shot"), ("--seed", "0"),
                            ("--probe-steps", "2000 on a CPU")):
        line = next(x for x in text.splitlines() if x.strip().startswith(option))
        assert f"[default: ({default})]" in line or f"[default: {default}]" in line, line
    assert "--budget" in text
