"""GAN inversion into SynthFace, resumable dataset inversion, and the image-folder dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from lsi_hw.errors import ConfigError
from lsi_ml.baselines import inversion
from lsi_ml.baselines.inversion import invert, invert_dataset
from lsi_ml.data.images import ImageFolderFaces, natural_key
from lsi_ml.evaluation.metrics import psnr
from lsi_ml.generators.synthface import PARAM_INDEX, SynthFace


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # 32 px renders are tiny: one thread is as fast, and immune to a busy second core
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def gen() -> SynthFace:
    return SynthFace(size=32)


@pytest.fixture(scope="module")
def known(gen: SynthFace) -> tuple[torch.Tensor, torch.Tensor]:
    z = gen.sample_latent(8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return z, gen.synthesize(z)


@pytest.fixture(scope="module")
def inverted(gen: SynthFace, known) -> inversion.InversionResult:
    return invert(gen, known[1], steps=100, restarts=1, seed=0)


def _r2(true: torch.Tensor, pred: torch.Tensor) -> float:
    return float(1 - ((true - pred) ** 2).sum() / ((true - true.mean()) ** 2).sum())


# ------------------------------------------------------------------------------------- invert
def test_inversion_reconstructs_images(gen: SynthFace, known, inverted) -> None:
    z, x = known
    assert inverted.latent.shape == z.shape and inverted.image.shape == x.shape
    with torch.no_grad():
        start = gen.synthesize(torch.zeros_like(z))  # the prior mean: the best constant guess
    l1_start = (start - x).abs().flatten(1).mean(1)
    l1 = (inverted.image - x).abs().flatten(1).mean(1)
    ratio = l1_start / l1
    # measured (seed 1, 100 steps): ratio min 12.0, median 15.8; PSNR min 31.2, mean 38.5 dB
    assert ratio.min() > 5 and ratio.median() > 8
    p = psnr(inverted.image.detach(), x, reduction="none")
    assert p.min() > 25 and p.mean() > 33
    assert torch.isfinite(inverted.loss).all() and (inverted.loss >= inverted.recon).all()


def test_inversion_recovers_visible_parameters(gen: SynthFace, known, inverted) -> None:
    z, _ = known
    zt, zr = z.reshape(len(z), -1), inverted.latent.reshape(len(z), -1)
    # measured R^2 (8 aligned SynthFace v2 faces, 32 px): eye_spacing 0.91, head_width 0.94,
    # hair_dark 0.84, yaw 0.97 (a strongly turned face could end in the mirrored minimum)
    for name, floor in (("eye_spacing", 0.75), ("head_width", 0.75), ("hair_dark", 0.7)):
        i = PARAM_INDEX[name]
        assert _r2(zt[:, i], zr[:, i]) > floor, name
    # the two background colours may swap (with the gradient's angle): test their mean
    pt, pr = gen.params(z), gen.params(inverted.latent)
    assert _r2((pt["bg1"] + pt["bg2"]) / 2, (pr["bg1"] + pr["bg2"]) / 2) > 0.75  # meas. 0.97
    # a random latent does not pass the same bar
    other = gen.sample_latent(len(z), generator=torch.Generator().manual_seed(99))
    i = PARAM_INDEX["head_width"]
    assert _r2(zt[:, i], other.reshape(len(z), -1)[:, i]) < 0.5


def test_restarts_never_make_it_worse(gen: SynthFace, known) -> None:
    x = known[1][:3]
    one = invert(gen, x, steps=20, restarts=1, lr=0.1, seed=5)
    calls = []

    class Counting:
        latent_shape = gen.latent_shape
        sample_latent = gen.sample_latent

        def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
            calls.append(len(latent))
            return gen.synthesize(latent)

    three = invert(Counting(), x, steps=20, restarts=3, lr=0.1, seed=5)
    assert calls == [1] + [3] * (3 * 21) + [3]  # probe, 3 restarts x (20 steps + final), result
    assert (three.loss <= one.loss).all()
    assert set(three.restart.tolist()) <= {0, 1, 2}
    # the kept loss is that of the returned latent (up to SynthFace's batch-dependent crop)
    recon = (three.image - x).abs().flatten(1).mean(1) + (three.image - x).pow(2).flatten(1).mean(1)
    assert torch.allclose(recon, three.recon, atol=2e-3)


def test_inversion_resizes_and_validates(gen: SynthFace, known) -> None:
    x = known[1][:2]
    big = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear", antialias=True)
    res = invert(gen, big, steps=3, restarts=1)
    assert res.image.shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"\(n, 3, H, W\)"):
        invert(gen, x[:, :2], steps=1)
    with pytest.raises(ConfigError, match=r"\(n, 3, H, W\)"):
        invert(gen, x.permute(0, 2, 3, 1), steps=1)  # channels last
    with pytest.raises(ConfigError, match="float"):
        invert(gen, (x * 255).to(torch.uint8), steps=1)
    with pytest.raises(ConfigError, match="loss"):
        invert(gen, x, loss="lpips")
    with pytest.raises(ConfigError, match="restarts"):
        invert(gen, x, restarts=0)


def test_feature_loss_and_prior_are_used(gen: SynthFace, known) -> None:
    x = known[1][:2]
    calls = []

    def feats(img: torch.Tensor) -> torch.Tensor:
        calls.append(img.shape)
        return torch.nn.functional.avg_pool2d(img, 4)

    res = invert(gen, x, steps=5, restarts=1, feature_fn=feats, feature_weight=10.0)
    assert len(calls) == 1 + 6  # the target once, then every step and the final evaluation
    assert (res.loss > res.recon).all()  # prior + feature terms add to the reconstruction
    strong = invert(gen, x, steps=20, restarts=1, prior_weight=10.0)
    weak = invert(gen, x, steps=20, restarts=1, prior_weight=0.0)
    assert strong.latent.pow(2).mean() < weak.latent.pow(2).mean()


# ----------------------------------------------------------------------------- invert_dataset
def _write_faces(gen: SynthFace, folder, n: int) -> torch.Tensor:
    z = gen.sample_latent(n, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        img = gen.synthesize(z)
    for i in range(n):
        arr = (img[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")
    return z


class _PowerCut(Exception):
    pass


def test_invert_dataset_writes_and_resumes(gen: SynthFace, tmp_path, monkeypatch) -> None:
    _write_faces(gen, tmp_path, 5)
    ds = ImageFolderFaces(tmp_path, size=32)
    real = inversion.invert
    seen: list[int] = []
    cut = [True]

    def flaky(generator, images, **kw):
        seen.append(len(images))
        if cut[0] and len(seen) == 2:
            raise _PowerCut("interrupted during the second batch")
        return real(generator, images, **kw)

    monkeypatch.setattr(inversion, "invert", flaky)
    with pytest.raises(_PowerCut):
        invert_dataset(gen, ds, batch=2, steps=4, restarts=1)
    out = tmp_path / "latents.npy"
    state = json.loads((tmp_path / "latents.npy.progress.json").read_text())
    assert state["done"] == [0, 1]
    first = np.load(out)
    assert first.shape == (5, 4, 24) and np.isfinite(first[:2]).all()
    assert np.isnan(first[2:]).all()
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files

    seen.clear()
    cut[0] = False
    invert_dataset(gen, ds, batch=2, steps=4, restarts=1)
    assert seen == [2, 1]  # only rows 2..4 were inverted again
    done = np.load(out)
    assert np.isfinite(done).all() and np.array_equal(done[:2], first[:2])
    seen.clear()
    invert_dataset(gen, ds, batch=2, steps=4, restarts=1)
    assert seen == []  # nothing left to do
    # the targets are readable by the dataset
    back = ImageFolderFaces(tmp_path, size=32, latents=out)
    assert torch.equal(back[3]["latent"], torch.from_numpy(done[3]))


def test_invert_dataset_split_rows_and_stale_progress(gen: SynthFace, tmp_path) -> None:
    _write_faces(gen, tmp_path, 5)
    test = ImageFolderFaces(tmp_path, size=32, split="test", fractions=(0.6, 0.2, 0.2))
    out = invert_dataset(gen, test, tmp_path / "z.npy", batch=4, steps=2, restarts=1)
    arr = np.load(out)
    rows = [test.global_index(i) for i in range(len(test))]
    assert arr.shape == (5, 4, 24) and np.isfinite(arr[rows]).all()
    assert np.isnan(np.delete(arr, rows, axis=0)).all()
    (tmp_path / "5.png").write_bytes((tmp_path / "0.png").read_bytes())  # the folder changed
    with pytest.raises(ConfigError, match="another run"):
        invert_dataset(gen, ImageFolderFaces(tmp_path, 32), out, steps=1, restarts=1)


# ----------------------------------------------------------------------------- image folders
def _stripes(size: int) -> np.ndarray:
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:, ::2] = 255  # one-pixel black/white columns
    return arr


def test_image_folder_order_resize_and_batch(tmp_path) -> None:
    for name in ("10.jpg", "2.png", "1.png"):
        Image.fromarray(_stripes(64)).save(tmp_path / name, quality=100)
    (tmp_path / "notes.txt").write_text("not an image")
    assert sorted(["10.jpg", "2.png", "1.png"], key=natural_key) == ["1.png", "2.png", "10.jpg"]
    ds = ImageFolderFaces(tmp_path, size=32)
    assert len(ds) == 3 and ds.names == ["1.png", "2.png", "10.jpg"]
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["name"] == "2.png" and int(item["index"]) == 1
    # area resampling averages the 1 px stripes to grey (point sampling would keep 0 / 1)
    assert torch.allclose(item["image"], torch.full_like(item["image"], 0.5), atol=0.01)
    b = ds.batch([2, 0])
    assert b["image"].shape == (2, 3, 32, 32) and b["index"].tolist() == [2, 0]
    assert b["name"] == ["10.jpg", "1.png"]
    with pytest.raises(IndexError):
        ds.batch([3])


def test_image_folder_splits_are_fixed_and_disjoint(tmp_path) -> None:
    for i in range(10):
        Image.fromarray(_stripes(16)).save(tmp_path / f"{i}.png")
    parts = {s: ImageFolderFaces(tmp_path, 16, split=s, seed=3) for s in ("train", "val", "test")}
    idx = {s: [d.global_index(i) for i in range(len(d))] for s, d in parts.items()}
    assert [len(v) for v in idx.values()] == [8, 1, 1]
    assert sorted(i for v in idx.values() for i in v) == list(range(10))
    again = ImageFolderFaces(tmp_path, 16, split="train", seed=3)
    assert [again.global_index(i) for i in range(8)] == idx["train"]
    others = [ImageFolderFaces(tmp_path, 16, split="test", seed=s).global_index(0)
              for s in range(4, 12)]
    assert len(set(others)) > 1  # the seed matters
    with pytest.raises(ConfigError, match="fractions"):
        ImageFolderFaces(tmp_path, 16, split="train", fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ConfigError, match="split"):
        ImageFolderFaces(tmp_path, 16, split="holdout")


def test_image_folder_targets(tmp_path) -> None:
    for i in range(3):
        Image.fromarray(_stripes(64)).save(tmp_path / f"{i}.jpg")
    attr = tmp_path / "CelebAMask-HQ-attribute-anno.txt"
    attr.write_text("3\nSmiling Eyeglasses\n0.jpg 1 -1\n1.jpg -1 -1\n2.jpg  1  1\n")
    lm = np.array([[[31.5, 0.0], [63.0, 31.5]]] * 3, np.float32)  # (3, K=2, 2), 64 px frame
    np.save(tmp_path / "lm.npy", lm)
    lat = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    ds = ImageFolderFaces(tmp_path, 32, attributes=attr, landmarks=tmp_path / "lm.npy",
                          latents=lat)
    assert ds.attribute_names == ["Smiling", "Eyeglasses"]
    b = ds.batch([0, 1, 2])
    assert b["attributes"].dtype == torch.bool
    assert b["attributes"].tolist() == [[True, False], [False, False], [True, True]]
    # centre stays the centre, the last pixel centre maps to the last pixel centre
    assert torch.allclose(b["landmarks"][0], torch.tensor([[15.5, -0.25], [31.25, 15.5]]))
    assert torch.equal(b["latent"], torch.from_numpy(lat))
    csv = tmp_path / "lm.csv"
    csv.write_text("name,x0,y0,x1,y1\n" + "".join(f"{i}.jpg,31.5,0,63,31.5\n" for i in range(3)))
    assert torch.allclose(ImageFolderFaces(tmp_path, 32, landmarks=csv)[2]["landmarks"],
                          b["landmarks"][2])
    enc = ImageFolderFaces(tmp_path, 32, encoder=lambda im: im.mean((2, 3))[:, None, :])
    assert enc.batch([0])["latent"].shape == (1, 1, 3)


def test_image_folder_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"no .*images"):
        ImageFolderFaces(tmp_path, 32)
    for i in range(2):
        Image.fromarray(_stripes(16)).save(tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"definitely not a png")
    ds = ImageFolderFaces(tmp_path, 16)
    with pytest.raises(ConfigError, match=r"2\.png"):
        ds[2]
    attr = tmp_path / "attr.txt"
    attr.write_text("2\nSmiling\n0.png 1\n1.png -1\n")
    with pytest.raises(ConfigError, match=r"no row for 1 of the 3 images .*2\.png"):
        ImageFolderFaces(tmp_path, 16, attributes=attr)
    attr.write_text("5\nSmiling\n0.png 1\n1.png -1\n2.png 1\n")
    with pytest.raises(ConfigError, match="says 5 rows"):
        ImageFolderFaces(tmp_path, 16, attributes=attr)
    np.save(tmp_path / "lm.npy", np.zeros((2, 68, 2)))
    with pytest.raises(ConfigError, match=r"2 rows but .* 3 images"):
        ImageFolderFaces(tmp_path, 16, landmarks=tmp_path / "lm.npy")
    (tmp_path / "lm.csv").write_text("0.png,1,2,3,4\n1.png,1,2\n2.png,1,2,3,4\n")
    with pytest.raises(ConfigError, match="different landmark counts"):
        ImageFolderFaces(tmp_path, 16, landmarks=tmp_path / "lm.csv")
    with pytest.raises(ConfigError, match=r"\(N=3, L, D\)"):
        ImageFolderFaces(tmp_path, 16, latents=np.zeros((2, 4, 24)))
