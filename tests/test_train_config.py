"""TrainConfig's sections: dotted overrides, the nested and the flat (earlier) file forms,
and the studies' cache keys, which must not change with the form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.latent.losses import LossWeights
from lsi_ml.training.config import (
    FLAT_KEYS,
    SECTIONS,
    TOP_LEVEL,
    BankConfig,
    BenchConfig,
    DataConfig,
    DecoderConfig,
    MaskConfig,
    ScheduleConfig,
    TrainConfig,
)

# A config with a non-default value in every section, written with the flat keys of
# earlier versions (as sims/configs and old checkpoints hold them).
FLAT = {
    "size": 32, "n_masks": 16, "noise": "full", "steps": 7, "batch": 4, "lr_masks": 0.02,
    "weight_decay": 0.0, "mask_energy": 0.1, "n_train": 64, "n_val": 8, "eval_every": 3,
    "eval_batch": 4, "seed": 5, "freeze_masks": False, "encoder_hidden": 32,
    "encoder_depth": 1, "encoder_block_hidden": 16, "lr_schedule": "constant", "warmup": 2,
    "mask_init": "hadamard", "bank_steps": 5, "bank_size": 32, "bank_batch": 8,
    "lr_bank": 0.005, "sim": {"digitizer.bits": 12, "optics.shift_px": [1.0, 0.0]},
    "loss": {"latent_l1": 1.0, "latent_l2": 0.5},
}
NESTED = TrainConfig(
    data=DataConfig(size=32, n_train=64, n_val=8),
    masks=MaskConfig(n_masks=16, init="hadamard", lr=0.02, energy=0.1),
    decoder=DecoderConfig(hidden=32, depth=1, block_hidden=16, weight_decay=0.0),
    schedule=ScheduleConfig(steps=7, batch=4, lr_schedule="constant", warmup=2,
                            eval_every=3, eval_batch=4),
    bank=BankConfig(steps=5, size=32, batch=8, lr=0.005),
    bench=BenchConfig(noise="full", sim={"digitizer": {"bits": 12},
                                         "optics.shift_px": (1.0, 0.0)}),
    loss=LossWeights(latent_l2=0.5),
    seed=5,
)
# What the flat TrainConfig.to_dict() of earlier versions returned for FLAT (computed with
# that code before the config became nested): flat_dict() must return exactly this.
OLD_FLAT_DICT = (
    '{"backend": "sim", "bank_batch": 8, "bank_size": 32, "bank_steps": 5, "batch": 4, '
    '"checkpoint": null, "checkpoint_every": 0, "device": "cpu", "encoder_block_hidden": 16, '
    '"encoder_depth": 1, "encoder_hidden": 32, "eval_batch": 4, "eval_every": 3, '
    '"freeze_masks": false, "init_from": null, "loss": {"identity": 0.0, "image": 0.0, '
    '"latent_l1": 1.0, "latent_l2": 0.5, "perceptual": 0.0}, "lr_bank": 0.005, '
    '"lr_decoder": 0.001, "lr_masks": 0.02, "lr_schedule": "constant", "mask_energy": 0.1, '
    '"mask_init": "hadamard", "n_masks": 16, "n_recorded": 1024, "n_train": 64, "n_val": 8, '
    '"noise": "full", "progress": true, "recording": null, "refit_normalizer": false, '
    '"seed": 5, "sim": {"digitizer.bits": 12, "optics.shift_px": [1.0, 0.0]}, "size": 32, '
    '"steps": 7, "warmup": 2, "weight_decay": 0.0}')


# ----------------------------------------------------------------------- with_overrides
def test_with_overrides_changes_a_copy_and_checks_it_again() -> None:
    base = TrainConfig()
    cfg = base.with_overrides({"schedule.steps": 500, "masks.n_masks": 64, "seed": 3,
                               "loss.image": 0.5, "bench.sim": {"digitizer": {"bits": 12}}})
    assert (cfg.schedule.steps, cfg.masks.n_masks, cfg.seed) == (500, 64, 3)
    assert cfg.loss.image == 0.5 and cfg.loss.latent_l1 == base.loss.latent_l1
    assert cfg.bench.sim == {"digitizer.bits": 12}
    assert cfg.schedule.batch == base.schedule.batch  # the rest of the section is kept
    assert base == TrainConfig()  # frozen: the original is unchanged
    assert base.with_overrides({}) is base and base.with_overrides(None) is base
    assert cfg.with_overrides(cfg.dotted_dict()) == cfg
    assert base.with_overrides({"loss": {"image": 1.0}}).loss == LossWeights(image=1.0)
    with pytest.raises(ConfigError, match=r"^config: schedule\.steps = -1 must be >= 0$"):
        base.with_overrides({"schedule.steps": -1})
    with pytest.raises(ConfigError, match=r"masks\.init"):  # a check across sections
        base.with_overrides({"masks.init": "hadamard", "data.size": 48})


@pytest.mark.parametrize(("key", "words"), [
    ("schedule.stepz", ["schedule has no field 'stepz'", "allowed: steps, batch, lr_schedule"]),
    ("masks.lr_masks", ["masks has no field 'lr_masks'", "n_masks, init, lr, energy, freeze"]),
    ("loss.imagee", ["loss has no field 'imagee'", "latent_l1"]),
    ("sched.steps", ["'sched.steps'", "data, masks, decoder, schedule, bank, bench, loss",
                     "seed, init_from, checkpoint, progress, device"]),
    ("steps", ["'steps' (now 'schedule.steps')", "SECTION.FIELD"]),
    ("lr_bank", ["(now 'bank.lr')"]),
    ("schedule", ["'schedule'", "SECTION.FIELD"]),
])
def test_with_overrides_refuses_unknown_keys_listing_the_allowed_ones(
        key: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig().with_overrides({key: 1})
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------------- dict forms
def test_flat_and_nested_dicts_round_trip() -> None:
    assert TrainConfig.from_dict(FLAT) == NESTED
    assert TrainConfig.from_dict(NESTED.to_dict()) == NESTED
    assert TrainConfig.from_dict(NESTED.flat_dict()) == NESTED
    nested = NESTED.to_dict()
    assert set(nested) == {*SECTIONS, *TOP_LEVEL}
    assert nested["schedule"]["steps"] == 7 and nested["bench"]["sim"]["digitizer.bits"] == 12
    # flat_dict() is the flat to_dict() of earlier versions: same keys, order and values
    assert list(NESTED.flat_dict()) == list(FLAT_KEYS)
    assert json.dumps(NESTED.flat_dict(), sort_keys=True) == OLD_FLAT_DICT
    assert TrainConfig().flat_dict()["steps"] == 2000
    # every flat key names one field of the nested config, and every field has one
    dotted = set(TrainConfig().dotted_dict())
    targets = {v for v in FLAT_KEYS.values() if v != "loss"}
    assert targets | {k for k in dotted if k.startswith("loss.")} == dotted
    # a mix is read too; one setting given twice is refused
    mixed = {"steps": 7, "masks": {"n_masks": 16}}
    assert TrainConfig.from_dict(mixed) == TrainConfig(schedule=ScheduleConfig(steps=7),
                                                       masks=MaskConfig(n_masks=16))
    with pytest.raises(ConfigError, match=r"both set schedule\.steps"):
        TrainConfig.from_dict({"steps": 7, "schedule": {"steps": 8}})
    with pytest.raises(ConfigError, match=r"schedule\.stepz"):
        TrainConfig.from_dict({"schedule": {"stepz": 8}})
    with pytest.raises(ConfigError, match="sise"):
        TrainConfig.from_dict({"sise": 32})


def test_sections_given_as_dicts_are_checked_like_the_classes() -> None:
    assert TrainConfig(data={"size": 32}) == TrainConfig(data=DataConfig(size=32))
    with pytest.raises(ConfigError, match=r"data\.sise"):
        TrainConfig(data={"sise": 32})
    with pytest.raises(ConfigError, match="must be a table"):
        TrainConfig(data=32)
    with pytest.raises(ConfigError, match=r"^config: bank\.batch = 8 exceeds bank\.size = 4$"):
        BankConfig(steps=1, size=4, batch=8)
    with pytest.raises(ConfigError, match=r"^config: bench\.sim: .*allowed"):
        BenchConfig(sim={"digitizer.bitz": 1})


# ----------------------------------------------------------------------- TOML
def test_toml_nested_round_trip_and_flat_files(tmp_path: Path) -> None:
    cfg = NESTED.with_overrides({"checkpoint": "runs/x.pt", "bench.recording": "rec"})
    path = tmp_path / "nested.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    text = path.read_text()
    for table in ("[data]", "[masks]", "[decoder]", "[schedule]", "[bank]", "[bench]",
                  "[bench.sim]", "[loss]"):
        assert f"\n{table}\n" in text, table
    assert "steps = 7" in text.split("[schedule]")[1] and "lr_masks" not in text
    assert TrainConfig.from_toml(path) == cfg
    # the same config in a [train] table with nested tables, and as a flat file of
    # earlier versions: keys in [train], [loss] and [sim] beside it
    inside = tmp_path / "inside.toml"
    inside.write_text("[train]\n" + cfg.to_toml().replace("\n[", "\n[train."),
                      encoding="utf-8")
    assert TrainConfig.from_toml(inside) == cfg
    flat = tmp_path / "flat.toml"
    lines = ["[train]", 'checkpoint = "runs/x.pt"', 'recording = "rec"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in FLAT.items() if k not in ("sim", "loss")]
    lines += ["", "[loss]", "latent_l2 = 0.5", "", "[sim]", '"digitizer.bits" = 12',
              '"optics.shift_px" = [1.0, 0.0]']
    flat.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert TrainConfig.from_toml(flat) == cfg
    # dotted TOML keys are nested tables
    dotted = tmp_path / "dotted.toml"
    dotted.write_text("schedule.steps = 9\nmasks.n_masks = 8\n", encoding="utf-8")
    assert TrainConfig.from_toml(dotted) == TrainConfig().with_overrides(
        {"schedule.steps": 9, "masks.n_masks": 8})


def test_shipped_study_configs_read_through_the_flat_keys() -> None:
    """sims/configs keep their flat ``train = {...}`` tables."""
    from sims.common import load_study_config, train_config

    for quick in (False, True):
        cfg = load_study_config("compression_sweep", quick)
        assert "steps" in cfg["train"]  # still the flat form
        config = train_config(cfg["train"], {"masks.n_masks": 256})
        assert config.schedule.steps == cfg["train"]["steps"]
        assert config.masks.n_masks == 256


# ----------------------------------------------------------------------- cache keys
def test_study_cache_keys_did_not_change() -> None:
    """sims.common.config_key hashes the flat dict: the keys computed by the code before the
    config became nested (the folders of every cached model) are pinned here."""
    from sims.common import config_key, load_study_config, train_config

    assert config_key(TrainConfig.from_dict(FLAT)) == "f8e85708c6a8"
    assert config_key(NESTED) == "f8e85708c6a8"
    assert config_key(TrainConfig()) == "94738acb522a"
    full = load_study_config("compression_sweep", False)
    quick = load_study_config("compression_sweep", True)
    assert config_key(train_config(full["train"], {"masks.n_masks": 256})) == "df8f185474ad"
    assert config_key(train_config(full["train"], {"masks.n_masks": 16})) == "39ef2e48a46e"
    assert config_key(train_config(quick["train"], {"masks.n_masks": 256})) == "c50a2948fac6"


def test_adapted_sweep_config_keeps_its_cache_key() -> None:
    """The noise sweep's fine-tuning config (dotted overrides of the base) hashes as the flat
    ``replace(...)`` of earlier versions did."""
    from sims.common import config_key, load_study_config, train_config
    from sims.settings_sweep import _adapted_config

    cfg = load_study_config("noise_sweep", False)
    base = train_config(cfg["train"], {"masks.n_masks": 256})
    photon = cfg["sweeps"][0]["settings"][0]  # 1/1000 of the default light
    assert config_key(_adapted_config(base, photon, cfg)) == "a648a05782be"


# ----------------------------------------------------------------------- old checkpoints
def test_a_flat_checkpoint_of_an_earlier_version_resumes(tmp_path: Path) -> None:
    from lsi_ml.training.run import MODEL_FILE, run
    from lsi_ml.training.trainer import Trainer

    cfg = TrainConfig.from_dict({
        "size": 32, "n_masks": 8, "steps": 2, "batch": 4, "n_train": 8, "n_val": 4,
        "eval_every": 0, "eval_batch": 4, "encoder_hidden": 16, "encoder_depth": 1,
        "encoder_block_hidden": 8, "progress": False, "seed": 1})
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / MODEL_FILE
    trainer = Trainer(cfg)
    trainer.train()
    trainer.save(path)
    payload = torch.load(path, weights_only=True)
    assert payload["config"] == cfg.to_dict()  # new checkpoints hold the nested form
    payload["config"] = cfg.flat_dict()  # as earlier versions wrote it
    torch.save(payload, path)
    assert TrainConfig.from_checkpoint(path) == cfg
    resumed = Trainer.resume(path, progress=False, checkpoint=None)
    assert resumed.step == 2 and resumed.config == cfg
    assert torch.equal(resumed.optical.weights, trainer.optical.weights)
    longer = Trainer.resume(path, {"schedule.steps": 3}, progress=False)
    assert longer.total_steps == 3
    # the run folder of an earlier version resumes with more steps, and nothing else
    more = run(cfg.with_overrides({"schedule.steps": 3}), folder, train_probes=False,
               progress=False, echo=lambda _line: None)
    assert more.step == 3
    with pytest.raises(ConfigError, match=r"decoder\.hidden"):
        run(cfg.with_overrides({"decoder.hidden": 32}), folder, train_probes=False,
            progress=False)
