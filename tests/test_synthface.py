"""Tests of the SynthFace generator: shapes, determinism, gradients, ground truth, pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from lsi_ml.generators import (
    ATTRIBUTE_NAMES,
    CLASS_NAMES,
    GroundTruthGenerator,
    SynthFace,
    save_sample_grid,
)
from lsi_ml.generators.synthface import ATTRIBUTE_DRIVERS, EYE_TARGET, PARAM_INDEX


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sf64() -> SynthFace:
    return SynthFace(size=64, seed=0)


@pytest.fixture(scope="module")
def batch128():
    model = SynthFace(size=128, seed=0)
    latent = model.sample_latent(48, _g(3))
    with torch.no_grad():
        out = model.render(latent)
    return model, latent, out


def _near(seg: torch.Tensor, lm: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Fraction of landmarks with one of ``classes`` within 1 px (3x3 neighbourhood)."""
    mask = torch.zeros_like(seg, dtype=torch.float32)
    for k in classes:
        mask += (seg == k).float()
    mask = F.max_pool2d(mask[:, None].clamp(max=1), 3, stride=1, padding=1)[:, 0]
    n, h, w = seg.shape
    xi = lm[..., 0].round().long().clamp(0, w - 1)
    yi = lm[..., 1].round().long().clamp(0, h - 1)
    vals = mask[torch.arange(n)[:, None], yi, xi]
    return vals.mean()


def test_protocol_and_layout(sf64: SynthFace) -> None:
    assert isinstance(sf64, GroundTruthGenerator)
    levels = sf64.levels
    assert len(levels) >= 3
    assert [lv.name for lv in levels] == ["coarse", "middle", "fine", "texture"]
    total = sum(lv.size for lv in levels)
    assert total == sf64.latent_dim >= 64
    assert levels[-1].flat.stop == total
    assert all(len(lv.params) == lv.size for lv in levels)
    assert sf64.identity_dim >= 16
    assert len(CLASS_NAMES) >= 12 and len(ATTRIBUTE_NAMES) >= 8


def test_shapes_dtypes_ranges(sf64: SynthFace) -> None:
    latent = sf64.sample_latent(5, _g())
    assert latent.shape == (5, 4, 24)
    out = sf64.render(latent)
    assert out.image.shape == (5, 3, 64, 64) and out.image.dtype == torch.float32
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert out.landmarks.shape == (5, 68, 2) and out.landmarks.dtype == torch.float32
    assert out.segmentation.shape == (5, 64, 64) and out.segmentation.dtype == torch.int64
    assert 0 <= out.segmentation.min() and out.segmentation.max() < len(CLASS_NAMES)
    assert out.attributes.shape == (5, len(ATTRIBUTE_NAMES))
    assert out.attributes.dtype == torch.bool
    assert out.identity.shape == (5, sf64.identity_dim)
    assert torch.isfinite(out.landmarks).all()
    # landmarks lie inside the image
    assert (out.landmarks > -1).all() and (out.landmarks < 65).all()
    assert torch.allclose(sf64.synthesize(latent), out.image)


@given(seed=st.integers(0, 2**31 - 1), spread=st.floats(0.0, 8.0))
def test_any_latent_renders_finite(seed: int, spread: float) -> None:
    model = SynthFace(32)
    latent = model.sample_latent(2, _g(seed)) * spread
    out = model.render(latent)
    assert torch.isfinite(out.image).all()
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert torch.isfinite(out.landmarks).all()
    latent.requires_grad_(True)
    (grad,) = torch.autograd.grad(model.synthesize(latent).sum(), latent)
    assert torch.isfinite(grad).all()


def test_bad_latent_shape(sf64: SynthFace) -> None:
    with pytest.raises(ValueError, match="latent must have shape"):
        sf64.synthesize(torch.zeros(2, 96))


def test_determinism() -> None:
    a, b = SynthFace(64, seed=0), SynthFace(64, seed=0)
    la, lb = a.sample_latent(3, _g(7)), b.sample_latent(3, _g(7))
    assert torch.equal(la, lb)
    assert torch.equal(a.synthesize(la), b.synthesize(lb))
    fa, fb = a.features(la), b.features(lb)
    assert all(torch.equal(x, y) for x, y in zip(fa, fb, strict=True))
    c = SynthFace(64, seed=1)
    assert not torch.equal(a.features(la)[0], c.features(la)[0])
    assert not torch.equal(la, a.sample_latent(3, _g(8)))


def test_features_multiscale(sf64: SynthFace) -> None:
    feats = sf64.features(sf64.sample_latent(2, _g()))
    assert [tuple(f.shape) for f in feats] == [
        (2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8), (2, 64, 4, 4)
    ]
    assert all(torch.isfinite(f).all() for f in feats)


