"""The SynthFace face recognizer (lsi_ml.evaluation.recognizer): embeddings, training, thresholds,
the
decoded-vs-original protocol, the cache and `lsi-ml recognizer`. Tiny configs (32 px)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lsi_hw.errors import ConfigError
from lsi_ml.cli import main
from lsi_ml.evaluation import recognizer as rec
from lsi_ml.evaluation import recognizer_cache
from lsi_ml.evaluation.recognizer import (
    Recognizer,
    RecognizerConfig,
    fit_threshold,
    train_recognizer,
)
from lsi_ml.evaluation.recognizer_cache import (
    default_cache_dir,
    load_or_train_recognizer,
    load_recognizer,
    recognizer_cache_path,
    recognizer_key,
    save_recognizer,
)
from lsi_ml.evaluation.recognizer_verification import (
    impostor_index,
    recognizer_pairs_accuracy,
    verification_decoded_vs_original,
)
from lsi_ml.generators.synthface import SynthFace

TINY = RecognizerConfig(input_size=32, widths=(8, 16, 32), embedding_dim=16, steps=80,
                        identities=8, views=3, lr=5e-3, warmup=5, val_pairs=64, batch=128,
                        progress=False)


@pytest.fixture(scope="module")
def gen32() -> SynthFace:
    return SynthFace(32)


@pytest.fixture(scope="module")
def trained(gen32: SynthFace) -> Recognizer:
    return train_recognizer(gen32, TINY)


def _pairs(generator: SynthFace, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor,
                                                              np.ndarray]:
    """``n`` test pairs: half the same identity with nuisances redrawn, half random."""
    g = torch.Generator().manual_seed(seed)
    a = generator.sample_latent(n, g)
    b = generator.sample_latent(n, g)
    same = np.arange(n) < n // 2
    b[: n // 2] = generator.with_identity(b[: n // 2], generator.identity(a[: n // 2]))
    with torch.no_grad():
        return generator.synthesize(a), generator.synthesize(b), same


def _auc(sim: np.ndarray, same: np.ndarray) -> float:
    """ROC AUC: probability that a same pair scores above a different pair."""
    pos, neg = sim[same], sim[~same]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :])
                 .mean())


def _sims(model: Recognizer, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return rec.cosine_similarity(model.embed(a), model.embed(b)).numpy()


# ------------------------------------------------------------------------------- config
@pytest.mark.parametrize(("change", "words"), [
    ({"steps": 0}, "steps = 0 must be >= 1"),
    ({"steps": 4.5}, "must be an int"),
    ({"views": 1}, "views = 1 must be >= 2"),
    ({"identities": 1}, "identities = 1 must be >= 2"),
    ({"input_size": 36}, "multiple of 8"),
    ({"input_size": 8}, "must be >= 16"),
    ({"widths": ()}, "widths"),
    ({"temperature": 0.0}, "temperature = 0.0 must be finite and > 0"),
    ({"device": "gpu9"}, "not a torch device"),
])
def test_config_refuses_silly_values(change: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        dataclasses.replace(TINY, **change)


# ------------------------------------------------------------------------------- embeddings
def test_embeddings_unit_norm_deterministic_and_same_image_similarity(gen32) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Recognizer(TINY)
    images = gen32.synthesize(gen32.sample_latent(6, torch.Generator().manual_seed(1)))
    e1 = model.embed(images)
    e2 = model.embed(images)
    assert e1.shape == (6, TINY.embedding_dim)
    assert torch.equal(e1, e2)
    assert torch.allclose(e1.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(rec.cosine_similarity(e1, e2), torch.ones(6), atol=1e-5)
    # one image embedded alone or in a batch, at another size (resized), grey or colour
    assert torch.allclose(model.embed(images[:1]), e1[:1], atol=1e-5)
    grey = images.mean(dim=1, keepdim=True)
    assert torch.allclose(model.embed(grey), e1, atol=1e-5)
    with pytest.raises(ConfigError, match=r"expected images"):
        model.embed(images[0])
    with pytest.raises(ConfigError, match="NaN"):
        model.embed(torch.full((1, 3, 32, 32), float("nan")))


def test_training_is_deterministic(gen32) -> None:
    cfg = dataclasses.replace(TINY, steps=3, val_pairs=8)
    a, b = train_recognizer(gen32, cfg), train_recognizer(gen32, cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert a.threshold == b.threshold


def test_training_reduces_loss_and_separates_identities(gen32, trained) -> None:
    stats = trained.train_stats
    assert stats["loss_final"] < stats["loss_first"] - 0.3, stats
    a, b, same = _pairs(gen32, 200, seed=123)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY.seed)
        init = Recognizer(TINY)
    auc_init = _auc(_sims(init, a, b), same)
    auc_trained = _auc(_sims(trained, a, b), same)
    assert auc_trained > auc_init + 0.1, (auc_init, auc_trained)
    assert auc_trained > 0.8, auc_trained
    assert np.isfinite(trained.threshold) and -1 <= trained.threshold <= 1
    assert 0.6 < stats["val_accuracy"] <= 1.0


# ------------------------------------------------------------------------------- thresholds
def test_fit_threshold_separates_and_pairs_accuracy(gen32, trained) -> None:
    emb_a = torch.tensor([[1.0, 0.0]] * 4)
    emb_b = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    same = [True, True, False, False]
    t = fit_threshold(emb_a, emb_b, same)
    sims = rec.cosine_similarity(emb_a, emb_b).numpy()
    assert np.array_equal(sims > t, np.array(same))
    with pytest.raises(ConfigError, match="labels"):
        fit_threshold(emb_a, emb_b, same[:3])
    a, b, same = _pairs(gen32, 40, seed=5)
    assert recognizer_pairs_accuracy(trained, a, b, same, threshold=-2.0) == pytest.approx(0.5)
    assert recognizer_pairs_accuracy(trained, a, a, np.ones(40, bool)) == 1.0
    acc = recognizer_pairs_accuracy(trained, a, b, same)
    assert 0.6 <= acc <= 1.0
    untrained = Recognizer(TINY)
    with pytest.raises(ConfigError, match="no verification threshold"):
        recognizer_pairs_accuracy(untrained, a, b, same)


def test_decoded_vs_original_protocol(gen32, trained) -> None:
    g = torch.Generator().manual_seed(9)
    orig = gen32.sample_latent(24, g)
    redrawn = torch.cat([gen32.sample_latent_same_identity(orig[i], 1, g) for i in range(24)])
    with torch.no_grad():
        originals, decoded = gen32.synthesize(orig), gen32.synthesize(redrawn)
    exact = verification_decoded_vs_original(trained, originals, originals.clone())
    assert exact.genuine_accept_rate == 1.0
    assert exact.genuine_similarity == pytest.approx(1.0, abs=1e-5)
    for mode in ("derangement", "hardest"):
        res = verification_decoded_vs_original(trained, originals, decoded, impostors=mode)
        assert res.accuracy == pytest.approx(
            (res.genuine_accept_rate + res.impostor_reject_rate) / 2)
        assert res.accuracy_ci95[0] <= res.accuracy <= res.accuracy_ci95[1]
        assert res.n_pairs == 24 and res.threshold == trained.threshold
        assert res.genuine_similarity > res.impostor_similarity
    # hardest impostors are at least as similar as the derangement's
    der = verification_decoded_vs_original(trained, originals, decoded)
    hard = verification_decoded_vs_original(trained, originals, decoded, impostors="hardest")
    assert hard.impostor_similarity >= der.impostor_similarity
    # the impostor of each face is another face, of another identity
    emb = trained.embed(originals)
    labels = np.repeat(np.arange(12), 2)
    for mode in ("derangement", "hardest"):
        j = impostor_index(emb, mode, labels, seed=0)
        assert (labels[j] != labels).all()
        j = impostor_index(emb, mode, None, seed=0)
        assert (j != np.arange(24)).all()
    with pytest.raises(ConfigError, match="another identity"):
        verification_decoded_vs_original(trained, originals[:2], decoded[:2], labels=[0, 0])
    with pytest.raises(ConfigError, match="at least 2"):
        verification_decoded_vs_original(trained, originals[:1], decoded[:1])
    with pytest.raises(ConfigError, match="impostors"):
        verification_decoded_vs_original(trained, originals, decoded, impostors="nearest")


# ------------------------------------------------------------------------------- cache
def test_cache_round_trip_and_key(tmp_path, gen32, trained) -> None:
    path = recognizer_cache_path(gen32, TINY, tmp_path)
    assert path.parent == tmp_path and path.name == recognizer_key(gen32, TINY) + ".pt"
    save_recognizer(trained, path, gen32)
    loaded = load_recognizer(path, gen32)
    images = gen32.synthesize(gen32.sample_latent(5, torch.Generator().manual_seed(3)))
    assert torch.equal(loaded.embed(images), trained.embed(images))
    assert loaded.threshold == trained.threshold
    assert loaded.train_stats == pytest.approx(trained.train_stats)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    # the key follows the generator size / seed / version and the config, not the device
    key = recognizer_key(gen32, TINY)
    assert recognizer_key(SynthFace(48), TINY) != key
    assert recognizer_key(SynthFace(32, seed=1), TINY) != key
    assert recognizer_key(SynthFace(32, internal_size=64), TINY) != key
    assert recognizer_key(gen32, dataclasses.replace(TINY, steps=81)) != key
    assert recognizer_key(gen32, dataclasses.replace(TINY, progress=True)) == key
    bumped = SynthFace(32)
    bumped.version = getattr(gen32, "version", 1) + 1  # type: ignore[attr-defined]
    assert recognizer_key(bumped, TINY) != key
    # another generator is refused, with both signatures in the message
    with pytest.raises(ConfigError, match=r"another generator .*size"):
        load_recognizer(path, SynthFace(48))
    with pytest.raises(ConfigError, match=r"another generator .*version"):
        load_recognizer(path, bumped)


def test_load_or_train_trains_once_then_loads(tmp_path, gen32, monkeypatch) -> None:
    cfg = dataclasses.replace(TINY, steps=2, val_pairs=8)
    with pytest.raises(ConfigError, match=r"no recognizer at .*lsi-ml recognizer --size 32"):
        load_or_train_recognizer(gen32, cfg, cache_dir=tmp_path, train_if_missing=False)
    first = load_or_train_recognizer(gen32, cfg, cache_dir=tmp_path, progress=False)
    assert recognizer_cache_path(gen32, cfg, tmp_path).is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the cache holds the recognizer")

    monkeypatch.setattr(recognizer_cache, "train_recognizer", no_training)
    again = load_or_train_recognizer(gen32, cfg, cache_dir=tmp_path, progress=False)
    assert again.threshold == first.threshold
    # default folder: $XDG_CACHE_HOME/lsi-toolkit/recognizer
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lsi-toolkit" / "recognizer"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == Path.home() / ".cache" / "lsi-toolkit" / "recognizer"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-a-recognizer",
                                    "nan-threshold"])
def test_corrupt_cache_file_is_one_line_error(tmp_path, gen32, trained, damage) -> None:
    path = recognizer_cache_path(gen32, TINY, tmp_path)
    save_recognizer(trained, path, gen32)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not a torch file" * 50)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-a-recognizer":
        torch.save({"model": {}}, path)
    else:
        payload = torch.load(path, weights_only=True)
        payload["threshold"] = float("nan")
        torch.save(payload, path)
    with pytest.raises(ConfigError) as info:
        load_recognizer(path, gen32)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    # the cache does not retrain over a damaged file silently
    with pytest.raises(ConfigError, match=str(path)):
        load_or_train_recognizer(gen32, TINY, cache_dir=tmp_path, progress=False)


def test_changed_generator_output_is_detected(tmp_path, gen32, trained, monkeypatch) -> None:
    path = recognizer_cache_path(gen32, TINY, tmp_path)
    save_recognizer(trained, path, gen32)
    payload = torch.load(path, weights_only=True)
    payload["reference_grey"] = payload["reference_grey"] + 0.05
    torch.save(payload, path)
    with pytest.raises(ConfigError, match=r"differ .*--force"):
        load_recognizer(path, gen32)
    with pytest.raises(ConfigError, match="differ"):
        load_or_train_recognizer(gen32, TINY, cache_dir=tmp_path, train_if_missing=False)
    monkeypatch.setattr(recognizer_cache, "train_recognizer",
                        lambda generator, config: trained)
    again = load_or_train_recognizer(gen32, TINY, cache_dir=tmp_path, progress=False)
    assert again is trained
    assert load_recognizer(path, gen32).threshold == trained.threshold  # rewritten


# ------------------------------------------------------------------------------- CLI
def test_cli_recognizer(tmp_path, monkeypatch) -> None:
    runner = CliRunner()
    out = tmp_path / "r.pt"
    args = ["recognizer", "--steps", "1", "--size", "32", "--no-progress"]
    result = runner.invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.is_file()
    assert load_recognizer(out, SynthFace(32)).config.steps == 1
    refused = runner.invoke(main, [*args, "--out", str(out)])
    assert refused.exit_code == 2 and "--force" in refused.output
    # default location: the cache under $XDG_CACHE_HOME; a second run finds it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(rec, "train_recognizer", lambda generator, config: load_recognizer(out))
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    files = list((tmp_path / "xdg" / "lsi-toolkit" / "recognizer").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith(
        f"synthface-v{getattr(SynthFace, 'version', 1)}-32px-")
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "already" in again.output
    files[0].write_bytes(b"junk")
    broken = runner.invoke(main, args)
    assert broken.exit_code == 2 and str(files[0]) in broken.output
    assert len(broken.output.strip().splitlines()) == 1
    for bad, words in ((["--steps", "0"], "steps = 0 must be >= 1"),
                       (["--size", "8"], "--size 8 must be in 32..512"),
                       (["--device", "gpu9"], "not a torch device")):
        result = runner.invoke(main, ["recognizer", *bad, "--out", str(tmp_path / "x.pt")])
        assert result.exit_code == 2 and words in result.output, result.output
        assert not (tmp_path / "x.pt").exists()
