"""Tests of the synthetic dataset and the end-to-end trainer (tiny CPU configs)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lsi_hw.errors import ConfigError
from lsi_ml.checkpoint import load_checkpoint
from lsi_ml.data.synthetic import BLOCK, MAX_BLOCKS, SyntheticFaces, split_seed
from lsi_ml.generators.synthface import SynthFace
from lsi_ml.latent.losses import LossWeights
from lsi_ml.training.config import (
    BenchConfig,
    DataConfig,
    DecoderConfig,
    MaskConfig,
    ScheduleConfig,
    TrainConfig,
)
from lsi_ml.training.trainer import Trainer

# SynthFace renders 32 px or more: the smallest trainer config.
TINY = TrainConfig(
    data=DataConfig(size=32, n_train=64, n_val=32),
    masks=MaskConfig(n_masks=32),
    decoder=DecoderConfig(hidden=64, depth=1, block_hidden=32),
    schedule=ScheduleConfig(steps=6, batch=16, eval_batch=32, eval_every=2),
    bench=BenchConfig(noise="shot"),
    progress=False, seed=3,
)


@pytest.fixture(scope="module")
def face32() -> SynthFace:
    return SynthFace(32, seed=0)


def _state_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------- dataset
def test_dataset_fields_and_shapes(face32: SynthFace) -> None:
    data = SyntheticFaces(face32, 10, seed=1)
    item = data[3]
    assert set(item) == {"image", "latent", "landmarks", "segmentation", "attributes",
                         "identity"}
    assert item["image"].shape == (3, 32, 32)
    assert item["latent"].shape == (4, 24)
    assert item["landmarks"].shape == (68, 2)
    assert item["segmentation"].shape == (32, 32)
    assert item["identity"].shape == (face32.identity_dim,)
    batch = data.batch([0, 3, 9])
    assert batch["image"].shape == (3, 3, 32, 32)
    assert torch.equal(batch["latent"][1], item["latent"])
    assert len(data) == 10
    with pytest.raises(IndexError):
        data[10]


def test_dataset_deterministic_and_order_free(face32: SynthFace) -> None:
    a = SyntheticFaces(face32, BLOCK + 20, seed=5, cache=False)
    b = SyntheticFaces(face32, BLOCK + 20, seed=5, cache=False)
    idx = [BLOCK + 7, 2, BLOCK + 19]
    assert torch.equal(a.latents(idx), b.latents(list(reversed(idx))).flip(0))
    # evicted latent blocks are redrawn identically (bounded memory for huge splits)
    big = SyntheticFaces(face32, BLOCK * (MAX_BLOCKS + 5), seed=5)
    first = big.latents([0, 1])
    big.latents([BLOCK * k for k in range(1, MAX_BLOCKS + 5)])
    assert len(big._blocks) <= MAX_BLOCKS
    assert torch.equal(big.latents([0, 1]), first)
    # item i does not depend on n
    small = SyntheticFaces(face32, 3, seed=5)
    assert torch.equal(small.latents([2]), a.latents([2]))
    # cached and on-the-fly rendering agree; SynthFace crops each render call to the union
    # of its faces' boxes, so an image's pixels shift slightly (< 0.05) with its batch mates
    cached = SyntheticFaces(face32, 8, seed=5, cache=True)
    fly = SyntheticFaces(face32, 8, seed=5, cache=False)
    for key, value in cached.batch([1, 6]).items():
        atol = 0.05 if key == "image" else 0.0
        assert torch.allclose(value, fly.batch([1, 6])[key], rtol=0.0, atol=atol), key
    assert torch.equal(fly.batch([1, 6])["image"], fly.batch([1, 6])["image"])


def test_dataset_splits_disjoint_and_seeded(face32: SynthFace) -> None:
    latents = {s: SyntheticFaces(face32, 50, seed=0, split=s).latents(range(50)).flatten(1)
               for s in ("train", "val", "test")}
    for s in latents:
        for t in latents:
            if s < t:
                assert torch.cdist(latents[s], latents[t]).min() > 1.0
    other = SyntheticFaces(face32, 50, seed=1, split="train").latents(range(50))
    assert not torch.equal(other.flatten(1), latents["train"])
    assert len({split_seed(0, s, b) for s in ("train", "val", "test") for b in range(3)}) == 9
    with pytest.raises(ConfigError):
        SyntheticFaces(face32, 5, split="holdout")


# ----------------------------------------------------------------------- trainer
def test_loss_decreases() -> None:
    cfg = TINY.with_overrides({"schedule.steps": 30, "schedule.batch": 32, "data.n_train": 32,
                               "decoder.lr": 3e-3, "schedule.eval_every": 0,
                               "decoder.hidden": 128, "decoder.depth": 2})
    trainer = Trainer(cfg)
    losses = [trainer.train_step() for _ in range(cfg.schedule.steps)]
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5
    assert trainer.step == 30
    latent = trainer.decode(trainer.measure(trainer.val_data.batch(range(4))["image"]))
    assert latent.shape == (4, 4, 24)
    weights = trainer.optical.weights.detach()
    assert float(weights.min()) >= 0.0 and float(weights.max()) <= 1.0


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    whole = Trainer(TINY)
    whole.train()
    path = tmp_path / "run.pt"
    first = Trainer(TINY.with_overrides({"checkpoint": str(path)}))
    first.train(3)
    assert load_checkpoint(path)["step"] == 3
    resumed = Trainer.resume(path)
    assert resumed.step == 3
    resumed.train()
    assert resumed.step == whole.step == 6
    assert _state_equal(resumed.optical.state_dict(), whole.optical.state_dict())
    assert _state_equal(resumed.decoder.state_dict(), whole.decoder.state_dict())
    assert [h["val_latent_l1"] for h in resumed.history] == \
        [h["val_latent_l1"] for h in whole.history]
    # the masks were trained (not only the decoder)
    assert not torch.equal(whole.optical.weights, Trainer(TINY).optical.weights)
    assert load_checkpoint(path)["step"] == 6


def test_frozen_masks_unchanged(tmp_path: Path) -> None:
    cfg = TINY.with_overrides({"masks.freeze": True, "checkpoint": str(tmp_path / "ft.pt")})
    trainer = Trainer(cfg)
    masks0 = trainer.optical.weights.detach().clone()
    dec0 = {k: v.clone() for k, v in trainer.decoder.state_dict().items()}
    trainer.train()
    assert torch.equal(trainer.optical.weights, masks0)
    assert not _state_equal(trainer.decoder.state_dict(), dec0)
    assert load_checkpoint(cfg.checkpoint)["optimizer"]["masks"] is None
    resumed = Trainer.resume(cfg.checkpoint, {"schedule.steps": 8})
    resumed.train()
    assert torch.equal(resumed.optical.weights, masks0)


def test_finetune_from_trained_model(tmp_path: Path) -> None:
    path = tmp_path / "base.pt"
    base = Trainer(TINY.with_overrides({"schedule.steps": 3, "checkpoint": str(path)}))
    base.train()
    fine = Trainer(TINY.with_overrides({"schedule.steps": 2, "masks.freeze": True,
                                        "init_from": str(path), "seed": 4}))
    assert torch.equal(fine.optical.weights, base.optical.weights)
    assert torch.equal(fine.decoder.normalizer.mean, base.decoder.normalizer.mean)
    fine.train()
    assert torch.equal(fine.optical.weights, base.optical.weights)
    fine.save(tmp_path / "fine.pt")
    with pytest.raises(ConfigError):  # frozen run's checkpoint has no mask optimizer state
        Trainer.resume(tmp_path / "fine.pt", {"masks.freeze": False})


def test_checkpoint_contents(tmp_path: Path) -> None:
    cfg = TINY.with_overrides({"schedule.steps": 2, "checkpoint": str(tmp_path / "sub" / "c.pt")})
    trainer = Trainer(cfg)
    trainer.train()
    payload = load_checkpoint(cfg.checkpoint)  # weights_only=True load
    assert payload["step"] == 2
    assert payload["config"] == cfg.to_dict()
    assert TrainConfig.from_dict(payload["config"]) == cfg
    assert isinstance(payload["git_revision"], str) and payload["git_revision"]
    assert set(payload["model"]) == {"optical", "decoder"}
    assert set(payload["optimizer"]) == {"masks", "decoder"}
    assert payload["optimizer"]["masks"]["state"]
    masks = payload["extra"]["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (32, 32, 32)
    assert torch.equal(masks, trainer.optical.masks().to(torch.uint8))
    assert bool(payload["model"]["decoder"]["normalizer.fitted"])
    assert payload["extra"]["history"][-1]["step"] == 2.0
    assert not list((tmp_path / "sub").glob(".c.pt.*"))  # no temporary left behind


def test_toml_round_trip(tmp_path: Path) -> None:
    cfg = TINY.with_overrides({"masks.lr": 2.5e-5, "checkpoint": "runs/x.pt",
                               "loss": LossWeights(latent_l1=0.5, latent_l2=2.0, identity=0.1)})
    path = tmp_path / "train.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    assert TrainConfig.from_toml(path) == cfg
    table = tmp_path / "table.toml"
    table.write_text('[train]\nsize = 32\nn_masks = 8\nnoise = "none"\n\n[loss]\nimage = 1.0\n',
                     encoding="utf-8")
    read = TrainConfig.from_toml(table)  # flat keys of earlier versions
    assert (read.masks.n_masks, read.bench.noise, read.loss.image) == (8, "none", 1.0)
    assert read.to_dict()["loss"]["image"] == 1.0
    bad = tmp_path / "bad.toml"
    bad.write_text("sise = 32\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sise"):
        TrainConfig.from_toml(bad)
    with pytest.raises(ConfigError, match=r"bench\.noise"):
        TrainConfig(bench=BenchConfig(noise="loud"))
    with pytest.raises(ConfigError, match=r"data\.size"):
        TrainConfig(data=DataConfig(size=16))


def test_simulator_settings_reach_the_bench_and_round_trip(tmp_path: Path) -> None:
    cfg = TINY.with_overrides({"bench.sim": {"digitizer": {"bits": 10},
                                             "optics.shift_px": (1.5, -0.5)}})
    assert cfg.bench.sim == {"digitizer.bits": 10, "optics.shift_px": [1.5, -0.5]}
    path = tmp_path / "sim.toml"
    path.write_text(cfg.to_toml(), encoding="utf-8")
    assert TrainConfig.from_toml(path) == cfg
    trainer = Trainer(cfg)
    assert trainer.sim_config.digitizer.bits == 10
    assert trainer.sim_config.optics.shift_px == (1.5, -0.5)
    # 10-bit readings sit on the 10-bit grid of the +-10 V range
    lsb = 2 * trainer.sim_config.digitizer.range_v / 2**10
    images = trainer.val_data.batch(range(4))["image"]
    volts = trainer.measure(images, noise=False)
    steps = (volts - trainer.sim_config.digitizer.offset_v) / lsb
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    plain = Trainer(TINY).measure(images, noise=False)
    assert not torch.allclose(plain, volts)
    with pytest.raises(ConfigError, match=r"bench\.sim.*allowed"):
        TINY.with_overrides({"bench.sim": {"digitizer.bitz": 10}})
    with pytest.raises(ConfigError):
        TINY.with_overrides({"bench.sim": {"digitizer.bits": 0}})
    with pytest.raises(ConfigError, match="device"):
        TINY.with_overrides({"device": "warp-drive"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_matches_cpu() -> None:
    cpu = Trainer(TINY)
    gpu = Trainer(TINY.with_overrides({"device": "cuda"}))
    cpu.train(4)
    gpu.train(4)
    assert abs(cpu.last_loss - gpu.last_loss) < 1e-3 * max(1.0, abs(cpu.last_loss))


# ----------------------------------------------------------------------- measurement bank
BANKED = TINY.with_overrides({"schedule.steps": 3, "bank.steps": 4, "bank.size": 32,
                              "bank.batch": 8, "schedule.eval_every": 0})


def test_bank_phase_freezes_masks_and_trains_decoder() -> None:
    trainer = Trainer(BANKED)
    assert trainer.total_steps == 7
    trainer.train(3)  # end-to-end phase: the masks move
    assert not torch.equal(trainer.optical.weights, Trainer(BANKED).optical.weights)
    masks = trainer.optical.weights.detach().clone()
    decoder = {k: v.clone() for k, v in trainer.decoder.state_dict().items()}
    assert trainer.bank is None and trainer.in_bank_phase()
    trainer.train()
    assert trainer.step == 7 and trainer.history[-1]["step"] == 7
    assert torch.equal(trainer.optical.weights, masks)  # frozen in the bank phase
    assert not _state_equal(trainer.decoder.state_dict(), decoder)
    bank = trainer.bank
    assert bank is not None and len(bank) == 32 and bank.power.shape == (32, 32)
    # the bank holds the train scenes' powers through the (final) masks
    scenes = trainer.train_data.images(torch.arange(4))
    from lsi_ml.training.streams import as_8bit

    with torch.no_grad():
        expected = trainer.optical.power(as_8bit(scenes["image"]))
    assert torch.allclose(bank.power[:4], expected, rtol=1e-6, atol=0)
    assert torch.equal(bank.latents[:4], scenes["latent"])


def test_bank_phase_learning_rate_schedule() -> None:
    trainer = Trainer(BANKED.with_overrides({"schedule.steps": 20, "schedule.warmup": 2,
                                             "bank.steps": 20}))
    e2e = [trainer.lr_factor(s) for s in range(20)]
    bank = [trainer.lr_factor(s) for s in range(20, 40)]
    assert e2e[:2] == [0.5, 1.0] and e2e[-1] < 0.05  # warm-up, then the cosine decays
    assert bank[:2] == [0.5, 1.0] and bank[-1] < 0.05  # the bank phase starts afresh
    assert trainer.in_bank_phase(20) and not trainer.in_bank_phase(19)


def test_bank_resume_equals_uninterrupted(tmp_path: Path) -> None:
    whole = Trainer(BANKED)
    whole.train()
    path = tmp_path / "run.pt"
    first = Trainer(BANKED.with_overrides({"checkpoint": str(path)}))
    first.train(5)  # stop inside the bank phase; the bank is rebuilt on resume
    resumed = Trainer.resume(path)
    assert resumed.step == 5 and resumed.bank is None
    resumed.train()
    assert _state_equal(resumed.decoder.state_dict(), whole.decoder.state_dict())
    assert _state_equal(resumed.optical.state_dict(), whole.optical.state_dict())


def test_bank_phase_improves_the_decoder() -> None:
    """Cheap bank steps take a short e2e run's decoder well below the prior's error."""
    cfg = TINY.with_overrides({
        "schedule.steps": 20, "schedule.batch": 32, "data.n_train": 1_000_000,
        "data.n_val": 128, "schedule.eval_batch": 128, "schedule.eval_every": 20,
        "bank.steps": 580, "bank.size": 4096, "bank.batch": 64, "decoder.hidden": 128,
        "decoder.depth": 1, "bank.lr": 1e-2})
    trainer = Trainer(cfg)
    trainer.train()
    after_e2e, last = trainer.history[0], trainer.history[-1]
    assert after_e2e["step"] == 20 and last["step"] == 600
    prior_l1 = math.sqrt(2 / math.pi)  # E|z| for z ~ N(0, 1): decoding the mean
    assert last["val_latent_l1"] < 0.98 * prior_l1
    assert last["val_latent_l1"] < 0.98 * after_e2e["val_latent_l1"]


@pytest.mark.parametrize(("bad", "named"), [
    ({"bank.steps": -1}, "bank.steps"),
    ({"bank.steps": 2, "bank.size": 4, "bank.batch": 8}, "bank.batch"),
    ({"bank.steps": 2, "bank.size": 0}, "bank.size"),
    ({"bank.lr": float("nan")}, "bank.lr"),
    ({"bank.steps": 2, "bench.backend": "fake-hw", "masks.freeze": True,
      "bench.recording": "x"}, "bank.steps"),
])
def test_bank_config_refused(bad: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        TINY.with_overrides(bad)


def test_mask_init_setting() -> None:
    trainer = Trainer(TINY.with_overrides({"masks.init": "hadamard"}))
    from lsi_hw.patterns import PatternSet

    expected = PatternSet.hadamard(32, TINY.masks.n_masks, order="sequency").masks
    assert (trainer.optical.masks().detach().numpy() == expected).all()
    for bad in ({"masks.init": "dct"}, {"masks.init": "hadamard", "data.size": 48},
                {"masks.init": "hadamard", "masks.n_masks": 32 * 32 + 1}):
        with pytest.raises(ConfigError, match=r"masks\.init"):
            TINY.with_overrides(bad)


def test_example_recipes_parse() -> None:
    """The shipped training recipes are valid configs (refused settings would fail here)."""
    folder = Path(__file__).resolve().parent.parent / "examples" / "configs"
    recipes = sorted(folder.glob("*.toml"))
    assert recipes, f"no recipes in {folder}"
    for path in recipes:
        cfg = TrainConfig.from_toml(path)
        assert cfg.masks.init == "hadamard", path.name
        # a CPU recipe needs the bank to see enough scenes; a GPU one renders them fresh
        assert (cfg.bank.steps > 0) == ("cpu" in path.stem), path.name
        assert "steps =" not in path.read_text().split("[")[0], path.name  # nested form


def test_device_strings_are_checked_in_one_place() -> None:
    """lsi_ml.devices.check_device: configs accept any torch device, commands need it."""
    from lsi_ml.devices import check_device

    assert check_device("cpu") == torch.device("cpu")
    assert check_device("cuda:1").type == "cuda"  # a config may name a GPU it will run on
    with pytest.raises(ConfigError, match="device='cpux' is not a torch device"):
        TrainConfig(device="cpux")
    with pytest.raises(ConfigError, match="--device 'gpu' is not a torch device"):
        check_device("gpu", label="--device ", available=True)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            check_device("cuda", available=True)