def test_gradients_every_level(sf64: SynthFace) -> None:
    latent = sf64.sample_latent(4, _g(1)).requires_grad_(True)
    img = sf64.synthesize(latent)
    (grad,) = torch.autograd.grad(img.sum(), latent)
    assert torch.isfinite(grad).all()
    for lv in sf64.levels:
        assert grad[:, lv.index].abs().sum() > 0, lv.name
    # most individual dimensions influence the image
    assert (grad.abs().sum(0) > 0).float().mean() > 0.9


def test_identity_preserved_under_nuisance(sf64: SynthFace) -> None:
    base = sf64.sample_latent(1, _g(2))
    pair = sf64.sample_latent_same_identity(base, 4, _g(3))
    ids = sf64.identity(pair)
    assert torch.equal(ids, sf64.identity(base).expand(4, -1))
    imgs = sf64.synthesize(pair)
    assert (imgs[0] - imgs[1]).abs().mean() > 0.01
    nuis = pair.reshape(4, -1)[:, sf64.nuisance_index]
    assert not torch.equal(nuis[0], nuis[1])
    other = sf64.sample_latent(4, _g(4))
    mixed = sf64.with_identity(other, sf64.identity(base))
    assert torch.equal(sf64.identity(mixed), ids)
    assert torch.equal(mixed.reshape(4, -1)[:, sf64.nuisance_index],
                       other.reshape(4, -1)[:, sf64.nuisance_index])


def test_landmarks_match_segmentation(batch128) -> None:
    _, _, out = batch128
    seg, lm = out.segmentation, out.landmarks
    assert _near(seg, lm[:, 36:42], [4]) >= 0.8
    assert _near(seg, lm[:, 42:48], [5]) >= 0.8
    assert _near(seg, lm[:, 17:22], [2]) >= 0.8
    assert _near(seg, lm[:, 22:27], [3]) >= 0.8
    assert _near(seg, lm[:, 27:36], [6]) >= 0.8
    assert _near(seg, lm[:, 48:68], [7, 8, 9]) >= 0.8
    # jaw points lie on the face outline: face classes within 1 px
    face = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert _near(seg, lm[:, 0:17], face) >= 0.8
    assert _near(seg, lm, face) >= 0.9


def test_all_classes_present(batch128) -> None:
    _, _, out = batch128
    present = set(torch.unique(out.segmentation).tolist())
    assert present == set(range(len(CLASS_NAMES)))


def test_attribute_balance() -> None:
    model = SynthFace(64)
    attrs = model.attributes(model.sample_latent(512, _g(5))).float().mean(0)
    for name, frac in zip(ATTRIBUTE_NAMES, attrs.tolist(), strict=True):
        assert 0.2 <= frac <= 0.8, (name, frac)


@pytest.mark.parametrize("name", ATTRIBUTE_NAMES)
def test_attribute_follows_driver(sf64: SynthFace, name: str) -> None:
    latent = sf64.sample_latent(16, _g(6))
    k = ATTRIBUTE_NAMES.index(name)
    idx = PARAM_INDEX[ATTRIBUTE_DRIVERS[name]]
    lo, hi = latent.clone().reshape(16, -1), latent.clone().reshape(16, -1)
    lo[:, idx], hi[:, idx] = -3.0, 3.0
    lo, hi = lo.reshape(latent.shape), hi.reshape(latent.shape)
    assert not sf64.attributes(lo)[:, k].any()
    assert sf64.attributes(hi)[:, k].all()
    # and the image changes with it
    assert (sf64.synthesize(lo) - sf64.synthesize(hi)).abs().amax() > 0.05


def test_verification_pairs(sf64: SynthFace) -> None:
    a, b, same, hard = sf64.verification_pairs(200, _g(9), return_hard=True)
    assert a.shape == b.shape == (200, 4, 24)
    assert same.dtype == torch.bool and int(same.sum()) == 100
    ida, idb = sf64.identity(a), sf64.identity(b)
    d = (ida - idb).norm(dim=1)
    assert torch.all(d[same] == 0)
    assert torch.all(d[~same] > 0)
    assert int(hard.sum()) == 50 and not (hard & same).any()
    rand = ~same & ~hard
    assert d[hard].mean() < 0.8 * d[rand].mean()
    # same-identity pairs still differ in nuisance
    assert (a[same] - b[same]).abs().sum() > 0
    a2, b2, s2 = sf64.verification_pairs(10, _g(9))
    assert b2.shape == a2.shape
    assert a2.shape == (10, 4, 24) and int(s2.sum()) == 5


