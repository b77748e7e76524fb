"""Hardening of lsi_ml: config types, checkpoint loading, the run-folder lock, atomic
writes, `lsi-ml decode`'s output folder and inputs, and memory estimates.

Every refusal is checked as a user sees it: exit code 2 and one ``Error:`` line naming the
bad field or path, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lsi_hw.errors import ConfigError
from lsi_hw.locking import PathLock
from lsi_hw.types import Measurement
from lsi_ml.baselines.image_probes import ImageProbeConfig
from lsi_ml.baselines.image_reconstruction import ImageReconConfig
from lsi_ml.checkpoint import load_checkpoint
from lsi_ml.cli import main
from lsi_ml.config_check import Rule, check_fields
from lsi_ml.latent.losses import LossWeights
from lsi_ml.latent.probe_training import ProbeConfig
from lsi_ml.training.config import TrainConfig
from lsi_ml.training.run import LOCK_FILE
from lsi_ml.training.trainer import Trainer

TINY_TOML = """
seed = 2

[data]
size = 32
n_val = 8

[masks]
n_masks = 16

[decoder]
hidden = 32
block_hidden = 16

[schedule]
steps = 2
batch = 8
eval_every = 0
eval_batch = 8
"""

TINY = TrainConfig.from_dict({
    "data": {"size": 32, "n_train": 16, "n_val": 8}, "masks": {"n_masks": 16},
    "decoder": {"hidden": 32, "block_hidden": 16},
    "schedule": {"steps": 2, "batch": 8, "eval_every": 0, "eval_batch": 8},
    "progress": False, "seed": 2})


def _invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _one_line_error(result, *words: str) -> None:
    """Exit 2 with exactly one ``Error:`` line that holds every word; no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], (word, errors[0])


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a barely trained tiny model (model.pt only)."""
    run = tmp_path_factory.mktemp("hardening") / "run"
    run.mkdir()
    trainer = Trainer(TINY)
    trainer.train()
    trainer.save(run / "model.pt")
    return run


@pytest.fixture(scope="module")
def pattern_name(model_dir: Path) -> str:
    return Trainer.resume(model_dir / "model.pt", progress=False).pattern_name


def _measurement(path: Path, pattern_name: str, n: int = 2) -> Path:
    values = np.random.default_rng(0).normal(0.5, 0.1, size=(n, TINY.masks.n_masks))
    Measurement(values=values, settings={}, timestamps=np.zeros_like(values),
                pattern_name=pattern_name).save(str(path))
    return path


# ----------------------------------------------------------------------- config types
@pytest.mark.parametrize("bad, words", [
    ({"masks.freeze": "no"}, 'config: masks.freeze = "no" must be a bool'),
    ({"masks.freeze": 1}, "config: masks.freeze = 1 must be a bool"),
    ({"schedule.steps": 4.7}, "config: schedule.steps = 4.7 must be an int"),
    ({"schedule.steps": "ten"}, 'config: schedule.steps = "ten" must be an int'),
    ({"schedule.steps": True}, "config: schedule.steps = True must be an int"),
    ({"data.size": "64"}, 'config: data.size = "64" must be an int'),
    ({"masks.lr": "fast"}, 'config: masks.lr = "fast" must be a number'),
    ({"init_from": 3}, "config: init_from = 3 must be a string or none"),
    ({"bench.sim": 3}, "config: bench.sim = 3 must be a table"),
    ({"bench.noise": "loud"}, 'config: bench.noise = "loud" must be one of "none", "shot"'),
    ({"schedule.lr_schedule": "linear"}, "schedule.lr_schedule"),
    ({"data.size": 8},
     "config: data.size = 8 must be >= 32 (SynthFace renders 32 px or more)"),
    ({"schedule.batch": 1}, "config: schedule.batch = 1 must be >= 2"),
    ({"decoder.lr": float("inf")}, "config: decoder.lr = inf must be finite and >= 0"),
    ({"loss.image": -1}, "config: loss.image = -1 must be finite and >= 0"),
    ({"seed": -1}, "config: seed = -1 must be >= 0"),
])
def test_train_config_checks_every_type_and_range(bad: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig().with_overrides(bad)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_a_section_error_names_the_dotted_key_however_the_config_was_written() -> None:
    """A section refuses its own fields by their dotted keys: made directly, from a nested
    dict, or from the flat keys of earlier versions."""
    from lsi_ml.training.config import ScheduleConfig

    for make in (lambda: ScheduleConfig(steps=4.7),
                 lambda: TrainConfig(schedule={"steps": 4.7}),
                 lambda: TrainConfig.from_dict({"schedule": {"steps": 4.7}}),
                 lambda: TrainConfig.from_dict({"steps": 4.7})):
        with pytest.raises(ConfigError, match=r"^config: schedule\.steps = 4\.7 must be an int$"):
            make()


def test_trainer_refuses_a_plain_dict() -> None:
    with pytest.raises(ConfigError, match="needs a TrainConfig"):
        Trainer({"size": 32})  # type: ignore[arg-type]


def test_numbers_are_normalised_to_the_annotated_type() -> None:
    cfg = TrainConfig().with_overrides({"masks.lr": 1, "schedule.steps": np.int64(5),
                                        "decoder.weight_decay": np.float32(0.5)})
    assert type(cfg.masks.lr) is float and cfg.masks.lr == 1.0
    assert type(cfg.schedule.steps) is int and cfg.schedule.steps == 5
    assert type(cfg.decoder.weight_decay) is float
    assert ProbeConfig(landmark_maps=[0, 2]).landmark_maps == (0, 2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_toml_type_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    for text, words in (('freeze_masks = "no"\n', 'masks.freeze = "no" must be a bool'),
                        ('[masks]\nfreeze = "no"\n', 'masks.freeze = "no" must be a bool'),
                        ("steps = 4.7\n", "schedule.steps = 4.7 must be an int"),
                        ("[schedule]\nsteps = 4.7\n", "schedule.steps = 4.7 must be an int"),
                        ("[schedule]\nstepz = 4\n", "schedule.stepz"),
                        ("schedule = 3\n", "schedule = 3 must be a table"),
                        ("steps = 4\n[schedule]\nsteps = 5\n", "both set schedule.steps"),
                        ("[loss]\nimage = \"big\"\n", 'loss.image = "big" must be a number'),
                        ("[loss]\nimagee = 1.0\n", "imagee"),
                        ("loss = 3\n", "loss = 3 must be a table"),
                        ("sise = 64\n", "sise"),
                        ("train = 3\n", "train = 3 must be a [train] table")):
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            TrainConfig.from_toml(path)
        assert words in str(info.value) and "\n" not in str(info.value), text


def test_cli_train_refuses_a_mistyped_config_before_creating_the_run(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY_TOML.replace("[masks]\n", '[masks]\nfreeze = "no"\n'))
    out = tmp_path / "run"
    result = _invoke(["train", "--config", str(config), "--out", str(out), "--no-probes",
                      "--no-progress"])
    _one_line_error(result, 'config: masks.freeze = "no" must be a bool')
    assert not out.exists()


def test_cli_train_refuses_zero_steps_before_creating_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    for steps in ("0", "-3"):
        result = _invoke(["train", "--out", str(out), "--steps", steps, "--no-probes",
                          "--no-progress"])
        _one_line_error(result, f"--steps {steps} must be >= 1")
    assert not out.exists()


@pytest.mark.parametrize("cls, bad, where", [
    (ProbeConfig, {"steps": 2.5}, "probe config: steps = 2.5 must be an int"),
    (ProbeConfig, {"landmark_maps": [0, "1"]}, "probe config: landmark_maps"),
    (ProbeConfig, {"progress": "yes"}, "probe config: progress"),
    (ImageProbeConfig, {"progress": "yes"}, 'image probe config: progress = "yes"'),
    (ImageProbeConfig, {"lr": 0}, "image probe config: lr = 0 must be finite and > 0"),
    (ImageReconConfig, {"freeze_masks": "no"}, "image reconstruction config: freeze_masks"),
    (ImageReconConfig, {"size": 34}, "size = 34 must be a multiple of 4"),
    (LossWeights, {"image": "big"}, 'config: loss.image = "big" must be a number'),
    (LossWeights, {"image": -1}, "config: loss.image = -1 must be finite and >= 0"),
])
def test_other_configs_share_the_validator(cls: type, bad: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**bad)
    assert where in str(info.value)


def test_generic_validator_handles_optional_literal_and_tuples() -> None:
    @dataclass
    class Demo:
        mode: Literal["a", "b"] = "a"
        limit: int | None = None
        sizes: tuple[int, ...] = (1,)
        table: dict[str, float] = field(default_factory=dict)

        def __post_init__(self) -> None:
            check_fields(self, {"limit": Rule(ge=1, le=10)}, where="demo")

    assert Demo(limit=None).limit is None and Demo(sizes=[2, 3]).sizes == (2, 3)
    for bad, words in (({"mode": "c"}, 'mode = "c" must be one of "a", "b"'),
                       ({"limit": 11}, "limit = 11 must be >= 1 and <= 10"),
                       ({"limit": 2.0}, "limit = 2.0 must be an int or none"),
                       ({"sizes": [1, 2.5]}, "must be a list of ints"),
                       ({"table": [1]}, "table = [1] must be a table")):
        with pytest.raises(ConfigError, match=r"^demo: ") as info:
            Demo(**bad)
        assert words in str(info.value), bad
    with pytest.raises(TypeError):  # a rule for a field that does not exist is a bug
        check_fields(Demo(), {"nope": Rule(ge=0)})


# ----------------------------------------------------------------------- checkpoints
def _rewrite(path: Path, src: Path, edit) -> Path:
    payload = torch.load(src, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def test_resume_revalidates_the_stored_config(model_dir: Path, tmp_path: Path) -> None:
    bad = _rewrite(tmp_path / "model.pt", model_dir / "model.pt",
                   lambda p: p["config"]["data"].update(size="32"))
    with pytest.raises(ConfigError) as info:
        Trainer.resume(bad)
    assert str(bad) in str(info.value) and 'data.size = "32" must be an int' in str(info.value)
    result = _invoke(["export-patterns", str(bad), str(tmp_path / "p.npz")])
    _one_line_error(result, str(bad), "must be an int")
    result = _invoke(["train", "--init-from", str(bad), "--out", str(tmp_path / "ft"),
                      "--no-progress", "--no-probes"])
    _one_line_error(result, str(bad), "must be an int")
    assert not (tmp_path / "ft").exists()


def test_checkpoint_entries_are_type_checked(model_dir: Path, tmp_path: Path) -> None:
    for name, edit in (("step", lambda p: p.update(step="3")),
                       ("config", lambda p: p.update(config=[1, 2])),
                       ("model", lambda p: p.update(model=None))):
        bad = _rewrite(tmp_path / f"{name}.pt", model_dir / "model.pt", edit)
        with pytest.raises(ConfigError) as info:
            load_checkpoint(bad)
        assert str(bad) in str(info.value) and name in str(info.value)
    wrong = _rewrite(tmp_path / "wrong.pt", model_dir / "model.pt",
                     lambda p: p["optimizer"].update(decoder={"state": 1}))
    with pytest.raises(ConfigError, match="optimizer") as info:
        Trainer.resume(wrong)
    assert str(wrong) in str(info.value)


def _corrupt_copies(src: Path, folder: Path) -> list[Path]:
    data = src.read_bytes()
    folder.mkdir()
    made = {"truncated.pt": data[: len(data) // 2], "empty.pt": b"",
            "garbage.pt": b"not a checkpoint " * 20,
            "scrambled.pt": data[:100] + b"x" * 50 + data[150:]}
    for name, content in made.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in made]


def test_corrupt_checkpoints_are_one_line_errors(model_dir: Path, tmp_path: Path) -> None:
    for bad in _corrupt_copies(model_dir / "model.pt", tmp_path / "bad"):
        with pytest.raises(ConfigError) as info:
            load_checkpoint(bad)
        message = str(info.value)
        assert str(bad) in message and "\n" not in message and len(message) < 400
        run = tmp_path / bad.stem
        run.mkdir()
        (run / "model.pt").write_bytes(bad.read_bytes())
        result = _invoke(["export-patterns", str(run), str(tmp_path / "p.npz")])
        _one_line_error(result, str(run / "model.pt"))


def test_corrupt_probes_are_one_line_errors(model_dir: Path, pattern_name: str,
                                            tmp_path: Path) -> None:
    meas = _measurement(tmp_path / "m.npz", pattern_name)
    probes = tmp_path / "probes.pt"
    probes.write_bytes((model_dir / "model.pt").read_bytes()[:300])
    result = _invoke(["decode", str(model_dir), str(meas), "--probes", str(probes),
                      "--out", str(tmp_path / "dec")])
    _one_line_error(result, str(probes))
    assert not (tmp_path / "dec").exists()
    result = _invoke(["eval", str(model_dir), "--probes", str(probes), "--n-test", "4",
                      "--pairs", "4", "--no-progress"])
    _one_line_error(result, str(probes))


def test_eval_json_folder_is_checked_before_loading(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "r.json"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"never read")  # corrupt: not reached
    result = _invoke(["eval", str(tmp_path / "run"), "--json", str(missing), "--no-progress"])
    _one_line_error(result, str(missing), "folder does not exist")


# ----------------------------------------------------------------------- run-folder lock
def test_train_into_a_locked_run_folder_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "run"
    out.mkdir()
    args = ["train", "--config", str(config), "--out", str(out), "--no-probes",
            "--no-progress"]
    with PathLock(out / LOCK_FILE, "test"):
        result = _invoke(args)
        _one_line_error(result, f"run folder {out}", f"pid {os.getpid()}")
        assert not (out / "model.pt").exists() and not (out / "config.toml").exists()
    result = _invoke(args)  # free again: trains, and removes its lock file at the end
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").is_file() and not (out / LOCK_FILE).exists()


def test_second_process_into_a_locked_run_folder_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "run"
    out.mkdir()
    with PathLock(out / LOCK_FILE, "test"):
        done = subprocess.run(
            [sys.executable, "-m", "lsi_ml.cli", "train", "--config", str(config), "--out",
             str(out), "--no-probes", "--no-progress"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and str(os.getpid()) in lines[0]
    assert not (out / "model.pt").exists()


def test_only_rank0_of_a_ddp_launch_takes_the_lock(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lsi_ml.training.run import lock_run

    monkeypatch.setenv("RANK", "1")
    assert lock_run(tmp_path / "r1") is None and not (tmp_path / "r1").exists()
    monkeypatch.setenv("RANK", "0")
    lock = lock_run(tmp_path / "r0")
    try:
        assert lock.held and (tmp_path / "r0" / LOCK_FILE).is_file()
    finally:
        lock.release(remove=True)


# ----------------------------------------------------------------------- atomic writes
def test_run_files_go_through_atomic_writes(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import lsi_hw.plotting as plotting
    import lsi_ml.training.run as run_mod

    written: list[str] = []
    real_text, real_write = run_mod.atomic_write_text, plotting.atomic_write

    def spy_text(path, text, **kw):
        written.append(Path(path).name)
        return real_text(path, text, **kw)

    def spy_write(path, fn, *args, **kw):
        written.append(Path(path).name)
        return real_write(path, fn, *args, **kw)

    monkeypatch.setattr(run_mod, "atomic_write_text", spy_text)
    monkeypatch.setattr(plotting, "atomic_write", spy_write)  # figures: save_figure
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    result = _invoke(["train", "--config", str(config), "--out", str(tmp_path / "run"),
                      "--no-probes", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert {"config.toml", "history.json", "training_curve.png"} <= set(written)


def test_a_failed_plot_keeps_the_previous_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    from lsi_ml.training.run import plot_history

    path = tmp_path / "training_curve.png"
    path.write_bytes(b"old")

    def broken(self, fh, **kw):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError):
        plot_history([{"step": 1.0, "val_latent_l1": 0.5, "loss": 1.0}], path)
    assert path.read_bytes() == b"old" and _listing(tmp_path) == ["training_curve.png"]


def test_export_patterns_refuses_an_existing_file_without_force(model_dir: Path,
                                                                tmp_path: Path) -> None:
    from lsi_hw.patterns import PatternSet

    out = tmp_path / "p.npz"
    out.write_bytes(b"keep me")
    _one_line_error(_invoke(["export-patterns", str(model_dir), str(out)]), str(out),
                    "--force")
    assert out.read_bytes() == b"keep me"
    result = _invoke(["export-patterns", str(model_dir), str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert PatternSet.load(out).m == TINY.masks.n_masks
    before = (model_dir / "model.pt").read_bytes()
    result = _invoke(["export-patterns", str(model_dir), str(model_dir / "model.pt"),
                      "--force"])
    _one_line_error(result, "model's own file")
    assert (model_dir / "model.pt").read_bytes() == before


# ----------------------------------------------------------------------- decode output
def test_decode_never_replaces_the_cwd_an_input_or_its_folder(
        model_dir: Path, pattern_name: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    root = tmp_path / "root"
    data = root / "data"
    data.mkdir(parents=True)
    run = data / "run"
    shutil.copytree(model_dir, run)
    meas = _measurement(data / "m.npz", pattern_name)
    work = root / "work"
    work.mkdir()
    (work / "notes.txt").write_text("precious")
    monkeypatch.chdir(work)
    before = _listing(root)
    for out, words in ((".", "current folder"), (str(work), "current folder"),
                       (str(root), "current folder"), (str(run), "input"),
                       (str(data), "input")):
        result = _invoke(["decode", str(run), str(meas), "--out", out, "--force"])
        _one_line_error(result, out, "pick a new --out")
        assert words in result.output, (out, result.output)
        assert _listing(root) == before, out  # nothing deleted, no temporary folder left
    result = _invoke(["decode", str(run), str(meas), "--out", "dec"])
    assert result.exit_code == 0, result.output
    assert (work / "dec" / ".lsi-output.json").is_file()
    _one_line_error(_invoke(["decode", str(run), str(meas), "--out", "dec"]), "--force")
    result = _invoke(["decode", str(run), str(meas), "--out", "dec", "--force"])
    assert result.exit_code == 0, result.output
    assert (work / "notes.txt").read_text() == "precious"


# ----------------------------------------------------------------------- bad measurements
def _bad_measurements(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir()
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 0.1, size=(2, TINY.masks.n_masks))
    stamps = np.zeros_like(values)

    def archive(name: str, **arrays) -> Path:
        path = folder / name
        with path.open("wb") as fh:
            np.savez(fh, **{"timestamps": stamps, "settings": np.array("{}"),
                            "pattern_name": np.array(""),
                            "scene_ids": np.array(["a", "b"]), **arrays})
        return path

    nan, inf = values.copy(), values.copy()
    nan[0, 3] = np.nan
    inf[1, 0] = np.inf
    truncated = folder / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    plain = folder / "plain.npy"
    np.save(plain, values)
    empty = folder / "empty.npz"
    empty.write_bytes(b"")
    return {
        "truncated": truncated, "plain .npy": plain, "empty": empty,
        "nan": archive("nan.npz", values=nan), "inf": archive("inf.npz", values=inf),
        "int": archive("int.npz", values=np.ones((2, TINY.masks.n_masks), np.int64)),
        "complex": archive("complex.npz", values=values + 1j),
        "string": archive("string.npz", values=np.full((2, TINY.masks.n_masks), "x")),
        "1-D": archive("flat.npz", values=values[0]),
        "3-D": archive("cube.npz", values=values[None]),
        "no values": archive("novalues.npz", other=values),
        "huge": archive("huge.npz", values=values * 1e300),
    }


def test_bad_measurement_files_are_one_line_errors(model_dir: Path, pattern_name: str,
                                                   tmp_path: Path) -> None:
    good = _measurement(tmp_path / "good.npz", pattern_name)
    for case, path in _bad_measurements(tmp_path / "bad", good).items():
        out = tmp_path / f"dec-{path.stem}"
        result = _invoke(["decode", str(model_dir), str(path), "--out", str(out)])
        _one_line_error(result, str(path))
        assert "Aborted" not in result.output, case
        assert not out.exists(), case
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dec-")]
    result = _invoke(["decode", str(model_dir), str(good), "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------- memory estimate
def test_training_too_big_for_memory_is_refused_before_allocating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = TINY.memory_estimate()
    double = TINY.with_overrides({"data.size": 64}).memory_estimate()
    assert double["masks"] == 4 * small["masks"] and double["render"] == 4 * small["render"]
    assert small["total"] == sum(v for k, v in small.items() if k != "total")
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "0.001")  # ~1 MiB
    with pytest.raises(ConfigError) as info:
        Trainer(TINY)
    assert "needs about" in str(info.value) and "the limit is 1.0 MiB" in str(info.value)
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "1")
    out = tmp_path / "big"
    result = _invoke(["train", "--size", "2048", "--out", str(out), "--no-probes",
                      "--no-progress"])
    _one_line_error(result, "size 2048", "needs about", "the limit is 1.0 GiB")
    assert not out.exists()


def test_evaluation_too_big_for_memory_is_refused_before_rendering(monkeypatch) -> None:
    from lsi_ml.evaluation.latent import evaluate_decoder
    from lsi_ml.generators.synthface import SynthFace

    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "1")

    def never(_batch):  # pragma: no cover - must not be reached
        raise AssertionError("decoded before the size check")

    with pytest.raises(ConfigError, match=r"evaluating 1000000000 test faces.*limit is 1\.0"):
        evaluate_decoder(never, SynthFace(size=32), None, n_test=10**9, n_pairs=8)


def test_cli_eval_refuses_a_huge_test_set_before_training_probes(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSI_MAX_MEMORY_GB", "1")
    result = _invoke(["eval", str(model_dir), "--n-test", "1000000000", "--no-progress"])
    _one_line_error(result, "evaluating 1000000000 test faces")
    assert not (model_dir / "probes.pt").exists()