def test_yaw_moves_landmarks_horizontally() -> None:
    """Turning the head moves the nose and mouth across the face (relative to the eyes,
    which alignment keeps in place) and foreshortens the far eye."""
    sf64 = SynthFace(64, pose="free")
    latent = sf64.sample_latent(8, _g(11)).reshape(8, -1)
    latent[:, PARAM_INDEX["roll"]] = 0.0
    left, right = latent.clone(), latent.clone()
    left[:, PARAM_INDEX["yaw"]] = -2.0
    right[:, PARAM_INDEX["yaw"]] = 2.0
    lm_l = sf64.landmarks(left.reshape(8, 4, 24))
    lm_r = sf64.landmarks(right.reshape(8, 4, 24))

    def rel(lm: torch.Tensor) -> torch.Tensor:  # x relative to the eyes' midpoint
        mid = 0.5 * (lm[:, 36:42, 0].mean(1) + lm[:, 42:48, 0].mean(1))
        return lm[..., 0] - mid[:, None]

    dx = rel(lm_r) - rel(lm_l)
    dy = lm_r[..., 1] - lm_l[..., 1]
    for k in (30, 33, 51, 57, 62, 66):  # nose tip and base, mouth centre
        assert (dx[:, k] > 0).all(), k
    assert dx[:, 27:36].mean() > 5 * dy[:, 27:36].abs().mean()
    # the nose tip moves more than the nose bridge (2.5-D depth)
    assert (dx[:, 30] > dx[:, 27]).all()
    # the far half is foreshortened: eye on the far (right) side is narrower
    w_far = lm_r[:, 45, 0] - lm_r[:, 42, 0]
    w_near = lm_r[:, 39, 0] - lm_r[:, 36, 0]
    assert (w_far < w_near).all()


def test_aligned_faces_keep_the_eyes_in_place(sf64: SynthFace) -> None:
    """Default pose: the eyes' midpoint sits at EYE_TARGET whatever the identity and yaw
    (to within the sub-pixel jitter); turning the head moves the nose, not the eyes."""
    latent = sf64.sample_latent(64, _g(12)).reshape(64, -1)
    lm = sf64.landmarks(latent.reshape(64, 4, 24))
    mid = 0.5 * (lm[:, 36:42].mean(1) + lm[:, 42:48].mean(1))
    target = (torch.tensor(EYE_TARGET) + 1) * 64 / 2 - 0.5
    assert (mid - target).abs().max() < 1.0  # pixels at 64 px
    left, right = latent.clone(), latent.clone()
    left[:, PARAM_INDEX["yaw"]] = -2.0
    right[:, PARAM_INDEX["yaw"]] = 2.0
    lm_l = sf64.landmarks(left.reshape(64, 4, 24))
    lm_r = sf64.landmarks(right.reshape(64, 4, 24))
    eyes = lambda m: 0.5 * (m[:, 36:42].mean(1) + m[:, 42:48].mean(1))  # noqa: E731
    assert (eyes(lm_r) - eyes(lm_l)).abs().max() < 1.0
    assert (lm_r[:, 30, 0] - lm_l[:, 30, 0] > 1.0).all()  # the nose tip moves
    # roll, scale and translation are sub-pixel jitter when aligned, large when free
    free = SynthFace(64, pose="free")
    lm_f = free.landmarks(latent.reshape(64, 4, 24))
    mid_f = 0.5 * (lm_f[:, 36:42].mean(1) + lm_f[:, 42:48].mean(1))
    assert (mid_f - target).abs().max() > 3.0
    with pytest.raises(ValueError, match="pose"):
        SynthFace(64, pose="tilted")


def test_roll_and_translation_move_landmarks() -> None:
    sf64 = SynthFace(64, pose="free")
    latent = torch.zeros(1, 4, 24)
    lm0 = sf64.landmarks(latent)
    shifted = latent.clone().reshape(1, -1)
    shifted[:, PARAM_INDEX["tx"]] = 1.0
    lm1 = sf64.landmarks(shifted.reshape(1, 4, 24))
    assert torch.allclose(lm1[..., 1], lm0[..., 1])
    assert (lm1[..., 0] > lm0[..., 0]).all()


def test_render_sizes() -> None:
    for size in (64, 128, 256):
        model = SynthFace(size)
        out = model.render(model.sample_latent(1, _g()))
        assert out.image.shape[-1] == size and out.segmentation.shape[-1] == size
    small = SynthFace(128, internal_size=64).render(torch.zeros(1, 4, 24))
    assert small.image.shape == (1, 3, 128, 128)


def test_save_sample_grid(tmp_path) -> None:
    path = save_sample_grid(tmp_path / "grid.png", n=4, size=64)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000
    assert np.isfinite(len(data))


def test_save_identity_grid(tmp_path) -> None:
    from lsi_ml.generators import save_identity_grid

    path = save_identity_grid(tmp_path / "ids.png", n_identities=2, n_draws=3, size=64)
    assert path.stat().st_size > 1000
